"""A MongoDB `ping` over the wire protocol, without the driver.

The daemon probes its MongoDB services every few seconds; importing pymongo only for
that would cost the daemon ~15 MB. This speaks just enough OP_MSG (opcode 2013) to send
`{ping: 1, $db: "admin"}` and read `ok` back: the same question the driver would ask.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct

from coursestack.units import MB

_OP_MSG = 2013
_request_ids = itertools.count(1)


def _cstring(text: str) -> bytes:
    return text.encode() + b"\x00"


def ping_message(request_id: int) -> bytes:
    """An OP_MSG carrying the BSON document {ping: 1, $db: "admin"}."""
    elements = (
        b"\x10"
        + _cstring("ping")
        + struct.pack("<i", 1)
        + b"\x02"
        + _cstring("$db")
        + struct.pack("<i", 6)
        + _cstring("admin")
    )
    document = struct.pack("<i", len(elements) + 5) + elements + b"\x00"
    body = struct.pack("<I", 0) + b"\x00" + document
    return struct.pack("<iiii", 16 + len(body), request_id, 0, _OP_MSG) + body


def reply_is_ok(reply: bytes) -> bool:
    """True if an OP_MSG reply's document says ok: 1 (as a double or an int)."""
    document = reply[21:]  # header (16), flags (4), section kind (1)
    double = document.find(b"\x01ok\x00")
    if double >= 0:
        value: float = struct.unpack_from("<d", document, double + 4)[0]
        return value == 1.0
    integer = document.find(b"\x10ok\x00")
    if integer >= 0:
        return bool(struct.unpack_from("<i", document, integer + 4)[0] == 1)
    return False


async def ping(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if a MongoDB-speaking server at host:port answers ping with ok: 1."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(ping_message(next(_request_ids)))
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(16), timeout)
        length = struct.unpack_from("<i", header)[0]
        if not 16 < length < 16 * MB:
            return False
        rest = await asyncio.wait_for(reader.readexactly(length - 16), timeout)
        return struct.unpack_from("<i", header, 12)[0] == _OP_MSG and reply_is_ok(header + rest)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
