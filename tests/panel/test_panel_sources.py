"""Reading the live snapshot from real files: heartbeats, uplink.json, locate, spool summary."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from edge.config import parse_config
from edge.health.heartbeat import Heartbeat
from edge.panel.errors import SpoolSummaryUnavailable
from edge.panel.patterns import DataState, NetState, SysState
from edge.panel.sources import (
    HeartbeatSpoolSource,
    LiveSources,
    SpoolSummaryData,
    free_fraction,
    is_provisioned,
    read_locate,
    read_uplink,
    spool_summary_detail,
    write_locate,
)
from edge.panel.state import derive

BOOT = "5d1f7a43-2222-4b4b-8c8c-000000000002"
GiB = 1024**3


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def summary(**over: Any) -> SpoolSummaryData:
    base: dict[str, Any] = dict(waiting_count=4, oldest_waiting_age_s=30.0, free_bytes=20 * GiB,
                                quota_bytes=8 * GiB, used_bytes=1 * GiB, refusing=False)
    base.update(over)
    return SpoolSummaryData(**base)


# --- uplink.json ----------------------------------------------------------------------------

def _uplink(run: Path, doc: object) -> Path:
    p = run / "uplink.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize("active", ["wired", "4g", None])
def test_uplink_file_says_which_link_carries_traffic(tmp_path: Path, active: str | None) -> None:
    p = _uplink(tmp_path, {"active": active, "links": {"eth0": {"up": True}},
                           "updated_boottime": 50.0})
    status = read_uplink(p, now=60.0)
    assert status.known and status.active == active


@pytest.mark.parametrize("content", [
    None,                                             # no file
    "not json",
    json.dumps([1, 2]),
    json.dumps({"active": "satellite", "updated_boottime": 1.0}),
    json.dumps({"active": "wired"}),                  # no timestamp
    json.dumps({"active": "wired", "updated_boottime": "1"}),
    json.dumps({"active": "wired", "updated_boottime": 500.0}),   # from an earlier boot
])
def test_uplink_status_is_unknown_unless_the_file_is_sound(tmp_path: Path,
                                                           content: str | None) -> None:
    p = tmp_path / "uplink.json"
    if content is not None:
        p.write_text(content)
    assert not read_uplink(p, now=60.0).known


# --- locate ---------------------------------------------------------------------------------

def test_locate_request_round_trip_and_cancel(tmp_path: Path) -> None:
    until = write_locate(tmp_path, 60, now=100.0, boot=BOOT)
    assert until == 160.0
    assert read_locate(tmp_path / "locate", BOOT) == 160.0
    assert [p.name for p in tmp_path.iterdir()] == ["locate"]
    assert write_locate(tmp_path, 0) is None
    assert read_locate(tmp_path / "locate", BOOT) is None


def test_locate_from_before_a_reboot_is_ignored(tmp_path: Path) -> None:
    write_locate(tmp_path, 600, now=100.0, boot=BOOT)
    assert read_locate(tmp_path / "locate", "another-boot") is None


@pytest.mark.parametrize("content", ["", "soon\n", "nan\n", "inf\n"])
def test_garbled_locate_files_are_ignored(tmp_path: Path, content: str) -> None:
    (tmp_path / "locate").write_text(content)
    assert read_locate(tmp_path / "locate", BOOT) is None


def test_a_bare_expiry_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "locate").write_text("123.5\n")
    assert read_locate(tmp_path / "locate", BOOT) == 123.5


# --- spool summary --------------------------------------------------------------------------

def test_free_fraction_is_set_by_whichever_runs_out_first() -> None:
    assert free_fraction(summary()) == pytest.approx(7 / 8)                 # quota limits
    assert free_fraction(summary(free_bytes=GiB // 2)) == pytest.approx(1 / 16)  # disk limits
    assert free_fraction(summary(used_bytes=9 * GiB)) == 0.0                # over quota
    assert free_fraction(summary(quota_bytes=0)) == 0.0
    assert free_fraction(summary(used_bytes=0, free_bytes=100 * GiB)) == 1.0


def test_spool_summary_published_in_a_heartbeat_is_read_back(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    Heartbeat(tmp_path, "intake", clock=clock, boot=BOOT).beat(
        "ok", {"spool": spool_summary_detail(summary()), "accepted_today": 12})
    clock.t = 1004.0
    got = HeartbeatSpoolSource(tmp_path, "intake", clock=clock, boot=BOOT).summary()
    assert got == summary(oldest_waiting_age_s=34.0)   # aged by the heartbeat's age


def test_a_spool_summary_without_a_fresh_heartbeat_is_refused(tmp_path: Path) -> None:
    clock = Clock(0.0)
    source = HeartbeatSpoolSource(tmp_path, "intake", clock=clock, boot=BOOT)
    with pytest.raises(SpoolSummaryUnavailable, match="not published a heartbeat"):
        source.summary()
    beat = Heartbeat(tmp_path, "intake", min_interval_s=0, clock=clock, boot=BOOT)
    beat.beat("ok", {})
    with pytest.raises(SpoolSummaryUnavailable, match=r"no spool summary"):
        source.summary()
    beat.beat("ok", {"spool": {"waiting_count": "many"}})
    with pytest.raises(SpoolSummaryUnavailable, match="malformed"):
        source.summary()
    beat.beat("ok", {"spool": spool_summary_detail(summary())})
    clock.t = 31.0
    with pytest.raises(SpoolSummaryUnavailable, match="stale") as e:
        source.summary()
    assert e.value.key == "panel.no_spool_summary"


# --- the whole snapshot ---------------------------------------------------------------------

class BrokenSpool:
    def __init__(self) -> None:
        self.calls = 0

    def summary(self) -> SpoolSummaryData:
        self.calls += 1
        raise OSError("database is locked")


class FixedSpool:
    def __init__(self, s: SpoolSummaryData) -> None:
        self.s = s

    def summary(self) -> SpoolSummaryData:
        return self.s


def _office(run: Path, clock: Clock, *, uplink: str | None = "4g") -> None:
    hb = run / "heartbeat"
    Heartbeat(hb, "intake", clock=clock, boot=BOOT).beat(
        "ok", {"spool": spool_summary_detail(summary(waiting_count=250))})
    for program in ("forward", "uplink", "panel"):
        Heartbeat(hb, program, clock=clock, boot=BOOT).beat()
    _uplink(run, {"active": uplink, "links": {}, "updated_boottime": clock.t})


def test_live_snapshot_from_real_files_gives_the_expected_lights(tmp_path: Path) -> None:
    clock = Clock(5000.0)
    _office(tmp_path, clock)
    sources = LiveSources(
        tmp_path, spool=HeartbeatSpoolSource(tmp_path / "heartbeat", clock=clock, boot=BOOT),
        provisioned=lambda: True, clock=clock, boot=BOOT)
    clock.t = 5002.0
    snap = sources.read()
    assert snap.uptime_s == 5002.0
    assert (snap.uplink_known, snap.uplink_active) == (True, "4g")
    assert snap.spool_known and snap.backlog_count == 250
    assert snap.backlog_oldest_age_s == pytest.approx(32.0)
    assert snap.spool_free_fraction == pytest.approx(7 / 8)
    assert set(snap.heartbeats) == {"intake", "forward", "uplink", "panel"}
    assert snap.locate_until is None
    view = derive(snap)
    assert (view.net, view.data, view.sys) == (NetState.CELLULAR, DataState.BACKLOG, SysState.OK)

    write_locate(tmp_path, 30, now=clock.t, boot=BOOT)
    assert derive(sources.read()).sys is SysState.LOCATE
    clock.t += 31.0
    # 31 s later: locate over, and intake (30 s) has gone stale: nothing accepts recordings.
    view = derive(sources.read())
    assert (view.data, view.sys) == (DataState.REFUSING, SysState.FAULT)


def test_a_failing_spool_source_means_unknown_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock(5000.0)
    _office(tmp_path, clock, uplink=None)
    broken = BrokenSpool()
    sources = LiveSources(tmp_path, spool=broken, provisioned=lambda: True, clock=clock,
                          boot=BOOT)
    with caplog.at_level(logging.WARNING, logger="edge.panel.sources"):
        first, second = sources.read(), sources.read()
    assert broken.calls == 2
    assert not first.spool_known and not second.spool_known
    assert [r.getMessage() for r in caplog.records] == [
        "spool summary unavailable: OSError: database is locked"]
    view = derive(first)
    assert (view.net, view.data, view.sys) == (NetState.OFFLINE, DataState.UNKNOWN,
                                               SysState.FAULT)


def test_a_spool_object_can_be_handed_in_directly(tmp_path: Path) -> None:
    """What edge.spool.Spool will do: anything with summary() fits the Protocol."""
    clock = Clock(5000.0)
    _office(tmp_path, clock, uplink="wired")
    full = FixedSpool(summary(refusing=True, used_bytes=8 * GiB))
    snap = LiveSources(tmp_path, spool=full, provisioned=lambda: True, clock=clock,
                       boot=BOOT).read()
    assert snap.spool_refusing and snap.spool_free_fraction == 0.0
    assert derive(snap).data is DataState.REFUSING


def test_no_spool_source_and_empty_run_dir(tmp_path: Path) -> None:
    snap = LiveSources(tmp_path, spool=None, provisioned=lambda: False, clock=Clock(1.0),
                       boot=BOOT).read()
    assert not snap.spool_known and not snap.uplink_known and snap.heartbeats == {}
    assert not snap.provisioned and math.isfinite(snap.spool_free_fraction)


def test_provisioned_means_identity_ca_and_sealing_key_are_in_place(tmp_path: Path) -> None:
    names = {"key": "device.key", "cert": "device.crt", "ca": "fleet-ca.crt"}
    cfg = parse_config({
        "device": {"id": "kec-3171-01", "state_dir": str(tmp_path / "state")},
        "identity": {k: str(tmp_path / v) for k, v in names.items()},
        "seal": {"central_public_key": str(tmp_path / "central-seal.pub")},
    })
    assert not is_provisioned(cfg)
    for name in [*names.values(), "central-seal.pub"][:-1]:
        (tmp_path / name).write_text("x")
    assert not is_provisioned(cfg)
    (tmp_path / "central-seal.pub").write_text("x")
    assert is_provisioned(cfg)
    unenrolled = parse_config({"device": {"id": "kec-3171-01"},
                               "identity": {"key": str(tmp_path / "device.key")}})
    assert not is_provisioned(unenrolled)
