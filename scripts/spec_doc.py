"""Regenerate the key tables of docs/spec.md from the settings' own help text.

Run `python scripts/spec_doc.py` after changing spec.py; the tables sit between
`<!-- keys:NAME -->` and `<!-- /keys -->` markers, the prose around them is kept.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from coursestack.spec import (
    SERVICE_MODELS,
    ContentSettings,
    CourseInfo,
    DashboardSettings,
    LogSettings,
    ProbeSettings,
    ServiceSpec,
)

DOC = Path(__file__).parents[1] / "docs" / "spec.md"


def table(model: type[BaseModel], skip: set[str] | None = None) -> str:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        if skip and name in skip:
            continue
        annotation = str(field.annotation) if "|" in str(field.annotation) or "[" in str(
            field.annotation) else getattr(field.annotation, "__name__", str(field.annotation))
        annotation = (annotation.replace("typing.", "").replace("coursestack.spec.", "")
                      .replace("Literal", "one of ").replace(" | ", " or "))
        if field.is_required():
            default = "required"
        else:
            value: Any = field.get_default(call_default_factory=True)
            value = getattr(value, "value", value)
            default = f"`{value!r}`" if value not in (None, {}, []) else "—"
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {annotation.replace('|', 'or')} | {default} | {meaning} |")
    return "\n".join(rows)


def main() -> None:
    text = DOC.read_text(encoding="utf-8")
    common = set(ServiceSpec.model_fields)
    tables = {"course": table(CourseInfo), "dashboard": table(DashboardSettings),
              "logs": table(LogSettings), "content": table(ContentSettings),
              "service": table(ServiceSpec), "probe": table(ProbeSettings)}
    for kind, model in SERVICE_MODELS.items():
        tables[kind] = table(model, skip=common)
    for name, body in tables.items():
        text = re.sub(rf"(<!-- keys:{name} -->\n).*?(<!-- /keys -->)",
                      lambda m, b=body: m.group(1) + b + "\n" + m.group(2), text, flags=re.S)
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
