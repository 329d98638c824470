"""`coursestack diagram`: golden DOT and Mermaid, and the SVG read back as XML."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from coursestack.diagram import FRONT_DOOR, course_graph, to_dot, to_mermaid, to_svg
from coursestack.spec import load_spec
from support import cli

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
SPEC = GOLDEN / "diagram-course.toml"
SVG = "{http://www.w3.org/2000/svg}"
#: Set to rewrite the golden files after a deliberate change of the drawing.
UPDATE = os.environ.get("COURSESTACK_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize(("name", "draw"), [("diagram.dot", to_dot), ("diagram.mmd", to_mermaid)])
def test_text_formats_match_their_golden_files(name: str, draw: object) -> None:
    text = draw(course_graph(load_spec(SPEC)))  # type: ignore[operator]
    golden = GOLDEN / name
    if UPDATE:
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_svg_has_one_node_per_service_and_one_edge_per_dependency() -> None:
    spec = load_spec(SPEC)
    root = ET.fromstring(to_svg(course_graph(spec)))
    nodes = {
        g.get("data-service"): g
        for g in root.iter(f"{SVG}g")
        if "node" in (g.get("class") or "").split()
    }
    assert set(nodes) == {*spec.services, FRONT_DOOR}
    for name, service in spec.services.items():
        texts = [t.text for t in nodes[name].iter(f"{SVG}text")]
        assert texts[0] == name
        assert texts[1] == service.kind + (f" :{service.port}" if service.port else "")
    edges = [
        (g.get("data-source"), g.get("data-target"), g.find(f"{SVG}text").text)  # type: ignore[union-attr]
        for g in root.iter(f"{SVG}g")
        if "edge-dependency" in (g.get("class") or "")
    ]
    expected = [
        (name, dep, str(condition))
        for name, service in spec.services.items()
        for dep, condition in service.depends_on.items()
    ]
    assert sorted(edges) == sorted(expected)  # type: ignore[type-var]
    exposed = sorted(
        g.get("data-target") or ""
        for g in root.iter(f"{SVG}g")
        if "edge-exposes" in (g.get("class") or "")
    )
    assert exposed == ["api", "notebooks"]  # a web command and Jupyter


def test_waves_put_what_is_needed_below_what_needs_it() -> None:
    graph = course_graph(load_spec(SPEC))
    for edge in graph.edges:
        assert graph.node(edge.source).y < graph.node(edge.target).y, edge


def test_cli_writes_each_format(workdir: Path) -> None:
    for fmt, marker in (("svg", "<svg"), ("dot", "digraph"), ("mermaid", "flowchart TB")):
        out = workdir / f"course.{fmt}"
        cli("diagram", str(SPEC), "--format", fmt, "-o", str(out))
        assert out.read_text(encoding="utf-8").startswith(marker)
    printed = cli("diagram", "--format", "mermaid").stdout  # the sample course
    assert 'svc_jupyter -->|"started"| svc_postgres' in printed


def test_cli_reports_a_bad_spec_without_traceback(workdir: Path) -> None:
    bad = workdir / "course.toml"
    bad.write_text('[course]\nname = "x"\n[services.a]\nkind = "nope"\n', encoding="utf-8")
    result = cli("diagram", str(bad), check=False)
    assert result.returncode == 2
    assert "unknown kind 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
