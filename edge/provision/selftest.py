"""The self-test: a pass/fail checklist that proves the appliance works before the
technician leaves, in Bahasa Indonesia and English.

Place in the data flow: run at the end of ``edge provision`` and by ``edge selftest``. Each
check is a ``Check`` (``edge.provision.checks``) that looks at one real thing (the LEDs,
an uplink, the broker, a test recording with its receipt, the clock, the disk, the power
supply) and returns a ``CheckResult``. A check that cannot run here says why (SKIP), a
check that needs the technician's eyes and got no answer says so (CHECK); nothing passes
that was not shown to work. The checklist is printed and kept on the device:
``state_dir/selftest/<UTC time>.txt`` (the last 20) and ``latest.json``.

Statuses: PASS (LULUS), FAIL (GAGAL), WARN (PERIKSA: works, but look at this), SKIP
(LEWATI: not applicable here). The self-test passes when no check FAILs. The labels are
words, never colours (some staff are colour-blind).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TextIO

from edge.config import Config
from edge.durable import atomic_write_bytes
from edge.errors import EdgeError

__all__ = [
    "FAIL",
    "PASS",
    "SKIP",
    "STATUSES",
    "WARN",
    "Check",
    "CheckResult",
    "SelfTestContext",
    "SelfTestReport",
    "render_checklist",
    "run_selftest",
    "save_report",
]

PASS = "pass"
FAIL = "fail"
WARN = "warn"
SKIP = "skip"
STATUSES = (PASS, FAIL, WARN, SKIP)
LABELS = {PASS: "LULUS   / PASS ", FAIL: "GAGAL   / FAIL ", WARN: "PERIKSA / CHECK",
          SKIP: "LEWATI  / SKIP "}
KEEP_REPORTS = 20


@dataclass(frozen=True)
class CheckResult:
    key: str          # stable: "leds", "uplink.wired", "broker", "recording", ...
    status: str       # one of STATUSES
    title_id: str
    title_en: str
    text_id: str      # what was found, for the technician, in Bahasa Indonesia
    text_en: str      # the same in English
    detail: str = ""  # technical detail (error text, numbers), English
    elapsed_s: float = 0.0


@dataclass
class SelfTestContext:
    """What every check may use. ``root`` maps device paths (a staging root in tests and
    image builds, ``/`` on a device)."""

    cfg: Config
    root: Path = Path("/")
    out: TextIO | None = None
    ask: Callable[[str], bool] | None = None   # None: nobody at the terminal to answer
    timeout_s: float = 10.0
    led_hold_s: float = 1.5
    now: Callable[[], float] = time.time

    def path(self, device_path: Path) -> Path:
        if str(self.root) == "/":
            return device_path
        return self.root / device_path.relative_to("/")

    def say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)


class Check(Protocol):
    key: str
    title_id: str
    title_en: str

    def run(self, ctx: SelfTestContext) -> CheckResult: ...


@dataclass(frozen=True)
class SelfTestReport:
    device_id: str
    office: str
    at: float
    results: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(r.status != FAIL for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    def to_json(self) -> bytes:
        doc = {"version": 1, "device_id": self.device_id, "office": self.office,
               "at": datetime.fromtimestamp(self.at, UTC).isoformat(), "passed": self.passed,
               "checks": [asdict(r) for r in self.results]}
        return json.dumps(doc, indent=1, ensure_ascii=False).encode() + b"\n"


def _guarded(check: Check, ctx: SelfTestContext) -> CheckResult:
    """A check that crashes is a FAIL with the reason, never a crashed self-test."""
    start = time.monotonic()
    try:
        result = check.run(ctx)
    except EdgeError as e:
        result = CheckResult(check.key, FAIL, check.title_id, check.title_en,
                             "Pemeriksaan gagal dijalankan.", "The check could not run.",
                             f"{e.key}: {e.message}")
    except Exception as e:
        result = CheckResult(check.key, FAIL, check.title_id, check.title_en,
                             "Pemeriksaan gagal dijalankan (galat program).",
                             "The check could not run (program error).",
                             f"{type(e).__name__}: {e}")
    if result.elapsed_s == 0.0:
        result = CheckResult(**{**asdict(result),
                                "elapsed_s": round(time.monotonic() - start, 3)})
    return result


def run_selftest(ctx: SelfTestContext, checks: Sequence[Check]) -> SelfTestReport:
    results = []
    for check in checks:
        ctx.say(f"... {check.title_id} / {check.title_en}")
        results.append(_guarded(check, ctx))
    return SelfTestReport(ctx.cfg.device.id, ctx.cfg.device.office, ctx.now(), tuple(results))


def render_checklist(report: SelfTestReport) -> str:
    at = datetime.fromtimestamp(report.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    office = f" ({report.office})" if report.office else ""
    lines = [f"=== Uji mandiri / Self-test: {report.device_id}{office}, {at} ==="]
    for r in report.results:
        lines.append(f"[{LABELS[r.status]}] {r.title_id} / {r.title_en}")
        lines.append(f"    ID: {r.text_id}")
        lines.append(f"    EN: {r.text_en}")
        if r.detail:
            lines.append(f"        ({r.detail})")
    n = len(report.results)
    bad = len(report.failed)
    if report.passed:
        lines.append(f"HASIL / RESULT: LULUS / PASSED ({n} pemeriksaan / checks)")
    else:
        names = ", ".join(r.title_en for r in report.failed)
        lines.append(f"HASIL / RESULT: GAGAL / FAILED: {bad} dari {n} / {bad} of {n} "
                     f"({names})")
    return "\n".join(lines) + "\n"


def save_report(report: SelfTestReport, directory: Path) -> Path:
    """``<UTC time>.txt`` and ``latest.json``, durably; the oldest beyond 20 are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(report.at, UTC).strftime("%Y%m%dT%H%M%SZ")
    text_path = directory / f"{stamp}.txt"
    atomic_write_bytes(text_path, render_checklist(report).encode(), mode=0o644)
    atomic_write_bytes(directory / "latest.json", report.to_json(), mode=0o644)
    reports = sorted(p for p in directory.glob("*.txt") if p.name[:8].isdigit())
    for old in reports[:-KEEP_REPORTS]:
        old.unlink(missing_ok=True)
    return text_path
