"""The state folder's layout: one place names every file (StateFolder), and the names are
the ones the docs and older instances use."""

from __future__ import annotations

from pathlib import Path

from coursestack.state import StateFolder


def test_every_state_file_is_where_the_docs_say() -> None:
    state = StateFolder(Path("/s"))
    named = {
        state.instance_file: "instance.json",
        state.connections_file: "connections.json",
        state.spec_file: "course/course.toml",
        state.backups: "backups",
        state.content: "content",
        state.events_file: "logs/events.jsonl",
        state.daemon_log: "logs/daemon.log",
        state.log_file("db"): "logs/db.log",
        state.data_dir("db"): "data/db",
        state.daemon_file: "run/daemon.json",
        state.lock_file: "run/daemon.lock",
        state.pids_file: "run/pids.json",
        state.ports_file: "run/ports.json",
        state.secrets_file: "run/secrets.json",
        state.secrets_backup_file: "run/secrets.backup.json",
        state.account_file: "run/account.json",
        state.dashboard_port_file: "run/dashboard-port.json",
        state.password_file: "run/dashboard-password.json",
        state.revoked_sessions_file: "run/revoked-sessions.json",
        state.tls_dir: "run/tls",
    }
    assert {path.relative_to("/s").as_posix(): name for path, name in named.items()} == {
        name: name for name in named.values()
    }
    assert [p.name for p in state.private_folders] == ["run", "logs", "backups"]
    assert {p.name for p in state.runtime_files} == {"pids.json", "daemon.json", "ports.json"}
