"""The heartbeat watchdog against a real supervisord: a program that stays alive but stops
heartbeating is restarted, with the reason logged, and no more often than the budget."""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.health.supervisor_listener import DEFAULT_STALE_AFTER_S, build_parser
from tests.deploy.units import REPO

VENV_BIN = Path(sys.executable).parent
REPO_CONF = REPO / "provisioning" / "supervisor" / "edge.conf"

DUMMY = textwrap.dedent("""
    # heartbeats 4 times, 0.5 s apart, then hangs: alive, RUNNING, silent
    import json, os, sys, time
    hb, starts = sys.argv[1], sys.argv[2]
    with open(starts, "a") as f:
        f.write(f"{os.getpid()}\\n")
    boot_id = open("/proc/sys/kernel/random/boot_id").read().strip()
    for i in range(4):
        doc = {"boottime": time.clock_gettime(time.CLOCK_BOOTTIME), "boot_id": boot_id,
               "status": f"step {i}", "pid": os.getpid()}
        with open(hb + ".tmp", "w") as f:
            json.dump(doc, f)
        os.replace(hb + ".tmp", hb)
        time.sleep(0.5)
    while True:
        time.sleep(3600)
""")


def supervisord() -> Path:
    """supervisor from PyPI into this venv (proposed as the `supervisor` optional extra)."""
    exe = VENV_BIN / "supervisord"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "supervisor>=4.2,<5"],
                       check=True, timeout=300)
    assert exe.exists()
    return exe


@pytest.fixture
def running_supervisord(tmp_path: Path) -> Iterator[Path]:
    exe = supervisord()
    (tmp_path / "hb").mkdir()
    (tmp_path / "dummy.py").write_text(DUMMY)
    listener = (f"{sys.executable} -m edge.health.supervisor_listener --heartbeat-dir "
                f"{tmp_path}/hb --stale dummy=3 --startup-grace 4 --max-restarts-per-hour 2 "
                f"--min-backoff 1")
    conf = tmp_path / "supervisord.conf"
    conf.write_text(textwrap.dedent(f"""
        [unix_http_server]
        file={tmp_path}/supervisor.sock
        [supervisord]
        logfile={tmp_path}/supervisord.log
        pidfile={tmp_path}/supervisord.pid
        childlogdir={tmp_path}
        nodaemon=true
        user=root
        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
        [program:dummy]
        command={sys.executable} {tmp_path}/dummy.py {tmp_path}/hb/dummy {tmp_path}/starts
        startsecs=1
        stopwaitsecs=5
        stdout_logfile={tmp_path}/dummy.log
        [eventlistener:edge-watchdog]
        command={listener}
        directory={REPO}
        events=TICK_5
        stdout_logfile=NONE
        stderr_logfile={tmp_path}/watchdog.log
    """))
    proc = subprocess.Popen([str(exe), "-n", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        yield tmp_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def starts(tmp: Path) -> list[int]:
    p = tmp / "starts"
    return [int(x) for x in p.read_text().split()] if p.exists() else []


def wait_for(cond: object, timeout: float, what: str, tmp: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        time.sleep(0.2)
    log = (tmp / "watchdog.log").read_text() if (tmp / "watchdog.log").exists() else ""
    pytest.fail(f"timed out waiting for {what}; watchdog log:\n{log}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_stuck_program_is_restarted_then_held_by_the_hourly_budget(
        running_supervisord: Path) -> None:
    tmp = running_supervisord
    wait_for(lambda: len(starts(tmp)) == 1, 20, "the dummy to start", tmp)
    first = starts(tmp)[0]
    # it heartbeats for 2 s, then hangs: the next TICK_5 after 4 s of silence restarts it
    wait_for(lambda: len(starts(tmp)) == 2, 30, "the first restart", tmp)
    assert not alive(first), "the stuck process was left running"
    log = (tmp / "watchdog.log").read_text()
    assert "restarting dummy: dummy is running" in log
    assert "last heartbeat" in log and "(limit 3 s), last status 'step 3'" in log
    # the restarted one hangs again: restarted once more, then the budget (2/hour) holds
    wait_for(lambda: len(starts(tmp)) == 3, 30, "the second restart", tmp)
    wait_for(lambda: "not restarting yet: 2 restart(s) in the last hour (max 2)"
             in (tmp / "watchdog.log").read_text(), 30, "the hold", tmp)
    time.sleep(6)  # one more tick: still held, the third process keeps running
    assert len(starts(tmp)) == 3 and alive(starts(tmp)[2])
    sup_log = (tmp / "supervisord.log").read_text()
    # supervisord stopped it on request (not an exit it noticed by itself)
    assert sup_log.count("stopped: dummy (terminated by SIGTERM)") == 2
    assert "exited: dummy" not in sup_log


def test_repo_supervisor_config_wires_the_watchdog_to_every_program() -> None:
    cp = configparser.RawConfigParser()
    cp.read(REPO_CONF)
    programs = {s.split(":", 1)[1] for s in cp.sections() if s.startswith("program:")}
    assert set(DEFAULT_STALE_AFTER_S) <= programs
    ev = cp["eventlistener:edge-watchdog"]
    assert ev["events"] == "TICK_5"
    argv = shlex.split(ev["command"])
    assert argv[:3] == ["/opt/edge/bin/python", "-m", "edge.health.supervisor_listener"]
    args = build_parser().parse_args(argv[3:])
    assert dict(args.stale) == DEFAULT_STALE_AFTER_S
    assert args.max_restarts_per_hour == 4
    for name in DEFAULT_STALE_AFTER_S:
        sec = cp[f"program:{name}"]
        assert sec["autorestart"] == "true" and sec["umask"] == "077"
        assert sec.get("user") == "edge" or "--reuid=edge" in sec["command"]
        assert "EDGE_CONFIG=\"/etc/edge/edge.toml\"" in sec["environment"]
    uplink = shlex.split(cp["program:uplink"]["command"])
    assert "--ambient-caps=-all,+net_admin" in uplink and "--no-new-privs" in uplink
