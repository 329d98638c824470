"""Merging a notebook both the student and the course changed, cell by cell (nbdime).

The rules: the student's inputs win where only metadata or attachments differ, the
course's new and changed cells arrive, cells both sides inserted at the same place are
all kept (the student's first), and outputs that conflict are dropped (running the cell
makes them again). The one case that cannot be merged cleanly is a cell whose source both
sides changed, or that one side changed and the other deleted: then the caller keeps the
student's file and puts the course's version beside it. Every merged notebook is
validated with nbformat before it is written.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

#: Document paths where a conflict is left for us to see (not resolved by nbdime).
_LEFT_AS_CONFLICT = "mergetool"


@dataclass(frozen=True)
class MergeResult:
    """A clean merge (`merged` holds the notebook's bytes) or why there is none."""

    merged: bytes | None
    reason: str = ""
    #: Cells whose outputs differed on both sides, so were cleared.
    outputs_cleared: int = 0

    @property
    def clean(self) -> bool:
        return self.merged is not None


def is_notebook(path: str) -> bool:
    """True for a Jupyter notebook's file name."""
    return path.lower().endswith(".ipynb")


def notebook_problem(data: bytes) -> str | None:
    """Why `data` is not a valid notebook, in plain words; None if it is one."""
    try:
        _read(data)
    except ValueError as error:
        return str(error)
    return None


def _read(data: bytes) -> Any:
    """Parse and validate a notebook (converted to format 4); ValueError says why not."""
    import nbformat

    try:
        text = data.decode("utf-8")
        json.loads(text)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON (line {error.lineno})") from None
    try:
        with warnings.catch_warnings():
            # Old notebooks without cell ids warn; they are still notebooks.
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
            nbformat.validate(notebook)
    except Exception as error:  # nbformat raises several types for one meaning
        raise ValueError(f"not a valid notebook ({_first_line(error)})") from None
    return notebook


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _strategies() -> Any:
    from nbdime.utils import Strategies

    strategies = Strategies(
        {
            "/cells/*/id": "remove",
            "/nbformat": "fail",
            "/cells/*/cell_type": "fail",
            "/nbformat_minor": "take-max",
            # The student's inputs win: their metadata and attachments.
            "/metadata": "use-local",
            "/cells/*/metadata": "use-local",
            "/cells/*/outputs/*/metadata": "use-local",
            "/cells/*/attachments": "use-local",
            # Conflicting outputs are dropped; running the cell makes them again.
            "/cells/*/outputs": "clear-all",
            "/cells/*/execution_count": "clear",
            "/cells/*/outputs/*/execution_count": "clear",
            # A source changed on both sides, or insert/delete clashes: left for us to see.
            "/cells/*/source": _LEFT_AS_CONFLICT,
            "/cells": _LEFT_AS_CONFLICT,
        }
    )
    strategies.transients = [
        "/cells/*/execution_count",
        "/cells/*/outputs/*/execution_count",
        "/cells/*/metadata/collapsed",
        "/cells/*/metadata/autoscroll",
        "/cells/*/metadata/scrolled",
    ]
    return strategies


def _cells_touched(diff: list[Any]) -> tuple[set[int], set[int]]:
    """Base cells a side's list diff edits, and those it removes (inserts touch none)."""
    edited: set[int] = set()
    removed: set[int] = set()
    for op in diff:
        if op.op == "patch":
            edited.add(int(op.key))
        elif op.op == "removerange":
            removed.update(range(int(op.key), int(op.key) + int(op.length)))
    return edited, removed


def _resolve_cell_list_clash(decision: Any) -> bool:
    """Resolve a clash in the cell list when no base cell was changed by both sides.

    nbdime flags an insertion next to the other side's edit, or two insertions at one
    place, as a conflict. Here both sides' operations apply: at one position the
    student's inserted cells first, then the course's, then the edit or removal of the
    cell there (a cell both sides removed is removed once). False when a cell really was
    changed on both sides (edited on both, or edited on one and removed on the other).
    """
    from nbdime.diff_format import op_removerange

    if tuple(decision.common_path) != ("cells",):
        return False
    local, remote = list(decision.local_diff), list(decision.remote_diff)
    edited_local, removed_local = _cells_touched(local)
    edited_remote, removed_remote = _cells_touched(remote)
    if edited_local & (edited_remote | removed_remote) or edited_remote & removed_local:
        return False
    inserts = [
        (int(op.key), side, op)
        for side, diff in enumerate((local, remote))
        for op in diff
        if op.op == "addrange"
    ]
    patches = [(int(op.key), 2, op) for op in [*local, *remote] if op.op == "patch"]
    removals = [(key, 2, op_removerange(key, 1)) for key in sorted(removed_local | removed_remote)]
    ordered = sorted([*inserts, *patches, *removals], key=lambda item: (item[0], item[1]))
    decision.action = "custom"
    decision.custom_diff = [op for _key, _rank, op in ordered]
    decision.conflict = False
    return True


def merge_notebook(base: bytes, student: bytes, upstream: bytes) -> MergeResult:
    """Merge the student's and the course's changes to `base`, cell by cell."""
    import nbformat
    from nbdime.diffing.notebooks import diff_notebooks
    from nbdime.merging.decisions import apply_decisions
    from nbdime.merging.generic import decide_merge_with_diff

    notebooks = []
    for side, data in (
        ("the last delivered copy", base),
        ("your copy", student),
        ("the course's new version", upstream),
    ):
        try:
            notebooks.append(_read(data))
        except ValueError as error:
            return MergeResult(None, f"{side} is {error}")
    old, local, remote = notebooks
    try:
        decisions = decide_merge_with_diff(
            old,
            local,
            remote,
            diff_notebooks(old, local),
            diff_notebooks(old, remote),
            _strategies(),
        )
    except Exception as error:  # nbdime's "fail" strategy: formats that cannot be merged
        return MergeResult(None, f"the two versions cannot be merged ({_first_line(error)})")
    clashes = []
    for decision in decisions:
        if decision.conflict and not _resolve_cell_list_clash(decision):
            clashes.append(decision)
    if clashes:
        return MergeResult(None, _describe_clashes(clashes, old))
    merged = apply_decisions(old, decisions)
    _unique_cell_ids(merged)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.validate(merged)
    except Exception as error:
        return MergeResult(None, f"the merged notebook would not be valid ({_first_line(error)})")
    text = nbformat.writes(merged)  # type: ignore[no-untyped-call]
    cleared = sum(
        1
        for decision in decisions
        if tuple(decision.common_path)[-1:] == ("outputs",) and decision.action == "custom"
    )
    return MergeResult((text + "\n").encode("utf-8"), outputs_cleared=cleared)


def _describe_clashes(clashes: list[Any], base: Any) -> str:
    cells = sorted(
        {int(decision.common_path[1]) + 1 for decision in clashes if len(decision.common_path) > 1}
    )
    if not cells:
        for decision in clashes:
            keys = {op.key for op in [*decision.local_diff, *decision.remote_diff]}
            cells.extend(int(key) + 1 for key in keys if isinstance(key, int))
        cells = sorted(set(cells))
    where = (
        f"cell{'s' if len(cells) > 1 else ''} {', '.join(map(str, cells))}"
        if cells
        else "the same place"
    )
    return f"you and the course both changed {where}"


def _unique_cell_ids(notebook: Any) -> None:
    """Give a fresh id to any cell whose id another cell already has (nbformat 4.5)."""
    from nbformat.corpus.words import generate_corpus_id

    seen: set[str] = set()
    for cell in notebook.get("cells", []):
        cell_id = cell.get("id")
        if cell_id is None:
            continue
        while cell_id in seen:
            cell_id = generate_corpus_id()  # type: ignore[no-untyped-call]
            cell["id"] = cell_id
        seen.add(cell_id)
