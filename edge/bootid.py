"""This boot's id: tells "seconds since boot" stamps of different boots apart (heartbeats,
spool clock stamps, the 4G budget's counter baseline).

The kernel gives it at /proc/sys/kernel/random/boot_id. Under a unit with ``ProcSubset=pid``
(all of ours) /proc/sys is hidden, so the units pass the same id as ``EDGE_BOOT_ID=%b``
(systemd's boot-id specifier, written without dashes); it is normalised to the kernel's
form so processes inside and outside units (the self-test, supervisor) agree.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

__all__ = ["BOOT_ID_ENV", "BOOT_ID_PATH", "read_boot_id"]

log = logging.getLogger("edge.bootid")

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
BOOT_ID_ENV = "EDGE_BOOT_ID"
_HEX32 = re.compile(r"[0-9a-f]{32}")


def _normalise(raw: str) -> str:
    h = raw.strip().lower().replace("-", "")
    if not _HEX32.fullmatch(h):
        return ""
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def read_boot_id(path: Path = BOOT_ID_PATH) -> str:
    """The boot id as 8-4-4-4-12 lowercase hex, or "" if neither the kernel file nor
    ``$EDGE_BOOT_ID`` gives one (logged: stamps then cannot be told apart across boots)."""
    try:
        found = _normalise(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError):
        found = ""
    if found:
        return found
    found = _normalise(os.environ.get(BOOT_ID_ENV, ""))
    if not found:
        log.warning("no boot id: %s is not readable (a unit with ProcSubset=pid?) and $%s is "
                    "unset; set Environment=%s=%%b in the unit", path, BOOT_ID_ENV,
                    BOOT_ID_ENV)
    return found
