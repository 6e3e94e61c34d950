"""Heartbeats: ages on the boot clock, staleness per program, cheap atomic writes."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.health import heartbeat as hb
from edge.health.heartbeat import (
    FALLBACK_STALE_AFTER_S,
    Heartbeat,
    boot_id,
    boottime,
    heartbeat_dir,
    read_heartbeats,
    runtime_dir,
)

BOOT = "0e5c6a57-1111-4a4a-9b9b-000000000001"


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_beat_then_read_gives_status_detail_and_age_on_the_boot_clock(tmp_path: Path) -> None:
    clock = FakeClock(100.0)
    Heartbeat(tmp_path, "intake", clock=clock, boot=BOOT).beat("ok", {"accepted": 3})
    got = read_heartbeats(tmp_path, now=112.5, boot=BOOT)
    assert set(got) == {"intake"}
    info = got["intake"]
    assert info.status == "ok"
    assert info.detail == {"accepted": 3}
    assert info.age_s == pytest.approx(12.5)
    assert not info.stale
    doc = json.loads((tmp_path / "intake").read_text())
    assert doc["boottime"] == 100.0 and doc["boot_id"] == BOOT and doc["pid"] == os.getpid()


def test_stale_threshold_is_per_program_and_can_be_overridden(tmp_path: Path) -> None:
    clock = FakeClock(0.0)
    for program in ("intake", "forward", "custom"):
        Heartbeat(tmp_path, program, clock=clock, boot=BOOT).beat()
    at_45 = read_heartbeats(tmp_path, now=45.0, boot=BOOT)
    assert at_45["intake"].stale            # 30 s limit
    assert not at_45["forward"].stale     # 60 s limit
    assert not at_45["custom"].stale        # fallback limit
    later = read_heartbeats(tmp_path, now=FALLBACK_STALE_AFTER_S + 1, boot=BOOT)
    assert later["custom"].stale
    tuned = read_heartbeats(tmp_path, {"intake": 50.0, "custom": 10.0}, now=45.0, boot=BOOT)
    assert not tuned["intake"].stale
    assert tuned["custom"].stale
    assert not tuned["forward"].stale     # untouched programs keep their default


def test_a_beat_from_another_boot_is_stale_whatever_its_numbers_say(tmp_path: Path) -> None:
    Heartbeat(tmp_path, "uplink", clock=FakeClock(5.0), boot=BOOT).beat()
    info = read_heartbeats(tmp_path, now=6.0, boot="another-boot")["uplink"]
    assert info.stale and math.isinf(info.age_s)


def test_unreadable_files_are_stale_and_temp_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "intake").write_text('{"v":1,"boottime":')
    (tmp_path / "forward").write_text('{"v":1,"boottime":"soon","status":"ok","boot_id":"x"}')
    (tmp_path / ".uplink.99.tmp").write_text("{}")
    (tmp_path / "Bad Name").write_text("{}")
    got = read_heartbeats(tmp_path, now=1.0, boot=BOOT)
    assert set(got) == {"intake", "forward"}
    assert all(i.stale and i.status == "unreadable" for i in got.values())


def test_missing_directory_reads_as_no_heartbeats(tmp_path: Path) -> None:
    assert read_heartbeats(tmp_path / "nope", now=1.0, boot=BOOT) == {}


def test_unchanged_beats_are_rate_limited_but_a_new_status_is_written_at_once(
    tmp_path: Path,
) -> None:
    clock = FakeClock(10.0)
    beat = Heartbeat(tmp_path, "forward", min_interval_s=3.0, clock=clock, boot=BOOT)
    assert beat.beat("ok")
    clock.t = 11.0
    assert not beat.beat("ok")              # same status, 1 s later: skipped
    assert not beat.beat("ok", {"sent": 7})   # a changing counter does not force a write
    assert read_heartbeats(tmp_path, now=11.0, boot=BOOT)["forward"].age_s == 1.0
    clock.t = 11.5
    assert beat.beat("error", {"error": "mqtt.refused"})   # news goes out at once
    info = read_heartbeats(tmp_path, now=11.5, boot=BOOT)["forward"]
    assert (info.status, info.detail, info.age_s) == ("error", {"error": "mqtt.refused"}, 0.0)
    clock.t = 14.6
    assert beat.beat("error", {"error": "mqtt.refused"})   # interval passed: refreshed


def test_beats_never_fsync_and_leave_no_temp_files(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fsync(fd: int) -> None:
        raise AssertionError("heartbeat must not fsync")

    monkeypatch.setattr(os, "fsync", no_fsync)
    clock = FakeClock(0.0)
    beat = Heartbeat(tmp_path, "panel", min_interval_s=0.0, clock=clock, boot=BOOT)
    for i in range(5):
        clock.t = float(i)
        assert beat.beat()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["panel"]


def test_temp_file_left_by_a_crashed_writer_is_cleared(tmp_path: Path) -> None:
    leftover = tmp_path / ".intake.4242.tmp"
    leftover.write_text("half a beat")
    Heartbeat(tmp_path, "intake", clock=FakeClock(), boot=BOOT).beat()
    assert not leftover.exists()
    assert (tmp_path / "intake").exists()


def test_a_write_failure_is_logged_not_raised(tmp_path: Path) -> None:
    blocked = tmp_path / "heartbeat"
    blocked.write_text("a file where the directory should be")
    assert Heartbeat(blocked, "intake", clock=FakeClock(), boot=BOOT).beat() is False


def test_directory_removed_under_a_running_program_is_made_again(tmp_path: Path) -> None:
    d = tmp_path / "hb"
    clock = FakeClock(1.0)
    beat = Heartbeat(d, "uplink", min_interval_s=0.0, clock=clock, boot=BOOT)
    assert beat.beat()
    (d / "uplink").unlink()
    d.rmdir()
    clock.t = 2.0
    assert beat.beat()
    assert read_heartbeats(d, now=2.0, boot=BOOT)["uplink"].age_s == 0.0


def test_program_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    for bad in ("../etc", "Intake", "", "a" * 40, ".hidden"):
        with pytest.raises(ValueError, match="heartbeat program name"):
            Heartbeat(tmp_path, bad)


def test_real_clock_and_boot_id() -> None:
    assert len(boot_id()) == 36
    a = boottime()
    assert a > 0 and boottime() >= a


def test_a_killed_program_goes_stale(tmp_path: Path) -> None:
    """A real process beats on the real clock, is SIGKILLed, and its heartbeat goes stale."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from edge.health.heartbeat import Heartbeat\n"
        "beat = Heartbeat(Path(sys.argv[1]), 'forward', min_interval_s=0.05)\n"
        "while True:\n"
        "    beat.beat('ok', {'n': 1})\n"
        "    time.sleep(0.05)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "forward").exists():
            assert time.monotonic() < deadline, "the program never beat"
            time.sleep(0.02)
        alive = read_heartbeats(tmp_path, {"forward": 0.5})["forward"]
        assert not alive.stale and alive.age_s < 0.5
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(0.7)
    dead = read_heartbeats(tmp_path, {"forward": 0.5})["forward"]
    assert dead.stale and dead.age_s > 0.5 and dead.status == "ok"


# --- where the files live -------------------------------------------------------------------

@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A directory on a real tmpfs (/dev/shm), removed afterwards."""
    shm = Path("/dev/shm")
    if hb._fs_type(shm) != "tmpfs":
        pytest.skip("/dev/shm is not a tmpfs here")
    d = shm / f"edge-test-{uuid.uuid4().hex}"
    d.mkdir()
    yield d
    shutil.rmtree(d)


def test_run_dir_is_linked_to_tmpfs_when_there_is_one(tmp_path: Path, shm_dir: Path) -> None:
    target = shm_dir / "edge"
    run = runtime_dir(tmp_path / "state", tmpfs_dir=target)
    assert run == tmp_path / "state" / "run"
    assert run.is_symlink() and run.resolve() == target.resolve()
    Heartbeat(heartbeat_dir(tmp_path / "state", tmpfs_dir=target), "intake").beat()
    assert (target / "heartbeat" / "intake").exists()


def test_tmpfs_target_is_recreated_after_a_reboot_emptied_it(tmp_path: Path,
                                                            shm_dir: Path) -> None:
    target = shm_dir / "edge"
    run = runtime_dir(tmp_path, tmpfs_dir=target)
    target.rmdir()                      # what a reboot does to /run/edge
    assert runtime_dir(tmp_path, tmpfs_dir=target) == run
    assert target.is_dir() and run.is_symlink()


def test_without_tmpfs_run_is_a_plain_directory(tmp_path: Path) -> None:
    not_tmpfs = tmp_path / "fake-run" / "edge"
    not_tmpfs.parent.mkdir()
    assert hb._fs_type(not_tmpfs.parent) != "tmpfs"
    run = runtime_dir(tmp_path / "state", tmpfs_dir=not_tmpfs)
    assert run.is_dir() and not run.is_symlink()
    assert not not_tmpfs.exists()
    # An existing run/ is kept as it is.
    assert runtime_dir(tmp_path / "state", tmpfs_dir=not_tmpfs) == run


def test_only_the_device_state_dir_links_to_run_edge_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    device_state, run_edge = tmp_path / "var-lib-edge", tmp_path / "run" / "edge"
    run_edge.parent.mkdir()
    monkeypatch.setattr(hb, "DEVICE_STATE_DIR", device_state)
    monkeypatch.setattr(hb, "DEFAULT_TMPFS_DIR", run_edge)
    monkeypatch.setattr(hb, "_fs_type", lambda path: "tmpfs")
    demo = runtime_dir(tmp_path / "demo-state")
    assert demo.is_dir() and not demo.is_symlink()
    device = runtime_dir(device_state)
    assert device.is_symlink() and device.resolve() == run_edge.resolve()


def test_mount_table_lookup_takes_the_longest_mount_point(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/root / ext4 rw 0 0\n"
        "tmpfs /run tmpfs rw 0 0\n"
        "/dev/sda1 /run/media\\040stick vfat rw 0 0\n"
    )
    assert hb._fs_type(Path("/run/edge"), mounts) == "tmpfs"
    assert hb._fs_type(Path("/runner"), mounts) == "ext4"
    assert hb._fs_type(Path("/run/media stick/x"), mounts) == "vfat"
