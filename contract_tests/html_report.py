"""The HTML rendering of a Report: one self-contained file (inline CSS and SVG, no scripts)
with the summary and the diagnosis, the per-check table, every finding under its root cause
(with its request, response and reproduction), the advice, the per-rule tally, the coverage
tables and the transition graph with the edges the run took. Nothing is clipped: tables and
code wrap to the page."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from vpp_sandbox.contract_tests import model, schemas
from vpp_sandbox.contract_tests.digest import Finding
from vpp_sandbox.contract_tests.findings import REGISTRY, RULE_TITLES, rule_order
from vpp_sandbox.contract_tests.report import Report
from vpp_sandbox.contract_tests.target import Exchange

__all__ = ["render_html", "transition_svg", "write_html"]

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2430}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#d8dde6;padding-bottom:4px}table{border-collapse:collapse;margin:6px 0;max-width:100%}td,th{border:
1px solid #d8dde6;padding:3px 7px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f2f4f8}
.pass{color:#1b7a34;font-weight:600}.fail{color:#b3261e;font-weight:600}.skip{color:#8a6d00;
font-weight:600}.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff}
.badge.pass{background:#1b7a34}.badge.fail{background:#b3261e}pre{background:#f6f8fa;padding:8px;
font-size:12px;white-space:pre-wrap;word-break:break-all}
details{border:1px solid #e3c3c0;border-radius:6px;padding:6px 10px;margin:8px 0;background:#fffafa}
summary{cursor:pointer;font-weight:600}.small{font-size:12px;color:#5b6475}
td.m{text-align:center;font-size:11px;min-width:16px;padding:2px}.taken{background:#c9ecd2}
.untaken{background:#fff1b8}.tried{background:#cfe0fb}.untried{background:#f7d9d6}
.self{background:#e4e7ec}.matrix th{font-size:10px;writing-mode:vertical-rl;padding:4px 1px}
.matrix th.row{writing-mode:horizontal-tb;font-size:11px}
"""

# Where each state sits in the graph (x, y of its centre), joining along the top, leaving below.
COLUMNS = [85 + 178 * i for i in range(7)]
POSITIONS: dict[str, tuple[int, int]] = {
    "ENROLMENT_REQUESTED": (COLUMNS[0], 50),
    "AWAITING_CUSTOMER_CONSENT": (COLUMNS[1], 50),
    "AWAITING_DEVICE_TELEMETRY": (COLUMNS[2], 50),
    "AWAITING_LOCATION_TELEMETRY": (COLUMNS[3], 150),
    "CHECKING_ELIGIBILITY": (COLUMNS[4], 50),
    "AWAITING_REGISTRATION": (COLUMNS[5], 50),
    "REGISTERED": (COLUMNS[6], 50),
    "INELIGIBLE": (COLUMNS[4], 170),
    "ACTIVE": (COLUMNS[6], 290),
    "SUSPENDED": (COLUMNS[5], 290),
    "UNENROLMENT_REQUESTED": (COLUMNS[3], 290),
    "WINDING_DOWN": (COLUMNS[3], 420),
    "UNENROLLED": (COLUMNS[4], 420),
    "OFFBOARDED": (COLUMNS[5], 420),
    "FAILED": (COLUMNS[1], 420),
}
NODE_W, NODE_H = 150, 30


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table of already-escaped cells."""
    out = [f'<table class="{cls}"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join(out) + "</table>"


def _edge_path(a: str, b: str, bend: float) -> tuple[str, tuple[float, float]]:
    (x1, y1), (x2, y2) = POSITIONS[a], POSITIONS[b]
    if a == b:  # SUSPENDED -> SUSPENDED: a loop above the node
        top = y1 - NODE_H / 2
        return (f"M{x1 - 20},{top} C{x1 - 30},{top - 45} {x1 + 30},{top - 45} {x1 + 20},{top}",
                (x1, top - 38))
    dx, dy = x2 - x1, y2 - y1
    length = math.hypot(dx, dy) or 1.0

    # Stop at the node boxes' edges, so the arrowheads stay visible.
    def clip(x: float, y: float, ux: float, uy: float) -> tuple[float, float]:
        tx = (NODE_W / 2 + 4) / abs(ux) if ux else 1e9
        ty = (NODE_H / 2 + 4) / abs(uy) if uy else 1e9
        return x + ux * min(tx, ty), y + uy * min(tx, ty)
    ux, uy = dx / length, dy / length
    sx, sy = clip(x1, y1, ux, uy)
    ex, ey = clip(x2, y2, -ux, -uy)
    mx, my = (sx + ex) / 2 - uy * bend, (sy + ey) / 2 + ux * bend
    return f"M{sx:.0f},{sy:.0f} Q{mx:.0f},{my:.0f} {ex:.0f},{ey:.0f}", (mx, my)


def transition_svg(edges: dict[tuple[str, str], int]) -> str:
    """The transition table as a graph: taken edges solid green (with their count), the others
    grey and dashed; returns of a cancelled leave request are drawn curved."""
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="1240" height="470" '
        'viewBox="0 0 1240 470" role="img" aria-label="transition graph" id="transition-graph">',
        '<defs><marker id="arrow-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#1b7a34"/></marker><marker id="arrow-untaken" viewBox="0 0 10 10" refX="9" '
        'refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path '
        'd="M0,0 L10,5 L0,10 z" fill="#a0a7b4"/></marker></defs>',
    ]
    pairs = set(model.LEGAL_EDGES)
    for a, b in model.LEGAL_EDGES:
        back = (b, a) in pairs and a != b
        bend = 22.0 if back else (30.0 if a == "UNENROLMENT_REQUESTED" else 0.0)
        d, (lx, ly) = _edge_path(a, b, bend)
        n = edges.get((a, b), 0)
        kind = "taken" if n else "untaken"
        style = (
            'stroke="#1b7a34" stroke-width="2.2"' if n
            else 'stroke="#a0a7b4" stroke-width="1.2" stroke-dasharray="5 4"'
        )
        parts.append(
            f'<path class="edge {kind}" data-from="{a}" data-to="{b}" d="{d}" fill="none" '
            f'{style} marker-end="url(#arrow-{kind})"><title>{a} → {b}: '
            f'{"taken " + str(n) + "x" if n else "never taken"}</title></path>'
        )
        if n:
            parts.append(f'<text x="{lx:.0f}" y="{ly:.0f}" font-size="10" fill="#1b7a34" '
                         f'text-anchor="middle">{n}</text>')
    for state, (x, y) in POSITIONS.items():
        fill = "#fde8e6" if state in model.TERMINAL else "#eef3fb"
        parts.append(
            f'<g class="node" data-state="{state}"><rect x="{x - NODE_W / 2}" y="{y - NODE_H / 2}" '
            f'width="{NODE_W}" height="{NODE_H}" rx="7" fill="{fill}" stroke="#55607a"/>'
            f'<text x="{x}" y="{y + 3.5}" font-size="9" text-anchor="middle" '
            f'font-family="sans-serif">{state}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _matrix(report: Report) -> str:
    """Every (from, to) pair: legal taken / legal never taken / illegal tried / never tried."""
    cov = report.coverage
    legal = set(model.LEGAL_EDGES)
    head = "<tr><th class=row>from \\ to</th>" + "".join(
        f"<th>{s}</th>" for s in model.STATES) + "</tr>"
    rows = [head]
    for a in model.STATES:
        cells = [f"<th class=row>{a}</th>"]
        for b in model.STATES:
            if (a, b) in legal:
                n = cov.edges.get((a, b), 0)
                cls, mark = ("taken", str(n)) if n else ("untaken", "·")
                title = f"legal: taken {n}x" if n else "legal: never taken"
            elif a == b:
                cls, mark, title = "self", "=", "resubmission"
            else:
                n = cov.illegal.get((a, b), 0)
                cls, mark = ("tried", str(n)) if n else ("untried", "")
                title = f"illegal: tried {n}x" if n else "illegal: never tried"
            cells.append(f'<td class="m {cls}" title="{a} → {b}: {title}">{mark}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return '<table class="matrix">' + "\n".join(rows) + "</table>"


def _redacted(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for k, v in headers.items():
        if k.lower() == "authorization":
            v = "Bearer $VPP_TOKEN" if v.startswith("Bearer ") and len(v) > 60 else (
                "Basic $VPP_BASIC" if v.startswith("Basic ") else v)
        out[k] = v
    return out


def _exchange(ex: Exchange) -> str:
    body = json.dumps(ex.body, indent=2) if ex.body is not None else ""
    answer = json.dumps(ex.data, indent=2) if ex.data is not None else ex.text
    headers = "\n".join(f"{k}: {v}" for k, v in _redacted(dict(ex.headers)).items())
    return (
        f"<div class=small>request</div><pre>{_e(ex.method)} {_e(ex.url)}\n{_e(headers)}"
        f"\n\n{_e(body[:4000])}</pre><div class=small>response</div><pre>{ex.status}\n"
        f"{_e(answer[:6000])}</pre>"
    )


def _finding(finding: Finding, open_: bool) -> str:
    shown = finding.reproduction
    parts = [
        f'<details class="finding"{" open" if open_ else ""}><summary>'
        f'{"advice · " if finding.advice else ""}{_e(finding.title)} · '
        f"{_e(finding.where)}</summary>",
        f"<pre>{_e(shown.what)}</pre>",
    ]
    if shown.exchange is not None:
        parts.append(_exchange(shown.exchange))
    if shown.curl:
        parts.append(f"<div class=small>reproduce</div><pre class=curl>{_e(shown.curl)}</pre>")
    others = list(dict.fromkeys(f.what for f in finding.failures if f.what != shown.what))
    if others:
        items = "".join(f"<li>{_e(text)}</li>" for text in others[:50])
        parts.append(f"<div class=small>other messages ({len(others)})</div><ul>{items}</ul>")
    parts.append("</details>")
    return "\n".join(parts)


def _diagnosis(report: Report) -> str:
    diagnosis = report.diagnosis()
    if not diagnosis:
        return "<p>No findings.</p>"
    items = "".join(
        f'<li><a href="#cause-{_e(d.cause.key)}">{_e(d.headline())}</a>: {_e(d.cause.why)}</li>'
        for d in diagnosis
    )
    return f'<ol id="diagnosis">{items}</ol>'


def _findings(report: Report) -> str:
    out = []
    for i, d in enumerate(report.diagnosis(), start=1):
        out.append(f'<h3 id="cause-{_e(d.cause.key)}">{i}. {_e(d.cause.title)}</h3>')
        # The first findings open, the rest one click away (a broken target can have many).
        out += [_finding(f, j < 3) for j, f in enumerate(d.findings)]
    return "\n".join(out) or "<p>None.</p>"


def _tally(report: Report) -> str:
    rows = []
    for rule, findings, cases, judged in report.tally():
        status = ('<span class="fail">FAIL</span>' if findings else
                  '<span class="pass">held</span>' if judged else
                  '<span class="skip">not judged</span>')
        rows.append([_e(rule), _e(RULE_TITLES.get(rule, "the suite itself")), str(findings),
                     str(cases), str(judged), status])
    return _table(["rule", "what must hold", "findings", "failed cases", "judgements",
                   "result"], rows, "tally")


def _rules(report: Report) -> str:
    cov = report.coverage
    suites = [s.name for s in report.suites]
    not_made = report.not_made()
    rows = []
    infos = sorted(REGISTRY.values(), key=lambda i: (rule_order(i.rule), i.name))
    for info in infos:
        failed = sum(n for (_, c), n in cov.failed.items() if c == info.name)
        counts = [str(cov.exercised.get((s, info.name), 0) or "") for s in suites]
        if failed and info.advice:
            status = f'<span class="skip">ADVICE x{failed}</span>'
        elif failed:
            status = f'<span class="fail">FAIL x{failed}</span>'
        elif info.name in not_made:
            status = f'<span class="skip">NOT CHECKED</span> {_e(not_made[info.name])}'
        else:
            status = '<span class="pass">PASS</span>'
        rows.append([_e(info.rule), f"<code>{_e(info.name)}</code><div class=small>"
                     f"{_e(info.doc)}</div>", *counts, status])
    return _table(["rule", "check", *map(_e, suites), "result"], rows, "rules")


def _statuses(report: Report) -> str:
    seen: dict[str, dict[int, int]] = {}
    for (op, status), n in report.coverage.statuses.items():
        seen.setdefault(op, {})[status] = n
    rows = []
    for op in sorted(seen):
        documented = schemas.documented_statuses(op)
        cells = []
        for status in sorted(set(documented) | set(seen[op])):
            n = seen[op].get(status, 0)
            mark = "" if status in documented else " (undocumented)"
            cells.append(f"{status}: {n}x{mark}" if n else f"{status}: never")
        rows.append([f"<code>{_e(op)}</code>", _e(", ".join(cells))])
    return _table(["operation", "statuses answered (documented ones never seen say never)"], rows,
                  "statuses")


def render_html(report: Report) -> str:
    summary = report.summary
    verdict = "PASSED" if report.passed else "FAILED"
    cls = "pass" if report.passed else "fail"
    cases = sum(s.cases for s in report.suites)
    suites = _table(
        ["suite", "result", "cases", "seconds", "failures"],
        [[_e(s.name),
          '<span class="skip">SKIP</span> ' + _e(s.skipped) if s.skipped else (
              '<span class="pass">PASS</span>' if s.passed else '<span class="fail">FAIL</span>'),
          str(s.cases), f"{s.seconds:.1f}", str(len(s.failures))] for s in report.suites],
        "suites",
    )
    edges = _table(
        ["from", "to", "taken"],
        [[_e(a), _e(b), str(report.coverage.edges.get((a, b), 0) or "never")]
         for a, b in model.LEGAL_EDGES],
        "edges",
    )
    below = (f"<p class=fail>Coverage is below --min-coverage {report.min_coverage:g}%.</p>"
             if report.below_min_coverage else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>VPP contract report: {verdict}</title>
<style>{CSS}</style></head><body>
<h1>VPP contract report <span class="badge {cls}" id="verdict">{verdict}</span></h1>
<p class=small>target {_e(report.target)} · profile {_e(report.profile or "-")} · seed
{_e(report.seed)} · {cases} cases · {len(report.findings)} finding(s), {len(report.failures)}
failed case(s)</p>
<h2>Summary</h2>
<p id="coverage-summary">{_e(summary.render())}</p>{below}
{suites}
<h2 id="diagnosis-title">Diagnosis</h2>
{_diagnosis(report)}
<h2>Rules and checks</h2>
<p class=small>How often each check judged an exchange, per suite. NOT CHECKED: the run never
made the check (the reason says why); it is not a pass.</p>
{_rules(report)}
<h2 id="findings">Findings ({len(report.findings)}), by root cause</h2>
{_findings(report)}
<h2 id="advice">Advice ({len(report.advice_findings)})</h2>
<p class=small>The sandbox's own choices, which the spec leaves open: never a failure.</p>
{"".join(_finding(f, False) for f in report.advice_findings) or "<p>None.</p>"}
<h2 id="tally">Per rule</h2>
{_tally(report)}
<h2>Transition graph</h2>
<p class=small>Legal edges of the contract's table (and the returns of a cancelled leave request):
solid green taken by the target (with the count), dashed grey never taken.</p>
{transition_svg(dict(report.coverage.edges))}
{edges}
<h2>Moves tried, every pair</h2>
<p class=small>Green: legal, taken (count). Yellow: legal, never taken. Blue: illegal, tried
(count). Red: illegal, never tried. Grey: the same state (a resubmission).</p>
{_matrix(report)}
<h2>Status codes per operation</h2>
{_statuses(report)}
</body></html>
"""


def write_html(report: Report, path: str | Path) -> None:
    Path(path).write_text(render_html(report), encoding="utf-8")
