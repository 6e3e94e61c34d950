"""``edge panel`` end to end: config, one step, the LED test, locate, and a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.cli import main
from edge.config import parse_config
from edge.errors import ConfigError
from edge.health.heartbeat import Heartbeat, boot_id, boottime, read_heartbeats
from edge.panel.config import parse_panel_config
from edge.panel.driver import walk_plan
from edge.panel.patterns import Led
from edge.panel.sources import SpoolSummaryData, read_locate, spool_summary_detail

GiB = 1024**3


def write_config(tmp_path: Path, panel: str = "") -> Path:
    """An enrolled office: identity, CA and sealing key in place, state dir with run/."""
    for name in ("device.key", "device.crt", "fleet-ca.crt", "central-seal.pub"):
        (tmp_path / name).write_text("x")
    state = tmp_path / "state"
    (state / "run").mkdir(parents=True)   # never link a test's run dir to /run
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f"""
[device]
id = "kec-3171-01"
state_dir = "{state}"
[identity]
key = "{tmp_path / 'device.key'}"
cert = "{tmp_path / 'device.crt'}"
ca = "{tmp_path / 'fleet-ca.crt'}"
[seal]
central_public_key = "{tmp_path / 'central-seal.pub'}"
[panel]
{panel}
""")
    return cfg


def healthy_office(tmp_path: Path, uplink: str | None = "wired") -> None:
    run = tmp_path / "state" / "run"
    spool = SpoolSummaryData(waiting_count=2, oldest_waiting_age_s=5.0, free_bytes=50 * GiB,
                             quota_bytes=8 * GiB, used_bytes=GiB, refusing=False)
    Heartbeat(run / "heartbeat", "intake").beat("ok", {"spool": spool_summary_detail(spool)})
    for program in ("forward", "uplink"):
        Heartbeat(run / "heartbeat", program).beat()
    (run / "uplink.json").write_text(json.dumps(
        {"active": uplink, "links": {}, "updated_boottime": boottime()}))


def test_once_in_the_terminal_prints_the_lights_and_the_programs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = write_config(tmp_path)
    healthy_office(tmp_path, uplink="4g")
    assert main(["--config", str(cfg), "panel", "--once", "--terminal"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("NET  ") and "slow blink" in out[1] and "online on 4G" in out[1]
    assert "steady on" in out[2] and "recordings stored safely" in out[2]
    assert "short pulse" in out[3] and "all programs running" in out[3]
    assert out[4] == "programs: intake running, forward running, uplink running"
    beat = read_heartbeats(tmp_path / "state" / "run" / "heartbeat")["panel"]
    assert beat.detail == {"net": "online-4g", "data": "stored-safely", "sys": "running"}


def test_once_in_indonesian(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, 'lang = "id"')
    healthy_office(tmp_path, uplink=None)
    assert main(["--config", str(cfg), "panel", "--once", "--terminal"]) == 0
    out = capsys.readouterr().out
    assert "kedip dua kali" in out and "tidak terhubung ke pusat" in out
    assert "program: intake berjalan" in out


def test_locate_writes_the_request_and_zero_cancels_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = write_config(tmp_path)
    locate = tmp_path / "state" / "run" / "locate"
    before = boottime()
    assert main(["--config", str(cfg), "panel", "--locate", "90"]) == 0
    until = read_locate(locate, boot_id())
    assert until is not None and before + 90 <= until <= boottime() + 90
    assert "locate on for 90 s" in capsys.readouterr().out
    assert main(["--config", str(cfg), "panel", "--locate", "0"]) == 0
    assert not locate.exists()


@pytest.mark.parametrize("value", ["-1", "soon", str(48 * 3600)])
def test_locate_refuses_nonsense(tmp_path: Path, value: str) -> None:
    cfg = write_config(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["--config", str(cfg), "panel", "--locate", value])
    assert e.value.code == 2


def test_led_test_walk_in_the_terminal(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, "net_pin = 5\ndata_pin = 6\nsys_pin = 13")
    assert main(["--config", str(cfg), "panel", "--test", "--terminal", "--hold", "0.01"]) == 0
    out = capsys.readouterr().out
    pins = {Led.NET: 5, Led.DATA: 6, Led.SYS: 13}
    said = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert said == [step.say_en for step in walk_plan(pins)]
    assert out.rstrip().endswith("Done: all lights off.")


def test_led_test_walk_on_mock_gpio_through_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    cfg = write_config(tmp_path)
    assert main(["--config", str(cfg), "panel", "--test", "--led", "DATA", "--hold",
                 "0.01", "--lang", "id"]) == 0
    out = capsys.readouterr().out
    assert "DATA (GPIO27): berkedip pelan" in out and "NET (GPIO" not in out
    assert "Selesai" in out


def test_without_a_gpio_backend_the_technician_is_told_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "nosuch")
    cfg = write_config(tmp_path)
    assert main(["--config", str(cfg), "panel", "--once"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edge: panel.no_gpio: ") and "GPIOZERO_PIN_FACTORY" in err


def test_hold_and_led_need_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    assert main(["--config", str(cfg), "panel", "--once", "--terminal", "--led", "NET"]) == 1
    assert "panel.usage" in capsys.readouterr().err


def test_the_panel_runs_until_sigterm_and_says_it_stopped(tmp_path: Path) -> None:
    """A real ``edge panel --terminal`` process: shows the office, then stops cleanly."""
    cfg = write_config(tmp_path, "poll_interval_s = 0.2")
    healthy_office(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--config", str(cfg), "panel", "--terminal"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[0].startswith("[panel ")
        assert "online on wired" in lines[1]
        hb_dir = tmp_path / "state" / "run" / "heartbeat"
        deadline = time.monotonic() + 10
        while "panel" not in read_heartbeats(hb_dir):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert read_heartbeats(hb_dir)["panel"].status == "stopped"


# --- [panel] config -------------------------------------------------------------------------

def test_panel_config_defaults() -> None:
    p = parse_panel_config(parse_config({"device": {"id": "kec-3171-01"}}))
    assert p.pins == {Led.NET: 17, Led.DATA: 27, Led.SYS: 22}
    assert p.active_high and p.poll_interval_s == 2.0 and p.lang == "en"
    assert p.thresholds.programs == ("intake", "forward", "uplink")
    assert p.stale_after_s == {}


def test_panel_config_reads_every_key() -> None:
    p = parse_panel_config(parse_config({"device": {"id": "kec-3171-01"}, "panel": {
        "net_pin": 5, "data_pin": 6, "sys_pin": 13, "active_high": False,
        "poll_interval_s": 1, "starting_grace_s": 60, "backlog_warn_count": 50,
        "backlog_warn_age_s": 3600, "spool_low_fraction": 0.2, "programs": ["intake"],
        "spool_summary_from": "forward", "lang": "id",
        "stale_after_s": {"forward": 90, "intake": 20.5},
    }}))
    assert p.pins == {Led.NET: 5, Led.DATA: 6, Led.SYS: 13} and not p.active_high
    assert p.thresholds.backlog_warn_count == 50 and p.thresholds.programs == ("intake",)
    assert p.thresholds.spool_low_fraction == 0.2 and p.thresholds.starting_grace_s == 60
    assert p.stale_after_s == {"forward": 90.0, "intake": 20.5}
    assert (p.spool_summary_from, p.lang, p.poll_interval_s) == ("forward", "id", 1.0)


@pytest.mark.parametrize("panel,message", [
    ({"net_pin": 17, "data_pin": 17}, "each light needs its own GPIO pin"),
    ({"sys_pin": 40}, r"\[panel\] sys_pin = 40: must be at most 27"),
    ({"net_pins": 5}, r"unknown key\(s\) net_pins"),
    ({"programs": ["intake", "Forwarder"]}, r"bad item 'Forwarder'"),
    ({"stale_after_s": {"intake": 0}}, r"\[panel.stale_after_s\] intake = 0"),
    ({"stale_after_s": {"../x": 5}}, "not a program name"),
    ({"lang": "fr"}, "must be one of en, id"),
    ({"active_high": "yes"}, "must be true or false"),
])
def test_bad_panel_config_names_key_value_and_fix(panel: dict[str, object],
                                                  message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_panel_config(parse_config({"device": {"id": "kec-3171-01"}, "panel": panel}))
