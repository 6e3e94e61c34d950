"""Self-test checks on their real backends where this machine has them (disk, clock,
uplink and broker sockets, vcgencmd as a command), and the checklist they make."""

import io
import os
import sys
import threading
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.config import Config, parse_config
from edge.health.heartbeat import FORWARDER, Heartbeat, heartbeat_dir
from edge.provision.checks import (
    BrokerCheck,
    ClockCheck,
    DiskCheck,
    LedCheck,
    PowerCheck,
    RecordingCheck,
    UplinkCheck,
    clock_verdict,
    power_verdict,
    read_ntp_synchronized,
    uplink_checks,
)
from edge.provision.selftest import (
    FAIL,
    KEEP_REPORTS,
    PASS,
    SKIP,
    WARN,
    CheckResult,
    SelfTestContext,
    SelfTestReport,
    render_checklist,
    run_selftest,
    save_report,
)
from tests.support.broker import Broker


def config(tmp_path: Path, **tables: dict[str, object]) -> Config:
    data: dict[str, dict[str, object]] = {
        "device": {"id": "kec-3171-01", "office": "Kecamatan Menteng",
                   "state_dir": str(tmp_path / "state")},
        "spool": {"quota_bytes": "1GiB", "reserve_bytes": "1MiB"},
        "intake": {"max_recording_bytes": "1MiB"},
    }
    data.update(tables)
    return parse_config(data, "test.toml")


def ctx(cfg: Config, **kw: object) -> SelfTestContext:
    return SelfTestContext(cfg, out=io.StringIO(), timeout_s=5, led_hold_s=0.05,
                           **kw)  # type: ignore[arg-type]


def broker_config(tmp_path: Path, broker: Broker, device: str = "kec-3171-01",
                  **uplink: object) -> Config:
    ident = broker.identity(device)
    mqtt = {"host": "127.0.0.1", "port": broker.port, "ca": str(broker.ca_path),
            "cert": str(ident.cert), "key": str(ident.key)}
    return config(tmp_path, mqtt=mqtt, identity={"cert": str(ident.cert),
                                                 "key": str(ident.key),
                                                 "ca": str(broker.ca_path)}, **uplink)


# -- disk --------------------------------------------------------------------------------
def test_disk_passes_on_a_writable_spool(tmp_path: Path) -> None:
    r = DiskCheck().run(ctx(config(tmp_path)))
    assert r.status == PASS, r
    assert not list((tmp_path / "state/spool").iterdir())  # the probe is gone


def test_disk_fails_below_the_reserve(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    cfg = config(tmp_path, spool={"reserve_bytes": free + 1024**3, "quota_bytes": "1GiB"})
    assert DiskCheck().run(ctx(cfg)).status == FAIL


def test_disk_fails_when_the_spool_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the state folder should be")
    r = DiskCheck().run(ctx(config(tmp_path)))
    assert r.status == FAIL and "cannot be written" in r.text_en


# -- clock -------------------------------------------------------------------------------
def test_clock_reads_a_real_source() -> None:
    synced, how = read_ntp_synchronized()
    assert how.startswith(("timedatectl", "adjtimex"))
    assert synced in (True, False)


def test_clock_verdicts() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    start, end = now - timedelta(days=1), now + timedelta(days=179)
    assert clock_verdict(now, True, start, end)[0] == PASS
    assert clock_verdict(now, False, start, end)[0] == FAIL
    assert clock_verdict(now, None, start, end)[0] == WARN
    assert clock_verdict(datetime(1970, 1, 1, tzinfo=UTC), True, None, None)[0] == FAIL
    assert clock_verdict(start - timedelta(hours=2), True, start, end)[0] == FAIL
    assert clock_verdict(end + timedelta(days=1), True, start, end)[0] == FAIL


def test_clock_check_reports_how_it_knows(tmp_path: Path) -> None:
    r = ClockCheck().run(ctx(config(tmp_path)))
    synced, _ = read_ntp_synchronized()
    assert r.status == (PASS if synced else FAIL)
    assert "UTC" in r.detail


# -- power -------------------------------------------------------------------------------
def fake_vcgencmd(tmp_path: Path, value: str) -> str:
    script = tmp_path / "vcgencmd"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = get_throttled ] && echo throttled={value}\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("value, status", [("0x0", PASS), ("0x50000", WARN), ("0x50005", FAIL),
                                           ("0x4", WARN)])
def test_power_flags_through_the_collector(tmp_path: Path, value: str, status: str) -> None:
    r = PowerCheck(fake_vcgencmd(tmp_path, value)).run(ctx(config(tmp_path)))
    assert r.status == status and value.replace("0x", "0x") in r.detail


def test_power_without_vcgencmd_off_a_pi(tmp_path: Path) -> None:
    assert PowerCheck(str(tmp_path / "missing")).run(ctx(config(tmp_path))).status == SKIP
    assert power_verdict(0x1)[0] == FAIL


# -- LEDs --------------------------------------------------------------------------------
def test_leds_without_gpio_are_shown_as_text(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "nosuchfactory")
    c = ctx(config(tmp_path))
    r = LedCheck().run(c)
    assert r.status == SKIP
    text = c.out.getvalue()  # type: ignore[union-attr]
    assert "NET (GPIO17) menyala" in text and "SYS  ▮▮▮" in text


@pytest.mark.parametrize("answer, status", [(None, WARN), (True, PASS), (False, FAIL)])
def test_leds_on_gpio_need_the_technicians_eyes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                answer: bool | None, status: str) -> None:
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    asked: list[str] = []

    def ask(q: str) -> bool:
        asked.append(q)
        return bool(answer)

    r = LedCheck().run(ctx(config(tmp_path), ask=None if answer is None else ask))
    assert r.status == status
    assert (len(asked) == 1) == (answer is not None)


# -- network -----------------------------------------------------------------------------
def test_uplinks_from_config(tmp_path: Path) -> None:
    assert [c.key for c in uplink_checks(config(tmp_path))] == ["uplink.default"]
    cfg = config(tmp_path, uplink={"wired": {"interface": "eth0"}, "4g": {"interface": "wwan0"}})
    assert [c.key for c in uplink_checks(cfg)] == ["uplink.wired", "uplink.4g"]


def test_uplink_and_broker_against_the_real_broker(broker: Broker, tmp_path: Path) -> None:
    cfg = broker_config(tmp_path, broker)
    assert UplinkCheck("default", None).run(ctx(cfg)).status == PASS
    assert UplinkCheck("wired", "lo").run(ctx(cfg)).status == PASS   # bound to an interface
    bad = UplinkCheck("4g", "nosuch0").run(ctx(cfg))
    assert bad.status == FAIL and "nosuch0" in bad.text_en
    assert BrokerCheck().run(ctx(cfg)).status == PASS


def test_broker_check_uses_the_running_forwarders_connection(broker: Broker,
                                                             tmp_path: Path) -> None:
    """The broker gives a device certificate one session: with the forwarder service
    connected (its heartbeat says so) the check must not open a second one, which would
    cut the forwarder off."""
    cfg = broker_config(tmp_path, broker)
    forwarder = broker.connect("kec-3171-01")           # stands for `edge forward`
    lost = threading.Event()
    forwarder.on_disconnect = lambda *args: lost.set()
    Heartbeat(heartbeat_dir(ctx(cfg).path(cfg.device.state_dir)), FORWARDER).beat(
        "ok", {"connected": True})

    r = BrokerCheck().run(ctx(cfg))

    assert r.status == PASS and "forwarder" in r.text_en
    assert not lost.wait(0.5) and forwarder.is_connected()


def test_broker_check_connects_itself_when_the_forwarder_is_not_connected(
        broker: Broker, tmp_path: Path) -> None:
    cfg = broker_config(tmp_path, broker)
    Heartbeat(heartbeat_dir(ctx(cfg).path(cfg.device.state_dir)), FORWARDER).beat(
        "ok", {"connected": False})
    r = BrokerCheck().run(ctx(cfg))
    assert r.status == PASS and "own topic works" in r.text_en


def test_broker_check_fails_for_a_revoked_device(broker: Broker, tmp_path: Path) -> None:
    cfg = broker_config(tmp_path, broker)
    broker.revoke("kec-3171-01")
    r = BrokerCheck().run(ctx(cfg))
    assert r.status == FAIL and "revoked" in r.text_en


def test_broker_check_fails_when_the_acl_refuses(broker: Broker, tmp_path: Path) -> None:
    # a certificate for another device than [device] id: publishing under this id is refused
    cfg = broker_config(tmp_path, broker, device="kec-0000-00")
    r = BrokerCheck().run(ctx(cfg))
    assert r.status == FAIL and "ACL" in r.text_en


# -- test recording --------------------------------------------------------------------------
def test_recording_fails_with_the_reason_when_the_forwarder_cannot_run(tmp_path: Path
                                                                         ) -> None:
    r = RecordingCheck().run(ctx(config(tmp_path)))  # this config has no [mqtt] table
    assert r.status == FAIL and "no receipt" in r.text_en.lower()
    assert "[mqtt] host" in r.detail


@pytest.fixture
def forward_selftest(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """Stands in for edge.forward.selftest (the lead's module) to test this check's plumbing."""
    forward = types.ModuleType("edge.forward")
    module = types.ModuleType("edge.forward.selftest")
    monkeypatch.setitem(sys.modules, "edge.forward", forward)
    monkeypatch.setitem(sys.modules, "edge.forward.selftest", module)
    yield module


def test_recording_uses_the_forwarders_function(tmp_path: Path,
                                                forward_selftest: types.ModuleType) -> None:
    seen: list[float] = []

    class Info:
        recording_id = "selftest-1"

    def send(cfg: Config, timeout: float) -> Info:
        seen.append(timeout)
        return Info()

    forward_selftest.send_test_recording = send  # type: ignore[attr-defined]
    r = RecordingCheck().run(ctx(config(tmp_path)))
    assert r.status == PASS and "selftest-1" in r.detail and seen == [15.0]

    def broken(cfg: Config, timeout: float) -> Info:
        raise TimeoutError("no receipt within 15 s")

    forward_selftest.send_test_recording = broken  # type: ignore[attr-defined]
    result = run_selftest(ctx(config(tmp_path)), [RecordingCheck()]).results[0]
    assert result.status == FAIL and "no receipt" in result.detail


# -- checklist ---------------------------------------------------------------------------
def test_checklist_is_bilingual_and_kept(tmp_path: Path) -> None:
    results = tuple(CheckResult(f"k{i}", s, f"Judul {i}", f"Title {i}", "teks", "text")
                    for i, s in enumerate([PASS, WARN, SKIP, FAIL]))
    report = SelfTestReport("kec-3171-01", "Kecamatan Menteng", 1_800_000_000.0, results)
    text = render_checklist(report)
    assert "[GAGAL   / FAIL ] Judul 3 / Title 3" in text
    assert "[PERIKSA / CHECK] Judul 1" in text
    assert "GAGAL / FAILED: 1 dari 4 / 1 of 4 (Title 3)" in text
    ok = SelfTestReport("kec-3171-01", "", 1_800_000_000.0, results[:3])
    assert "LULUS / PASSED" in render_checklist(ok)
    out = tmp_path / "selftest"
    for i in range(KEEP_REPORTS + 3):
        save_report(SelfTestReport("kec-3171-01", "", 1_800_000_000.0 + i, results), out)
    assert len(list(out.glob("*.txt"))) == KEEP_REPORTS
    assert (out / "latest.json").read_text().count('"status"') == 4
