"""The composer and the live picture in a real browser (Playwright + Debian's chromium).

Each test runs a small course of its own (`command` services), so saving and running
never touch the shared sample instance.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from composer_support import TINY_SPEC, Course, running_course
from coursestack.spec import load_spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("/usr/bin/chromium") is None,
        reason="needs Debian's chromium (/usr/bin/chromium)",
    ),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[3] / "docs"


@pytest.fixture
def course() -> Iterator[Course]:
    with running_course() as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser: Any, course: Course, path: str, errors: list[str]) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{course.url}login?token={course.token}&next={path}")
    if path == "/composer":
        page.wait_for_selector("body[data-composer=ready]")
    return page


def settled(page: Any) -> None:
    """Wait until the page's last edit has been checked by the daemon."""
    page.wait_for_timeout(200)
    page.wait_for_selector("body[data-composer=ready]")


def tab_to(page: Any, locator: Any, limit: int = 120) -> None:
    """Move the keyboard focus with Tab (only) until `locator` has it."""
    settled(page)  # a check coming back redraws the canvas
    for _ in range(limit):
        if locator.evaluate("(element) => document.activeElement === element"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {locator}")


def node(page: Any, name: str) -> Any:
    return page.locator(f'.cnode[data-service="{name}"] .cnode-main')


def test_build_a_course_by_dragging_only(browser: Any, course: Course) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = open_page(browser, course, "/composer", errors)
    page.get_by_role("button", name="Start from empty").click()
    canvas = page.locator("#canvas")
    for kind in ("postgres", "command", "jupyter"):
        page.locator(f'.kind-button[data-kind="{kind}"]').drag_to(canvas)
        expect(node(page, kind)).to_be_visible()
    node(page, "jupyter").drag_to(node(page, "postgres"))
    node(page, "command").drag_to(node(page, "postgres"))
    settled(page)
    expect(page.locator(".edges g.edge")).to_have_count(2)
    expect(page.locator("#problems")).to_contain_text("None: the spec is valid.")
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "composer.png"), full_page=False)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#status")).to_contain_text("Saved")
    saved = load_spec(course.spec)
    assert list(saved.services) == ["postgres", "command", "jupyter"]
    assert saved.services["jupyter"].depends_on == {"postgres": "ready"}
    assert saved.services["command"].depends_on == {"postgres": "ready"}
    text = course.spec.read_text(encoding="utf-8")
    assert text.startswith("# A small course for the composer's tests.\n[course]")
    assert course.spec.with_name("course.toml.bak").read_text(encoding="utf-8") == TINY_SPEC
    assert errors == []


def test_build_a_course_with_the_keyboard_only(browser: Any, course: Course) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = open_page(browser, course, "/composer", errors)
    tab_to(page, page.get_by_role("button", name="Start from empty"))
    page.keyboard.press("Enter")
    for kind in ("postgres", "command", "jupyter"):
        tab_to(page, page.get_by_role("button", name=f"Add a {kind} service"))
        page.keyboard.press("Enter")
        expect(node(page, kind)).to_be_focused()  # the new box takes the focus
    for needer in ("jupyter", "command"):
        tab_to(page, page.get_by_role("button", name=f"Choose a service {needer} needs"))
        page.keyboard.press("Enter")
        tab_to(page, node(page, "postgres"))
        page.keyboard.press("Enter")
        expect(page.locator("#link-hint")).to_have_text(f"{needer} now needs postgres.")
    # The condition too, from the settings form: jupyter only needs postgres started.
    tab_to(page, node(page, "jupyter"))
    page.keyboard.press("Enter")
    tab_to(page, page.locator('select.need-condition[data-dep="postgres"]'))
    page.keyboard.press("ArrowDown")  # ready -> started
    settled(page)
    expect(page.locator("#problems")).to_contain_text("None: the spec is valid.")
    tab_to(page, page.get_by_role("button", name="Save", exact=True))
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Saved")
    saved = load_spec(course.spec)
    assert sorted(saved.services) == ["command", "jupyter", "postgres"]
    assert saved.services["jupyter"].depends_on == {"postgres": "started"}
    assert saved.services["command"].depends_on == {"postgres": "ready"}
    assert errors == []


def test_a_cycle_shows_where_it_is_and_saves_nothing(browser: Any, course: Course) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = open_page(browser, course, "/composer", errors)
    page.locator('.kind-button[data-kind="command"]').drag_to(page.locator("#canvas"))
    node(page, "command").drag_to(node(page, "hello"))
    node(page, "hello").drag_to(node(page, "command"))
    settled(page)
    problem = page.locator("#problems button.problem")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text("dependency cycle: command -> hello -> command")
    expect(page.locator('.cnode[data-service="command"]')).to_have_class(
        re.compile(r"\bhas-problem\b")
    )
    # Following the problem leads to the field it is about.
    problem.click()
    expect(
        page.locator('.field[data-key="services.command.depends_on"] .field-error')
    ).to_contain_text("dependency cycle")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#status")).to_contain_text("Not saved: fix the problems first")
    assert course.spec.read_text(encoding="utf-8") == TINY_SPEC
    assert not course.spec.with_name("course.toml.bak").exists()
    assert errors == []


def test_bad_settings_are_shown_at_their_field(browser: Any, course: Course) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = open_page(browser, course, "/composer", errors)
    page.locator('.kind-button[data-kind="command"]').click()  # a single click adds one
    port = page.locator("#field-services-command-port")
    port.fill("70000")
    settled(page)
    expect(page.locator("#field-services-command-port-error")).to_contain_text(
        "less than or equal to 65535"
    )
    expect(port).to_have_attribute("aria-invalid", "true")
    port.fill("8200")
    # A duplicate name is refused at the name field, and nothing is renamed.
    page.locator("#field-name").fill("hello")
    page.locator("#field-name").press("Tab")
    expect(page.locator("#field-name-error")).to_contain_text("already exists")
    expect(node(page, "command")).to_have_count(1)
    settled(page)
    expect(page.locator("#problems")).to_contain_text("None: the spec is valid.")
    # Meanwhile somebody edits the file on disk: saving says so, and loses nothing.
    edited = TINY_SPEC.replace("# A small course", "# Edited meanwhile: a small course")
    course.spec.write_text(edited, encoding="utf-8")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#conflict")).to_be_visible()
    assert course.spec.read_text(encoding="utf-8") == edited
    expect(node(page, "command")).to_have_count(1)  # the page's changes are still there
    page.get_by_role("button", name="Put my changes on top of the new file and save").click()
    expect(page.locator("#status")).to_contain_text("Saved")
    text = course.spec.read_text(encoding="utf-8")
    assert "# Edited meanwhile" in text and "[services.command]" in text
    assert load_spec(course.spec).services["command"].port == 8200
    assert errors == []


def test_a_hand_edited_file_with_mistakes(browser: Any) -> None:
    from playwright.sync_api import expect

    with running_course() as course:
        course.spec.write_text(
            TINY_SPEC + '\n[services.odd]\nkind = "mongo"\n'
            '\n[services.needy]\nkind = "command"\ncommand = "true"\n'
            'probe = { type = "none" }\ndepends_on = ["nosuch"]\n',
            encoding="utf-8",
        )
        errors: list[str] = []
        page = open_page(browser, course, "/composer", errors)
        for name in ("odd", "needy"):
            expect(page.locator(f'.cnode[data-service="{name}"]')).to_have_class(
                re.compile(r"\bhas-problem\b")
            )
        problems = page.locator("#problems button.problem")
        expect(problems).to_have_count(2)
        problems.filter(has_text="unknown kind").click()
        expect(page.locator("#field-kind-error")).to_contain_text("unknown kind 'mongo'")
        expect(page.locator("#field-kind")).to_be_focused()
        problems.filter(has_text="nosuch").click()
        expect(page.locator("#field-depends_on-error")).to_contain_text(
            "depends on 'nosuch', which is not a service here"
        )
        # The line is the one `up` names.
        expect(problems.filter(has_text="nosuch")).to_contain_text("line 20:")
        assert errors == []


def test_run_brings_the_new_service_to_ready(browser: Any, course: Course) -> None:
    from playwright.sync_api import expect

    hello = course.wait_state("hello", "ready")
    errors: list[str] = []
    page = open_page(browser, course, "/composer", errors)
    page.locator('.kind-button[data-kind="command"]').click()
    node(page, "command").drag_to(node(page, "hello"))
    settled(page)
    page.get_by_role("button", name="Save and run").click()
    expect(page.locator("#status")).to_contain_text("Applied. added: command; started: command")
    course.wait_state("command", "ready")
    assert course.wait_state("hello", "ready")["pid"] == hello["pid"]  # left alone

    # The live picture on the services page: both boxes, coloured by state, linked.
    dashboard = open_page(browser, course, "/", errors)
    picture = dashboard.locator("#diagram")
    expect(picture.locator('g.node[data-service="command"]')).to_have_class(
        re.compile(r"\bstate-ready\b")
    )
    expect(picture.locator('g.node[data-service="hello"] .node-state')).to_have_text("ready")
    expect(picture.locator('g.edge[data-source="command"][data-target="hello"] text')).to_have_text(
        "ready"
    )
    dashboard.get_by_role("button", name="Stop command", exact=True).click()
    expect(picture.locator('g.node[data-service="command"] .node-state')).to_have_text(
        "stopped", timeout=30_000
    )
    dashboard.get_by_role("button", name="Start command", exact=True).click()
    expect(picture.locator('g.node[data-service="command"] .node-state')).to_have_text(
        "ready", timeout=30_000
    )
    picture.locator('a.node-link[href="#svc-command"]').click()
    expect(dashboard.get_by_role("button", name="Start command", exact=True)).to_be_focused()
    dashboard.locator("#diagram").scroll_into_view_if_needed()
    dashboard.locator(".diagram-panel").screenshot(path=str(DOCS / "diagram.png"))
    assert errors == []
