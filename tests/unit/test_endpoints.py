"""Endpoints: chosen and moved by the daemon's table, handed to kinds explicitly; the
notebook client reads the live connections.json on every call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coursestack import client
from coursestack.endpoints import Endpoint, EndpointTable
from coursestack.ports import ephemeral_port


def test_a_replica_set_gets_one_port_per_member_and_ports_json_round_trips() -> None:
    table = EndpointTable()
    base = ephemeral_port()
    table.choose("mongo", base, count=3)
    table.choose("web", None)
    mongo = table.get("mongo")
    assert mongo is not None and len(set(mongo.ports())) == 3
    assert table.get("web") is None
    again = EndpointTable.from_ports(table.as_ports(), ["mongo", "web"])
    assert again.endpoints == table.endpoints


def test_a_moved_port_avoids_every_other_port_and_keeps_the_members() -> None:
    table = EndpointTable({"a": Endpoint(5000, members=(5001,)), "b": Endpoint(5002)})
    moved = table.move("a")
    assert moved.members == (5001,)
    assert moved.port not in (5001, 5002)
    assert table.get("a") == moved


def test_kinds_hold_copies_not_the_daemons_table(tmp_path: Path) -> None:
    from coursestack.kinds import Context, bind_all, build_unit
    from coursestack.spec import load_spec
    from coursestack.state import Secrets, StateFolder

    spec_file = tmp_path / "course.toml"
    spec_file.write_text(
        '[course]\nname = "c"\n[services.a]\nkind = "command"\n'
        'command = ["prog", "{b.port}"]\nport = 7001\n'
        '[services.b]\nkind = "command"\ncommand = ["prog"]\nport = 7002\n'
    )
    spec = load_spec(spec_file)
    state = StateFolder(tmp_path / "state")
    context = Context(state, spec, Secrets(state), None)
    units = {name: build_unit(name, service, context) for name, service in spec.services.items()}
    table = EndpointTable({"a": Endpoint(7001), "b": Endpoint(7002)})
    bind_all(units, table, {"X": "1"})
    assert units["a"].port == 7001 and units["a"].argv() == ["prog", "7002"]  # type: ignore[attr-defined]
    table.move("b")  # not published: the kinds still see what was handed to them
    assert units["a"].argv() == ["prog", "7002"]  # type: ignore[attr-defined]
    bind_all(units, table)
    assert units["a"].argv() == ["prog", str(table.endpoints["b"].port)]  # type: ignore[attr-defined]
    assert units["a"].environment()["X"] == "1"


def test_connect_reads_the_live_connections_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "connections.json"
    monkeypatch.setenv("COURSESTACK_CONNECTIONS", str(path))

    def publish(port: int) -> None:
        path.write_text(
            json.dumps(
                {
                    "services": {
                        "db": {
                            "service": "db",
                            "kind": "anything",
                            "driver": "psycopg",
                            "host": "127.0.0.1",
                            "port": port,
                            "url": "",
                            "user": "u",
                            "password": "p",
                            "database": "d",
                        }
                    }
                }
            )
        )

    publish(5001)
    assert client.connection_info("db")["port"] == 5001
    publish(5002)  # the port moved after the kernel started
    assert client.connection_info("db")["port"] == 5002
    assert client._first_database()["port"] == 5002
