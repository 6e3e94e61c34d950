"""Device-side collectors: the Linux facts a telemetry message carries, read on demand.

Place in the data flow: the forwarder calls ``build_telemetry(...)`` once per interval with
what only it knows (backlog from the spool, uplink in use and 4G usage from the uplink
manager, age of the last receipt) and publishes the bytes on ``edge/{d}/up/telemetry``.
Everything else — CPU temperature, Pi throttling flags, uptime, disk free, program
heartbeats, versions — is read here from the machine.

Each source is optional: off a Pi there is no ``vcgencmd`` and often no thermal zone, and the
value is then left out of the message (absent, never a made-up zero). A source that fails
in an unexpected way is also left out rather than stopping the telemetry that would report
the failure. Reads are cheap (a few small files, one short subprocess on a Pi) and write
nothing, so they are harmless to the SD card at one call a minute.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge import __version__
from edge.telemetry.schema import Telemetry, encode_telemetry

__all__ = [
    "DEFAULT_HEARTBEAT_STALE_S",
    "DEFAULT_PROGRAMS",
    "DeviceFacts",
    "Sources",
    "build_telemetry",
    "collect_facts",
    "parse_throttled",
    "program_health",
    "read_cpu_temp_c",
    "read_disk",
    "read_throttled",
    "read_uptime_s",
    "read_versions",
]

DEFAULT_PROGRAMS: tuple[str, ...] = ("intake", "forward", "uplink", "panel")
# Programs touch state_dir/run/heartbeat/<program> at least every 60 s; three missed beats
# mean the program is hung or dead.
DEFAULT_HEARTBEAT_STALE_S = 180.0

_THROTTLED_RE = re.compile(r"throttled=(0x[0-9a-fA-F]+|\d+)")


@dataclass(frozen=True)
class Sources:
    """Where the facts come from; tests point these at files they wrote."""

    thermal: Path = Path("/sys/class/thermal/thermal_zone0/temp")
    uptime: Path = Path("/proc/uptime")
    os_release: Path = Path("/etc/os-release")
    # None: look for vcgencmd on PATH at each call (absent off a Pi).
    vcgencmd: str | None = None
    vcgencmd_timeout_s: float = 2.0


@dataclass(frozen=True)
class DeviceFacts:
    cpu_temp_c: float | None = None
    throttled: int | None = None
    uptime_s: int | None = None
    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    programs: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


def read_cpu_temp_c(path: Path = Sources.thermal) -> float | None:
    """The kernel reports millidegrees C; None where there is no thermal zone."""
    try:
        text = path.read_text().strip()
        value = int(text) / 1000
    except (OSError, ValueError):
        return None
    # A few boards report nonsense (e.g. -273000) for a missing sensor.
    return value if -40.0 <= value <= 150.0 else None


def parse_throttled(text: str) -> int | None:
    """``throttled=0x50005`` → 0x50005; None for output we do not recognise."""
    m = _THROTTLED_RE.search(text)
    if m is None:
        return None
    value = int(m.group(1), 0)
    return value if value <= 0xFFFFFFFF else None


def read_throttled(command: str | None = None, timeout_s: float = 2.0) -> int | None:
    """Run ``vcgencmd get_throttled`` when the command exists; None otherwise."""
    exe = command or shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True,
                             timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return parse_throttled(out.stdout)


def read_uptime_s(path: Path = Sources.uptime) -> int | None:
    try:
        return int(float(path.read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return None


def read_disk(path: Path) -> tuple[int, int] | None:
    """(free, total) bytes of the filesystem holding ``path``, as an unprivileged writer sees
    it (f_bavail: root's reserved blocks are not ours to fill)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def program_health(heartbeat_dir: Path, programs: Iterable[str], stale_after_s: float,
                   now: float) -> dict[str, str]:
    """Each program touches ``heartbeat_dir/<program>``; a missing or old file is "stale"."""
    out: dict[str, str] = {}
    for name in programs:
        try:
            age = now - (heartbeat_dir / name).stat().st_mtime
        except OSError:
            out[name] = "stale"
            continue
        out[name] = "ok" if age <= stale_after_s else "stale"
    return out


def read_versions(os_release: Path = Sources.os_release) -> dict[str, str]:
    """Our version, the OS release and the kernel: what a technician needs to reproduce."""
    versions = {"edge": __version__}
    try:
        for line in os_release.read_text().splitlines():
            if line.startswith("VERSION_ID="):
                value = line.split("=", 1)[1].strip().strip('"')
                if value:
                    versions["os"] = value[:64]
    except OSError:
        pass
    kernel = platform.release()
    if kernel:
        versions["kernel"] = kernel[:64]
    return versions


def collect_facts(state_dir: Path, *, programs: Sequence[str] = DEFAULT_PROGRAMS,
                  heartbeat_stale_s: float = DEFAULT_HEARTBEAT_STALE_S,
                  now: float | None = None, sources: Sources | None = None) -> DeviceFacts:
    src = sources or Sources()
    at = time.time() if now is None else now
    disk = read_disk(state_dir)
    return DeviceFacts(
        cpu_temp_c=read_cpu_temp_c(src.thermal),
        throttled=read_throttled(src.vcgencmd, src.vcgencmd_timeout_s),
        uptime_s=read_uptime_s(src.uptime),
        disk_free_bytes=disk[0] if disk else None,
        disk_total_bytes=disk[1] if disk else None,
        programs=program_health(state_dir / "run" / "heartbeat", programs, heartbeat_stale_s, at),
        versions=read_versions(src.os_release),
    )


def build_telemetry(
    *,
    state_dir: Path,
    backlog_items: int,
    backlog_bytes: int,
    backlog_oldest_age_s: int | None,
    uplink: str,
    mobile_used_bytes: int | None = None,
    mobile_budget_bytes: int | None = None,
    last_receipt_age_s: int | None = None,
    errors: Sequence[str] = (),
    seq: int | None = None,
    programs: Sequence[str] = DEFAULT_PROGRAMS,
    heartbeat_stale_s: float = DEFAULT_HEARTBEAT_STALE_S,
    now: float | None = None,
    sources: Sources | None = None,
) -> bytes:
    """The one call the forwarder makes each interval: read the machine, add what the caller
    knows, return the payload for ``edge/{d}/up/telemetry`` (QoS 0, not retained).

    Raises TelemetryError if a value the caller passed breaks the schema (a bug on the
    device: it must fail here, loudly, rather than be refused at the central site).
    """
    at = time.time() if now is None else now
    facts = collect_facts(state_dir, programs=programs, heartbeat_stale_s=heartbeat_stale_s,
                          now=at, sources=sources)
    return encode_telemetry(Telemetry(
        sent_at=int(at),
        seq=seq,
        backlog_items=backlog_items,
        backlog_bytes=backlog_bytes,
        backlog_oldest_age_s=backlog_oldest_age_s,
        uplink=uplink,
        mobile_used_bytes=mobile_used_bytes,
        mobile_budget_bytes=mobile_budget_bytes,
        disk_free_bytes=facts.disk_free_bytes,
        disk_total_bytes=facts.disk_total_bytes,
        cpu_temp_c=facts.cpu_temp_c,
        throttled=facts.throttled,
        uptime_s=facts.uptime_s,
        versions=facts.versions,
        programs=facts.programs,
        last_receipt_age_s=last_receipt_age_s,
        errors=tuple(errors),
    ))
