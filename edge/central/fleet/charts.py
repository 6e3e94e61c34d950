"""Inline SVG charts for the office page, drawn on the server (no JS, no CDN, works offline).

Place in the data flow: ``web`` reads history buckets from the store and calls these to put
the backlog, link and disk history in the page. Each chart has a <title>/<desc> and a text
legend, and the link chart distinguishes wired / 4G / none by pattern as well as colour.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from html import escape

from edge.central.fleet.model import Bucket

__all__ = ["line_chart", "link_chart"]

W, H = 720, 180
PAD_L, PAD_R, PAD_T, PAD_B = 64, 12, 14, 26


def _x(t: float, t0: float, t1: float) -> float:
    return PAD_L + (t - t0) / max(1.0, t1 - t0) * (W - PAD_L - PAD_R)


def _time_ticks(t0: float, t1: float) -> list[tuple[float, str]]:
    span = t1 - t0
    step = next(s for s in (3600, 3 * 3600, 6 * 3600, 86400, 2 * 86400, 7 * 86400, 10**9)
                if span / s <= 8)
    first = int(t0 // step + 1) * step
    fmt = "%H:%M" if step < 86400 else "%d %b"
    return [(t, dt.datetime.fromtimestamp(t, dt.UTC).strftime(fmt))
            for t in range(first, int(t1), step)]


def _frame(title: str, desc: str, body: list[str], t0: float, t1: float) -> str:
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>",
             f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" '
             f'height="{H - PAD_T - PAD_B}" class="plot"/>']
    for t, label in _time_ticks(t0, t1):
        x = _x(t, t0, t1)
        parts.append(f'<line x1="{x:.1f}" y1="{PAD_T}" x2="{x:.1f}" y2="{H - PAD_B}" '
                     'class="grid"/>')
        parts.append(f'<text x="{x:.1f}" y="{H - 8}" class="tick" text-anchor="middle">'
                     f"{label}</text>")
    parts += body
    parts.append("</svg>")
    return "".join(parts)


def line_chart(buckets: Sequence[Bucket], get: Callable[[Bucket], int | None], t0: float,
               t1: float, title: str, fmt: Callable[[float], str]) -> str:
    """A step line of one value per bucket; gaps (no telemetry) break the line."""
    pts = [(b.start, v, b.res) for b in buckets if (v := get(b)) is not None]
    top = max((v for _, v, _ in pts), default=0) or 1
    plot_h = H - PAD_T - PAD_B

    def y(v: float) -> float:
        return PAD_T + plot_h - v / top * plot_h

    body = []
    for frac in (0.0, 0.5, 1.0):
        yy = y(top * frac)
        body.append(f'<text x="{PAD_L - 6}" y="{yy + 4:.1f}" class="tick" '
                    f'text-anchor="end">{escape(fmt(top * frac))}</text>')
    path: list[str] = []
    prev_end: float | None = None
    for start, v, res in pts:
        x0, x1 = _x(start, t0, t1), _x(start + res, t0, t1)
        cmd = "L" if prev_end == start else "M"
        path.append(f"{cmd}{x0:.1f},{y(v):.1f} L{x1:.1f},{y(v):.1f}")
        prev_end = start + res
    if path:
        body.append(f'<path d="{" ".join(path)}" class="line"/>')
    else:
        body.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="empty">'
                    "no telemetry in this period</text>")
    latest = fmt(pts[-1][1]) if pts else "none"
    desc = f"{len(pts)} points; maximum {fmt(top) if pts else 'none'}; latest {latest}"
    return _frame(title, desc, body, t0, t1)


def link_chart(buckets: Sequence[Bucket], t0: float, t1: float, title: str) -> str:
    """Per bucket, a bar split by the share of samples on wired / 4G / none."""
    plot_h = H - PAD_T - PAD_B
    # Patterns, not only colours: hatched = 4G, crossed = no uplink, solid = wired.
    body: list[str] = [
        "<defs>"
        '<pattern id="p-mobile" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" class="link-mobile-bg"/>'
        '<line x1="0" y1="0" x2="0" y2="6" class="hatch"/></pattern>'
        '<pattern id="p-none" width="6" height="6" patternUnits="userSpaceOnUse">'
        '<rect width="6" height="6" class="link-none-bg"/>'
        '<path d="M0,0 L6,6 M6,0 L0,6" class="hatch"/></pattern>'
        "</defs>"
    ]
    totals = {"wired": 0, "mobile": 0, "none": 0}
    for b in buckets:
        if not b.samples:
            continue
        x0, x1 = _x(b.start, t0, t1), _x(b.start + b.res, t0, t1)
        y = float(PAD_T + plot_h)
        for cls, n in (("wired", b.wired), ("mobile", b.mobile), ("none", b.no_uplink)):
            totals[cls] += n
            if n:
                h = n / b.samples * plot_h
                y -= h
                body.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(0.6, x1 - x0):.1f}" '
                            f'height="{h:.1f}" class="link-{cls}"'
                            + (f' fill="url(#p-{cls})"' if cls != "wired" else "") + "/>")
    n = sum(totals.values()) or 1
    desc = (f"share of reports: wired {totals['wired'] / n:.0%}, 4G {totals['mobile'] / n:.0%}, "
            f"no uplink {totals['none'] / n:.0%}; gaps mean no telemetry")
    return _frame(title, desc, body, t0, t1)
