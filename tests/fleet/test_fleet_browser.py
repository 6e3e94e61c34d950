"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): filter, sort,
search, open an office page, and check a screenshot of the main view is a real page."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.fleet_seed import serve_fleet

CHROMIUM = os.environ.get("EDGE_TEST_CHROMIUM", "/usr/bin/chromium")
# This machine has no route out; background networking would only make Chromium wait.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: the dashboard test needs Debian's Chromium "
                    "(apt-get install -y chromium; scripts/dev test installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install playwright (do not run "
                    "'playwright install'; the test uses Debian's Chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    with serve_fleet(tmp_path, fillers=20) as (url, _svc):
        ctx = browser.new_context(viewport=VIEWPORT)
        pg = ctx.new_page()
        pg.set_default_timeout(10_000)
        try:
            yield pg, url
        finally:
            ctx.close()


def listed(pg: Any) -> list[str]:
    return [str(x) for x in pg.locator("#offices tbody tr[data-device]").evaluate_all(
        "rows => rows.map(r => r.dataset.device)")]


def test_filter_sort_search_and_open_an_office(page: tuple[Any, str]) -> None:
    pg, url = page
    pg.goto(url + "/")
    assert pg.title() == "Offices — fleet"
    assert len(listed(pg)) == 26
    assert pg.locator("[data-count=offline]").inner_text() == "1"

    # A checkbox applies at once (fleet.js submits the GET form).
    with pg.expect_navigation():
        pg.check("#on4g")
    assert "on4g=1" in pg.url and listed(pg) == ["kec-on-4g"]

    pg.goto(url + "/")
    with pg.expect_navigation():
        pg.select_option("#state", "offline")
    assert listed(pg) == ["kec-offline"]
    assert pg.locator("#offices tbody tr").first.inner_text().count("offline") >= 1

    # Search by region, with the keyboard: "/" focuses the search box.
    pg.goto(url + "/")
    pg.keyboard.press("/")
    assert pg.evaluate("document.activeElement.id") == "q"
    pg.keyboard.type("bali")
    with pg.expect_navigation():
        pg.keyboard.press("Enter")
    assert sorted(listed(pg)) == ["kec-on-4g", "kec-stale"]

    # Sort by backlog: largest first, then again for smallest first.
    pg.goto(url + "/")
    with pg.expect_navigation():
        pg.click("th a[data-sort=backlog_items]")
    assert listed(pg)[:2] == ["kec-on-4g", "kec-late"]
    assert pg.locator("th[aria-sort=descending]").inner_text().startswith("Backlog")
    with pg.expect_navigation():
        pg.click("th a[data-sort=backlog_items]")
    assert pg.locator("th[aria-sort=ascending]").count() == 1
    assert listed(pg)[-2:] == ["kec-late", "kec-on-4g"]

    # Open the office page from its link.
    with pg.expect_navigation():
        pg.click("a[href='/office/kec-on-4g']")
    assert pg.locator("h1").inner_text() == "kec-on-4g — Kecamatan Kuta"
    charts = pg.locator("svg.chart")
    assert charts.count() == 4
    for i in range(4):
        box = charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
    assert pg.locator("svg.chart rect[fill='url(#p-mobile)']").count() > 10
    with pg.expect_navigation():
        pg.click("a[href='/office/kec-on-4g?range=7d']")
    assert pg.locator("strong[aria-current=page]").inner_text() == "7d"


# --- screenshot check: a real page, not pixel-exact ---------------------------------------------

def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Minimal PNG reader (8-bit RGB/RGBA, not interlaced: what Chromium writes) → rows of
    RGB bytes. Enough to check a screenshot without adding an imaging library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        prev = line
        rgb = bytes(line) if channels == 3 else bytes(
            v for j in range(0, stride, 4) for v in line[j:j + 3])
        rows.append(rgb)
    return width, height, rows


def region_stats(rows: list[bytes], box: dict[str, float]) -> tuple[float, int]:
    """(fraction of non-white pixels, number of distinct colours) inside an element's box."""
    x0, y0 = int(box["x"]), int(box["y"])
    x1, y1 = int(box["x"] + box["width"]), int(box["y"] + box["height"])
    inked, colours, total = 0, set(), 0
    for y in range(max(0, y0), min(len(rows), y1), 2):
        row = rows[y]
        for x in range(max(0, x0), min(len(row) // 3, x1), 2):
            px = row[3 * x:3 * x + 3]
            total += 1
            colours.add(px)
            inked += px != b"\xff\xff\xff"
    return inked / max(1, total), len(colours)


def test_screenshot_of_the_main_view_is_a_real_page(page: tuple[Any, str],
                                                   tmp_path: Path) -> None:
    pg, url = page
    pg.goto(url + "/")
    shot = pg.screenshot()
    (tmp_path / "dashboard.png").write_bytes(shot)  # kept for a human to look at on failure
    width, height, rows = decode_png(shot)
    assert (width, height) == (VIEWPORT["width"], VIEWPORT["height"])
    whole, colours = region_stats(rows, {"x": 0, "y": 0, "width": width, "height": height})
    assert 0.05 < whole < 0.9 and colours > 50, (whole, colours)  # not blank, not a solid fill

    boxes = {sel: pg.locator(sel).first.bounding_box()
             for sel in ("h1", "nav .chips", "#filters", "#offices thead",
                         "#offices tbody tr.sev-row-2", "#offices tbody tr.sev-row-0")}
    for sel, box in boxes.items():
        assert box is not None and box["width"] > 100 and box["height"] > 10, sel
        assert box["y"] < height, f"{sel} is below the first screen"
        ink, _ = region_stats(rows, box)
        assert ink > 0.02, f"{sel} looks empty ({ink:.3f} of its pixels drawn)"
    # Layout: heading, summary, filters, then the table, top to bottom.
    ys = [boxes[s]["y"] for s in ("h1", "nav .chips", "#filters", "#offices thead")]
    assert ys == sorted(ys)
    # Critical rows are tinted (a hint on top of the words "act now"), fine rows are not.
    crit, _ = region_stats(rows, boxes["#offices tbody tr.sev-row-2"])
    assert crit > 0.5
