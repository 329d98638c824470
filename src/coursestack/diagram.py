"""The course as a picture: a graph model of a course spec and three ways to draw it.

`course_graph(spec)` turns a loaded `CourseSpec` into a `CourseGraph`: one node per
service (name, kind, port), one edge per dependency with its condition, the front door
and the web services it exposes, and a layout in dependency waves (services that need
nothing at the bottom, the front door on top, so every arrow points down to what a
service needs). `to_dot`, `to_mermaid` and `to_svg` draw it; the SVG is drawn here, with
no Graphviz needed (`to_svg_graphviz` uses Graphviz's `dot` when it is installed).

The SVG carries only presentation attributes (no `<style>`, no `style=""`), so the
dashboard can inline it under a strict Content-Security-Policy and colour nodes by state
from its own stylesheet through their classes.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from coursestack.spec import CourseSpec, ServiceSpec, service_models

FRONT_DOOR = "front-door"

# Geometry of the drawn SVG (pixels).
NODE_WIDTH = 168
NODE_HEIGHT = 56
GAP_X = 40
GAP_Y = 70
MARGIN = 24
#: How far beyond a box's side an arrow that skips rows bows out; and each further one.
BOW = 48
LANE = 64

#: Fill colour per kind (pale, so black text stays readable; WCAG AA).
KIND_FILLS = {
    "postgres": "#dbe8fb",
    "jupyter": "#fde7cf",
    "mongodb": "#dcf2df",
    "mongodb-lite": "#e6f4e8",
    "openrefine": "#f3e0f5",
    "command": "#eeeeee",
    FRONT_DOOR: "#fff7c2",
}


@dataclass(frozen=True)
class Node:
    """One box: a service, or the front door."""

    name: str
    kind: str
    port: int | None
    #: Dependency wave (0: needs nothing); the front door is one above the highest wave.
    wave: int
    web: bool = False
    x: int = 0
    y: int = 0

    @property
    def label(self) -> str:
        """What the box says under the name: kind and port."""
        if self.kind == FRONT_DOOR:
            return "dashboard, /s/NAME/"
        return f"{self.kind}" + (f" :{self.port}" if self.port else "")


@dataclass(frozen=True)
class Edge:
    """An arrow from a service to one it needs (or from the front door to a web service)."""

    source: str
    target: str
    label: str
    #: "dependency" (labelled with its condition) or "exposes" (front door to a service).
    kind: str = "dependency"


@dataclass
class CourseGraph:
    """The course as nodes and edges, laid out in dependency waves."""

    course: str
    title: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (the dashboard's API)."""
        return {
            "course": self.course,
            "title": self.title,
            "width": self.width,
            "height": self.height,
            "nodes": [
                {
                    "name": n.name,
                    "kind": n.kind,
                    "port": n.port,
                    "wave": n.wave,
                    "web": n.web,
                    "x": n.x,
                    "y": n.y,
                    "label": n.label,
                }
                for n in self.nodes
            ],
            "edges": [
                {"source": e.source, "target": e.target, "label": e.label, "kind": e.kind}
                for e in self.edges
            ],
        }


def is_web(service: ServiceSpec) -> bool:
    """Whether the front door serves this service (its kind speaks HTTP, or `web = true`)."""
    model = service_models().get(service.kind)
    return bool((model is not None and model.WEB) or getattr(service, "web", False))


def course_graph(spec: CourseSpec) -> CourseGraph:
    """The graph of a course spec, laid out: waves as rows, the front door on top."""
    waves = spec.start_order()
    graph = CourseGraph(spec.course.name, spec.course.title)
    web_services = [name for wave in waves for name in wave if is_web(spec.services[name])]
    rows: list[list[tuple[str, str, int | None, int, bool]]] = []
    for number, wave in enumerate(waves):
        rows.append(
            [
                (
                    name,
                    spec.services[name].kind,
                    spec.services[name].port,
                    number,
                    is_web(spec.services[name]),
                )
                for name in wave
            ]
        )
    if web_services:
        rows.append([(FRONT_DOOR, FRONT_DOOR, spec.dashboard.port, len(waves), True)])
    widest = max(len(row) for row in rows)
    graph.width = MARGIN * 2 + widest * NODE_WIDTH + (widest - 1) * GAP_X
    graph.height = MARGIN * 2 + len(rows) * NODE_HEIGHT + (len(rows) - 1) * GAP_Y
    for level, row in enumerate(rows):
        # Highest wave on top: arrows point down, towards what a service needs.
        y = MARGIN + (len(rows) - 1 - level) * (NODE_HEIGHT + GAP_Y)
        row_width = len(row) * NODE_WIDTH + (len(row) - 1) * GAP_X
        left = (graph.width - row_width) // 2
        for index, (name, kind, port, number, web) in enumerate(row):
            graph.nodes.append(
                Node(name, kind, port, number, web, x=left + index * (NODE_WIDTH + GAP_X), y=y)
            )
    for name in (name for wave in waves for name in wave):
        for dependency, condition in sorted(spec.services[name].depends_on.items()):
            graph.edges.append(Edge(name, dependency, str(condition)))
    for name in web_services:
        graph.edges.append(Edge(FRONT_DOOR, name, f"/s/{name}/", "exposes"))
    return graph


# -- DOT and Mermaid -----------------------------------------------------------------------


def _dot_id(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: CourseGraph) -> str:
    """Graphviz DOT text: services ranked by wave, dependencies labelled with conditions."""
    lines = [
        f"digraph {_dot_id(graph.course)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    by_wave: dict[int, list[Node]] = {}
    for node in graph.nodes:
        by_wave.setdefault(node.wave, []).append(node)
    for wave in sorted(by_wave, reverse=True):
        names = " ".join(_dot_id(node.name) for node in by_wave[wave])
        lines.append(f"  {{ rank=same; {names} }}")
    for node in graph.nodes:
        fill = KIND_FILLS.get(node.kind, "#ffffff")
        shape = ", shape=house" if node.kind == FRONT_DOOR else ""
        label = f"{node.name}\\n{node.label}"
        lines.append(f'  {_dot_id(node.name)} [label="{label}", fillcolor="{fill}"{shape}];')
    for edge in graph.edges:
        style = ", style=dashed" if edge.kind == "exposes" else ""
        lines.append(
            f'  {_dot_id(edge.source)} -> {_dot_id(edge.target)} [label="{edge.label}"{style}];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_id(name: str) -> str:
    # Mermaid ids are words: a dash is fine, but "end" and friends are keywords.
    return "svc_" + name.replace("-", "_")


def to_mermaid(graph: CourseGraph) -> str:
    """Mermaid flowchart text (renders in GitHub and GitLab Markdown)."""
    lines = ["flowchart TB"]
    for node in graph.nodes:
        label = f"{node.name}<br/>{node.label}".replace('"', "#quot;")
        if node.kind == FRONT_DOOR:
            lines.append(f'  {_mermaid_id(node.name)}{{{{"{label}"}}}}')
        else:
            lines.append(f'  {_mermaid_id(node.name)}["{label}"]')
    for edge in graph.edges:
        arrow = "-.->" if edge.kind == "exposes" else "-->"
        lines.append(
            f'  {_mermaid_id(edge.source)} {arrow}|"{edge.label}"| {_mermaid_id(edge.target)}'
        )
    for node in graph.nodes:
        lines.append(f"  class {_mermaid_id(node.name)} kind_{node.kind.replace('-', '_')}")
    for kind in sorted({node.kind for node in graph.nodes}):
        lines.append(
            f"  classDef kind_{kind.replace('-', '_')} "
            f"fill:{KIND_FILLS.get(kind, '#ffffff')},stroke:#333"
        )
    return "\n".join(lines) + "\n"


# -- SVG -----------------------------------------------------------------------------------


def _edge_path(
    source: Node,
    target: Node,
    between: list[Node],
    lane: int = 0,
) -> tuple[str, float, float]:
    """SVG path of an arrow from `source` down to `target`, and where its label goes.

    Between neighbouring rows the arrow is straight; one that skips rows would cross the
    boxes of the rows `between`, so it bows out past their right side (`lane` more
    widely for each such arrow already drawn, so their labels do not overlap)."""
    sx, tx = source.x + NODE_WIDTH / 2, target.x + NODE_WIDTH / 2
    if source.y > target.y:  # cannot happen for waves; drawn upwards all the same
        sy, ty = float(source.y), float(target.y + NODE_HEIGHT)
    else:
        sy, ty = float(source.y + NODE_HEIGHT), float(target.y)
    if not between:
        return f"M {sx:g} {sy:g} L {tx:g} {ty:g}", (sx + tx) / 2 + 6, (sy + ty) / 2 + 4
    clear = max(node.x + NODE_WIDTH for node in between) + BOW / 3 + lane * LANE
    middle = (sx + tx) / 2
    # A symmetric cubic curve reaches 3/4 of the way from its ends' middle to its controls.
    control = middle + (clear - middle) / 0.75
    path = (
        f"M {sx:g} {sy:g} C {control:g} {sy + GAP_Y:g}, {control:g} {ty - GAP_Y:g}, {tx:g} {ty:g}"
    )
    return path, clear + 4, (sy + ty) / 2 + 4


def to_svg(graph: CourseGraph, links: bool = False) -> str:
    """The picture as standalone SVG; `links` wraps each service in a link to its row."""
    positions = {node.name: node for node in graph.nodes}
    width, long_edges = graph.width, 0
    body: list[str] = []
    for edge in graph.edges:
        source, target = positions[edge.source], positions[edge.target]
        between = [
            node
            for node in graph.nodes
            if min(source.y, target.y) < node.y < max(source.y, target.y)
        ]
        path, label_x, label_y = _edge_path(source, target, between, long_edges)
        long_edges += bool(between)
        width = max(width, int(label_x) + 8 * len(edge.label) + MARGIN)
        dash = ' stroke-dasharray="6 4"' if edge.kind == "exposes" else ""
        body.append(
            f'<g class="edge edge-{edge.kind}" data-source={quoteattr(edge.source)} '
            f"data-target={quoteattr(edge.target)}>"
            f'<path d="{path}" fill="none" stroke="#333" stroke-width="1.5"{dash} '
            f'marker-end="url(#arrow)"/>'
            f'<text x="{label_x:g}" y="{label_y:g}" font-size="12" '
            f'fill="#333">{escape(edge.label)}</text></g>'
        )
    body.extend(_svg_node(node, links) for node in graph.nodes)
    services = len([n for n in graph.nodes if n.kind != FRONT_DOOR])
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="course-diagram" '
        f'viewBox="0 0 {width} {graph.height}" width="{width}" '
        f'height="{graph.height}" role="img" '
        f'aria-labelledby="diagram-title" font-family="Helvetica, Arial, sans-serif">',
        f'<title id="diagram-title">{escape(graph.title or graph.course)}: '
        f"{services} services</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#333"/></marker></defs>',
    ]
    return "\n".join([*head, *body, "</svg>"]) + "\n"


def _svg_node(node: Node, links: bool) -> str:
    """One box: name, kind and port, an empty state label the dashboard fills."""
    fill = KIND_FILLS.get(node.kind, "#ffffff")
    body = (
        f'<rect x="{node.x}" y="{node.y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" '
        f'rx="8" fill="{fill}" stroke="#333" stroke-width="1.5"/>'
        f'<text class="node-name" x="{node.x + NODE_WIDTH / 2:g}" y="{node.y + 23}" '
        f'text-anchor="middle" font-size="15" font-weight="bold" fill="#111">'
        f"{escape(node.name)}</text>"
        f'<text class="node-label" x="{node.x + NODE_WIDTH / 2:g}" y="{node.y + 42}" '
        f'text-anchor="middle" font-size="12" fill="#333">{escape(node.label)}</text>'
    )
    if node.kind != FRONT_DOOR:
        body += (
            f'<text class="node-state" x="{node.x + NODE_WIDTH - 8}" '
            f'y="{node.y + 14}" text-anchor="end" font-size="10" fill="#333"></text>'
        )
    group = (
        f'<g class="node kind-{node.kind}" data-service={quoteattr(node.name)} '
        f"data-kind={quoteattr(node.kind)}>{body}</g>"
    )
    if links and node.kind != FRONT_DOOR:
        group = (
            f'<a href="#svc-{escape(node.name)}" class="node-link" '
            f"aria-label={quoteattr(f'{node.name} ({node.label})')}>{group}</a>"
        )
    return group


def graphviz_available() -> bool:
    """Whether Graphviz's `dot` program is installed."""
    return shutil.which("dot") is not None


def to_svg_graphviz(graph: CourseGraph) -> str:
    """The picture drawn by Graphviz (`dot -Tsvg`); call only if `graphviz_available()`."""
    result = subprocess.run(
        ["dot", "-Tsvg"],
        input=to_dot(graph),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


RENDERERS = {"svg": to_svg, "dot": to_dot, "mermaid": to_mermaid}


def render(spec: CourseSpec, format: str, graphviz: bool = False) -> str:
    """The course drawn in `format` (svg, dot or mermaid)."""
    graph = course_graph(spec)
    if format == "svg" and graphviz and graphviz_available():
        return to_svg_graphviz(graph)
    return RENDERERS[format](graph)
