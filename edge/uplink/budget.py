"""4G data budget: bytes over the metered link per billing period, and what may still go.

The uplink daemon samples the metered interface's kernel counters
(``/sys/class/net/IF/statistics/{rx,tx}_bytes``) every few seconds, keeps the period's total
here, and publishes ``metered_policy`` in uplink.json. The forwarder obeys it while the active
link is metered:

    all             below the soft cap: everything goes over 4G
    priority_only   soft cap reached: only small or priority recordings; bulk waits for wired
    telemetry_only  hard cap reached: only telemetry and status

Counters restart when the modem re-enumerates (new ifindex), when ppp0 is re-created and at
every boot; each case is detected (ifindex, a counter going down, ``boot_id``) and the new
counter is counted from zero.

Persisting sparingly without losing count: the file holds the exact total at the time of the
write *and* a ``committed`` total that runs ``persist_every`` bytes ahead of it. The daemon
writes again only when usage reaches ``committed`` (so 10 GB a month is ~2,500 small writes).
After a clean stop or a restart in the same boot the total is exact (counters continue);
after a power cut the total restarts from ``committed``: it over-counts by at most
``persist_every`` and under-counts only what went by faster than one sample interval past
the reserve. For a hard cap, over-counting is the safe side.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

from edge.bootid import BOOT_ID_PATH, read_boot_id
from edge.durable import atomic_write_bytes
from edge.uplink.config import BudgetConfig

__all__ = [
    "METERED_POLICIES",
    "POLICY_ALL",
    "POLICY_PRIORITY_ONLY",
    "POLICY_TELEMETRY_ONLY",
    "BudgetMeter",
    "BudgetRecord",
    "BudgetStore",
    "Counters",
    "current_boot_id",
    "metered_policy",
    "period_bounds",
    "read_counters",
]

log = logging.getLogger("edge.uplink.budget")

POLICY_ALL: Final = "all"
POLICY_PRIORITY_ONLY: Final = "priority_only"
POLICY_TELEMETRY_ONLY: Final = "telemetry_only"
METERED_POLICIES: Final = (POLICY_ALL, POLICY_PRIORITY_ONLY, POLICY_TELEMETRY_ONLY)

SYS_CLASS_NET = Path("/sys/class/net")


def _start_in_month(year: int, month: int, start_day: int) -> date:
    # A period starting on the 31st starts on the last day of shorter months.
    return date(year, month, min(start_day, calendar.monthrange(year, month)[1]))


def _add_month(year: int, month: int, n: int) -> tuple[int, int]:
    m = year * 12 + (month - 1) + n
    return m // 12, m % 12 + 1


def period_bounds(today: date, start_day: int) -> tuple[date, date]:
    """The billing period holding ``today``: [start, next start)."""
    start = _start_in_month(today.year, today.month, start_day)
    if today < start:
        y, m = _add_month(today.year, today.month, -1)
        start = _start_in_month(y, m, start_day)
    y, m = _add_month(start.year, start.month, 1)
    return start, _start_in_month(y, m, start_day)


def metered_policy(used: int, cfg: BudgetConfig) -> str:
    if used >= cfg.hard_cap_bytes:
        return POLICY_TELEMETRY_ONLY
    if used >= cfg.soft_cap_bytes:
        return POLICY_PRIORITY_ONLY
    return POLICY_ALL


@dataclass(frozen=True)
class Counters:
    ifindex: int
    rx: int
    tx: int

    @property
    def total(self) -> int:
        return self.rx + self.tx


def read_counters(ifname: str, root: Path = SYS_CLASS_NET) -> Counters | None:
    """The interface's byte counters, or None while it does not exist (modem unplugged)."""
    base = root / ifname
    try:
        ifindex = int((base / "ifindex").read_text())
        rx = int((base / "statistics" / "rx_bytes").read_text())
        tx = int((base / "statistics" / "tx_bytes").read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return Counters(ifindex, rx, tx)


def current_boot_id(path: Path = BOOT_ID_PATH) -> str:
    return read_boot_id(path)


@dataclass
class BudgetRecord:
    period_start: date
    used: int                 # exact total when written
    committed: int            # >= used: what a restart after a power cut assumes
    boot_id: str
    counters: dict[str, Counters] = field(default_factory=dict)

    def to_json(self) -> bytes:
        doc = {
            "version": 1,
            "period_start": self.period_start.isoformat(),
            "used_bytes": self.used,
            "committed_bytes": self.committed,
            "boot_id": self.boot_id,
            "counters": {k: {"ifindex": c.ifindex, "rx": c.rx, "tx": c.tx}
                         for k, c in sorted(self.counters.items())},
        }
        return (json.dumps(doc, indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> BudgetRecord:
        doc: dict[str, Any] = json.loads(data)
        if doc.get("version") != 1:
            raise ValueError(f"unknown version {doc.get('version')!r}")
        counters = {k: Counters(int(v["ifindex"]), int(v["rx"]), int(v["tx"]))
                    for k, v in doc.get("counters", {}).items()}
        used = int(doc["used_bytes"])
        return cls(period_start=date.fromisoformat(doc["period_start"]), used=used,
                   committed=max(used, int(doc["committed_bytes"])),
                   boot_id=str(doc.get("boot_id", "")), counters=counters)


class BudgetStore:
    """The budget file on the SD card: whole-file durable replace, read back at start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writes = 0

    def load(self) -> BudgetRecord | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return BudgetRecord.from_json(data)
        except (ValueError, KeyError, TypeError) as e:
            # Written by temp+fsync+rename, so this means outside damage. Keep it for a
            # technician and start the period again rather than refuse to run.
            aside = self.path.with_name(self.path.name + ".corrupt")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.error("uplink budget file %s is damaged (%s); moved to %s, counting from 0",
                      self.path, e, aside)
            return None

    def save(self, record: BudgetRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, record.to_json(), mode=0o644)
        self.writes += 1


class BudgetMeter:
    """Usage of the metered interfaces in this billing period. Pure: the caller reads the
    counters and the date, and writes the record when ``observe`` asks for it."""

    def __init__(self, cfg: BudgetConfig, interfaces: list[str], saved: BudgetRecord | None,
                 boot_id: str, today: date, counters: dict[str, Counters | None]) -> None:
        self.cfg = cfg
        self.interfaces = list(interfaces)
        self.boot_id = boot_id
        self.period_start, self.period_end = period_bounds(today, cfg.period_start_day)
        self._last: dict[str, Counters] = {k: c for k, c in counters.items() if c is not None}
        self.used = 0
        self.committed = 0
        if saved is not None and today < self._end_of(saved.period_start):
            # Same period (or the clock went back before its start: keep counting it).
            self.period_start = saved.period_start
            self.period_end = self._end_of(saved.period_start)
            exact = saved.boot_id == boot_id and all(
                name in saved.counters and c is not None
                and c.ifindex == saved.counters[name].ifindex
                and c.rx >= saved.counters[name].rx and c.tx >= saved.counters[name].tx
                for name, c in counters.items() if c is not None)
            if exact:
                # Same boot, same interfaces: the counters cover the time we were not running.
                self.used = saved.used + sum(
                    c.total - saved.counters[name].total
                    for name, c in counters.items() if c is not None)
            else:
                # Rebooted or the interface was re-created: what went by between the last
                # write and the crash is covered by the committed reserve; the counters now
                # count from their own start.
                self.used = saved.committed + sum(c.total for c in self._last.values())
        self.policy = metered_policy(self.used, cfg)

    def _end_of(self, start: date) -> date:
        return period_bounds(start, self.cfg.period_start_day)[1]

    def observe(self, counters: dict[str, Counters | None], today: date) -> bool:
        """Add a counter sample; True when the record should be written now."""
        delta = 0
        for name, cur in counters.items():
            if cur is None:
                continue  # interface gone: its bytes are counted when it comes back
            prev = self._last.get(name)
            if (prev is None or prev.ifindex != cur.ifindex or cur.rx < prev.rx
                    or cur.tx < prev.tx):
                delta += cur.total  # a new counter: everything on it is new
            else:
                delta += cur.total - prev.total
            self._last[name] = cur
        must_write = False
        if today >= self.period_end:
            self.period_start, self.period_end = period_bounds(today, self.cfg.period_start_day)
            self.used = 0
            self.committed = 0
            must_write = True
        self.used += delta
        self.policy = metered_policy(self.used, self.cfg)
        return must_write or self.used >= self.committed

    def record(self, *, exact: bool = False) -> BudgetRecord:
        """The record to write; remembers the new committed total."""
        self.committed = self.used if exact else self.used + self.cfg.persist_every_bytes
        return BudgetRecord(period_start=self.period_start, used=self.used,
                            committed=self.committed, boot_id=self.boot_id,
                            counters=dict(self._last))

    def status(self) -> dict[str, Any]:
        return {
            "interfaces": self.interfaces,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "used_bytes": self.used,
            "soft_cap_bytes": self.cfg.soft_cap_bytes,
            "hard_cap_bytes": self.cfg.hard_cap_bytes,
            "small_recording_bytes": self.cfg.small_recording_bytes,
            "policy": self.policy,
        }
