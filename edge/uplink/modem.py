"""Modem facts for the status: signal quality, operator, access technology (ModemManager).

The uplink daemon asks ``mmcli -J`` every ``modem_interval_s`` on a worker thread and puts the
answer under ``"modem"`` in uplink.json, for the status page and central ops ("on 4G, weak
signal"). Where ModemManager is not installed or not running, or manages no modem (a HiLink
stick is a plain USB Ethernet device to it), the key is simply left out.

mmcli's JSON writes unknown values as "--"; they become None here.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["MmcliModem", "ModemReader", "parse_modem"]

log = logging.getLogger("edge.uplink.modem")

Runner = Callable[[Sequence[str], float], str]


class ModemReader(Protocol):
    def read(self) -> dict[str, Any] | None: ...


def _val(v: object) -> Any:
    if v in (None, "", "--"):
        return None
    return v


def _int(v: object) -> int | None:
    v = _val(v)
    try:
        return int(str(v)) if v is not None else None
    except ValueError:
        return None


def parse_modem(doc: dict[str, Any]) -> dict[str, Any]:
    """The facts we show from one ``mmcli -m X -J`` document."""
    m = doc.get("modem") or {}
    gen = m.get("generic") or {}
    g3 = m.get("3gpp") or {}
    sig = gen.get("signal-quality") or {}
    techs = [t for t in (gen.get("access-technologies") or []) if _val(t) is not None]
    ports = [str(p).split(" ")[0] for p in (gen.get("ports") or [])]
    return {
        "manufacturer": _val(gen.get("manufacturer")),
        "model": _val(gen.get("model")),
        "state": _val(gen.get("state")),
        "signal_quality": _int(sig.get("value")),
        "signal_recent": _val(sig.get("recent")) == "yes",
        "access_technology": techs[0] if techs else None,
        "access_technologies": techs,
        "operator": _val(g3.get("operator-name")),
        "operator_code": _val(g3.get("operator-code")),
        "registration": _val(g3.get("registration-state")),
        "ports": ports,
    }


def _run(argv: Sequence[str], timeout: float) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=True).stdout


class MmcliModem:
    """ModemManager through its command line client."""

    def __init__(self, interface: str | None, *, mmcli: str = "mmcli", timeout_s: float = 5.0,
                 runner: Runner = _run) -> None:
        self.interface = interface
        self.mmcli = shutil.which(mmcli)
        self.timeout_s = timeout_s
        self._runner = runner

    @property
    def available(self) -> bool:
        return self.mmcli is not None

    def read(self) -> dict[str, Any] | None:
        """Facts for the modem behind our interface (or the only modem); None if none."""
        if self.mmcli is None:
            return None
        try:
            listing = json.loads(self._runner([self.mmcli, "-L", "-J"], self.timeout_s))
            paths = [str(p) for p in listing.get("modem-list") or []]
            found = []
            for path in paths:
                doc = json.loads(self._runner([self.mmcli, "-m", path, "-J"], self.timeout_s))
                found.append(parse_modem(doc))
        except (subprocess.SubprocessError, OSError, ValueError, AttributeError) as e:
            # Not running, not answering, or an mmcli too old for -J: leave it out.
            log.debug("mmcli gave no modem facts: %s", e)
            return None
        for facts in found:
            if self.interface is not None and self.interface in facts["ports"]:
                return facts
        return found[0] if len(found) == 1 else None
