"""A gzip file that carries the SHA-256 of its own compressed bytes, so every byte counts.

gzip's own checks (CRC-32 and length of the uncompressed data) miss some damage: the
header's time and name are not covered, and deflate can encode the same data in more
than one way, so a flipped bit near the end of a stream of zeros may decompress to the
very same bytes. A backup that was changed must still be refused. So the header holds
an "extra" field (ID `CS`, allowed by RFC 1952, skipped by every gzip reader) with the
SHA-256 of everything after the header; the rest of the header is fixed. The file stays
an ordinary .tar.gz for `tar` and `gzip`.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import IO

_DIGEST_SIZE = 32
_SUBFIELD = b"CS" + struct.pack("<H", _DIGEST_SIZE)
#: Magic, deflate, flag FEXTRA, mtime 0, "fastest", OS unknown, extra length.
_FIXED = (
    b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x04\xff"
    + struct.pack("<H", len(_SUBFIELD) + _DIGEST_SIZE)
    + _SUBFIELD
)
HEADER_SIZE = len(_FIXED) + _DIGEST_SIZE
_BLOCK = 1 << 20


class SealedGzipWriter:
    """A write-only file object: gzip-compresses what it is given into `raw`, then seals.

    `raw` must be seekable and start empty; `close()` writes the trailer and the seal.
    """

    def __init__(self, raw: IO[bytes], level: int) -> None:
        self._raw = raw
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self._size = 0
        self._digest = hashlib.sha256()
        raw.write(_FIXED + b"\0" * _DIGEST_SIZE)

    def write(self, data: bytes) -> int:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._emit(self._compressor.compress(data))
        return len(data)

    def close(self) -> None:
        self._emit(self._compressor.flush())
        self._emit(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        self._raw.seek(len(_FIXED))
        self._raw.write(self._digest.digest())
        self._raw.seek(0, 2)

    def _emit(self, data: bytes) -> None:
        if data:
            self._digest.update(data)
            self._raw.write(data)


def check_seal(raw: IO[bytes]) -> str | None:
    """Read `raw` to its end; None if it is sealed and intact, else what is wrong.

    Archives written before the seal existed (gzip header with a file name, flag FNAME)
    are accepted here: their gzip CRC and the manifest's checksums still apply.
    """
    header = raw.read(HEADER_SIZE)
    if header[:4] == b"\x1f\x8b\x08\x08":  # flag FNAME alone: an archive from before
        return None
    if header[: len(_FIXED)] != _FIXED or len(header) != HEADER_SIZE:
        return (
            "the file is truncated or corrupt (its gzip header is not the one coursestack writes)"
        )
    digest = hashlib.sha256()
    for block in iter(lambda: raw.read(_BLOCK), b""):
        digest.update(block)
    if digest.digest() != header[len(_FIXED) :]:
        return (
            "the file is truncated or corrupt (its own SHA-256, kept in its header, does "
            "not match its bytes)"
        )
    return None
