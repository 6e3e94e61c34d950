"""Reading systemd unit files as systemd does for the directives we check: sections of
``Key=value`` lines where a key may repeat (SystemCallFilter=, DeviceAllow=) and an empty
assignment resets the list."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "systemd"
DEVICE_UNITS = ["edge-intake.service", "edge-forward.service", "edge-uplink.service",
                "edge-panel.service"]
CENTRAL_UNITS = ["edge-central-receive.service", "edge-central-fleet.service"]
ALL_SERVICES = DEVICE_UNITS + CENTRAL_UNITS

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: directive outside a section: {line}"
        key, _, value = line.partition("=")
        values = current.setdefault(key.strip(), [])
        if value.strip() == "":
            values.clear()
            values.append("")  # an explicit empty assignment (e.g. CapabilityBoundingSet=)
        else:
            if values == [""]:
                values.clear()
            values.append(value.strip())
    return sections


def systemd_analyze() -> str:
    """The tool, or a failure that says how to get it: skipping would hide broken units."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze not found: install the Debian package 'systemd' "
                    "(scripts/dev installs it); unit files must be verified in CI")
    return exe
