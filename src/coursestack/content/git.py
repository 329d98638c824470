"""A git repository as a source of releases, read with dulwich (no git program needed).

The repository's objects are fetched into a bare cache in the state folder, so later
updates download only what changed; files are read straight from the commit's tree,
never checked out, so nothing in the cache can be mistaken for the student's work.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from coursestack.content.sources import NETWORK_TIMEOUT, Release, SourceError, release_path


def git_release(url: str, ref: str | None, cache: Path) -> Release:
    """The files of `ref` (branch, tag or commit; default: the remote's HEAD) at `url`."""
    from dulwich.objects import Commit, Tag, Tree
    from dulwich.repo import Repo

    folder = cache / hashlib.sha256(url.encode()).hexdigest()[:16]
    if (folder / "HEAD").is_file():
        repo = Repo(str(folder))
    else:
        folder.mkdir(parents=True, exist_ok=True)
        repo = Repo.init_bare(str(folder))
    try:
        remote_refs, head_target = _fetch(url, repo)
        wanted = _resolve(ref, remote_refs, head_target, repo, url)
        commit = repo[wanted]
        while isinstance(commit, Tag):  # annotated tags point at the commit
            commit = repo[commit.object[1]]
        if not isinstance(commit, Commit):
            raise SourceError(
                f"{ref!r} does not name a commit",
                where=url,
                hint="set `[content] ref` to a branch, tag or commit",
            )
        tree = repo[commit.tree]
        assert isinstance(tree, Tree)
        files = _read_tree(repo, tree)
    finally:
        repo.close()
    name = ref or (head_target.decode().removeprefix("refs/heads/") if head_target else "HEAD")
    return Release(files, f"git {name} @ {commit.id.decode()[:10]}", url)


def _fetch(url: str, repo: object) -> tuple[dict[bytes, bytes], bytes | None]:
    """Fetch every ref's objects; the remote's refs and what its HEAD points at."""
    import urllib3
    from dulwich.client import get_transport_and_path

    pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=NETWORK_TIMEOUT, read=NETWORK_TIMEOUT),
        retries=urllib3.Retry(total=1, redirect=5),
    )
    try:
        client, path = get_transport_and_path(url, pool_manager=pool, quiet=True)
        result = client.fetch(path, repo)  # type: ignore[arg-type]
    except SourceError:
        raise
    # dulwich and urllib3 raise many types (protocol, HTTP, OS, "not a repository"); at
    # this boundary each one means the same thing to a student: the source is not there.
    except Exception as error:
        raise SourceError(
            f"cannot fetch the course's git repository: {error}",
            where=url,
            hint="check the internet connection and `[content] source`, "
            "then try again; nothing was changed",
        ) from None
    refs = {bytes(name): bytes(sha) for name, sha in result.refs.items() if sha is not None}
    symbolic = {bytes(name): bytes(target) for name, target in result.symrefs.items()}
    # Mirror the refs in the cache: the next fetch then says what it has, and only the
    # new objects come (without refs every fetch would send the whole history again).
    for name, sha in refs.items():
        if name.startswith((b"refs/heads/", b"refs/tags/")) and not name.endswith(b"^{}"):
            repo.refs[name] = sha  # type: ignore[attr-defined]
    return refs, symbolic.get(b"HEAD")


def _resolve(
    ref: str | None, refs: dict[bytes, bytes], head: bytes | None, repo: object, url: str
) -> bytes:
    if ref is None:
        if head and head in refs:
            return refs[head]
        if b"HEAD" in refs:
            return refs[b"HEAD"]
        raise SourceError(
            "the course's git repository is empty",
            where=url,
            hint="the course team must push a commit first",
        )
    for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
        if candidate.encode() in refs:
            return refs[candidate.encode()]
    if len(ref) >= 7 and all(c in "0123456789abcdef" for c in ref.lower()):
        matches = [sha for sha in _object_ids(repo) if sha.startswith(ref.lower().encode())]
        if len(matches) == 1:
            return matches[0]
    branches = sorted(
        name.decode().removeprefix("refs/heads/")
        for name in refs
        if name.startswith(b"refs/heads/")
    )
    tags = sorted(
        name.decode().removeprefix("refs/tags/")
        for name in refs
        if name.startswith(b"refs/tags/") and not name.endswith(b"^{}")
    )
    raise SourceError(
        f"the course's git repository has no branch, tag or commit {ref!r}",
        where=f"{url} ([content] ref)",
        hint=f"branches: {', '.join(branches) or 'none'}; tags: "
        f"{', '.join(tags) or 'none'}; nothing was changed",
    )


def _object_ids(repo: object) -> list[bytes]:
    return list(repo.object_store)  # type: ignore[attr-defined]


def _read_tree(repo: object, tree: object) -> dict[str, bytes]:
    from dulwich.object_store import iter_tree_contents

    store = repo.object_store  # type: ignore[attr-defined]
    files: dict[str, bytes] = {}
    for entry in iter_tree_contents(store, tree.id):  # type: ignore[attr-defined]
        if entry.path is None or entry.mode is None or entry.sha is None:
            continue
        # Submodules and symbolic links are not material a student can use.
        if not stat.S_ISREG(entry.mode):
            continue
        relative = release_path(entry.path.decode("utf-8", errors="surrogateescape"))
        if relative is not None:
            files[relative] = store[entry.sha].as_raw_string()
    return files
