"""The metadata format: records, aliases, comments, repeats, clearing and layering."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from coursestack.authoring.documents import load_draft
from coursestack.authoring.metadata import (
    Metadata,
    canonical_key,
    folder_metadata,
    parse_overrides,
    parse_records,
)


def test_records_split_on_double_semicolon_and_first_double_colon() -> None:
    records, problems = parse_records(
        "courseCode :: TM351;;\n  courseTitle :: Data management: and analysis  ;;\n"
        "url :: https://example.org/a::b;;",
        "metadata",
    )
    assert problems == []
    assert [(r.key, r.value, r.line) for r in records] == [
        ("courseCode", "TM351", 1),
        ("courseTitle", "Data management: and analysis", 2),
        ("url", "https://example.org/a::b", 3),
    ]


def test_keys_match_case_space_and_separator_insensitively() -> None:
    assert (
        canonical_key("Course code")
        == canonical_key("course-code")
        == canonical_key("courseCode")
        == canonical_key("COURSE_CODE")
        == "course_code"
    )
    assert canonical_key("Lead author") == canonical_key("byline") == "author"
    assert canonical_key("Something Else") == "somethingelse"


def test_comment_lines_are_ignored_and_line_numbers_stay_true() -> None:
    records, problems = parse_records(
        "# a comment :: not a record;;\n\n# another\nunitTitle :: Week 1;;\n", "m"
    )
    assert problems == []
    assert [(r.key, r.line) for r in records] == [("unitTitle", 4)]


def test_repeated_key_warns_and_last_wins() -> None:
    records, problems = parse_records("courseCode :: A;;\ncourse code :: B;;", "m")
    meta = Metadata()
    meta.apply_records(records, problems)
    assert meta.get("courseCode") == "B"
    assert [p.severity for p in problems] == ["warning"]
    assert "repeats line 1" in problems[0].message and problems[0].where == "line 2"


def test_broken_records_are_reported_with_line_and_the_rest_kept() -> None:
    text = (
        "courseCode :: TM351;;\nno separator here;;\n:: empty key;;\n"
        "unitTitle :: Week 1\ncourseTitle :: forgot the end;;\nauthor :: Ann;;"
    )
    records, problems = parse_records(text, "folder/metadata")
    assert [r.key for r in records] == ["courseCode", "author"]
    assert [(p.where, p.severity) for p in problems] == [
        ("line 2", "error"),
        ("line 3", "error"),
        ("line 4", "error"),
    ]
    assert "';;' is probably missing" in problems[2].message
    assert all(p.file == "folder/metadata" for p in problems)


def test_layers_top_folder_down_then_document_then_overrides(tmp_path: Path) -> None:
    top = tmp_path / "course"
    week = top / "block1" / "week1"
    week.mkdir(parents=True)
    (top / "metadata").write_text(
        "courseCode :: TM351;;\ncourseTitle :: Old;;\nrendering :: OpenLearn;;\nauthor :: Top;;"
    )
    (top / "block1" / "metadata.txt").write_text("Course Title :: Block title;;\nrendering :: ;;")
    (week / "metadata").write_text("author :: Week author;;\nunit title :: From folder;;")
    doc = week / "draft.md"
    doc.write_text("---\nunit title: From document\n---\n# One\n\nText.\n")
    draft = load_draft(doc, top, parse_overrides(["author=From CLI"]))
    meta = draft.metadata
    assert meta.get("course_code") == "TM351"  # inherited from the top folder
    assert meta.get("course_title") == "Block title"  # a lower folder overrides
    assert meta.get("rendering") is None  # an empty value clears an inherited one
    assert meta.get("unit_title") == "From document"  # the document overrides folders
    assert meta.get("author") == "From CLI"  # command line overrides everything
    assert meta.place("course_title").endswith("metadata.txt:1")


def test_folder_metadata_outside_root_uses_only_own_folder(tmp_path: Path) -> None:
    (tmp_path / "metadata").write_text("courseCode :: X1;;")
    problems: list = []
    meta = folder_metadata(tmp_path, tmp_path / "elsewhere", problems)
    assert meta.get("course_code") == "X1" and problems == []


_keys = st.from_regex(r"[A-Za-z][A-Za-z ]{0,12}[A-Za-z]", fullmatch=True)
_values = (
    st.text(st.characters(blacklist_characters=";\n\r#", blacklist_categories=("Cs",)), max_size=30)
    .map(str.strip)
    .filter(lambda v: "::" not in v)
)


@given(st.lists(st.tuples(_keys, _values), min_size=1, max_size=8))
def test_written_records_parse_back(pairs: list[tuple[str, str]]) -> None:
    text = "".join(f"{k} :: {v};;\n" for k, v in pairs)
    records, problems = parse_records(text, "m")
    assert problems == []
    assert [(r.key, r.value) for r in records] == pairs
