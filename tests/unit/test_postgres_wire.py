"""The daemon's own PostgreSQL client, without a server: message encoding, SCRAM against
RFC 7677's test vector, quoting, and scripted servers that misbehave."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import struct
from collections.abc import Awaitable, Callable

import pytest

from coursestack.kinds import postgres_wire as wire

# -- encoding ------------------------------------------------------------------------------


def test_frontend_messages_carry_type_length_and_body() -> None:
    assert wire.query_message("SELECT 1") == b"Q" + struct.pack("!i", 13) + b"SELECT 1\x00"
    assert wire.message(b"X") == b"X\x00\x00\x00\x04"
    startup = wire.startup_message({"user": "ada", "database": "db"})
    assert startup == (
        struct.pack("!ii", 8 + 22, 196608) + b"user\x00ada\x00database\x00db\x00\x00"
    )
    with pytest.raises(ValueError, match="NUL"):
        wire.query_message("SELECT '\x00'")


def test_backend_rows_and_errors_decode() -> None:
    row = (
        struct.pack("!h", 3)
        + struct.pack("!i", 2)
        + b"42"
        + struct.pack("!i", -1)
        + struct.pack("!i", 0)
    )
    assert wire.data_row(row) == ("42", None, "")
    description = struct.pack("!h", 2) + b"id\x00" + bytes(18) + b"name\x00" + bytes(18)
    assert wire.row_description(description) == ["id", "name"]
    error = wire.ServerError(
        wire.error_fields(
            b'SERROR\x00C42601\x00Msyntax error at or near "SELEC"\x00P17\x00'
            b"WCOPY people, line 3\x00\x00"
        )
    )
    assert error.sqlstate == "42601" and error.message == 'syntax error at or near "SELEC"'
    assert error.position == 17 and error.context == "COPY people, line 3"
    assert "SQLSTATE 42601" in str(error)


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ("back\\slash", " E'back\\\\slash'"),
        ("'; DROP TABLE x; --", "'''; DROP TABLE x; --'"),
        ("", "''"),
    ],
)
def test_literals_are_quoted_safely(value: str, quoted: str) -> None:
    assert wire.quote_literal(value) == quoted


def test_identifiers_are_quoted_safely() -> None:
    assert wire.quote_identifier("teaching") == '"teaching"'
    assert wire.quote_identifier('a"; DROP ROLE x; --') == '"a""; DROP ROLE x; --"'
    with pytest.raises(ValueError):
        wire.quote_identifier("a\x00b")
    with pytest.raises(ValueError):
        wire.quote_literal("a\x00b")


# -- authentication -------------------------------------------------------------------------

# RFC 7677, section 3: user "user", password "pencil".
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_scram_matches_rfc_7677() -> None:
    scram = wire.ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE)
    assert scram.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert scram.client_final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    scram.verify_server_final(RFC_SERVER_FINAL)
    assert scram.verified


def test_scram_refuses_a_server_that_does_not_know_the_password() -> None:
    scram = wire.ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE)
    scram.client_final(RFC_SERVER_FIRST)
    forged = b"v=" + base64.b64encode(bytes(32))
    with pytest.raises(wire.WireError, match="signature is wrong"):
        scram.verify_server_final(forged)
    with pytest.raises(wire.WireError, match="refused"):
        scram.verify_server_final(b"e=invalid-proof")
    assert not scram.verified


def test_scram_refuses_a_challenge_that_does_not_extend_our_nonce() -> None:
    scram = wire.ScramClient("", "pencil", nonce="abc")
    for challenge in (
        b"r=xyz123,s=QUJD,i=4096",
        b"r=abc,s=QUJD,i=4096",
        b"r=abcd,i=4096",
        b"r=abcd,s=QUJD,i=many",
    ):
        with pytest.raises(wire.WireError, match="malformed"):
            scram.client_final(challenge)


def test_scram_verifier_is_what_the_rfc_keys_give() -> None:
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = wire.scram_verifier("pencil", 4096, salt)
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    assert method == "SCRAM-SHA-256" and iterations_salt == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert stored == hashlib.sha256(client_key).digest()
    assert server == hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    assert "pencil" not in verifier


def test_saslprep_maps_what_postgres_maps() -> None:
    # A non-ASCII space becomes a space; a soft hyphen (mapped to nothing) disappears;
    # NFKC folds the ligature; a prohibited character leaves the raw bytes (as PostgreSQL).
    assert wire._normalized_password("a\u00a0b\u00adc\ufb01") == b"a bcfi"
    assert wire._normalized_password("x\u0007y") == b"x\x07y"
    assert wire._normalized_password("caf\u00e9\u0000") == "caf\u00e9\u0000".encode()


def test_md5_answer() -> None:
    inner = hashlib.md5(b"secretada").hexdigest()
    expected = b"md5" + hashlib.md5(inner.encode() + b"salt").hexdigest().encode()
    assert wire.md5_password("ada", "secret", b"salt") == expected


# -- scripted servers -----------------------------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def backend(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def auth(code: int, extra: bytes = b"") -> bytes:
    return backend(b"R", struct.pack("!i", code) + extra)


READY = backend(b"Z", b"I")


async def read_startup(reader: asyncio.StreamReader) -> dict[str, str]:
    (length,) = struct.unpack("!i", await reader.readexactly(4))
    body = await reader.readexactly(length - 4)
    parts = body[4:].split(b"\x00")
    return {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 2, 2)}


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    header = await reader.readexactly(5)
    return header[:1], await reader.readexactly(struct.unpack_from("!i", header, 1)[0] - 4)


def run_against(script: Script, work: Callable[[int], Awaitable[object]]) -> object:
    async def main() -> object:
        server = await asyncio.start_server(script, "127.0.0.1", 0)
        async with server:
            return await work(server.sockets[0].getsockname()[1])

    return asyncio.run(main())


def test_trust_cleartext_and_md5_logins() -> None:
    seen: list[bytes] = []

    def server_asking(request: bytes) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            params = await read_startup(reader)
            assert params["user"] == "ada" and params["database"] == "db"
            if request:
                writer.write(request)
                seen.append((await read_message(reader))[1])
            writer.write(
                auth(0)
                + backend(b"S", b"server_version\x0016.2\x00")
                + backend(b"K", bytes(8))
                + READY
            )
            await read_message(reader)  # Terminate
            writer.close()

        return script

    async def log_in(port: int) -> str:
        async with await wire.connect("127.0.0.1", port, "ada", "secret", "db") as session:
            return session.parameters["server_version"]

    for request in (b"", auth(3), auth(5, b"salt")):
        assert run_against(server_asking(request), log_in) == "16.2"
    assert seen == [b"secret\x00", wire.md5_password("ada", "secret", b"salt") + b"\x00"]


def test_a_login_refused_raises_the_servers_error() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_startup(reader)
        writer.write(
            backend(
                b"E", b'SFATAL\x00C28P01\x00Mpassword authentication failed for user "ada"\x00\x00'
            )
        )
        writer.close()

    async def log_in(port: int) -> None:
        await wire.connect("127.0.0.1", port, "ada", "hunter2", "db")

    with pytest.raises(wire.ServerError) as caught:
        run_against(script, log_in)
    assert caught.value.sqlstate == "28P01" and "hunter2" not in str(caught.value)


def test_scram_login_skipping_the_servers_signature_is_refused() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_startup(reader)
        writer.write(auth(10, b"SCRAM-SHA-256\x00\x00"))
        await read_message(reader)
        writer.write(auth(0) + READY)  # "ok" without proving it knows the password
        await reader.read()
        writer.close()

    async def log_in(port: int) -> None:
        await wire.connect("127.0.0.1", port, "ada", "secret", "db")

    with pytest.raises(wire.WireError, match="skipped the end of SCRAM"):
        run_against(script, log_in)


def test_unknown_methods_are_refused_by_name() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_startup(reader)
        writer.write(auth(10, b"SCRAM-SHA-256-PLUS\x00\x00"))
        await reader.read()
        writer.close()

    async def log_in(port: int) -> None:
        await wire.connect("127.0.0.1", port, "ada", "secret", "db")

    with pytest.raises(wire.WireError, match="offers only SCRAM-SHA-256-PLUS"):
        run_against(script, log_in)


def test_a_server_that_closes_or_stays_silent_is_a_clear_error() -> None:
    async def closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_startup(reader)
        writer.write(auth(0) + READY)
        await read_message(reader)  # the query...
        writer.write(backend(b"T", struct.pack("!h", 0)))  # ...half answered
        writer.close()

    async def query(port: int) -> None:
        async with await wire.connect("127.0.0.1", port, "ada", "x", "db") as session:
            await session.execute("SELECT 1")

    with pytest.raises(wire.ConnectionLost, match="closed the connection"):
        run_against(closes, query)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async def log_in(port: int) -> None:
        await wire.connect("127.0.0.1", port, "ada", "x", "db", timeout=0.3)

    with pytest.raises(wire.ConnectionLost, match="did not finish the login"):
        run_against(silent, log_in)


def test_a_garbled_length_is_not_read() -> None:
    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_startup(reader)
        writer.write(b"R" + struct.pack("!i", 2))
        await reader.read()
        writer.close()

    async def log_in(port: int) -> None:
        await wire.connect("127.0.0.1", port, "ada", "x", "db")

    with pytest.raises(wire.WireError, match="malformed message"):
        run_against(garbled, log_in)
