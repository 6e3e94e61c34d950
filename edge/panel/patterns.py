"""What each status light does in each state: a pure table, no I/O.

Place in the data flow: ``state.py`` turns a snapshot of the appliance into one state per
light; this table turns each state into a blink pattern and a sentence; ``driver.py`` plays
the patterns on GPIO (or prints them in a terminal); ``legend.py`` prints the staff legend
from the same table.

Theory of operation
-------------------
Three single-colour lights, labelled NET, DATA and SYS on the case. Some office staff are
colour-blind, so colour carries nothing: a state is told apart only by *when* a light is on.
A pattern is a timing sequence of (lit?, seconds) steps that repeats; one step means steady.

    NET   the link to the central site     steady = wired, slow = 4G, double = offline
    DATA  where recordings are             steady = stored safely, slow = a lot is waiting,
                                           double = nearly full, fast = refusing (stop!)
    SYS   the appliance's own programs     short pulse = all running, slow = starting,
                                           double = not set up yet, fast = a program is down

The patterns keep one meaning across lights, so a clerk who learnt one light reads the others:

    steady on       all good
    short pulse     all good, and the panel itself is alive (SYS only)
    slow blink      working, but not as usual (or: wait, starting)
    double flash    keep working; a technician is needed soon
    fast blink      act now (DATA: stop recording; SYS: call the technician)
    off             nothing known to show

SYS is never steady on purpose: if the panel program dies, its lights freeze or go dark,
and a SYS light that is not pulsing is itself the alarm "the panel is not running".

Locate (a technician's request) overrides everything for a limited time: the three lights
run NET → DATA → SYS in turn, a sight that no other state produces. Those three patterns are
phase-locked: the driver starts them from one shared instant so the run stays in order.

The fastest pattern flashes 2.5 times a second, below the 3 flashes per second that
photosensitivity guidelines warn about. All steps are whole multiples of 0.1 s so a terminal
strip of 0.1 s cells shows every pattern exactly.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ALL_PATTERNS",
    "DATA_TABLE",
    "DOUBLE_FLASH",
    "FAST_BLINK",
    "LOCATE_DATA",
    "LOCATE_NET",
    "LOCATE_PATTERNS",
    "LOCATE_SYS",
    "NET_TABLE",
    "OFF",
    "ON",
    "SHORT_PULSE",
    "SLOW_BLINK",
    "SYS_TABLE",
    "DataState",
    "Led",
    "LedState",
    "NetState",
    "PanelView",
    "Pattern",
    "Shown",
    "SysState",
    "shown",
]


class Led(enum.Enum):
    """The three lights, in their order on the case (left to right)."""

    NET = "NET"
    DATA = "DATA"
    SYS = "SYS"


@dataclass(frozen=True)
class Pattern:
    """A repeating timing sequence of (lit?, seconds) steps; one step means steady."""

    key: str
    steps: tuple[tuple[bool, float], ...]
    name_en: str
    name_id: str
    how_en: str
    how_id: str
    phase_locked: bool = False

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"pattern {self.key}: no steps")
        for i, (level, seconds) in enumerate(self.steps):
            if not seconds > 0 or not math.isfinite(seconds):
                raise ValueError(f"pattern {self.key}: step {i} lasts {seconds!r} s")
            if i and level == self.steps[i - 1][0]:
                raise ValueError(f"pattern {self.key}: steps {i - 1} and {i} are both {level}")

    @property
    def steady(self) -> bool | None:
        """True/False for a steady light, None for one that changes."""
        return self.steps[0][0] if len(self.steps) == 1 else None

    @property
    def period_s(self) -> float:
        return sum(seconds for _, seconds in self.steps)

    def level_at(self, t: float) -> bool:
        """Lit or not ``t`` seconds after the pattern started."""
        t = t % self.period_s
        for level, seconds in self.steps:
            if t < seconds:
                return level
            t -= seconds
        return self.steps[-1][0]

    def strip(self, cell_s: float = 0.1, window_s: float = 2.0) -> str:
        """The first ``window_s`` seconds as ▮ (lit) and ▯ (dark), one cell per ``cell_s``."""
        cells = round(window_s / cell_s)
        return "".join("▮" if self.level_at((i + 0.5) * cell_s) else "▯" for i in range(cells))

    def name(self, lang: str = "en") -> str:
        return self.name_id if lang == "id" else self.name_en

    def how(self, lang: str = "en") -> str:
        return self.how_id if lang == "id" else self.how_en


OFF = Pattern("off", ((False, 1.0),), "off", "mati", "dark", "tidak menyala")
ON = Pattern("on", ((True, 1.0),), "steady on", "menyala terus",
             "lit, without flicker", "menyala tanpa berkedip")
SLOW_BLINK = Pattern("slow-blink", ((True, 1.0), (False, 1.0)), "slow blink", "berkedip pelan",
                     "on 1 s, off 1 s", "1 detik menyala, 1 detik mati")
FAST_BLINK = Pattern("fast-blink", ((True, 0.2), (False, 0.2)), "fast blink", "berkedip cepat",
                     "on and off quickly, 2-3 times a second",
                     "nyala-mati dengan cepat, 2-3 kali per detik")
DOUBLE_FLASH = Pattern("double-flash", ((True, 0.2), (False, 0.2), (True, 0.2), (False, 1.4)),
                       "double flash", "berkedip dua kali",
                       "two quick flashes, then a pause", "dua kedipan cepat, lalu jeda")
SHORT_PULSE = Pattern("short-pulse", ((True, 0.1), (False, 1.9)), "short pulse", "berkedip singkat",
                      "one brief flash every 2 s", "satu kedipan singkat setiap 2 detik")

_RUN_EN = "the three lights run in turn: NET, DATA, SYS"
_RUN_ID = "ketiga lampu menyala bergantian: NET, DATA, SYS"
LOCATE_NET = Pattern("locate-net", ((True, 0.3), (False, 0.6)), "running light",
                     "lampu berjalan", _RUN_EN, _RUN_ID, phase_locked=True)
LOCATE_DATA = Pattern("locate-data", ((False, 0.3), (True, 0.3), (False, 0.3)), "running light",
                      "lampu berjalan", _RUN_EN, _RUN_ID, phase_locked=True)
LOCATE_SYS = Pattern("locate-sys", ((False, 0.6), (True, 0.3)), "running light",
                     "lampu berjalan", _RUN_EN, _RUN_ID, phase_locked=True)

ALL_PATTERNS: tuple[Pattern, ...] = (ON, OFF, SLOW_BLINK, FAST_BLINK, DOUBLE_FLASH, SHORT_PULSE)
LOCATE_PATTERNS: Mapping[Led, Pattern] = {
    Led.NET: LOCATE_NET, Led.DATA: LOCATE_DATA, Led.SYS: LOCATE_SYS,
}


class NetState(enum.Enum):
    """NET: how the appliance reaches the central site."""

    UNKNOWN = "net-unknown"
    WIRED = "online-wired"
    CELLULAR = "online-4g"
    OFFLINE = "offline"
    LOCATE = "locate"


class DataState(enum.Enum):
    """DATA: are recordings being taken in and kept safely? Ordered by severity."""

    UNKNOWN = "data-unknown"
    SAFE = "stored-safely"
    BACKLOG = "backlog"
    NEARLY_FULL = "nearly-full"
    REFUSING = "refusing"
    LOCATE = "locate"


class SysState(enum.Enum):
    """SYS: the appliance's own programs and set-up."""

    STARTING = "starting"
    OK = "running"
    FAULT = "program-down"
    NOT_PROVISIONED = "not-provisioned"
    LOCATE = "locate"


LedState = NetState | DataState | SysState


@dataclass(frozen=True)
class Shown:
    """A light's pattern in one state, and what it means, in English and Bahasa Indonesia."""

    pattern: Pattern
    meaning_en: str
    meaning_id: str

    def meaning(self, lang: str = "en") -> str:
        return self.meaning_id if lang == "id" else self.meaning_en


NET_TABLE: Mapping[NetState, Shown] = {
    NetState.WIRED: Shown(ON, "online on wired", "terhubung lewat kabel"),
    NetState.CELLULAR: Shown(SLOW_BLINK, "online on 4G", "terhubung lewat 4G (cadangan)"),
    NetState.OFFLINE: Shown(DOUBLE_FLASH, "offline", "tidak terhubung ke pusat"),
    NetState.UNKNOWN: Shown(OFF, "link state unknown", "keadaan jaringan belum diketahui"),
    NetState.LOCATE: Shown(LOCATE_NET, "locate", "teknisi mencari alat ini"),
}

DATA_TABLE: Mapping[DataState, Shown] = {
    DataState.SAFE: Shown(ON, "recordings stored safely", "rekaman tersimpan aman"),
    DataState.BACKLOG: Shown(SLOW_BLINK, "many or old recordings waiting to be sent",
                             "banyak rekaman atau rekaman lama menunggu dikirim"),
    DataState.NEARLY_FULL: Shown(DOUBLE_FLASH, "storage nearly full",
                                 "ruang simpan hampir penuh"),
    DataState.REFUSING: Shown(FAST_BLINK, "not accepting recordings",
                              "tidak dapat menerima rekaman"),
    DataState.UNKNOWN: Shown(OFF, "storage state unknown", "keadaan penyimpanan belum diketahui"),
    DataState.LOCATE: Shown(LOCATE_DATA, "locate", "teknisi mencari alat ini"),
}

SYS_TABLE: Mapping[SysState, Shown] = {
    SysState.OK: Shown(SHORT_PULSE, "all programs running", "semua program berjalan"),
    SysState.STARTING: Shown(SLOW_BLINK, "starting up", "sedang menyala dan bersiap"),
    SysState.NOT_PROVISIONED: Shown(DOUBLE_FLASH, "not set up by a technician yet",
                                    "belum disiapkan oleh teknisi"),
    SysState.FAULT: Shown(FAST_BLINK, "a program is down or stuck",
                          "ada program yang berhenti atau macet"),
    SysState.LOCATE: Shown(LOCATE_SYS, "locate", "teknisi mencari alat ini"),
}


def shown(state: LedState) -> Shown:
    """The pattern and meaning for one light's state."""
    if isinstance(state, NetState):
        return NET_TABLE[state]
    if isinstance(state, DataState):
        return DATA_TABLE[state]
    return SYS_TABLE[state]


@dataclass(frozen=True)
class PanelView:
    """One state per light: everything the panel shows at one moment."""

    net: NetState
    data: DataState
    sys: SysState

    def states(self) -> dict[Led, LedState]:
        return {Led.NET: self.net, Led.DATA: self.data, Led.SYS: self.sys}

    def shown(self) -> dict[Led, Shown]:
        return {led: shown(state) for led, state in self.states().items()}

    def patterns(self) -> dict[Led, Pattern]:
        return {led: s.pattern for led, s in self.shown().items()}
