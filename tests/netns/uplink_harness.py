"""The uplink daemon as a real process inside the device namespace, and the flow sink's
counts: helpers for the netns tests and for bench/uplink_failover.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge.uplink.announce import boottime
from tests.netns.topology import BROKER, SECOND, Topology, netns_available

needs_netns = pytest.mark.skipif(not netns_available(),
                                 reason="needs root and `ip netns` (Linux network namespaces)")

# Short thresholds so each scenario takes seconds. Same meaning as production.
FAST: dict[str, Any] = {
    "fail_after": 3, "rise_after": 2, "carrier_grace_s": 0.6, "holddown_s": 2.0,
    "startup_wait_s": 1.0, "tls_every_s": 5.0, "status_interval_s": 0.25,
    "wired": {"interface": "eth0", "interval_s": 0.2, "standby_interval_s": 0.2,
              "urgent_interval_s": 0.2, "timeout_s": 0.2},
    "4g": {"interface": "wwan0", "interval_s": 0.5, "standby_interval_s": 2.0,
           "urgent_interval_s": 0.2, "timeout_s": 0.3},
    "budget": {"sample_interval_s": 0.2},
}


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_config(path: Path, state_dir: Path, ca: Path | None,
                 uplink: dict[str, Any]) -> Path:
    top = {k: v for k, v in uplink.items() if not isinstance(v, dict)}
    subs = {k: v for k, v in uplink.items() if isinstance(v, dict)}
    lines = ["[device]", 'id = "kec-test-01"', f"state_dir = {json.dumps(str(state_dir))}",
             "", "[uplink]", f'targets = ["{BROKER}:8883", "{SECOND}:443"]', 'modem = "off"']
    if ca is not None:
        lines.append(f"tls_ca = {json.dumps(str(ca))}")
    lines += [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for name, table in subs.items():
        lines += ["", f"[uplink.{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Uplink:
    """``edge uplink`` running inside the device namespace."""

    def __init__(self, topo: Topology, uplink: dict[str, Any] | None = None, *,
                 config: Path | None = None) -> None:
        """Either ``uplink`` (a config file of its own is written) or the ``config`` of an
        office whose other programs share the state directory (tests/netns/chain_harness.py)."""
        self.topo = topo
        if config is None:
            self.state_dir = topo.workdir / "state"
            self.config = write_config(topo.workdir / "edge.toml", self.state_dir, topo.ca,
                                       uplink or {})
        else:
            from edge.config import load_config
            self.state_dir = load_config(config).device.state_dir
            self.config = config
        self.run_dir = self.state_dir / "run"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = topo.workdir / "uplink.log"

    def start(self) -> Uplink:
        self.proc = self.topo.python(self.topo.dev, "-m", "edge.cli", "--config",
                                     str(self.config), "uplink", "-v",
                                     stderr=self.log.open("ab"))
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=10)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.topo.dev, sys.executable, "-m",
                               "edge.cli", "--config", str(self.config), "uplink", *args],
                              capture_output=True, text=True, timeout=30)

    def status(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads((self.run_dir / "uplink.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return doc

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float,
             what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = self.status()
            if doc and pred(doc):
                return doc
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what or pred}; last status: "
                             f"{json.dumps(self.status(), indent=1)}\n--- daemon log ---\n"
                             f"{self.log.read_text()[-4000:] if self.log.exists() else ''}")

    def wait_active(self, name: str, timeout: float) -> dict[str, Any]:
        return self.wait(lambda d: d.get("active") == name, timeout, f"active == {name}")


def sink_bytes(path: Path, peer: str) -> int:
    try:
        return int(json.loads(path.read_text())["peers"].get(peer, 0))
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def wait_growing(path: Path, peer: str, timeout: float, by: int = 20_000) -> int:
    """Wait until the sink has received ``by`` more bytes from ``peer``."""
    start = sink_bytes(path, peer)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = sink_bytes(path, peer)
        if now >= start + by:
            return now
        time.sleep(0.05)
    raise AssertionError(f"no flow from {peer}: {start} -> {sink_bytes(path, peer)} bytes")


__all__ = ["FAST", "Uplink", "boottime", "merge", "needs_netns", "sink_bytes", "wait_growing",
           "write_config"]
