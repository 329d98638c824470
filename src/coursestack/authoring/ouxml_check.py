"""Check OU-XML: the OU schema (XSD) plus the VLE's further rules the XSD does not state.

The schema is `schemas/OUIntermediateSchema.xsd` from the `ou-xml-validator` package. It
imports `xml/xml.xsd`, which that package does not ship, so lxml is given the few `xml:`
attribute declarations it needs from memory (no network access is ever attempted).

VLE rules checked on top of the XSD:
- `Item/@id` starts with `X` and has no spaces;
- `CourseCode`, `ItemTitle` and every `Image/@src` are non-empty;
- with several Sessions, each has a non-empty `Title`;
- once a `Section` has started, its `Session` holds only further `Section`s (or
  `LearningOutcomes`, `Summary`, `References`, `FurtherReading`); likewise for `SubSection`
  inside a `Section` and `SubSubSection` inside a `SubSection`;
- the byline element is spelled `ByLine`.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from lxml import etree

from coursestack.authoring.model import Problem
from coursestack.errors import UserError

_XML_XSD = b"""<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
  targetNamespace="http://www.w3.org/XML/1998/namespace">
 <xs:attribute name="lang"><xs:simpleType><xs:union memberTypes="xs:language">
  <xs:simpleType><xs:restriction base="xs:string"><xs:enumeration value=""/>
  </xs:restriction></xs:simpleType></xs:union></xs:simpleType></xs:attribute>
 <xs:attribute name="space"><xs:simpleType><xs:restriction base="xs:NCName">
  <xs:enumeration value="default"/><xs:enumeration value="preserve"/>
 </xs:restriction></xs:simpleType></xs:attribute>
 <xs:attribute name="base" type="xs:anyURI"/>
 <xs:attribute name="id" type="xs:ID"/>
</xs:schema>"""

# After the first child section, only these may follow at the same level.
_AFTER_SECTION = {
    "Session": (
        "Section",
        {"Section", "LearningOutcomes", "Summary", "References", "FurtherReading"},
    ),
    "Section": ("SubSection", {"SubSection", "Summary", "References", "FurtherReading"}),
    "SubSection": ("SubSubSection", {"SubSubSection", "Summary", "References", "FurtherReading"}),
}


class _XmlNamespaceResolver(etree.Resolver):  # type: ignore[misc]
    def resolve(self, url: str, pubid: str, context: Any) -> Any:
        if url.endswith("xml.xsd"):
            return self.resolve_string(_XML_XSD, context)
        return None


def find_schema() -> Path:
    """Path of `OUIntermediateSchema.xsd` from the installed `ou-xml-validator` package."""
    # find_spec locates the package without importing (and so running) it.
    spec = importlib.util.find_spec("ou_xml_validator")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "schemas" / "OUIntermediateSchema.xsd"
            if candidate.is_file():
                return candidate
    raise UserError(
        "the OU-XML schema is not installed",
        hint="pip install ou-xml-validator (or pass --schema PATH)",
    )


@lru_cache(maxsize=4)
def load_schema(path: Path) -> etree.XMLSchema:
    """Compile the XSD once per process (it takes about a second)."""
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_XmlNamespaceResolver())
    try:
        return etree.XMLSchema(etree.parse(str(path), parser))
    except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise UserError(f"cannot load the OU-XML schema: {exc}", where=str(path)) from exc


def _where(tree: etree._ElementTree, elem: etree._Element) -> str:
    return f"line {elem.sourceline} {tree.getpath(elem)}"


def _text(elem: etree._Element | None) -> str:
    return "".join(elem.itertext()).strip() if elem is not None else ""


def vle_problems(root: etree._Element, file: str) -> list[Problem]:
    """Problems against the VLE rules that the XSD does not check."""
    tree = root.getroottree()
    out: list[Problem] = []

    def add(elem: etree._Element, message: str) -> None:
        out.append(Problem("error", file, _where(tree, elem), message))

    if root.tag != "Item":
        add(root, f"root element is <{root.tag}>, not <Item>")
        return out
    item_id = root.get("id")
    if not item_id:
        add(root, "Item has no id attribute")
    elif not item_id.startswith("X") or re.search(r"\s", item_id):
        add(root, f"Item/@id {item_id!r} must start with 'X' and contain no spaces")
    for tag in ("CourseCode", "ItemTitle"):
        el = root.find(tag)
        if not _text(el):
            add(el if el is not None else root, f"{tag} is missing or empty")
    for image in root.iter("Image", "InlineImage"):
        if not (image.get("src") or "").strip():
            add(image, "Image has no src (or an empty one)")
    sessions = list(root.iter("Session"))
    if len(sessions) > 1:
        for session in sessions:
            if not _text(session.find("Title")):
                add(session, "with several sessions, every Session needs a Title")
    for parent_tag, (child_tag, allowed) in _AFTER_SECTION.items():
        for parent in root.iter(parent_tag):
            started = False
            for child in parent:
                if not isinstance(child.tag, str):
                    continue
                if child.tag == child_tag:
                    started = True
                elif started and child.tag not in allowed:
                    add(
                        child,
                        f"<{child.tag}> follows a <{child_tag}> inside <{parent_tag}>; "
                        f"once a {child_tag} has started only further {child_tag}s may follow",
                    )
    for elem in root.iter():
        if isinstance(elem.tag, str) and elem.tag.lower() == "byline" and elem.tag != "ByLine":
            add(elem, f"the byline element is <ByLine>, not <{elem.tag}>")
    return out


def check_xml(
    data: bytes, file: str, schema: Path | None = None, use_schema: bool = True
) -> list[Problem]:
    """All problems of one OU-XML document: well-formedness, XSD, then VLE rules."""
    try:
        root = etree.fromstring(data, etree.XMLParser(no_network=True, resolve_entities=False))
    except etree.XMLSyntaxError as exc:
        return [Problem("error", file, f"line {exc.lineno}", f"not well-formed XML: {exc.msg}")]
    out: list[Problem] = []
    if use_schema:
        xsd = load_schema(schema or find_schema())
        if not xsd.validate(root):
            for err in xsd.error_log:
                out.append(Problem("error", file, f"line {err.line}", f"schema: {err.message}"))
    out.extend(vle_problems(root, file))
    return out


def check_path(path: Path, schema: Path | None = None) -> list[Problem]:
    """Check an .xml file, or every .xml inside a .zip export."""
    import zipfile

    if path.suffix.lower() == ".zip":
        out: list[Problem] = []
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.lower().endswith(".xml")]
                if not names:
                    return [Problem("error", str(path), "", "zip holds no .xml file")]
                for name in names:
                    out.extend(check_xml(zf.read(name), f"{path}!{name}", schema))
        except zipfile.BadZipFile as exc:
            return [Problem("error", str(path), "", f"not a readable zip: {exc}")]
        return out
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read file: {exc.strerror or exc}", where=str(path)) from exc
    return check_xml(data, str(path), schema)
