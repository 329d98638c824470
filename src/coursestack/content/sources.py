"""Where course material comes from: a folder, a zip (path or URL), or a git repository.

Each source is read into a `Release`: every file's path (POSIX, relative to the
release's root) and bytes, plus a label saying which release it is. Git is read with
dulwich, so students need no git program; the clone is cached in the state folder so a
later update fetches only what changed.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from coursestack.errors import UserError

#: Never part of a release: version control, editor and OS litter.
IGNORED_PARTS = frozenset({".git", "__MACOSX", ".ipynb_checkpoints", "__pycache__"})
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db"})
#: How long a download may stall (seconds): an offline student must not wait long.
NETWORK_TIMEOUT = 20.0


class SourceError(UserError):
    """The course's material could not be fetched or read; nothing was changed."""


@dataclass
class Release:
    """One version of the course's material."""

    files: dict[str, bytes]
    #: Which version this is, in words ("git main @ 1a2b3c4", "zip sha256 …").
    label: str
    source: str = ""
    hashes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hashes = {path: digest(data) for path, data in self.files.items()}


def digest(data: bytes) -> str:
    """The content hash the delivery record keeps (sha256, hex)."""
    return hashlib.sha256(data).hexdigest()


def release_path(name: str) -> str | None:
    """`name` as a safe relative POSIX path, or None if it must be skipped.

    Absolute paths and `..` (a "zip slip") are refused outright: a release can never
    write outside its folder.
    """
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise SourceError(
            f"the release holds a file outside its folder: {name!r}",
            hint="the course team must rebuild the release",
        )
    parts = [part for part in path.parts if part not in ("", ".")]
    if not parts or any(part in IGNORED_PARTS for part in parts) or parts[-1] in IGNORED_NAMES:
        return None
    return "/".join(parts)


def is_url(source: str) -> bool:
    """True for http(s), ssh and git URLs (as opposed to paths)."""
    return source.startswith(("http://", "https://", "git://", "ssh://", "git@", "git+"))


def kind_of(source: str, base: Path, ref: str | None) -> str:
    """ "folder", "zip" or "git", from what `source` names."""
    if source.lower().split("?")[0].endswith(".zip"):
        return "zip"
    if is_url(source):
        return "git"
    path = resolve(source, base)
    if (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir()):
        return "git"
    if ref is not None:
        raise SourceError(
            f"`ref = {ref!r}` is set, but {path} is not a git repository",
            where="[content] ref",
            hint="remove `ref`, or point `source` at a git repository",
        )
    return "folder"


def resolve(source: str, base: Path) -> Path:
    """A path written in the spec, absolute against the spec's folder."""
    path = Path(source).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def fetch_release(source: str, base: Path, ref: str | None, cache: Path) -> Release:
    """Read the release `source` names (SourceError if it cannot be had)."""
    kind = kind_of(source, base, ref)
    if kind == "zip":
        return _zip_release(source, base)
    if kind == "git":
        from coursestack.content.git import git_release

        return git_release(source if is_url(source) else str(resolve(source, base)), ref, cache)
    return _folder_release(resolve(source, base))


def _folder_release(folder: Path) -> Release:
    if not folder.is_dir():
        raise SourceError(
            "the course's source folder does not exist",
            where=str(folder),
            hint="check `[content] source` in course.toml",
        )
    files: dict[str, bytes] = {}
    for path in sorted(_walk(folder)):
        relative = release_path(path.relative_to(folder).as_posix())
        if relative is not None:
            try:
                files[relative] = path.read_bytes()
            except OSError as error:
                raise SourceError(
                    f"cannot read {relative}: {error.strerror}",
                    where=str(path),
                    hint="check its permissions",
                ) from None
    return Release(files, f"folder {folder}", str(folder))


def _walk(folder: Path) -> Iterator[Path]:
    for entry in folder.iterdir():
        if entry.name in IGNORED_PARTS:
            continue
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry)
        elif entry.is_file():
            yield entry


def _zip_release(source: str, base: Path) -> Release:
    if is_url(source):
        data = _download(source)
        where = source
    else:
        path = resolve(source, base)
        where = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SourceError(
                "the course's zip file does not exist",
                where=where,
                hint="check `[content] source` in course.toml",
            ) from None
        except OSError as error:
            raise SourceError(
                f"cannot read the course's zip: {error.strerror}",
                where=where,
                hint="check its permissions",
            ) from None
    return Release(read_zip(data, where), f"zip sha256 {digest(data)[:12]}", where)


def read_zip(data: bytes, where: str) -> dict[str, bytes]:
    """Every file of a zip archive; a single top folder (GitHub's archives) is dropped."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [info for info in archive.infolist() if not info.is_dir()]
        raw = {info.filename: archive.read(info) for info in members}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise SourceError(
            f"the course's zip is damaged or not a zip: {error}",
            where=where,
            hint="download it again, or ask the course team for a new one; nothing was changed",
        ) from None
    except Exception as error:  # zlib.error, bad CRC, ...: all mean a broken archive
        raise SourceError(
            f"the course's zip is damaged: {error}",
            where=where,
            hint="download it again; nothing was changed",
        ) from None
    files: dict[str, bytes] = {}
    for name, content in raw.items():
        relative = release_path(name)
        if relative is not None:
            files[relative] = content
    tops = {path.split("/", 1)[0] for path in files}
    if len(tops) == 1 and all("/" in path for path in files):
        files = {path.split("/", 1)[1]: content for path, content in files.items()}
    return files


def _download(url: str) -> bytes:
    import httpx

    try:
        response = httpx.get(url, follow_redirects=True, timeout=NETWORK_TIMEOUT)
    except httpx.HTTPError as error:
        raise SourceError(
            f"cannot reach the course's source: {error}",
            where=url,
            hint="check the internet connection and try again later; nothing was changed",
        ) from None
    if response.status_code >= 400:
        raise SourceError(
            f"the course's source answered HTTP {response.status_code}",
            where=url,
            hint="check `[content] source`, or ask the course team; nothing was changed",
        )
    return response.content
