"""The progress page a course chair opens: one self-contained HTML file (no scripts,
no external assets), one bar per draft.

The bar's track reaches 150% of the target; the target is a marked line at two thirds of
the track. Progress up to the target is blue (green once done); past the target the bar
keeps growing in amber while within the tolerance, and in red once it is an overrun.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from pathlib import Path

from coursestack.authoring.progress import DraftProgress, ProgressReport

TRACK_MAX = 150.0  # percent of target that fills the whole track

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;
color:#1d2330;background:#f7f8fa}
h1{font-size:1.5rem;margin:0 0 .25rem}
.sub{color:#5b6475;margin:0 0 1.5rem}
.summary{display:flex;gap:1rem;margin-bottom:1.5rem;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:.75rem 1rem;
min-width:8rem}
.card b{display:block;font-size:1.4rem}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8}
th,td{padding:.55rem .75rem;border-bottom:1px solid #eceef2;text-align:left;
vertical-align:middle}
th{background:#eef1f5;font-size:.85rem;text-transform:uppercase;letter-spacing:.03em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.track{position:relative;height:14px;width:260px;background:#e6e9ef;border-radius:7px;
overflow:hidden}
.fill{position:absolute;top:0;bottom:0;left:0}
.fill.base{background:#2f6fd6}.fill.base.done{background:#1f9d55}
.fill.extra{background:#e3a008}.fill.extra.overrun{background:#d64545}
.target{position:absolute;top:-2px;bottom:-2px;width:2px;background:#1d2330}
.status{display:inline-block;padding:.1rem .5rem;border-radius:999px;font-size:.8rem;
background:#eef1f5}
.status.done{background:#d9f2e3}.status.overrun{background:#fbdcdc}
.status.failed{background:#fbdcdc}.status.not-started{background:#f1f1f1}
.alerts{background:#fff7e0;border:1px solid #f0d58c;border-radius:8px;padding:.5rem 1rem;
margin-bottom:1.5rem}
.problems{color:#8a1f1f;font-size:.9rem}
.legend{font-size:.85rem;color:#5b6475;margin-top:.75rem}
.legend span{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;
vertical-align:middle;margin:0 .3rem 0 1rem}
"""


def _bar(item: DraftProgress) -> str:
    if item.percent is None:
        return '<div class="track" title="no target"></div>'
    pct = max(0.0, item.percent)
    scale = 100.0 / TRACK_MAX
    base = min(pct, 100.0) * scale
    done = " done" if pct >= 100 else ""
    parts = [f'<div class="fill base{done}" style="width:{base:.2f}%"></div>']
    if pct > 100:
        extra = (min(pct, TRACK_MAX) - 100.0) * scale
        cls = " overrun" if item.overrun else ""
        parts.append(
            f'<div class="fill extra{cls}" style="left:{base:.2f}%;width:{extra:.2f}%"></div>'
        )
    parts.append(f'<div class="target" style="left:calc({100 * scale:.2f}% - 1px)"></div>')
    label = f"{pct:g}% of target"
    return (
        f'<div class="track" role="img" aria-label="{label}" title="{label}">{"".join(parts)}</div>'
    )


def _amount(item: DraftProgress) -> str:
    if item.task:
        return "task (manual)"
    target = f" / {item.target:g}" if item.target is not None else ""
    return f"{item.value:g}{target} {item.measure}"


def render_html(
    report: ProgressReport, refresh_seconds: float | None = None, now: datetime | None = None
) -> str:
    """The whole page as a string."""
    now = now or datetime.now()
    counts: dict[str, int] = {}
    for item in report.items:
        counts[item.status] = counts.get(item.status, 0) + 1
    words = sum(i.words for i in report.items)
    cards = [
        f'<div class="card"><b>{len(report.items)}</b>drafts</div>',
        f'<div class="card"><b>{words:,}</b>words written</div>',
    ]
    for status in ("done", "in progress", "overrun", "not started", "failed"):
        if counts.get(status):
            cards.append(f'<div class="card"><b>{counts[status]}</b>{status}</div>')
    rows = []
    for item in report.items:
        pct = "" if item.percent is None else f"{item.percent:g}%"
        if item.per_day is not None and item.days_left is not None:
            due = f"{item.per_day:g} {item.measure}/day, {item.days_left} days left"
            if item.per_day == 0:
                due = f"target met, {item.days_left} days left"
            if item.days_left < 0:
                due = f"overdue by {-item.days_left} days"
        else:
            due = item.deadline or ""
        status_cls = item.status.replace(" ", "-")
        rows.append(
            f'<tr data-path="{escape(item.path)}"><td><b>{escape(item.title)}</b><br>'
            f"<small>{escape(item.path)}</small></td><td>{_bar(item)}</td>"
            f'<td class="num">{pct}</td><td class="num">{escape(_amount(item))}</td>'
            f'<td><span class="status {status_cls}">{escape(item.status)}</span></td>'
            f"<td>{escape(due)}</td></tr>"
        )
    alerts = ""
    if report.alerts:
        alerts = (
            '<div class="alerts"><b>Alerts</b><ul>'
            + "".join(f"<li>{escape(a)}</li>" for a in report.alerts)
            + "</ul></div>"
        )
    problems = ""
    if report.problems:
        problems = (
            '<div class="problems"><b>Problems</b><ul>'
            + "".join(f"<li>{escape(p.render())}</li>" for p in report.problems)
            + "</ul></div>"
        )
    refresh = (
        f'<meta http-equiv="refresh" content="{refresh_seconds:g}">' if refresh_seconds else ""
    )
    title = f"Draft progress \u2013 {report.course}" if report.course else "Draft progress"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_CSS}</style></head>
<body><h1>{escape(title)}</h1>
<p class="sub">{escape(Path(report.folder).name)} \u00b7 updated {now:%Y-%m-%d %H:%M}</p>
<div class="summary">{"".join(cards)}</div>{alerts}
<table><thead><tr><th>Draft</th><th>Progress</th><th>%</th><th>Amount</th><th>Status</th>
<th>Deadline</th></tr></thead><tbody>
{"".join(rows)}
</tbody></table>
<p class="legend">The line marks the target.<span style="background:#2f6fd6"></span>written
<span style="background:#1f9d55"></span>target reached<span style="background:#e3a008"></span>
past target (within tolerance)<span style="background:#d64545"></span>overrun</p>
{problems}</body></html>
"""
