"""The backup archive: one `.tar.gz` whose first member is `manifest.json`.

The manifest names every other member with its size and SHA-256, the coursestack version,
the course, and each service's kind and server version. Reading an archive checks all of
it and raises a UserError on the first problem, so a truncated or tampered archive is
refused before a restore changes anything. "All of it" means every byte of the file:

- the file's own SHA-256, kept in its gzip header (`sealed_gzip`), matches all its bytes;
- the compressed stream is read to its end, so gzip checks its CRC-32 and length;
- the tar stream ends with its end marker (zero blocks), and nothing but zeros follows;
- the manifest is sane; every member is present, nothing extra, sizes and SHA-256 right.

A single flipped byte anywhere fails one of these, and so does any truncation.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from coursestack import __version__
from coursestack.backup.sealed_gzip import SealedGzipWriter, check_seal
from coursestack.errors import UserError

MANIFEST = "manifest.json"
FORMAT = "coursestack-backup"
FORMAT_VERSION = 1
SUFFIX = ".coursestack.tar.gz"
#: gzip level of the archive: level 1 is several times faster than the default 6 on a
#: database dump, for a file about a quarter larger.
COMPRESS_LEVEL = 1
_BLOCK = 1 << 20
#: Tar ends with two zero blocks.
_TAR_END = 1024


@dataclass
class Manifest:
    """What an archive holds; `members` maps each member name to its sha256 and size."""

    course: str
    instance: str
    created: str
    services: dict[str, dict[str, Any]]
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    coursestack_version: str = __version__
    embedded_sample: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "coursestack_version": self.coursestack_version,
            "course": self.course,
            "instance": self.instance,
            "created": self.created,
            "embedded_sample": self.embedded_sample,
            "services": self.services,
            "skipped": self.skipped,
            "members": self.members,
        }

    @classmethod
    def parse(cls, data: bytes, where: str) -> Manifest:
        """A manifest from its JSON bytes; anything odd is a UserError naming `where`."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _damaged(where, f"its manifest is not valid JSON ({error})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise UserError(
                "not a coursestack backup (its manifest is not one)",
                where=where,
                hint="give the .coursestack.tar.gz file `coursestack backup` wrote",
            )
        version = raw.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise UserError(
                f"this backup was written by a newer coursestack "
                f"({raw.get('coursestack_version')}, format {version})",
                where=where,
                hint="upgrade coursestack, then restore again",
            )
        members = raw.get("members")
        services = raw.get("services")
        if not isinstance(members, dict) or not isinstance(services, dict):
            raise _damaged(where, "its manifest lacks `members` or `services`")
        for name, entry in members.items():
            safe_member_name(name, where)
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("size"), int)
                or not isinstance(entry.get("sha256"), str)
            ):
                raise _damaged(where, f"the manifest entry of {name!r} is malformed")
        for name, entry in services.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
                raise _damaged(where, f"the manifest entry of service {name!r} is malformed")
        return cls(
            course=str(raw.get("course", "")),
            instance=str(raw.get("instance", "")),
            created=str(raw.get("created", "")),
            services=services,
            members=members,
            skipped=dict(raw.get("skipped") or {}),
            coursestack_version=str(raw.get("coursestack_version", "")),
            embedded_sample=bool(raw.get("embedded_sample", False)),
        )


def _damaged(where: str, why: str) -> UserError:
    return UserError(
        f"the backup archive is damaged or incomplete: {why}; nothing was changed",
        where=where,
        hint="use another backup (see the backups folder), or "
        "copy the file again if it came from elsewhere",
    )


def safe_member_name(name: str, where: str) -> PurePosixPath:
    """A member name as a relative path that cannot leave the folder it is unpacked in."""
    path = PurePosixPath(name)
    if (
        not name
        or path.is_absolute()
        or ".." in path.parts
        or "\\" in name
        or name != str(path)
        or name == MANIFEST
    ):
        raise _damaged(where, f"it names an unsafe or reserved member {name!r}")
    return path


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file."""
    digest = hashlib.sha256()
    size = 0
    with open_no_link(path) as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def open_no_link(path: Path) -> IO[bytes]:
    """Open a file to back up, refusing a link put in its place since it was listed (the
    service account can change the folders backed up; root must not read through it)."""
    return open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")


def write_archive(output: Path, manifest: Manifest, files: Iterable[tuple[str, Path]]) -> int:
    """Write `files` (member name, file on disk) and the manifest as one tar.gz.

    Checksums go into the manifest first; the archive is written beside `output` and
    renamed into place, so a crash never leaves a half archive under the final name.
    Returns the archive's size.
    """
    listed = list(files)
    for name, path in listed:
        sha256, size = file_digest(path)
        manifest.members[name] = {"sha256": sha256, "size": size}
    body = json.dumps(manifest.as_dict(), indent=2, sort_keys=True).encode("utf-8")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    try:
        with open(partial, "w+b") as raw:
            packed = SealedGzipWriter(raw, COMPRESS_LEVEL)
            with tarfile.open(
                fileobj=cast(IO[bytes], packed), mode="w|", format=tarfile.PAX_FORMAT
            ) as archive:
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
                archive.addfile(info, _BytesReader(body))
                for name, path in listed:
                    with open_no_link(path) as handle:
                        stat = os.fstat(handle.fileno())
                        info = tarfile.TarInfo(name)
                        info.size, info.mtime = stat.st_size, int(stat.st_mtime)
                        info.mode = stat.st_mode & 0o755
                        archive.addfile(info, handle)
            packed.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(partial, 0o600)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return output.stat().st_size


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._offset + size
        chunk = self._data[self._offset : end]
        self._offset += len(chunk)
        return chunk


def read_archive(archive: Path, into: Path | None = None) -> Manifest:
    """Check an archive from end to end; with `into`, also unpack its members there.

    Raises a UserError if the file is missing, not a coursestack backup, truncated, or
    if any member is missing, extra, or differs from the manifest (size or sha256).
    On failure, `into` is removed again.
    """
    where = str(archive)
    if not archive.is_file():
        raise UserError(
            "no such backup file", where=where, hint="give the path of a .coursestack.tar.gz file"
        )
    try:
        with open(archive, "rb") as raw:
            problem = check_seal(raw)
            if problem is not None:
                raise _damaged(where, problem)
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw, mode="rb") as unpacked:
                counted = _CountingReader(unpacked)
                with tarfile.open(fileobj=cast(IO[bytes], counted), mode="r|") as stream:
                    manifest, end = _read_members(stream, where, into)
                counted.read_to_end()  # gzip checks CRC-32 and length at the very end
        if counted.last_nonzero > end or counted.position - end < _TAR_END:
            raise _damaged(where, "the tar stream lacks its end marker")
    except UserError:
        if into is not None:
            shutil.rmtree(into, ignore_errors=True)
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        if into is not None:
            shutil.rmtree(into, ignore_errors=True)
        if isinstance(error, OSError) and error.errno is not None:
            raise UserError(
                f"cannot read the backup: {error.strerror}",
                where=where,
                hint="check the file's permissions and free disk space",
            ) from None
        raise _damaged(where, f"the file is truncated or corrupt ({error})") from None
    return manifest


class _CountingReader:
    """Reads the uncompressed tar stream, counting bytes and where the last non-zero
    byte was (everything after the tar end marker must be zero)."""

    def __init__(self, source: gzip.GzipFile) -> None:
        self._source = source
        self.position = 0
        self.last_nonzero = 0

    def read(self, size: int = -1) -> bytes:
        block = self._source.read(size)
        stripped = len(block.rstrip(b"\0"))
        if stripped:
            self.last_nonzero = self.position + stripped
        self.position += len(block)
        return block

    def read_to_end(self) -> None:
        while self.read(_BLOCK):
            pass


def _read_members(stream: tarfile.TarFile, where: str, into: Path | None) -> tuple[Manifest, int]:
    """Check (and unpack) every member; the manifest, and where the last member ends."""
    first = stream.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise UserError(
            "not a coursestack backup (it does not start with manifest.json)",
            where=where,
            hint="give the .coursestack.tar.gz file `coursestack backup` wrote",
        )
    handle = stream.extractfile(first)
    assert handle is not None
    manifest = Manifest.parse(handle.read(), where)
    end = _end_of(first)
    seen: set[str] = set()
    while (member := stream.next()) is not None:
        end = _end_of(member)
        name = member.name
        if name not in manifest.members or name in seen:
            raise _damaged(where, f"it holds a member the manifest does not list: {name!r}")
        if not member.isfile():
            raise _damaged(where, f"member {name!r} is not a regular file")
        seen.add(name)
        expected = manifest.members[name]
        source = stream.extractfile(member)
        assert source is not None
        target = None
        if into is not None:
            target = into / safe_member_name(name, where)
            target.parent.mkdir(parents=True, exist_ok=True)
        sha256, size = _copy_hashing(source, target)
        if size != expected["size"] or sha256 != expected["sha256"]:
            raise _damaged(
                where,
                f"member {name!r} does not match its checksum "
                "(changed after the backup was written)",
            )
        if target is not None:
            os.chmod(target, (member.mode & 0o755) | 0o600)
            with contextlib.suppress(OSError):
                os.utime(target, (member.mtime, member.mtime))
    missing = sorted(set(manifest.members) - seen)
    if missing:
        raise _damaged(where, f"{len(missing)} member(s) are missing, e.g. {missing[0]!r}")
    return manifest, end


def _end_of(member: tarfile.TarInfo) -> int:
    """Offset in the tar stream just past a member's data (padded to 512-byte blocks)."""
    return member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _copy_hashing(source: IO[bytes], target: Path | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    sink = open(target, "wb") if target is not None else None  # noqa: SIM115
    try:
        for block in iter(lambda: source.read(_BLOCK), b""):
            digest.update(block)
            size += len(block)
            if sink is not None:
                sink.write(block)
    finally:
        if sink is not None:
            sink.close()
    return digest.hexdigest(), size
