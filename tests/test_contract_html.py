"""The HTML report: self-contained, and looked at in a real headless browser (Debian chromium).

.ci/run installs chromium when it is missing; this test installs nothing, and skips with the
reason only when the binary is absent.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.contract_defects import DEFECTS
from tests.defect_runs import SEED, target
from vpp_sandbox.contract_tests.html_report import render_html, transition_svg, write_html
from vpp_sandbox.contract_tests.report import Report
from vpp_sandbox.contract_tests.runner import options_for, run_suites

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)),
                None)
FAILED_RED = (0xB3, 0x26, 0x1E)  # the FAILED badge
TAKEN_GREEN = (0x1B, 0x7A, 0x34)  # taken edges of the transition graph


@pytest.fixture(scope="module")
def report() -> Report:
    """A quick run against a broken mock: failures, coverage, a graph with taken edges."""
    defect = next(d for d in DEFECTS if d.name == "control_active_while_suspended")
    return run_suites(target(defect), options_for("quick", seed=SEED),
                      ["transitions", "cross-request", "security"], profile="quick")


def test_the_report_is_one_self_contained_file(report: Report) -> None:
    html = render_html(report)
    assert "<script" not in html and "http://" not in html.split("<body>")[0]
    # No stylesheet, image or script to fetch: links stay inside the page.
    assert 'href="' not in html.replace('href="#', "") and "src=" not in html
    assert html.count('<details class="finding"') == len(report.findings) > 0
    assert len(report.findings) < len(report.failures)  # one entry per finding, not per case
    assert "reproduce" in html and "control_active_iff_active" in html
    # The diagnosis and the per-check table come before the findings; nothing is clipped.
    assert html.index('id="diagnosis"') < html.index('class="rules"') < html.index(
        '<details class="finding"')
    assert "max-height" not in html and "max-width:1280px" not in html
    assert html.count('class="edge taken"') == report.summary.edges_taken == 36
    assert "Bearer ey" not in html  # tokens never printed


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--user-data-dir=/tmp/vpp-report-chromium", *args],
        capture_output=True, text=True, timeout=120, check=True,
    )


def _pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows (RGB or RGBA bytes) of a PNG, unfiltered (no imaging library)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        chunk = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            data += chunk
        pos += 12 + length
    raw, stride, rows = zlib.decompress(data), width * channels, []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else
                                      corner)) & 255
        rows.append(bytes(line))
        previous = line
    return width, channels, rows


def _count(rows: list[bytes], channels: int, colour: tuple[int, int, int]) -> int:
    wanted = bytes(colour)
    return sum(row[i:i + 3] == wanted for row in rows for i in range(0, len(row), channels))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it: "
                    "apt-get install -y chromium)")
def test_a_headless_browser_renders_the_report(report: Report, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    write_html(report, page)
    dom = _chromium("--dump-dom", page.as_uri()).stdout
    assert '<span class="badge fail" id="verdict">FAILED</span>' in dom
    assert dom.count('<details class="finding"') == len(report.findings)
    assert "control_active_iff_active" in dom and "reproduce" in dom
    for table in ('class="suites"', 'class="rules"', 'class="tally"', 'class="edges"',
                  'class="matrix"', 'class="statuses"'):
        assert f"<table {table}>" in dom, table
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in dom and 'id="transition-graph"' in dom
    assert dom.count('class="edge taken"') == 36
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1300,1800", page.as_uri())
    width, channels, rows = _pixels(shot.read_bytes())
    assert width == 1300 and len(rows) == 1800
    assert _count(rows, channels, FAILED_RED) > 300, "the FAILED badge is not drawn"
    assert len(set(rows)) > 200, "the page is (nearly) blank"
    # The graph on its own: 36 taken edges drawn as thick green lines (about 10,000 pixels of
    # exactly that green; arrowheads and counts alone are a few hundred).
    graph = tmp_path / "graph.html"
    svg = transition_svg(dict(report.coverage.edges))
    graph.write_text(f"<!DOCTYPE html><html><body style='margin:0'>{svg}</body></html>")
    drawn = tmp_path / "graph.png"
    _chromium(f"--screenshot={drawn}", "--window-size=1240,470", graph.as_uri())
    _, channels, rows = _pixels(drawn.read_bytes())
    assert _count(rows, channels, TAKEN_GREEN) > 5000, "the taken edges are not drawn"
