"""The diagnostics bundle: what it holds, and that no password, token or secret is in it."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from bundle_secrets import assert_no_secret, unpack
from coursestack.bundle import Redactor, write_bundle
from coursestack.state import StateFolder, atomic_write_json

PLANTED = {
    "postgres.password": "Planted-Pg-Password-0001",
    "jupyter.token": "planted0jupyter0token0002",
    "daemon.token": "planted-daemon-token-0003",
}
SPEC_KEY = "course-team-api-key-0004"
LOOSE = {  # secrets no file names, that only the patterns can catch
    "url": "url-pass-0005",
    "pgpassword": "env-pass-0006",
    "query": "query-token-0007",
    "bearer": "bearerTOKEN0008xyz",
    "quoted": "two words 0009",
}


# -- redaction rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        (
            "postgresql://student:s3cr3t-pw@127.0.0.1:5432/teaching",
            "student:[REDACTED]@127",
            "s3cr3t-pw",
        ),
        (
            "GET /s/jupyter/api/status?token=abc123def456&x=1",
            "?token=[REDACTED]&x=1",
            "abc123def456",
        ),
        ("export PGPASSWORD=hunter2hunter2", "PGPASSWORD=[REDACTED]", "hunter2hunter2"),
        ("--ServerApp.token=zzzyyyxxx", "--ServerApp.token=[REDACTED]", "zzzyyyxxx"),
        ('{"password": "pw-in-json", "user": "student"}', '"password": "[REDACTED]"', "pw-in-json"),
        ("password = 'two words here'", "password = '[REDACTED]'", "two words"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y", "Bearer [REDACTED]", "eyJhbGci"),
        ('API_KEY = "k-123456"', 'API_KEY = "[REDACTED]"', "k-123456"),
    ],
)
def test_patterns_hide_passwords_and_tokens(text: str, kept: str, gone: str) -> None:
    redacted = Redactor({})(text)
    assert kept in redacted and gone not in redacted


def test_redaction_keeps_what_is_no_secret() -> None:
    text = (
        '{"password": null, "user": "student", "port": 5432}\n'
        "LOG:  database system is ready to accept connections\n"
        "the token is checked below"
    )
    assert Redactor({})(text) == text


def test_known_secrets_are_named_and_caught_in_every_form() -> None:
    redact = Redactor({"db.password": "p@ss w/rd!", "tiny": "ab"})
    text = 'raw p@ss w/rd! url p%40ss%20w%2Frd%21 json "p@ss w/rd!" ab'
    assert redact(text) == (
        'raw [REDACTED:db.password] url [REDACTED:db.password] json "[REDACTED:db.password]" ab'
    )


# -- bundles --------------------------------------------------------------------------------


def planted_state(folder: Path) -> StateFolder:
    """A stopped instance whose files and logs hold known secrets in many shapes."""
    state = StateFolder(folder / "state")
    state.create()
    spec = folder / "course.toml"
    spec.write_text(
        '[course]\nname = "leaky"\n\n[services.db]\nkind = "postgres"\n'
        f'env = {{ API_KEY = "{SPEC_KEY}" }}\n',
        encoding="utf-8",
    )
    atomic_write_json(state.instance_file, {"name": "leaky", "spec": str(spec)})
    atomic_write_json(state.run / "secrets.json", PLANTED, 0o600)
    atomic_write_json(
        state.daemon_file,
        {"pid": 999999999, "url": "http://127.0.0.1:1/", "token": PLANTED["daemon.token"]},
        0o600,
    )
    password = PLANTED["postgres.password"]
    atomic_write_json(
        state.connections_file,
        {
            "services": {
                "db": {
                    "service": "db",
                    "kind": "postgres",
                    "password": password,
                    "url": f"postgresql://student:{password}@127.0.0.1:5432/leaky",
                    "env": {"PGPASSWORD": password},
                }
            }
        },
    )
    (state.logs / "db.log").write_text(
        "LOG:  database system is ready to accept connections\n"
        f"connecting with postgresql://other:{LOOSE['url']}@db/x\n"
        f"PGPASSWORD={LOOSE['pgpassword']} psql\n"
        f"GET /lab?token={LOOSE['query']}\n"
        f"Authorization: Bearer {LOOSE['bearer']}\n"
        f'password = "{LOOSE["quoted"]}"\n'
        f"the superuser password is {password} (a bad log line)\n",
        encoding="utf-8",
    )
    (state.logs / "daemon.log").write_text(
        f"GET http://127.0.0.1:8888/api/status?token={PLANTED['jupyter.token']}\n"
        f"login link: http://127.0.0.1:8700/login?token={PLANTED['daemon.token']}\n",
        encoding="utf-8",
    )
    (state.logs / "events.jsonl").write_text(
        json.dumps(
            {
                "time": 1.0,
                "service": "db",
                "state": "failed",
                "previous": "backoff",
                "detail": "",
                "reason": f"auth failed for {quote(password)}",
            }
        )
        + "\n"
    )
    return state


def test_bundle_of_a_stopped_instance_holds_no_secret(workdir: Path) -> None:
    state = planted_state(workdir)
    (workdir / "out").mkdir()
    bundle = write_bundle(state, workdir / "out")
    assert bundle.parent == workdir / "out" and bundle.suffix == ".zip"
    assert bundle.stat().st_mode & 0o077 == 0
    files = unpack(bundle, workdir / "unpacked")
    assert_no_secret(files, {*PLANTED.values(), SPEC_KEY, *LOOSE.values()})
    by_name = {
        Path(name).relative_to(Path(name).parts[0]).as_posix(): text for name, text in files.items()
    }
    # Useful things survive redaction.
    assert "ready to accept connections" in by_name["logs/db.log"]
    assert "[REDACTED:postgres.password]" in by_name["logs/db.log"]
    assert json.loads(by_name["connections.json"])["services"]["db"]["url"] == (
        "postgresql://student:[REDACTED:postgres.password]@127.0.0.1:5432/leaky"
    )
    assert json.loads(by_name["services.json"])["running"] is False
    assert json.loads(by_name["services.json"])["last_recorded"]["db"]["state"] == "failed"
    assert "API_KEY" in by_name["course/course.toml"]
    for name in (
        "doctor.txt",
        "doctor.json",
        "events.jsonl",
        "versions.json",
        "os.json",
        "plan.json",
        "instance.json",
        "README.txt",
    ):
        assert by_name[name].strip(), name
    for name, text in by_name.items():
        if name.endswith(".json"):
            json.loads(text)  # redaction keeps JSON valid
