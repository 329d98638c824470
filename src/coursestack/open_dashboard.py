"""`coursestack up --open`: log the browser in without a secret on any command line.

A browser started with a URL shows that URL to every local user (`ps`, /proc/*/cmdline),
so the instance token never goes there. Instead the CLI asks the daemon (with the
token, over HTTP) for a one-time code that works once, within a minute, writes a local
page owner-only in the instance's run folder, and opens that page: it posts the code to
the dashboard's `/login/code`, which sets the session cookie.
"""

from __future__ import annotations

import os
import webbrowser
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coursestack.instances import DaemonClient

#: The page `up --open` writes (replaced on every `up --open`).
PAGE_NAME = "open-dashboard.html"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Opening the dashboard…</title></head>
<body onload="document.forms[0].submit()">
<form method="post" action="{action}">
<input type="hidden" name="code" value="{code}">
<noscript><button type="submit">Open the dashboard</button></noscript>
</form>
<p>Opening the dashboard… (this page works once, within a minute)</p>
</body></html>
"""


def login_page(run_folder: Path, dashboard_url: str, code: str) -> Path:
    """Write the owner-only page that posts `code`; return its path."""
    path = run_folder / PAGE_NAME
    path.unlink(missing_ok=True)
    # Created owner-only (O_EXCL: never through a link someone else left there).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(
            _PAGE.format(
                action=escape(dashboard_url.rstrip("/") + "/login/code"), code=escape(code)
            )
        )
    return path


def open_dashboard(client: DaemonClient, run_folder: Path) -> Path:
    """Ask the daemon for a one-time code and open the page that uses it."""
    answer = client.login_code()
    page = login_page(run_folder, client.url, answer.code)
    webbrowser.open(page.as_uri())
    return page
