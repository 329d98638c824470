"""The diagnostics bundle redacts secrets by value, whatever their key is called.

Secrets under innocent names (DB_PASS, SERVICE_AUTH, ACCESS_KEY_ID in course.toml's env
tables and in web.log, a generated secret named `web.cookie`, a URL's password under
`UPSTREAM`) are all gone from the unpacked bundle; short env values (`UTC`, `1`) and
ordinary words that merely contain an env value are left alone.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from coursestack.bundle import Redactor, write_bundle
from coursestack.state import StateFolder, atomic_write_json

ENV = {
    "DB_PASS": "hunter2-database",
    "SERVICE_AUTH": "sv1c3Auth",
    "ACCESS_KEY_ID": "AKIAEXAMPLE7Q",
    "TZ": "UTC",
    "LEVEL": "1",
    "MODE": "teaching",
}
GENERATED = {"web.cookie": "generated-cookie-secret-77", "postgres.password": "PgPw-88"}
URL_PASSWORD = "url-innocent-99"


def test_secrets_under_innocent_names_are_redacted_by_value(workdir: Path) -> None:
    state = StateFolder(workdir / "state")
    state.create()
    spec = workdir / "course.toml"
    env = ", ".join(f'{key} = "{value}"' for key, value in ENV.items())
    spec.write_text(
        '[course]\nname = "innocent"\n\n[services.web]\nkind = "command"\n'
        'command = ["python3", "-m", "http.server", "{port}"]\nport = 18000\n'
        f'env = {{ {env}, UPSTREAM = "https://svc:{URL_PASSWORD}@api.example" }}\n',
        encoding="utf-8",
    )
    atomic_write_json(state.instance_file, {"name": "innocent", "spec": str(spec)})
    atomic_write_json(state.run / "secrets.json", GENERATED, 0o600)
    (state.logs / "web.log").write_text(
        f"starting with DB_PASS={ENV['DB_PASS']} in {ENV['TZ']} at level {ENV['LEVEL']}\n"
        f"auth header: {ENV['SERVICE_AUTH']}; key id {ENV['ACCESS_KEY_ID']}\n"
        f"cookie signed with {GENERATED['web.cookie']}\n"
        f"proxying to https://svc:{URL_PASSWORD}@api.example/v1\n"
        "the teachingassistant group and teaching mode are on\n",
        encoding="utf-8",
    )
    (state.logs / "events.jsonl").write_text(
        json.dumps(
            {
                "time": 1.0,
                "service": "web",
                "state": "failed",
                "previous": "backoff",
                "detail": "",
                "reason": f"bad key {ENV['ACCESS_KEY_ID']}",
            }
        )
        + "\n"
    )
    (workdir / "out").mkdir()
    bundle = write_bundle(state, workdir / "out")
    with zipfile.ZipFile(bundle) as archive:
        files = {name: archive.read(name).decode("utf-8") for name in archive.namelist()}
    everything = "\n".join(files.values())
    for secret in (
        ENV["DB_PASS"],
        ENV["SERVICE_AUTH"],
        ENV["ACCESS_KEY_ID"],
        URL_PASSWORD,
        *GENERATED.values(),
    ):
        leaks = [name for name, text in files.items() if secret in text]
        assert not leaks, f"{secret} is in {leaks}"
    log = next(text for name, text in files.items() if name.endswith("logs/web.log"))
    assert "in UTC at level 1" in log  # short values do not shred the text
    assert "teachingassistant" in log  # nor does a value inside a longer word
    assert "[REDACTED:spec.services.web.env.DB_PASS]" in log
    toml = next(text for name, text in files.items() if name.endswith("course.toml"))
    assert 'TZ = "UTC"' in toml and "SERVICE_AUTH" in toml
    assert "events.jsonl" in "".join(files) and ENV["ACCESS_KEY_ID"] not in everything


def test_whole_tokens_only() -> None:
    redact = Redactor({}, {"env.A": "secret1"})
    assert redact("x secret1 y") == "x [REDACTED:env.A] y"
    assert redact("mysecret1s") == "mysecret1s"
    assert redact('"secret1"') == '"[REDACTED:env.A]"'
