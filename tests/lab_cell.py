"""Running a notebook's first cell in a real JupyterLab page (Playwright)."""

from __future__ import annotations

import contextlib
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect


def run_first_cell(lab: Any, source: str, output_text: str) -> None:
    """Wait for the open notebook's first cell to show `source`, run it, and expect
    `output_text` as its output."""
    cell = lab.locator(".jp-Notebook .jp-Cell .cm-content").first
    expect(cell).to_contain_text(source, timeout=60_000)
    expect(lab.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
        1, timeout=60_000
    )
    output = lab.locator(".jp-OutputArea-output").first
    select_kernel = lab.get_by_role("button", name="Select Kernel")
    for _attempt in range(3):
        cell.click()
        lab.keyboard.press("Shift+Enter")
        with contextlib.suppress(PlaywrightTimeout):
            output.wait_for(timeout=10_000)
            break
        # JupyterLab may ask which kernel to start; take the suggested one.
        if select_kernel.is_visible():
            select_kernel.click()
    expect(output).to_have_text(output_text, timeout=30_000)
