"""Supervisor event listener: restarts a program that is alive but no longer heartbeating.

Place in the data flow: on images run by supervisord instead of systemd (and in the demo),
this listener plays the part of systemd's ``WatchdogSec=``. supervisord restarts a program
that *exits*; a program that hangs (deadlock, stuck I/O on a dying SD card, a wedged MQTT
loop) stays RUNNING forever. Every program writes ``/run/edge/heartbeat/<program>`` from its
main loop; every 5 s (TICK_5) this listener compares each heartbeat's age with that
program's limit and restarts the stale ones over supervisord's XML-RPC socket.

Theory of operation
-------------------
``WatchdogPolicy`` is pure: it is handed ``Observation``s (is the process RUNNING, for how
long, how old is its heartbeat) and a time on CLOCK_BOOTTIME, and answers with ``Restart``
or ``Hold`` decisions; the caller does the I/O and reports back each restart it made.

Per program the policy is in one of these states:

    HEALTHY   heartbeat fresh (or the process is not RUNNING: supervisord's own job)
    STARTING  RUNNING for less than the startup grace: an old heartbeat is expected
    STALE     heartbeat older than the limit (or none) after the grace
                -> Restart, unless the restart budget says Hold:
    HELD      at most ``max_restarts_per_hour`` restarts in any 3600 s, and at least
              ``backoff`` since the previous one (doubling per consecutive restart,
              ``min_backoff_s`` .. ``max_backoff_s``); a fresh heartbeat after a restart
              resets the doubling, never the hourly budget.

A heartbeat from another boot (its ``boot_id`` differs) counts as no heartbeat. Each
decision carries a sentence saying why, which the listener logs to its stderr (supervisord
keeps that log); a Hold is logged when it starts and then at most every 10 minutes.

The heartbeat file format (JSON ``{"boottime": float, "boot_id": str, "status": str, ...}``)
is read by the small reader below; once ``edge.health.heartbeat`` is merged, use its
``read_heartbeats`` instead.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import socket
import sys
import time
import xmlrpc.client
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from edge.bootid import read_boot_id

__all__ = [
    "DEFAULT_STALE_AFTER_S",
    "Heartbeat",
    "Hold",
    "Observation",
    "Restart",
    "WatchdogPolicy",
    "build_parser",
    "main",
    "read_heartbeats",
]

log = logging.getLogger("edge.health.supervisor_listener")

DEFAULT_HEARTBEAT_DIR = Path("/run/edge/heartbeat")
# seconds without a heartbeat before a program counts as hung; the programs heartbeat every
# few seconds, the limits leave room for a slow fsync on an SD card or a TLS handshake on 4G
DEFAULT_STALE_AFTER_S: dict[str, float] = {
    "intake": 90.0,
    "forward": 180.0,
    "uplink": 60.0,
    "panel": 60.0,
}
HOUR_S = 3600.0
HOLD_LOG_EVERY_S = 600.0

# ------------------------------------------------------------------ heartbeat files


@dataclass(frozen=True)
class Heartbeat:
    program: str
    boottime: float
    boot_id: str
    status: str


def current_boot_id() -> str:
    return read_boot_id()


def boottime_now() -> float:
    """CLOCK_BOOTTIME: monotonic, and counts time suspended (heartbeat ages stay honest)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def read_heartbeats(directory: Path) -> dict[str, Heartbeat]:
    """Local reader of ``<directory>/<program>`` files; a torn or foreign file is skipped
    (the writer replaces files atomically, so a torn file means an old-style writer)."""
    out: dict[str, Heartbeat] = {}
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return out
    for path in entries:
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            doc = json.loads(path.read_bytes())
            hb = Heartbeat(program=path.name, boottime=float(doc["boottime"]),
                           boot_id=str(doc["boot_id"]), status=str(doc.get("status", "")))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out[path.name] = hb
    return out


# ------------------------------------------------------------------ the policy (no I/O)

HEALTHY = "healthy"
STARTING = "starting"
STALE = "stale"
HELD = "held"


@dataclass(frozen=True)
class Observation:
    """What the listener saw of one supervisor program at one tick."""

    name: str
    running: bool
    uptime_s: float
    heartbeat_age_s: float | None  # None: no heartbeat from this boot
    status: str = ""


@dataclass(frozen=True)
class Restart:
    name: str
    reason: str


@dataclass(frozen=True)
class Hold:
    name: str
    reason: str
    retry_in_s: float


@dataclass
class _Track:
    state: str = HEALTHY
    restarts: deque[float] = field(default_factory=deque)
    consecutive: int = 0
    last_hold_log: float | None = None


@dataclass
class WatchdogPolicy:
    stale_after_s: Mapping[str, float]
    startup_grace_s: float | None = None  # default: each program's own stale limit
    max_restarts_per_hour: int = 4
    min_backoff_s: float = 60.0
    max_backoff_s: float = 900.0
    _tracks: dict[str, _Track] = field(default_factory=dict)

    def state(self, name: str) -> str:
        return self._tracks.get(name, _Track()).state

    def backoff_s(self, consecutive: int) -> float:
        if consecutive <= 0:
            return 0.0
        return float(min(self.max_backoff_s, self.min_backoff_s * 2 ** (consecutive - 1)))

    def decide(self, now: float, observations: Iterable[Observation]) -> list[Restart | Hold]:
        """One tick. Returns the decisions worth acting on or logging."""
        out: list[Restart | Hold] = []
        for ob in observations:
            limit = self.stale_after_s.get(ob.name)
            if limit is None:
                continue  # not a watched program (e.g. the listener itself)
            t = self._tracks.setdefault(ob.name, _Track())
            while t.restarts and now - t.restarts[0] >= HOUR_S:
                t.restarts.popleft()
            grace = limit if self.startup_grace_s is None else self.startup_grace_s
            fresh = ob.heartbeat_age_s is not None and ob.heartbeat_age_s <= limit
            if not ob.running or fresh:
                if fresh and ob.heartbeat_age_s is not None and ob.heartbeat_age_s < ob.uptime_s:
                    t.consecutive = 0  # this very process heartbeats: it recovered
                t.state, t.last_hold_log = HEALTHY, None
                continue
            if ob.uptime_s < grace:
                t.state = STARTING
                continue
            age = ("no heartbeat since it started" if ob.heartbeat_age_s is None
                   or ob.heartbeat_age_s >= ob.uptime_s
                   else f"last heartbeat {ob.heartbeat_age_s:.0f} s ago")
            why = (f"{ob.name} is running ({ob.uptime_s:.0f} s) but {age} "
                   f"(limit {limit:.0f} s)" + (f", last status {ob.status!r}" if ob.status else ""))
            retry = self._budget_wait(t, now)
            if retry > 0:
                first = t.state != HELD
                t.state = HELD
                if first or t.last_hold_log is None or now - t.last_hold_log >= HOLD_LOG_EVERY_S:
                    t.last_hold_log = now
                    backoff = self.backoff_s(t.consecutive)
                    out.append(Hold(ob.name, f"{why}; not restarting yet: "
                                    f"{len(t.restarts)} restart(s) in the last hour (max "
                                    f"{self.max_restarts_per_hour})"
                                    + (f", backoff {backoff:.0f} s" if backoff else "")
                                    + f"; next try in {retry:.0f} s", retry))
                continue
            t.state = STALE
            out.append(Restart(ob.name, why))
        return out

    def _budget_wait(self, t: _Track, now: float) -> float:
        wait = 0.0
        if len(t.restarts) >= self.max_restarts_per_hour:
            wait = t.restarts[0] + HOUR_S - now
        if t.restarts:
            wait = max(wait, t.restarts[-1] + self.backoff_s(t.consecutive) - now)
        return max(0.0, wait)

    def restarted(self, name: str, now: float) -> None:
        """The caller did restart ``name`` (only successful restarts spend the budget)."""
        t = self._tracks.setdefault(name, _Track())
        t.restarts.append(now)
        t.consecutive += 1
        t.state, t.last_hold_log = STARTING, None


# ------------------------------------------------------------------ supervisord XML-RPC


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self._path, self._timeout)


def supervisor_proxy(url: str, timeout: float = 60.0) -> Any:
    """``unix:///path/to/supervisor.sock`` (what supervisord puts in SUPERVISOR_SERVER_URL
    for its children) or ``http://host:port``."""
    if url.startswith("unix://"):
        return xmlrpc.client.ServerProxy("http://localhost/RPC2",
                                         transport=_UnixTransport(url[len("unix://"):], timeout))
    return xmlrpc.client.ServerProxy(url.rstrip("/") + "/RPC2")


# ------------------------------------------------------------------ the listener loop


def observe(infos: Iterable[Mapping[str, Any]], heartbeats: Mapping[str, Heartbeat],
            boot_id: str, now_boottime: float) -> list[Observation]:
    out = []
    for info in infos:
        name = str(info["name"])
        hb = heartbeats.get(name)
        age = None
        if hb is not None and hb.boot_id == boot_id:
            age = max(0.0, now_boottime - hb.boottime)
        running = info.get("statename") == "RUNNING"
        uptime = max(0.0, float(info.get("now", 0)) - float(info.get("start", 0)))
        out.append(Observation(name, running, uptime, age, hb.status if hb else ""))
    return out


def restart(rpc: Any, name: str) -> None:
    """Stop (supervisord escalates to SIGKILL after stopwaitsecs) and start again."""
    try:
        rpc.supervisor.stopProcess(name, True)
    except xmlrpc.client.Fault as e:
        if "NOT_RUNNING" not in e.faultString:
            raise
    rpc.supervisor.startProcess(name, True)


def tick(policy: WatchdogPolicy, rpc: Any, heartbeat_dir: Path, boot_id: str) -> None:
    now = boottime_now()
    infos = rpc.supervisor.getAllProcessInfo()
    for d in policy.decide(now, observe(infos, read_heartbeats(heartbeat_dir), boot_id, now)):
        if isinstance(d, Hold):
            log.warning("%s", d.reason)
            continue
        log.warning("restarting %s: %s", d.name, d.reason)
        try:
            restart(rpc, d.name)
        except (OSError, xmlrpc.client.Error) as e:
            log.error("could not restart %s through supervisord: %s", d.name, e)
            continue
        policy.restarted(d.name, boottime_now())
        log.warning("restarted %s", d.name)


def _read_event(stdin: TextIO) -> tuple[dict[str, str], str]:
    line = stdin.readline()
    if not line:
        raise EOFError
    headers = dict(part.split(":", 1) for part in line.split())
    payload = stdin.read(int(headers["len"]))
    return headers, payload


def serve(policy: WatchdogPolicy, rpc: Any, heartbeat_dir: Path,
          stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    """supervisor's eventlistener protocol: READY, read one event, RESULT, repeat."""
    boot_id = current_boot_id()
    while True:
        stdout.write("READY\n")
        stdout.flush()
        try:
            headers, _payload = _read_event(stdin)
        except EOFError:
            return
        result = "OK"
        if headers.get("eventname", "").startswith("TICK"):
            try:
                tick(policy, rpc, heartbeat_dir, boot_id)
            except Exception:  # one bad tick must not kill the watchdog; supervisord would
                log.exception("watchdog tick failed")  # restart us, losing the budget
        stdout.write(f"RESULT {len(result)}\n{result}")
        stdout.flush()


def _stale_arg(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    try:
        value = float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PROGRAM=SECONDS") from None
    if not name or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PROGRAM=SECONDS")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edge.health.supervisor_listener",
                                description="restart supervisor programs whose heartbeat "
                                            "is stale (run as an eventlistener on TICK_5)")
    p.add_argument("--heartbeat-dir", type=Path, default=DEFAULT_HEARTBEAT_DIR)
    p.add_argument("--stale", type=_stale_arg, action="append", default=[],
                   metavar="PROGRAM=SECONDS",
                   help="watch PROGRAM with this limit (default: intake=90 forward=180 "
                        "uplink=60 panel=60); repeat for each program")
    p.add_argument("--startup-grace", type=float, default=None,
                   help="seconds after a start before a missing heartbeat counts "
                        "(default: the program's limit)")
    p.add_argument("--max-restarts-per-hour", type=int, default=4)
    p.add_argument("--min-backoff", type=float, default=60.0)
    p.add_argument("--max-backoff", type=float, default=900.0)
    p.add_argument("--supervisor-url", default=os.environ.get("SUPERVISOR_SERVER_URL"),
                   help="default: $SUPERVISOR_SERVER_URL (set by supervisord)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s edge-watchdog %(levelname)s %(message)s")
    if not args.supervisor_url:
        p.error("no --supervisor-url and no $SUPERVISOR_SERVER_URL: run me from supervisord")
    policy = WatchdogPolicy(stale_after_s=dict(args.stale) or dict(DEFAULT_STALE_AFTER_S),
                            startup_grace_s=args.startup_grace,
                            max_restarts_per_hour=args.max_restarts_per_hour,
                            min_backoff_s=args.min_backoff, max_backoff_s=args.max_backoff)
    log.info("watching %s in %s", ", ".join(f"{k} ({v:.0f} s)" for k, v in
                                            policy.stale_after_s.items()), args.heartbeat_dir)
    serve(policy, supervisor_proxy(args.supervisor_url), args.heartbeat_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
