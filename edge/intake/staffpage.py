"""The staff page: one glance answers "aman untuk terus merekam?" (safe to keep recording?).

Served by the intake at ``/`` on the office LAN, in Bahasa Indonesia by default and English
with ``?lang=en``. It shows counts and times only (no personal data), so it needs no token.
Readable on a phone, refreshes itself, and never relies on colour alone: every state has a
word and a symbol.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from edge.spool import Spool, SpoolSummary

__all__ = ["StaffView", "staff_routes", "staff_view"]

TEXT: dict[str, dict[str, str]] = {
    "id": {
        "title": "Status Perekaman",
        "question": "Aman untuk terus merekam?",
        "yes": "YA — aman, lanjutkan merekam",
        "careful": "YA, tetapi penyimpanan hampir penuh — beri tahu teknisi",
        "no": "TIDAK — penyimpanan penuh. Simpan rekaman di komputer perekam dan hubungi teknisi",
        "offline_note": "Jaringan ke pusat sedang putus. Rekaman tetap tersimpan aman di alat "
                        "ini dan dikirim otomatis saat jaringan kembali.",
        "on4g_note": "Jaringan kabel putus; alat memakai jaringan 4G cadangan.",
        "link": "Jaringan", "wired": "Kabel (LAN)", "4g": "4G cadangan",
        "offline": "Putus", "unknown": "Belum diketahui",
        "waiting": "Rekaman menunggu dikirim", "oldest": "Yang paling lama menunggu",
        "last": "Pengiriman terakhir ke pusat", "free": "Ruang kosong",
        "never": "belum ada", "none": "tidak ada", "ago": "yang lalu",
        "s": "detik", "m": "menit", "h": "jam", "d": "hari",
        "switch": "English", "updated": "Diperbarui otomatis setiap 10 detik",
        "device": "Alat",
    },
    "en": {
        "title": "Recording status",
        "question": "Safe to keep recording?",
        "yes": "YES — safe, keep recording",
        "careful": "YES, but storage is nearly full — tell the technician",
        "no": "NO — storage is full. Keep recordings on the workstation and call the technician",
        "offline_note": "The link to the central site is down. Recordings stay safe on this "
                        "appliance and are sent automatically when the link returns.",
        "on4g_note": "The wired line is down; the appliance is using the backup 4G link.",
        "link": "Network", "wired": "Wired (LAN)", "4g": "4G backup",
        "offline": "Down", "unknown": "Not known yet",
        "waiting": "Recordings waiting to be sent", "oldest": "Oldest waiting",
        "last": "Last delivery to the central site", "free": "Free space",
        "never": "none yet", "none": "none", "ago": "ago",
        "s": "s", "m": "min", "h": "h", "d": "days",
        "switch": "Bahasa Indonesia", "updated": "Refreshes itself every 10 seconds",
        "device": "Appliance",
    },
}


@dataclass(frozen=True)
class StaffView:
    verdict: str            # "yes" | "careful" | "no"
    link: str               # "wired" | "4g" | "offline" | "unknown"
    waiting_count: int
    oldest_waiting_age_s: float | None
    last_delivery_age_s: float | None
    free_bytes: int
    device_id: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_uplink(run_dir: Path) -> str:
    try:
        doc = json.loads((run_dir / "uplink.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    active = doc.get("active") if isinstance(doc, dict) else None
    if active in ("wired", "4g"):
        return str(active)
    return "offline" if isinstance(doc, dict) and "active" in doc else "unknown"


def staff_view(summary: SpoolSummary, link: str, device_id: str) -> StaffView:
    verdict = "no" if summary.refusing else "careful" if summary.nearly_full else "yes"
    last = None if summary.last_receipt_at is None else max(0.0, time.time() -
                                                            summary.last_receipt_at)
    return StaffView(verdict, link, summary.waiting_count, summary.oldest_waiting_age_s, last,
                     summary.free_bytes, device_id)


def _age(t: dict[str, str], s: float | None, empty: str) -> str:
    if s is None:
        return empty
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f} {t[unit]} {t['ago']}"
    return f"{s:.0f} {t['s']} {t['ago']}"


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e3:.0f} kB"


SYMBOL = {"yes": "✔", "careful": "⚠", "no": "✖"}
LINK_SYMBOL = {"wired": "▬", "4g": "📶", "offline": "✖", "unknown": "?"}


def render(view: StaffView, lang: str) -> str:
    t = TEXT[lang]
    e = html.escape
    other = "en" if lang == "id" else "id"
    note = ""
    if view.link == "offline":
        note = f'<p class="note">ℹ {e(t["offline_note"])}</p>'
    elif view.link == "4g":
        note = f'<p class="note">ℹ {e(t["on4g_note"])}</p>'
    rows = [
        (t["link"], f'{LINK_SYMBOL[view.link]} {t[view.link]}'),
        (t["waiting"], str(view.waiting_count)),
        (t["oldest"], _age(t, view.oldest_waiting_age_s, t["none"])),
        (t["last"], _age(t, view.last_delivery_age_s, t["never"])),
        (t["free"], _bytes(view.free_bytes)),
    ]
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="10">
<title>{e(t["title"])} — {e(view.device_id)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:0;padding:1rem;max-width:40rem;font-size:1.15rem}}
.verdict{{border:4px solid #000;border-radius:.5rem;padding:1rem;margin:1rem 0;font-size:1.5rem;
font-weight:bold}}
.verdict.yes{{background:#e6f4ea;border-style:solid}}
.verdict.careful{{background:#fff4d6;border-style:dashed}}
.verdict.no{{background:#fde2e1;border-style:double;border-width:8px}}
.sym{{font-size:2.2rem;margin-right:.5rem}}
table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;padding:.4rem;
border-bottom:1px solid #999}}th{{font-weight:normal}}td{{font-weight:bold}}
.note{{background:#eef;padding:.6rem;border-left:6px solid #000}}
small{{color:#333}}
</style></head><body>
<p><a href="?lang={other}">{e(t["switch"])}</a></p>
<h1>{e(t["question"])}</h1>
<div class="verdict {view.verdict}" role="status" data-verdict="{view.verdict}">
<span class="sym" aria-hidden="true">{SYMBOL[view.verdict]}</span>{e(t[view.verdict])}</div>
{note}
<table>{table}</table>
<p><small>{e(t["device"])}: {e(view.device_id)} · {e(t["updated"])}</small></p>
</body></html>"""


def staff_routes(spool: Spool, run_dir: Path, device_id: str,
                 link_reader: Callable[[Path], str] = read_uplink) -> list[BaseRoute]:
    def current() -> StaffView:
        return staff_view(spool.summary(), link_reader(run_dir), device_id)

    async def page(request: Request) -> Response:
        lang = request.query_params.get("lang", "id")
        lang = lang if lang in TEXT else "id"
        view = await to_thread.run_sync(current)
        return HTMLResponse(render(view, lang), headers={"Cache-Control": "no-store"})

    async def api(request: Request) -> Response:
        view = await to_thread.run_sync(current)
        return JSONResponse(view.to_dict())

    return [Route("/", page, methods=["GET"]), Route("/staff.json", api, methods=["GET"])]
