"""sd_notify over a real AF_UNIX datagram socket, as systemd's manager receives it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.health.sdnotify import Notifier, notify
from tests.support.broker import Broker


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(5)
    yield s, str(path)
    s.close()


def pending(s: socket.socket) -> list[str]:
    out = []
    s.setblocking(False)
    try:
        while True:
            out.append(s.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        s.settimeout(5)
    return out


def test_ready_status_and_stopping_arrive_as_datagrams(listener: tuple[socket.socket, str]) -> None:
    s, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready(status="spool recovered, serving")
    assert s.recv(4096) == b"READY=1\nSTATUS=spool recovered, serving"
    assert n.status("3 waiting")
    assert s.recv(4096) == b"STATUS=3 waiting"
    assert n.stopping()
    assert s.recv(4096) == b"STOPPING=1"
    n.close()


def test_abstract_namespace_socket() -> None:
    name = f"edge-test-{os.getpid()}-{os.urandom(4).hex()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(5)
    try:
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert s.recv(4096) == b"READY=1"
    finally:
        s.close()


def test_watchdog_pings_at_most_every_half_interval(listener: tuple[socket.socket, str]) -> None:
    s, path = listener
    now = [100.0]
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000",
                  "WATCHDOG_PID": str(os.getpid())}, clock=lambda: now[0])
    assert n.watchdog_interval_s == 10.0
    n.ready()
    assert pending(s) == ["READY=1"]
    sent = []
    for _ in range(160):  # a busy loop calling ping() every 0.125 s for 20 s
        now[0] += 0.125
        sent.append(n.ping())
    assert sum(sent) == 4  # 5 s apart: at 5, 10, 15, 20 s
    assert pending(s) == ["WATCHDOG=1"] * 4
    assert n.ping(force=True)
    assert pending(s) == ["WATCHDOG=1"]


def test_watchdog_meant_for_another_pid_is_ignored(listener: tuple[socket.socket, str]) -> None:
    s, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval_s is None
    assert not n.ping(force=True)
    assert pending(s) == []


def test_outside_systemd_everything_is_a_no_op() -> None:
    n = Notifier({})
    assert not n.enabled
    assert not n.ready()
    assert not n.ping(force=True)
    assert not notify("READY=1", {})


def test_a_child_process_notifies_through_inherited_environment(
        listener: tuple[socket.socket, str]) -> None:
    s, path = listener
    code = ("from edge.health.sdnotify import Notifier\n"
            "n = Notifier(); n.ready(); n.ping(force=True)\n")
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    env.pop("WATCHDOG_PID", None)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
    assert pending(s) == ["READY=1", "WATCHDOG=1"]


def test_missing_socket_is_loud(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nope")})


def _collect_until(s: socket.socket, want: set[str], timeout: float = 20.0) -> set[str]:
    import time

    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    s.settimeout(0.5)
    while time.monotonic() < deadline and not want <= seen:
        try:
            msg = s.recv(4096).decode()
        except TimeoutError:
            continue
        seen.update(line.split("=", 1)[0] + "=" + line.split("=", 1)[1]
                    for line in msg.splitlines() if line.startswith(("READY", "WATCHDOG")))
    return seen


@pytest.mark.parametrize("program", ["intake", "forward", "panel"])
def test_each_device_program_tells_systemd_it_is_ready_and_alive(
        program: str, listener: tuple[socket.socket, str], tmp_path: Path,
        broker: Broker) -> None:
    """The units are Type=notify with WatchdogSec=: a program that never says READY=1 would
    fail to start, one that stops sending WATCHDOG=1 is restarted."""
    from tests.e2e.chain import make_central, make_chain_office
    from tests.support.office import REPO

    s, path = listener
    office = make_chain_office(tmp_path / "o", make_central(tmp_path / "c", broker))
    args = {"intake": ["intake"], "forward": ["forward"], "panel": ["panel", "--terminal"]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "--config", str(office.config_path), *args[program]],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    try:
        seen = _collect_until(s, {"READY=1", "WATCHDOG=1"})
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert {"READY=1", "WATCHDOG=1"} <= seen, seen
