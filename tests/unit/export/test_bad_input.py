"""Bad input to `coursestack export`, each as the issue lists it, through the real CLI."""

from __future__ import annotations

from pathlib import Path

from export_readback import COURSES
from support import cli, open_folder

SAMPLE = COURSES["sample"]


def test_a_setting_compose_cannot_express_is_named_with_what_was_done(tmp_path: Path) -> None:
    result = cli("export", "compose", str(SAMPLE), "-o", str(tmp_path / "out"))
    assert (
        "warning: services.openrefine.start: compose has no on-demand start: it starts "
        "with `docker compose up`"
    ) in " ".join(result.stderr.split())
    assert "idle_stop = 900 does not apply" in " ".join(result.stderr.split())


def test_the_stand_in_exports_as_real_mongodb_and_says_so(tmp_path: Path) -> None:
    result = cli("export", "compose", str(SAMPLE), "-o", str(tmp_path / "out"))
    said = " ".join(result.stderr.split())
    assert "services.mongo.kind: 'mongodb-lite' is a MongoDB-compatible stand-in" in said
    assert "it exports as real MongoDB (compose: mongo:7.0" in said
    assert "image: mongo:7.0" in (tmp_path / "out" / "compose.yaml").read_text()


def test_a_replica_set_compose_cannot_run_is_reported(tmp_path: Path) -> None:
    result = cli("export", "compose", str(COURSES["replica"]), "-o", str(tmp_path / "out"))
    assert "services.mongo.replicas: the official image runs one mongod" in " ".join(
        result.stderr.split()
    )


def test_a_program_only_the_course_team_has_is_reported_not_dropped(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("export", "compose", str(COURSES["lab-tools"]), "-o", str(out))
    assert (
        "services.grader.command: /opt/grading/bin/grader exists only on this machine"
        in " ".join(result.stderr.split())
    )
    assert "/opt/grading/bin/grader" in (out / "compose.yaml").read_text()


def test_an_existing_output_is_not_overwritten_without_force(tmp_path: Path) -> None:
    out = tmp_path / "config.yaml"
    out.write_text("mine\n")
    refused = cli("export", "z2jh", str(SAMPLE), "-o", str(out), check=False)
    assert refused.returncode == 2
    assert f"{out} exists; nothing was written" in refused.stderr
    assert "--force" in refused.stderr
    assert out.read_text() == "mine\n"
    cli("export", "z2jh", str(SAMPLE), "-o", str(out), "--force")
    assert "singleuser:" in out.read_text()


def test_an_existing_folder_is_not_written_into_without_force(tmp_path: Path) -> None:
    out = tmp_path / "image"
    out.mkdir()
    refused = cli("export", "image", str(SAMPLE), "-o", str(out), check=False)
    assert refused.returncode == 2 and not any(out.iterdir())


def test_a_folder_where_a_file_goes_is_refused_even_with_force(tmp_path: Path) -> None:
    refused = cli("export", "systemd", str(SAMPLE), "-o", str(tmp_path), "--force", check=False)
    assert refused.returncode == 2 and "is a folder" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_spec_error_reads_exactly_as_up_reports_it(tmp_path: Path) -> None:
    folder = open_folder("bad-spec-")
    spec = folder / "course.toml"
    spec.write_text(
        '[course]\nname = "bad"\n\n[services.db]\nkind = "postgress"\n'
        'port = "five"\n\n[services.web]\nkind = "jupyter"\n'
        'depends_on = ["nowhere"]\n'
    )
    up = cli("up", str(spec), "--state", str(open_folder("bad-state-")), check=False)
    exported = cli("export", "compose", str(spec), "-o", str(tmp_path / "out"), check=False)
    assert up.returncode == exported.returncode == 2
    assert exported.stderr == up.stderr
    assert "postgress" in exported.stderr and "nowhere" in exported.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_seed_file_is_named(tmp_path: Path) -> None:
    spec = tmp_path / "course.toml"
    spec.write_text(
        '[course]\nname = "seedless"\n\n[services.db]\nkind = "postgres"\n'
        'seed = ["seed/gone.csv"]\n'
    )
    result = cli("export", "compose", str(spec), "-o", str(tmp_path / "out"), check=False)
    assert result.returncode == 1
    assert f"{tmp_path / 'seed' / 'gone.csv'}: cannot read seed file" in result.stderr
    assert "services.db.seed" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unknown_target_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("export", "nomad", str(SAMPLE), "-o", str(tmp_path / "x"), check=False)
    assert result.returncode == 2
    assert "image" in result.stderr and "compose" in result.stderr
