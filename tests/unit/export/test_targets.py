"""Every target's output, for each test course, passes that runtime's own validator, and
reads back as the same course: services, dependencies, readiness checks, ports,
environment names and seeds."""

from __future__ import annotations

import functools
import json
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from coursestack.export.write import export_course
from coursestack.spec import load_spec
from coursestack.units import parse_size
from export_readback import (
    DATA,
    compose_problems,
    expected,
    read_binder,
    read_compose,
    read_image,
    read_launchd,
    read_spec_facts,
    read_start_script,
    read_unit,
    run_arguments,
)

SECURITY_LIMIT = 5.0


def _tool(name: str) -> str:
    # The test environment's own copy first: a version manager's shim on PATH (pyenv's)
    # costs ~0.1 s of shell per call and may pick another environment's tool.
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300, **kwargs)


def _course_with_binder(spec: Path, tmp_path: Path) -> Path:
    """A copy of the course folder, as its repository (Binder's folder goes inside)."""
    repository = tmp_path / "repository"
    shutil.copytree(spec.parent, repository)
    return repository


# -- image ------------------------------------------------------------------------------


def test_image_lints_clean_and_runs_the_same_course(course_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "image"
    export_course("image", course_spec, out, force=False)
    lint = _run([_tool("hadolint"), str(out / "Containerfile")])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    spec, found = read_image(out)
    assert read_spec_facts(spec) == expected(load_spec(course_spec))
    # The MongoDB stand-in runs as real MongoDB in the image, which installs it.
    assert "mongodb-lite" not in {service.kind for service in spec.services.values()}
    assert found["cmd"][:2] == ["coursestack", "run"]
    assert found["healthcheck"][:2] == ["coursestack", "status"]
    every_port = {port for facts in expected(spec).values() for port in facts.ports}
    assert every_port <= found["expose"]
    assert (out / "course-start").stat().st_mode & 0o111


# -- compose ----------------------------------------------------------------------------


def test_compose_passes_the_compose_schema_and_our_checks(
    course_spec: Path, tmp_path: Path
) -> None:
    out = tmp_path / "compose"
    export_course("compose", course_spec, out, force=False)
    check = _run(
        [
            _tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(out / "compose.yaml"),
        ]
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert compose_problems(out) == []


def test_compose_reads_back_as_the_spec(course_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "compose"
    export_course("compose", course_spec, out, force=False)
    found = read_compose(out)
    wanted = expected(load_spec(course_spec))
    assert set(found) == set(wanted)
    for name, facts in wanted.items():
        got = found[name]
        assert got.depends_on == facts.depends_on, name
        assert got.readiness == facts.readiness, name
        assert got.ports == facts.ports, name
        assert facts.env_names <= got.env_names, name
        assert got.seeds == facts.seeds, name


def test_compose_seed_scripts_are_mounted_where_images_run_them(tmp_path: Path) -> None:
    out = tmp_path / "compose"
    export_course("compose", DATA / "export" / "replica" / "course.toml", out, force=False)
    document = yaml.safe_load((out / "compose.yaml").read_text(encoding="utf-8"))
    mounts = {
        volume["target"]: volume["source"]
        for service in document["services"].values()
        for volume in service["volumes"]
        if isinstance(volume, dict)
    }
    csv_as_sql = (out / mounts["/docker-entrypoint-initdb.d/01-authors.sql"]).read_text()
    assert "COPY \"authors\" FROM '/seed/authors.csv'" in csv_as_sql
    assert mounts["/seed/authors.csv"].endswith("course/seed/authors.csv")
    books = (out / mounts["/docker-entrypoint-initdb.d/50-seed-books.sh"]).read_text()
    assert "--collection books" in books and "--jsonArray" not in books  # JSONL
    # Secrets: created once, kept by --force (the data volume was made with them).
    password = (out / "secrets" / "mongo-password").read_text()
    export_course("compose", DATA / "export" / "replica" / "course.toml", out, force=True)
    assert (out / "secrets" / "mongo-password").read_text() == password


# -- z2jh -------------------------------------------------------------------------------


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _deep_merge(base.get(key), value) if key in base else value
        return merged
    return override


@functools.cache
def _chart_yaml(name: str) -> Any:
    """The vendored chart's values or schema, read once (the schema is 130 KB of YAML);
    callers must not change what they get."""
    return yaml.safe_load((DATA / "z2jh" / name).read_text(encoding="utf-8"))


async def test_z2jh_config_passes_the_chart_schema_and_the_pod_validates(
    course_spec: Path, tmp_path: Path
) -> None:
    import jsonschema
    from kubernetes_asyncio.client import ApiClient
    from kubespawner.objects import make_pod

    out = tmp_path / "config.yaml"
    export_course("z2jh", course_spec, out, force=False)
    config = yaml.safe_load(out.read_text(encoding="utf-8"))
    merged = _deep_merge(_chart_yaml("values.yaml"), config)
    schema = _chart_yaml("values.schema.yaml")
    jsonschema.validate(merged, schema)

    user = merged["singleuser"]
    spec = load_spec(course_spec)
    assert user["memory"]["limit"] == spec.course.memory_budget
    assert user["cmd"] == ["course-start", "jupyterhub-singleuser"]
    assert user["networkPolicy"]["enabled"] is True
    assert merged["cull"]["enabled"] is True
    # The student's pod, as KubeSpawner would build it from these settings.
    home = user["storage"]["homeMountPath"]
    pod = make_pod(
        name="jupyter-student",
        cmd=user["cmd"],
        port=8888,
        image=f"{user['image']['name']}:{user['image']['tag']}",
        uid=user["uid"],
        gid=user["uid"],
        fs_gid=user["fsGid"],
        env={**user["extraEnv"], "JUPYTERHUB_API_TOKEN": "test"},
        mem_limit=parse_size(user["memory"]["limit"]),
        volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": "claim-student"}}],
        volume_mounts=[{"name": "home", "mountPath": home}],
        labels={"component": "singleuser-server"},
    )
    async with ApiClient() as client:  # its serialiser needs an event loop
        manifest = client.sanitize_for_serialization(pod)
    # The pod runs the course image: its course-start starts the course's services.
    image = tmp_path / "image"
    export_course("image", course_spec, image, force=False)
    assert user["image"]["name"] == f"coursestack-{spec.course.name}"
    _, instructions = read_image(image)
    spec_inside, only = read_start_script(image / "course-start")
    assert spec_inside == instructions["cmd"][2]
    assert set(only) == _started_without_notebook_server(spec)
    manifest_file = tmp_path / "pod.yaml"
    manifest_file.write_text(yaml.safe_dump(manifest), encoding="utf-8")
    check = _run([_tool("kubernetes-validate"), "--strict", str(manifest_file)])
    assert check.returncode == 0, check.stdout + check.stderr
    assert "passed" in check.stdout, check.stdout


# -- binder -----------------------------------------------------------------------------


def test_binder_renders_with_repo2docker_and_reads_back(course_spec: Path, tmp_path: Path) -> None:
    repository = _course_with_binder(course_spec, tmp_path)
    out = repository / ".binder"
    export_course("binder", repository / course_spec.name, out, force=False)
    render = _run([_tool("jupyter-repo2docker"), "--no-build", "--debug", str(repository)])
    assert render.returncode == 0, render.stderr[-3000:]
    dockerfile = render.stdout + render.stderr
    assert 'R2D_ENTRYPOINT="${REPO_DIR}/.binder/start"' in dockerfile
    assert "./.binder/postBuild" in dockerfile
    assert "requirements.txt" in dockerfile

    found = read_binder(out)
    spec = load_spec(course_spec)
    assert read_spec_facts(found["spec"]) == expected(spec)
    notebook_servers = {
        name for name, service in spec.services.items() if service.kind == "jupyter"
    }
    assert set(found["only"]) == _started_without_notebook_server(spec)
    web = {
        name
        for name, service in spec.services.items()
        if type(service).WEB or getattr(service, "web", False)
    }
    assert found["web"] == web - notebook_servers


def _started_without_notebook_server(spec: Any) -> set[str]:
    """What a hub's or Binder's start script starts: `up`'s services but Jupyter."""
    return {
        name
        for name, service in spec.services.items()
        if service.start == "always" and service.kind != "jupyter"
    }


# -- systemd and launchd ----------------------------------------------------------------


def test_systemd_unit_verifies_and_scores_low(course_spec: Path, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    out = tmp_path / "coursestack-course.service"
    export_course("systemd", course_spec, out, force=False)
    verify = _run(["systemd-analyze", "verify", str(out)])
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = _run(["systemd-analyze", "security", "--offline=yes", str(out)])
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert score, security.stdout + security.stderr
    assert float(score.group(1)) <= SECURITY_LIMIT, security.stdout

    keys = read_unit(out)
    argv = [part.strip('"') for part in keys["ExecStart"][0].split()]
    spec = load_spec(course_spec)
    run = run_arguments(argv)
    assert run["instance"] == spec.course.name
    ran = load_spec(run["spec"]) if run["spec"] else spec  # no spec: the sample's own copy
    assert expected(ran) == expected(spec)
    assert keys["KillSignal"] == ["SIGTERM"]
    assert keys["WantedBy"] == ["default.target"]


def test_launchd_agent_round_trips(course_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "org.coursestack.course.plist"
    export_course("launchd", course_spec, out, force=False)
    agent = read_launchd(out)
    assert plistlib.loads(plistlib.dumps(agent)) == agent
    assert agent["RunAtLoad"] is True and agent["KeepAlive"] == {"SuccessfulExit": False}
    run = run_arguments(agent["ProgramArguments"])
    spec = load_spec(course_spec)
    ran = load_spec(run["spec"]) if run["spec"] else spec
    assert expected(ran) == expected(spec)
    assert json.dumps(agent)  # plain types only


# -- a kind the exporters have never heard of -------------------------------------------


def test_a_new_kind_exports_without_touching_the_exporters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typing import ClassVar

    from coursestack import kinds, spec
    from coursestack.kinds.base import Kind

    class RedisService(spec.ServiceSpec):
        KIND: ClassVar[str] = "redis"

    class RedisKind(Kind[RedisService]):
        KIND = "redis"
        default_port = 6379

    monkeypatch.setitem(spec.SERVICE_MODELS, "redis", RedisService)
    monkeypatch.setitem(kinds.KINDS, "redis", RedisKind)
    course = tmp_path / "course.toml"
    course.write_text(
        '[course]\nname = "cache"\n\n[services.cache]\nkind = "redis"\n'
        'env = { MAXMEMORY = "64mb" }\n'
    )
    for target in ("image", "compose", "binder", "z2jh", "systemd", "launchd"):
        out = tmp_path / target
        export_course(target, course, out, force=False)
    found = read_compose(tmp_path / "compose")
    assert found["cache"].ports == {6379}
    assert "MAXMEMORY" in found["cache"].env_names
    document = yaml.safe_load((tmp_path / "compose" / "compose.yaml").read_text())
    assert document["services"]["cache"]["command"][:4] == [
        "coursestack",
        "run",
        "/course/course.toml",
        "--only",
    ]


def test_the_stand_in_becomes_real_mongodb_in_the_image_whatever_the_layout(tmp_path: Path) -> None:
    course = tmp_path / "course.toml"
    course.write_text(
        '# kind = "mongodb-lite" in a comment stays\n[course]\nname = "inline"\n'
        '\n[services]\ndocs = { port = 27019, kind = "mongodb-lite" }\n'
    )
    export_course("image", course, tmp_path / "image", force=False)
    copied = (tmp_path / "image" / "course" / "course.toml").read_text()
    assert copied.startswith('# kind = "mongodb-lite" in a comment stays\n')
    spec = load_spec(tmp_path / "image" / "course" / "course.toml")
    assert spec.services["docs"].kind == "mongodb" and spec.services["docs"].port == 27019
    assert load_spec(course).services["docs"].kind == "mongodb-lite"  # the original stays
