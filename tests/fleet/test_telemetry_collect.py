"""Device-side collectors read real files and a real subprocess; absent sources stay absent."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from edge.telemetry.collect import (
    Sources,
    build_telemetry,
    collect_facts,
    parse_throttled,
    program_health,
    read_cpu_temp_c,
    read_disk,
    read_throttled,
    read_uptime_s,
    read_versions,
)
from edge.telemetry.schema import decode_telemetry


def fake_vcgencmd(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "vcgencmd"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


def test_cpu_temperature_from_sysfs_millidegrees(tmp_path: Path) -> None:
    f = tmp_path / "temp"
    f.write_text("48312\n")
    assert read_cpu_temp_c(f) == 48.312
    f.write_text("-273000\n")  # "no sensor" on some boards
    assert read_cpu_temp_c(f) is None
    f.write_text("hot\n")
    assert read_cpu_temp_c(f) is None
    assert read_cpu_temp_c(tmp_path / "absent") is None


def test_throttled_from_vcgencmd(tmp_path: Path) -> None:
    assert parse_throttled("throttled=0x50005\n") == 0x50005
    assert parse_throttled("throttled=0\n") == 0
    assert parse_throttled("error=1 error_msg=\"Command not registered\"") is None
    exe = fake_vcgencmd(tmp_path, 'test "$1" = get_throttled && echo throttled=0x80008')
    assert read_throttled(exe) == 0x80008
    failing = fake_vcgencmd(tmp_path, "echo VCHI init failed >&2; exit 255")
    assert read_throttled(failing) is None
    assert read_throttled(str(tmp_path / "no-such-vcgencmd")) is None


def test_throttled_subprocess_that_hangs_is_cut_short(tmp_path: Path) -> None:
    exe = fake_vcgencmd(tmp_path, "exec sleep 30")
    t0 = time.monotonic()
    assert read_throttled(exe, timeout_s=0.3) is None
    assert time.monotonic() - t0 < 10


def test_uptime_and_disk_from_this_machine(tmp_path: Path) -> None:
    up = read_uptime_s()
    assert up is not None and up > 0
    (tmp_path / "uptime").write_text("12345.67 99999.00\n")
    assert read_uptime_s(tmp_path / "uptime") == 12345
    assert read_uptime_s(tmp_path / "absent") is None
    disk = read_disk(tmp_path)
    st = os.statvfs(tmp_path)
    assert disk is not None and disk[1] == st.f_blocks * st.f_frsize and 0 < disk[0] <= disk[1]
    assert read_disk(tmp_path / "absent") is None


def test_program_health_from_heartbeat_mtimes(tmp_path: Path) -> None:
    hb = tmp_path / "run" / "heartbeat"
    hb.mkdir(parents=True)
    now = 1_000_000.0
    for name, age in (("intake", 5), ("forward", 500)):
        (hb / name).touch()
        os.utime(hb / name, (now - age, now - age))
    health = program_health(hb, ["intake", "forward", "uplink"], 180, now)
    assert health == {"intake": "ok", "forward": "stale", "uplink": "stale"}


def test_versions_name_us_and_the_os(tmp_path: Path) -> None:
    osr = tmp_path / "os-release"
    osr.write_text('PRETTY_NAME="Debian GNU/Linux 12"\nVERSION_ID="12"\n')
    v = read_versions(osr)
    assert v["edge"] and v["os"] == "12" and v["kernel"]
    assert "os" not in read_versions(tmp_path / "absent")


def test_off_a_pi_the_pi_only_facts_are_absent(tmp_path: Path) -> None:
    src = Sources(thermal=tmp_path / "none", vcgencmd=str(tmp_path / "none"))
    facts = collect_facts(tmp_path, programs=["intake"], sources=src)
    assert facts.cpu_temp_c is None and facts.throttled is None
    assert facts.uptime_s is not None and facts.disk_free_bytes is not None
    assert facts.programs == {"intake": "stale"}


def test_build_telemetry_is_one_call_for_the_forwarder(tmp_path: Path) -> None:
    (tmp_path / "temp").write_text("55000\n")
    hb = tmp_path / "run" / "heartbeat"
    hb.mkdir(parents=True)
    (hb / "forward").touch()
    src = Sources(thermal=tmp_path / "temp",
                  vcgencmd=fake_vcgencmd(tmp_path, "echo throttled=0x0"))
    data = build_telemetry(state_dir=tmp_path, backlog_items=3, backlog_bytes=500_000_000,
                           backlog_oldest_age_s=120, uplink="wired", last_receipt_age_s=30,
                           seq=7, programs=["forward", "intake"], sources=src)
    t = decode_telemetry(data)
    assert (t.backlog_items, t.backlog_bytes, t.backlog_oldest_age_s) == (3, 500_000_000, 120)
    assert t.uplink == "wired" and t.cpu_temp_c == 55.0 and t.throttled == 0
    assert t.programs == {"forward": "ok", "intake": "stale"}
    assert t.seq == 7 and t.last_receipt_age_s == 30 and abs(t.sent_at - time.time()) < 60
    assert t.disk_free_bytes is not None and t.versions["edge"]
