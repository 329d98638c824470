"""Export a document or a whole folder of drafts to OU-XML on disk.

A single document becomes a folder `<name>/` holding `<name>.xml` and `images/`. A folder
becomes one zip with one folder per document (`<name>/<name>.xml`, `<name>/images/
<name>-figNN.<ext>`) and `export-report.txt` listing every problem found.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from coursestack.authoring.documents import find_drafts, iter_drafts
from coursestack.authoring.model import Problem
from coursestack.authoring.ouxml import Export, export_draft, slug


@dataclass
class ExportReport:
    """What an export produced and what went wrong."""

    output: Path
    exports: list[Export] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def failed(self) -> list[Export]:
        """Documents that produced no XML."""
        return [e for e in self.exports if e.failed]

    @property
    def ok(self) -> bool:
        """True when every document exported and no check found an error."""
        found = [*self.problems, *(p for e in self.exports for p in e.problems)]
        return not self.failed and not any(p.severity == "error" for p in found)


def doc_name(path: Path, root: Path) -> str:
    """Predictable per-document name: its path below the folder, as a slug."""
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    return slug("-".join(rel.with_suffix("").parts))


def _check(exp: Export, schema: Path | None) -> list[Problem]:
    from coursestack.authoring.ouxml_check import check_xml, find_schema
    from coursestack.errors import UserError

    name = f"{exp.name}/{exp.name}.xml"
    if schema is None:
        try:
            schema = find_schema()
        except UserError as err:
            # The schema ships in a separate package; without it, still apply the VLE rules.
            return [
                Problem(
                    "warning",
                    name,
                    "",
                    f"{err.message} ({err.hint}); only the VLE rules were checked",
                ),
                *check_xml(exp.xml, name, use_schema=False),
            ]
    return check_xml(exp.xml, name, schema)


def export_path(
    target: Path,
    output: Path | None = None,
    overrides: Mapping[str, str] | None = None,
    check: bool = True,
    schema: Path | None = None,
) -> ExportReport:
    """Export a document (to a folder) or a folder of drafts (to one zip)."""
    if target.is_dir():
        return _export_folder(target, output, overrides, check, schema)
    name = slug(target.stem)
    out_dir = output or target.parent / f"{name}-ouxml"
    report = ExportReport(out_dir)
    for draft in iter_drafts(target, overrides):
        exp = export_draft(draft, name)
        report.exports.append(exp)
        if exp.failed:
            continue
        if check:
            report.problems.extend(_check(exp, schema))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{name}.xml").write_bytes(exp.xml)
        if exp.images:
            (out_dir / "images").mkdir(exist_ok=True)
        for filename, data in exp.images:
            (out_dir / "images" / filename).write_bytes(data)
    return report


def _export_folder(
    folder: Path,
    output: Path | None,
    overrides: Mapping[str, str] | None,
    check: bool,
    schema: Path | None,
) -> ExportReport:
    out_zip = output or folder.parent / f"{slug(folder.name)}-ouxml.zip"
    report = ExportReport(out_zip)
    names = {p: doc_name(p, folder) for p in find_drafts(folder)}
    if not names:
        report.problems.append(
            Problem("error", str(folder), "", "no drafts (.docx, .md, .odt) found in this folder")
        )
        return report
    lines: list[str] = []
    with zipfile.ZipFile(out_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        for draft in iter_drafts(folder, overrides):
            name = names[draft.document.path]
            exp = export_draft(draft, name)
            report.exports.append(exp)
            found = list(exp.problems)
            if not exp.failed:
                if check:
                    checked = _check(exp, schema)
                    report.problems.extend(checked)
                    found.extend(checked)
                zf.writestr(f"{name}/{name}.xml", exp.xml)
                for filename, data in exp.images:
                    zf.writestr(f"{name}/images/{filename}", data)
            status = "FAILED" if exp.failed else "ok"
            lines.append(f"{name}: {status}")
            lines.extend(f"  {p.render()}" for p in found)
        zf.writestr("export-report.txt", "\n".join(lines) + "\n")
    return report
