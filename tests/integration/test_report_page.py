"""The HTML report as a person sees it: rendered by headless Chromium (Debian's ``chromium``)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from suture.models import Loop, LoopResult, Outcome, Timeline
from suture.report import render_html, summarize

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def runs() -> list[LoopResult]:
    made = []
    for day in range(7):
        for number, outcome in enumerate(
            [Outcome.RESOLVED, Outcome.RESOLVED, Outcome.ESCALATED][: 1 + day % 3]
        ):
            closed = NOW - timedelta(days=day, hours=number + 1)
            made.append(
                LoopResult(
                    workflow_id=f"reliability-{day}-{number}",
                    loop=Loop.RELIABILITY if number != 1 else Loop.SECURITY,
                    subject="shop/checkout",
                    outcome=outcome,
                    reason="fixed" if outcome == Outcome.RESOLVED else "stayed high",
                    timeline=Timeline(
                        detected=closed - timedelta(minutes=5 + day),
                        verified=closed - timedelta(seconds=10),
                        closed=closed,
                    ),
                )
            )
    return made


def chromium(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1600",
            "--virtual-time-budget=5000",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def distinct_colours(png: bytes) -> int:
    """How many different pixels a PNG screenshot has (8-bit RGB/RGBA, not interlaced)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, data, header = 8, b"", b""
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        chunk = png[offset + 8 : offset + 8 + length]
        header = chunk if kind == b"IHDR" else header
        data += chunk if kind == b"IDAT" else b""
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(data), width * channels
    previous, seen = bytearray(stride), set()
    for row in range(height):
        kind, line = (
            raw[row * (stride + 1)],
            bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + best) & 0xFF
        seen.update(bytes(line[i : i + 3]) for i in range(0, stride, channels * 7))
        previous = line
    return len(seen)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_the_html_report_renders_its_charts_in_chromium(tmp_path: Path) -> None:
    report = summarize(runs(), NOW - timedelta(days=7), NOW)
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")

    dom = chromium(page, tmp_path, "--dump-dom").stdout
    assert 'class="main-svg"' in dom, "plotly drew its SVG"
    assert dom.count('class="trace scatter') >= 4, "closure rate and MTTR for two loops"
    assert "closure rate" in dom and "MTTR" in dom
    assert "reliability-0-0" in dom

    shot = tmp_path / "report.png"
    chromium(page, tmp_path, f"--screenshot={shot}")
    assert distinct_colours(shot.read_bytes()) > 20, "the page is not blank"
