"""The printable legend for office staff (docs/led-legend.md), made from the pattern table.

Place in the data flow: none at run time. The legend that hangs next to the appliance is
printed from the same table the LEDs are driven from, so the two cannot drift apart (a test
compares docs/led-legend.md with ``render_markdown()``). Bahasa Indonesia first, English
second; no colours anywhere, only how a light behaves.

    python -m edge.panel.legend > docs/led-legend.md
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.panel.patterns import (
    ALL_PATTERNS,
    LOCATE_PATTERNS,
    DataState,
    Led,
    LedState,
    NetState,
    SysState,
    shown,
)

__all__ = ["SITUATIONS", "Situation", "render_markdown"]


@dataclass(frozen=True)
class Situation:
    """One row of the legend: a state of the panel as staff see it.

    ``net``/``data``/``sys``: the states that tell this situation apart (None: that light
    does not matter here). ``lights_*`` replaces the generated description for rows that are
    not a state of the panel (no power, a frozen panel).
    """

    key: str
    net: NetState | None
    data: DataState | None
    sys: SysState | None
    record_id: str
    meaning_id: str
    action_id: str
    record_en: str
    meaning_en: str
    action_en: str
    lights_id: str | None = None
    lights_en: str | None = None
    extra_id: str = ""
    extra_en: str = ""

    def states(self) -> dict[Led, LedState]:
        out: dict[Led, LedState] = {}
        for led, state in ((Led.NET, self.net), (Led.DATA, self.data), (Led.SYS, self.sys)):
            if state is not None:
                out[led] = state
        return out


SITUATIONS: tuple[Situation, ...] = (
    Situation(
        "normal", NetState.WIRED, DataState.SAFE, SysState.OK,
        "Ya",
        "Semua normal. Alat terhubung ke pusat lewat kabel jaringan.",
        "Aman, lanjutkan merekam.",
        "Yes",
        "All normal. The box reaches the central site over the network cable.",
        "Safe: keep recording.",
    ),
    Situation(
        "online-4g", NetState.CELLULAR, DataState.SAFE, None,
        "Ya",
        "Jaringan kabel kantor tidak bisa dipakai; alat mengirim data lewat 4G (cadangan).",
        "Aman, lanjutkan merekam. Jika sampai besok masih begini, beri tahu teknisi.",
        "Yes",
        "The office network cable cannot be used; the box sends over 4G (the backup).",
        "Safe: keep recording. If it is still like this tomorrow, tell the technician.",
    ),
    Situation(
        "offline", NetState.OFFLINE, DataState.SAFE, None,
        "Ya",
        "Alat tidak terhubung ke pusat. Rekaman tetap tersimpan aman di alat dan akan "
        "dikirim otomatis setelah koneksi kembali.",
        "Aman, lanjutkan merekam. Biarkan alat tetap menyala. Jika sampai besok masih "
        "begini, hubungi teknisi.",
        "Yes",
        "No connection to the central site. Recordings are kept safely in the box and are "
        "sent by themselves when the connection is back.",
        "Safe: keep recording. Leave the box switched on. If it is still like this "
        "tomorrow, call the technician.",
    ),
    Situation(
        "backlog", None, DataState.BACKLOG, None,
        "Ya",
        "Banyak rekaman belum terkirim ke pusat, atau ada rekaman yang sudah berjam-jam "
        "menunggu. Semuanya tetap tersimpan aman.",
        "Aman, lanjutkan merekam. Biarkan alat tetap menyala. Jika sampai besok masih "
        "begini, hubungi teknisi.",
        "Yes",
        "Many recordings have not reached the central site yet, or one has waited for "
        "hours. All of them are kept safely.",
        "Safe: keep recording. Leave the box switched on. If it is still like this "
        "tomorrow, call the technician.",
    ),
    Situation(
        "nearly-full", None, DataState.NEARLY_FULL, None,
        "Ya, hari ini",
        "Ruang penyimpanan alat hampir penuh.",
        "Boleh lanjut merekam hari ini. Hubungi teknisi hari ini juga.",
        "Yes, today",
        "The box's storage is nearly full.",
        "You may keep recording today. Call the technician today.",
    ),
    Situation(
        "refusing", None, DataState.REFUSING, None,
        "TIDAK",
        "Alat tidak bisa menerima rekaman baru (penyimpanan penuh, atau program penerima "
        "berhenti). Rekaman yang sudah diterima alat tetap aman.",
        "Berhenti merekam. Hubungi teknisi sekarang.",
        "NO",
        "The box cannot take new recordings (storage full, or the receiving program "
        "stopped). Recordings it already took are safe.",
        "Stop recording. Call the technician now.",
    ),
    Situation(
        "program-down", None, None, SysState.FAULT,
        "Lihat DATA",
        "Ada program di dalam alat yang berhenti atau macet.",
        "Hubungi teknisi. Selama DATA menyala terus atau berkedip pelan, boleh lanjut "
        "merekam. Jika DATA berkedip cepat atau mati, berhenti merekam.",
        "See DATA",
        "A program inside the box has stopped or is stuck.",
        "Call the technician. While DATA is steady on or blinks slowly you may keep "
        "recording. If DATA blinks fast or is dark, stop recording.",
    ),
    Situation(
        "starting", None, None, SysState.STARTING,
        "Tunggu",
        "Alat baru dinyalakan dan sedang bersiap (biasanya kurang dari 3 menit).",
        "Tunggu sampai SYS berkedip singkat dan DATA menyala terus, lalu mulai merekam. "
        "Jika lebih dari 10 menit, hubungi teknisi.",
        "Wait",
        "The box has just been switched on and is getting ready (usually under 3 minutes).",
        "Wait until SYS gives short pulses and DATA is steady on, then start recording. "
        "If it takes over 10 minutes, call the technician.",
        extra_id="NET dan DATA bisa mati sebentar",
        extra_en="NET and DATA may be dark for a while",
    ),
    Situation(
        "not-provisioned", None, DataState.UNKNOWN, SysState.NOT_PROVISIONED,
        "TIDAK",
        "Alat belum selesai dipasang oleh teknisi.",
        "Jangan merekam dulu. Hubungi teknisi untuk menyelesaikan pemasangan.",
        "NO",
        "A technician has not finished setting the box up.",
        "Do not record yet. Call the technician to finish the set-up.",
    ),
    Situation(
        "locate", NetState.LOCATE, DataState.LOCATE, SysState.LOCATE,
        "Ya, seperti sebelumnya",
        "Teknisi sedang mencari alat ini dari jauh. Lampu kembali normal dengan sendirinya.",
        "Tidak perlu melakukan apa-apa. Jika teknisi menelepon, katakan bahwa lampu alat "
        "ini sedang berjalan.",
        "Yes, as before",
        "A technician is locating this box from afar. The lights go back to normal by "
        "themselves.",
        "Nothing to do. If the technician phones, say that this box's lights are running.",
        lights_id="Ketiga lampu menyala bergantian: NET, DATA, SYS, berulang-ulang",
        lights_en="The three lights light up in turn: NET, DATA, SYS, over and over",
    ),
    Situation(
        "no-power", None, None, None,
        "TIDAK",
        "Alat tidak mendapat listrik, atau program lampu tidak berjalan.",
        "Jangan merekam dulu. Periksa steker dan kabel listrik alat. Jika alat menyala "
        "tetapi lampu tetap mati lebih dari 5 menit, hubungi teknisi.",
        "NO",
        "The box has no power, or the program that runs the lights is not running.",
        "Do not record yet. Check the box's plug and power cable. If the box is on but the "
        "lights stay dark for over 5 minutes, call the technician.",
        lights_id="Ketiga lampu mati",
        lights_en="All three lights dark",
    ),
    Situation(
        "panel-frozen", None, None, None,
        "TIDAK",
        "Program lampu macet, jadi lampu tidak bisa dipercaya.",
        "Jangan merekam dulu. Hubungi teknisi.",
        "NO",
        "The program that runs the lights is stuck, so the lights cannot be trusted.",
        "Do not record yet. Call the technician.",
        lights_id="SYS menyala terus atau mati terus (tidak berkedip) lebih dari 10 detik",
        lights_en="SYS steady on or steady dark (not blinking) for over 10 seconds",
    ),
)


def _lights(s: Situation, lang: str) -> str:
    custom = s.lights_id if lang == "id" else s.lights_en
    if custom is not None:
        return custom
    parts = [f"**{led.value}** {shown(state).pattern.name(lang)}"
             for led, state in s.states().items()]
    extra = s.extra_id if lang == "id" else s.extra_en
    return " · ".join(parts) + (f" ({extra})" if extra else "")


_TEXT = {
    "id": {
        "title": "Lampu status alat pengirim rekaman e-KTP: cara membaca",
        "intro": (
            "Di alat ada tiga lampu: **NET** (jaringan ke pusat), **DATA** (rekaman) dan "
            "**SYS** (program di dalam alat). Warna lampu tidak penting: yang penting adalah "
            "*cara* lampu menyala.\n\n"
            "**Aturan singkat: jika DATA menyala terus dan SYS berkedip, aman untuk terus "
            "merekam.**"
        ),
        "key": "Cara lampu menyala",
        "key_cols": ("Nama", "Seperti apa", "Gambar (2 detik)"),
        "rows": "Arti lampu",
        "cols": ("Lampu", "Boleh terus merekam?", "Artinya", "Yang perlu dilakukan"),
        "note": ("Lampu yang tidak disebut boleh menyala seperti apa saja. Jika ragu, "
                 "hubungi teknisi dan sebutkan apa yang dilakukan setiap lampu."),
    },
    "en": {
        "title": "Status lights on the e-KTP upload box: how to read them",
        "intro": (
            "The box has three lights: **NET** (network to the central site), **DATA** "
            "(recordings) and **SYS** (the programs inside the box). Colour does not "
            "matter: what matters is *how* a light is lit.\n\n"
            "**Short rule: when DATA is steady on and SYS is blinking, it is safe to keep "
            "recording.**"
        ),
        "key": "How a light can behave",
        "key_cols": ("Name", "What it looks like", "Picture (2 seconds)"),
        "rows": "What the lights mean",
        "cols": ("Lights", "Keep recording?", "What it means", "What to do"),
        "note": ("A light that is not named may be doing anything. When in doubt, call the "
                 "technician and say what each light is doing."),
    },
}


def _section(lang: str) -> list[str]:
    t = _TEXT[lang]
    out = [f"## {t['title']}", "", str(t["intro"]), "", f"### {t['key']}", ""]
    kc = t["key_cols"]
    out += [f"| {kc[0]} | {kc[1]} | {kc[2]} |", "|---|---|---|"]
    locate = LOCATE_PATTERNS[Led.NET]
    for p in (*ALL_PATTERNS, locate):
        out.append(f"| {p.name(lang)} | {p.how(lang)} | `{p.strip()}` |")
    c = t["cols"]
    out += ["", f"### {t['rows']}", "", f"| {c[0]} | {c[1]} | {c[2]} | {c[3]} |",
            "|---|---|---|---|"]
    for s in SITUATIONS:
        record = s.record_id if lang == "id" else s.record_en
        meaning = s.meaning_id if lang == "id" else s.meaning_en
        action = s.action_id if lang == "id" else s.action_en
        out.append(f"| {_lights(s, lang)} | **{record}** | {meaning} | {action} |")
    out += ["", str(t["note"]), ""]
    return out


def render_markdown() -> str:
    lines = [
        "<!-- Generated by `python -m edge.panel.legend` from edge/panel/patterns.py and",
        "     edge/panel/legend.py; edit those, not this file. -->",
        "",
        "# Lampu status / Status lights",
        "",
        *_section("id"),
        "---",
        "",
        *_section("en"),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_markdown())
