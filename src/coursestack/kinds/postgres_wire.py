"""Just enough of PostgreSQL's frontend/backend protocol (v3) for the daemon's own work.

The daemon probes PostgreSQL every few seconds, creates the course role and database,
and loads the seed; psycopg for that would cost the daemon ~9 MB and ~80 ms of import.
This client speaks the protocol over asyncio streams instead: a startup message,
authentication (SCRAM-SHA-256 with the server's signature checked, md5, cleartext,
trust), the simple query protocol (multi-statement scripts, rows as text), COPY FROM
STDIN, and Terminate. It has no parameters: values go into SQL through
`quote_literal` / `quote_identifier`, never by formatting. Notebooks keep psycopg
(`coursestack.connect()`); this is for the daemon and the CLI only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
import struct
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field

PROTOCOL_VERSION = 3 << 16
SCRAM_MECHANISM = "SCRAM-SHA-256"
#: A backend message larger than this is taken as a broken stream, not read.
MAX_MESSAGE = 1 << 30


class WireError(Exception):
    """Talking to PostgreSQL failed: the connection, the protocol or authentication."""


class ConnectionLost(WireError):
    """The server closed the connection (or never answered) before the exchange ended."""


class ServerError(WireError):
    """An ErrorResponse: the server's SQLSTATE, message and the fields it sent with them."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.fields = dict(fields)
        self.sqlstate = self.fields.get("C", "")
        self.message = self.fields.get("M", "unknown error")
        super().__init__(f"{self.message} (SQLSTATE {self.sqlstate})")

    @property
    def position(self) -> int | None:
        """1-based character offset of the error in the query text, if the server gave one."""
        value = self.fields.get("P")
        return int(value) if value and value.isdigit() else None

    @property
    def context(self) -> str | None:
        """Where it happened, e.g. 'COPY people, line 3: ...'."""
        return self.fields.get("W")


@dataclass
class Result:
    """One statement's outcome: the CommandComplete tag and, for a query, its rows as text."""

    command: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[str | None, ...]] = field(default_factory=list)


# -- quoting --------------------------------------------------------------------------------


def quote_identifier(name: str) -> str:
    """`name` as an SQL identifier, whatever it holds (a"b becomes "a""b")."""
    if "\x00" in name:
        raise ValueError("an SQL identifier cannot hold a NUL character")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """`value` as an SQL string literal, safe whatever standard_conforming_strings says.

    As libpq's PQescapeLiteral: quotes doubled; with a backslash, the E'' form with
    backslashes doubled too (a plain '' literal would read them differently when
    standard_conforming_strings is off).
    """
    if "\x00" in value:
        raise ValueError("an SQL string cannot hold a NUL character")
    quoted = value.replace("'", "''")
    if "\\" in value:
        return " E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"


# -- messages -------------------------------------------------------------------------------


def _cstring(text: str) -> bytes:
    encoded = text.encode()
    if b"\x00" in encoded:
        raise ValueError("the protocol's strings cannot hold a NUL character")
    return encoded + b"\x00"


def message(kind: bytes, body: bytes = b"") -> bytes:
    """A frontend message: its type byte, its length (counting itself), its body."""
    return kind + struct.pack("!i", len(body) + 4) + body


def startup_message(parameters: Mapping[str, str]) -> bytes:
    """StartupMessage: no type byte; protocol 3.0, then name/value pairs, then a NUL."""
    body = struct.pack("!i", PROTOCOL_VERSION)
    body += b"".join(_cstring(k) + _cstring(v) for k, v in parameters.items()) + b"\x00"
    return struct.pack("!i", len(body) + 4) + body


def query_message(sql: str) -> bytes:
    """Query ('Q'): one or more statements, run by the simple query protocol."""
    return message(b"Q", _cstring(sql))


def error_fields(body: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse or NoticeResponse body (type byte -> text)."""
    fields = {}
    for part in body.split(b"\x00"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def data_row(body: bytes) -> tuple[str | None, ...]:
    """A DataRow's values as text (NULL as None)."""
    (count,) = struct.unpack_from("!h", body)
    offset, values = 2, list[str | None]()
    for _ in range(count):
        (length,) = struct.unpack_from("!i", body, offset)
        offset += 4
        if length < 0:
            values.append(None)
        else:
            values.append(body[offset : offset + length].decode())
            offset += length
    return tuple(values)


def row_description(body: bytes) -> list[str]:
    """The column names of a RowDescription."""
    (count,) = struct.unpack_from("!h", body)
    offset, names = 2, []
    for _ in range(count):
        end = body.index(b"\x00", offset)
        names.append(body[offset:end].decode())
        offset = end + 1 + 18  # table oid, column number, type oid, size, modifier, format
    return names


# -- authentication -------------------------------------------------------------------------


def _normalized_password(password: str) -> bytes:
    """The password as SCRAM hashes it: SASLprep'd (RFC 4013), as PostgreSQL does.

    PostgreSQL uses the raw bytes when SASLprep fails, and SASLprep changes no printable
    ASCII, so only other passwords pay for the stringprep tables.
    """
    if password.isascii():
        return password.encode()
    import stringprep
    import unicodedata

    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    normal = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if not normal or any(test(c) for c in normal for test in prohibited):
        return password.encode()
    right_to_left = [stringprep.in_table_d1(c) for c in normal]
    if any(right_to_left) and (
        any(stringprep.in_table_d2(c) for c in normal)
        or not (right_to_left[0] and right_to_left[-1])
    ):
        return password.encode()
    return normal.encode()


def _hmac(key: bytes, text: bytes) -> bytes:
    return hmac.new(key, text, hashlib.sha256).digest()


def _scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes, bytes]:
    """ClientKey, StoredKey, ServerKey of RFC 5802 for a password."""
    salted = hashlib.pbkdf2_hmac("sha256", _normalized_password(password), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return client_key, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key")


def scram_verifier(password: str, iterations: int = 4096, salt: bytes | None = None) -> str:
    """What PostgreSQL stores for a scram-sha-256 password; `PASSWORD '<this>'` sets the
    password without the password itself ever reaching the server (as psql's \\password)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    _, stored_key, server_key = _scram_keys(password, salt, iterations)
    encode = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{encode(salt).decode()}$"
        f"{encode(stored_key).decode()}:{encode(server_key).decode()}"
    )


class ScramClient:
    """The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding."""

    def __init__(self, user: str, password: str, nonce: str | None = None) -> None:
        self.password = password
        self.nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        # PostgreSQL takes the user from the startup message and ignores this one.
        name = user.replace("=", "=3D").replace(",", "=2C")
        self.client_first_bare = f"n={name},r={self.nonce}"
        self._server_signature = b""
        #: True once the server proved it knows the password (verify_server_final).
        self.verified = False

    def client_first(self) -> bytes:
        """client-first-message: no channel binding ("n,,"), user, our nonce."""
        return ("n,," + self.client_first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        """client-final-message with our proof; remembers the signature the server owes."""
        text = server_first.decode()
        attributes = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        nonce, salt, iterations = attributes.get("r", ""), attributes.get("s"), attributes.get("i")
        if (
            not nonce.startswith(self.nonce)
            or nonce == self.nonce
            or not salt
            or not iterations
            or not iterations.isdigit()
        ):
            raise WireError("the server's SCRAM challenge is malformed")
        client_key, stored_key, server_key = _scram_keys(
            self.password, base64.b64decode(salt), int(iterations)
        )
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.client_first_bare},{text},{without_proof}".encode()
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(server_key, auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, server_final: bytes) -> None:
        """Check the server's signature: it proves the server knows the password too."""
        text = server_final.decode()
        if text.startswith("e="):
            raise WireError(f"SCRAM authentication refused by the server: {text[2:]}")
        given = text[2:] if text.startswith("v=") else ""
        try:
            signature = base64.b64decode(given.split(",")[0], validate=True)
        except ValueError:
            signature = b""
        if not self._server_signature or not hmac.compare_digest(signature, self._server_signature):
            raise WireError(
                "the server's SCRAM signature is wrong: it does not know the "
                "password (not the PostgreSQL server expected?)"
            )
        self.verified = True


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    """The md5 method's answer: 'md5' + md5(md5(password + user) + salt)."""
    inner = hashlib.md5((password + user).encode(), usedforsecurity=False).hexdigest()
    outer = hashlib.md5(inner.encode() + salt, usedforsecurity=False).hexdigest()
    return b"md5" + outer.encode()


# -- the connection --------------------------------------------------------------------------

_AUTH_OK, _AUTH_CLEARTEXT, _AUTH_MD5 = 0, 3, 5
_AUTH_SASL, _AUTH_SASL_CONTINUE, _AUTH_SASL_FINAL = 10, 11, 12


class Connection:
    """One logged-in session; use `connect()`. Not for use by two tasks at once."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        #: ParameterStatus values the server reported (server_version, ...).
        self.parameters: dict[str, str] = {}
        #: The last ReadyForQuery's status: I idle, T in a transaction, E failed transaction.
        self.transaction_status = "I"

    async def _receive(self) -> tuple[bytes, bytes]:
        """The next backend message that is not a notice or a notification."""
        while True:
            try:
                header = await self._reader.readexactly(5)
                kind, length = header[:1], struct.unpack_from("!i", header, 1)[0]
                if not 4 <= length <= MAX_MESSAGE:
                    raise WireError(f"malformed message from the server (length {length})")
                body = await self._reader.readexactly(length - 4)
            except asyncio.IncompleteReadError:
                raise ConnectionLost("the server closed the connection") from None
            except OSError as error:
                raise ConnectionLost(f"the connection broke: {error}") from None
            if kind == b"S":
                name, value, _ = body.split(b"\x00", 2)
                self.parameters[name.decode()] = value.decode()
            elif kind not in (b"N", b"A"):  # notices and notifications: not ours to show
                return kind, body

    async def _send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as error:
            raise ConnectionLost(f"the connection broke: {error}") from None

    async def _log_in(self, parameters: Mapping[str, str], password: str) -> None:
        await self._send(startup_message(parameters))
        scram: ScramClient | None = None
        while True:
            kind, body = await self._receive()
            if kind == b"E":
                raise ServerError(error_fields(body))
            if kind == b"Z":
                self.transaction_status = body.decode()
                return
            if kind != b"R":
                continue  # BackendKeyData, NegotiateProtocolVersion: nothing to do
            (code,) = struct.unpack_from("!i", body)
            if code == _AUTH_OK:
                if scram is not None and not scram.verified:
                    raise WireError("the server skipped the end of SCRAM (its signature)")
                continue
            if code == _AUTH_CLEARTEXT:
                await self._send(message(b"p", _cstring(password)))
            elif code == _AUTH_MD5:
                answer = md5_password(parameters["user"], password, body[4:8])
                await self._send(message(b"p", answer + b"\x00"))
            elif code == _AUTH_SASL:
                offered = [m.decode() for m in body[4:].split(b"\x00") if m]
                if SCRAM_MECHANISM not in offered:
                    raise WireError(
                        f"the server offers only {', '.join(offered)} "
                        f"(this client speaks {SCRAM_MECHANISM})"
                    )
                scram = ScramClient("", password)
                first = scram.client_first()
                await self._send(
                    message(b"p", _cstring(SCRAM_MECHANISM) + struct.pack("!i", len(first)) + first)
                )
            elif code == _AUTH_SASL_CONTINUE and scram is not None:
                await self._send(message(b"p", scram.client_final(body[4:])))
            elif code == _AUTH_SASL_FINAL and scram is not None:
                scram.verify_server_final(body[4:])
            else:
                raise WireError(
                    f"the server asks for an authentication method this client "
                    f"does not speak (code {code})"
                )

    async def _until_ready(self, results: list[Result]) -> None:
        """Read a simple query's answers up to ReadyForQuery; raise its first error then."""
        error: ServerError | None = None
        current = Result()
        while True:
            try:
                kind, body = await self._receive()
            except ConnectionLost:
                if error is None:
                    raise
                # A FATAL error (the backend was terminated, ...) ends the session.
                raise ConnectionLost(
                    f"the server closed the connection: {error.message}"
                ) from error
            if kind == b"T":
                current.columns = row_description(body)
            elif kind == b"D":
                current.rows.append(data_row(body))
            elif kind in (b"C", b"I"):
                current.command = body.rstrip(b"\x00").decode()
                results.append(current)
                current = Result()
            elif kind == b"E":
                error = error or ServerError(error_fields(body))
            elif kind == b"G":  # COPY FROM STDIN where no data was offered: refuse it
                await self._send(message(b"f", _cstring("no COPY data from this client")))
            elif kind == b"Z":
                self.transaction_status = body.decode()
                if error is not None:
                    raise error
                return
            # CopyOutResponse / CopyData / CopyDone of a COPY TO STDOUT: read and let go.

    async def execute(self, script: str) -> list[Result]:
        """Run one or more statements; a failing one raises ServerError (and, outside a
        transaction block, undoes the statements of the same script)."""
        await self._send(query_message(script))
        results: list[Result] = []
        await self._until_ready(results)
        return results

    async def fetch(self, query: str) -> list[tuple[str | None, ...]]:
        """The rows of a query's (last) result, as text."""
        results = await self.execute(query)
        return results[-1].rows if results else []

    async def copy_in(self, statement: str, chunks: Iterable[bytes] | AsyncIterable[bytes]) -> str:
        """Run `COPY ... FROM STDIN` and stream `chunks` into it; the command tag."""
        await self._send(query_message(statement))
        kind, body = await self._receive()
        if kind == b"E":  # e.g. no such table: ReadyForQuery follows
            await self._until_ready([])
            raise ServerError(error_fields(body))
        if kind != b"G":
            raise WireError(f"expected COPY FROM STDIN, the server answered {kind!r}")
        results: list[Result] = []
        # The server may refuse mid-stream (a bad row): stop sending once it has answered.
        answer = asyncio.ensure_future(self._until_ready(results))
        try:
            try:
                await self._stream(chunks, answer)
            except Exception as error:
                # Our side failed (e.g. reading the file): CopyFail ends the COPY and the
                # session stays usable (in a transaction block, that transaction failed).
                if not answer.done():
                    with contextlib.suppress(WireError):
                        await self._send(
                            message(
                                b"f",
                                _cstring(f"the client stopped sending: {type(error).__name__}"),
                            )
                        )
                with contextlib.suppress(WireError):
                    await answer
                raise
            await answer
        finally:
            if not answer.done():  # cancelled: the session is not reusable anyway
                answer.cancel()
                with contextlib.suppress(BaseException):
                    await answer
        return results[-1].command if results else ""

    async def _stream(
        self, chunks: Iterable[bytes] | AsyncIterable[bytes], answer: asyncio.Future[None]
    ) -> None:
        """Send the chunks as CopyData, then CopyDone, unless the server answered first."""

        async def each() -> AsyncIterator[bytes]:
            if isinstance(chunks, AsyncIterable):
                async for chunk in chunks:
                    yield chunk
            else:
                for chunk in chunks:
                    yield chunk

        async for chunk in each():
            if answer.done():
                return
            await self._send(message(b"d", chunk))
            await asyncio.sleep(0)  # lets `answer` see an early refusal
        if not answer.done():
            await self._send(message(b"c"))

    async def close(self) -> None:
        """Say Terminate (if the line still works) and close the socket."""
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.write(message(b"X"))
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect(
    host: str,
    port: int,
    user: str,
    password: str,
    database: str,
    options: str | None = None,
    timeout: float = 10.0,
) -> Connection:
    """Open a session (TCP), logged in and ready for queries, within `timeout` seconds."""
    parameters = {
        "user": user,
        "database": database,
        "client_encoding": "UTF8",
        "application_name": "coursestack",
    }
    if options:
        parameters["options"] = options
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as error:
        raise ConnectionLost(
            f"cannot connect to PostgreSQL at {host}:{port}: "
            f"{getattr(error, 'strerror', None) or 'timed out'}"
        ) from None
    connection = Connection(reader, writer)
    try:
        await asyncio.wait_for(connection._log_in(parameters, password), timeout)
    except TimeoutError:
        await connection.close()
        raise ConnectionLost(
            f"PostgreSQL at {host}:{port} did not finish the login within {timeout:g} s"
        ) from None
    except BaseException:
        await connection.close()
        raise
    return connection
