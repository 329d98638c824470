"""The OU-XML checker: the published XSD plus the VLE rules the XSD does not check."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from coursestack.authoring.cli import author_app
from coursestack.authoring.ouxml import RENDERINGS
from coursestack.authoring.ouxml_check import check_xml, load_schema

GOOD = """<?xml version="1.0" encoding="UTF-8"?>
<Item TextType="CompleteItem" SchemaVersion="2.0" id="XTM351_w1">
  <CourseCode>TM351</CourseCode><CourseTitle>Data</CourseTitle>
  <ItemID>XTM351_w1</ItemID><ItemTitle>Week 1</ItemTitle>
  <Unit><UnitID>w1</UnitID><UnitTitle>Week 1</UnitTitle><ByLine>Ann</ByLine>
    <Session><Title>One</Title><Paragraph>Intro.</Paragraph>
      <Section><Title>S1</Title><Paragraph>x</Paragraph>
        <SubSection><Title>Sub</Title><Paragraph>y</Paragraph></SubSection>
      </Section>
      <Section><Title>S2</Title><Paragraph>z</Paragraph>
        <Figure><Image src="images/a.png"/></Figure></Section>
      <Summary><Paragraph>Done.</Paragraph></Summary>
    </Session>
    <Session><Title>Two</Title><Paragraph>More.</Paragraph></Session>
  </Unit>
</Item>
"""


def _problems(xml: str, schema_path: Path) -> list[str]:
    return [p.render() for p in check_xml(xml.encode(), "t.xml", schema_path)]


def _xsd_only_valid(xml: str, schema_path: Path) -> bool:
    return bool(load_schema(schema_path).validate(etree.fromstring(xml.encode())))


def test_good_document_passes(schema_path: Path) -> None:
    assert _problems(GOOD, schema_path) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('id="XTM351_w1"', 'id="TM351_w1"', "must start with 'X'"),
        ('id="XTM351_w1"', 'id="X TM351"', "no spaces"),
        ("<CourseCode>TM351</CourseCode>", "<CourseCode> </CourseCode>", "CourseCode is missing"),
        ("<ItemTitle>Week 1</ItemTitle>", "<ItemTitle/>", "ItemTitle is missing or empty"),
        ('src="images/a.png"', 'src=""', "Image has no src"),
        ("<Title>Two</Title>", "<Title></Title>", "every Session needs a Title"),
        (
            "<Summary>",
            "<Paragraph>stray</Paragraph><Summary>",
            "<Paragraph> follows a <Section> inside <Session>",
        ),
        (
            "</SubSection>",
            "</SubSection><Paragraph>late</Paragraph>",
            "<Paragraph> follows a <SubSection> inside <Section>",
        ),
    ],
)
def test_vle_rules_the_xsd_does_not_check(
    schema_path: Path, old: str, new: str, expected: str
) -> None:
    bad = GOOD.replace(old, new, 1)
    assert bad != GOOD
    # The point of these rules: the schema alone accepts every one of these documents.
    assert _xsd_only_valid(bad, schema_path)
    problems = _problems(bad, schema_path)
    assert len(problems) == 1 and expected in problems[0], problems
    assert problems[0].startswith("t.xml (line ")


def test_byline_spelling_and_schema_errors_have_lines(schema_path: Path) -> None:
    bad = GOOD.replace("<ByLine>Ann</ByLine>", "<Byline>Ann</Byline>")
    problems = _problems(bad, schema_path)
    assert any("the byline element is <ByLine>, not <Byline>" in p for p in problems)
    assert any(p.startswith("t.xml (line 5): error: schema:") for p in problems)


def test_not_well_formed(schema_path: Path) -> None:
    assert "not well-formed" in _problems("<Item><oops></Item>", schema_path)[0]


def test_renderings_match_the_schema(schema_path: Path) -> None:
    xsd = etree.parse(str(schema_path))
    ns = {"xsd": "http://www.w3.org/2001/XMLSchema"}
    values = xsd.xpath(
        "//xsd:simpleType[@name='LastRenderingType']//xsd:enumeration/@value", namespaces=ns
    )
    assert set(RENDERINGS) == {v for v in values if v}


def test_check_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.xml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.xml"
    bad.write_text(GOOD.replace('id="XTM351_w1"', 'id="nope"'))
    runner = CliRunner()
    ok = runner.invoke(author_app, ["check", str(good)])
    assert ok.exit_code == 0 and "valid OU-XML" in ok.output
    failed = runner.invoke(author_app, ["check", str(bad)])
    assert failed.exit_code == 1
    assert f"{bad} (line 2 /Item): error: Item/@id 'nope' must start with 'X'" in failed.output
    missing = runner.invoke(author_app, ["check", str(tmp_path / "none.xml")])
    assert missing.exit_code == 1 and "cannot read file" in missing.output
    assert "Traceback" not in missing.output
