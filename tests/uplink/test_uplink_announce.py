"""uplink.json and the forwarder's watcher, with real files, inotify and a writer process."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from edge.uplink.announce import (
    Announcer,
    UplinkChange,
    UplinkState,
    UplinkWatcher,
    read_status,
)
from edge.uplink.errors import NoStatus


def doc(active: str | None, seq: int, policy: str = "all", started: float = 100.0,
        updated: float = 0.0) -> dict[str, Any]:
    return {"active": active, "switch_seq": seq, "metered_policy": policy,
            "daemon_started": started, "updated_boottime": updated,
            "links": {"wired": {"role": "wired", "metered": False},
                      "4g": {"role": "4g", "metered": True}}}


def test_publish_replaces_the_whole_file_readable_by_others(tmp_path: Path) -> None:
    a = Announcer(tmp_path / "run")
    a.publish(doc("wired", 1), durable=True)
    a.publish(doc("wired", 1, updated=5.0), durable=False)
    path = tmp_path / "run" / "uplink.json"
    assert json.loads(path.read_text())["updated_boottime"] == 5.0
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["uplink.json"]  # no temp left
    assert (a.writes, a.durable_writes) == (2, 1)
    assert read_status(tmp_path / "run")["active"] == "wired"


def test_read_status_without_a_daemon_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NoStatus, match="edge uplink --once"):
        read_status(tmp_path)


def test_metered_policy_only_applies_on_a_metered_link() -> None:
    assert UplinkState.from_doc(doc("wired", 1, "telemetry_only")).allowed == "all"
    assert UplinkState.from_doc(doc("4g", 2, "priority_only")).allowed == "priority_only"
    assert UplinkState.from_doc(doc(None, 0, "priority_only")).allowed == "all"


WRITER = """
import sys, json, time
from pathlib import Path
from edge.uplink.announce import Announcer
a = Announcer(Path(sys.argv[1]))
for line in sys.stdin:
    a.publish(json.loads(line), durable=True)
    print("done", flush=True)
"""


def test_watcher_calls_back_on_a_switch_made_by_another_process(tmp_path: Path) -> None:
    run = tmp_path / "run"
    Announcer(run).publish(doc("wired", 1), durable=True)
    changes: list[UplinkChange] = []
    got = threading.Event()

    def on_change(change: UplinkChange) -> None:
        changes.append(change)
        got.set()

    with UplinkWatcher(run) as w:
        assert w.current is not None and w.current.active == "wired"
        w.on_change(on_change)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert writer.stdin is not None and writer.stdout is not None
        try:
            for d in (doc("wired", 1, updated=1.0), doc("wired", 1, updated=2.0),
                      doc("4g", 2, updated=3.0)):
                writer.stdin.write(json.dumps(d) + "\n")
                writer.stdin.flush()
                assert writer.stdout.readline() == "done\n"
            assert got.wait(5.0)
        finally:
            writer.kill()
            writer.wait()
    # the two refreshes were not reported; the switch was, once
    assert len(changes) == 1
    assert changes[0].switched and changes[0].current.active == "4g"
    assert changes[0].previous is not None and changes[0].previous.active == "wired"


def test_poll_sees_a_round_trip_between_reads_as_a_switch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    a = Announcer(run)
    a.publish(doc("wired", 1), durable=True)
    with UplinkWatcher(run) as w:
        assert w.poll(0.05) is None
        a.publish(doc("4g", 2), durable=True)
        a.publish(doc("wired", 3), durable=True)
        change = w.poll(2.0)
        assert change is not None and change.switched
        assert change.current.active == "wired"


def test_daemon_restart_on_the_same_link_is_not_a_switch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    a = Announcer(run)
    a.publish(doc("wired", 5, started=100.0), durable=True)
    with UplinkWatcher(run) as w:
        a.publish(doc("wired", 1, started=200.0), durable=True)
        assert w.poll(0.3) is None
        a.publish(doc("4g", 1, "priority_only", started=200.0), durable=True)
        change = w.poll(2.0)
        assert change is not None and change.switched and change.policy_changed
        a.publish(doc("4g", 1, "telemetry_only", started=200.0), durable=True)
        change = w.poll(2.0)
        assert change is not None and not change.switched and change.policy_changed
        assert change.current.allowed == "telemetry_only"


def test_watcher_started_before_the_daemon_sees_the_file_appear(tmp_path: Path) -> None:
    run = tmp_path / "state" / "run"
    with UplinkWatcher(run) as w:
        assert w.current is None
        Announcer(run).publish(doc("4g", 1), durable=True)
        change = w.poll(2.0)
        assert change is not None and change.previous is None and change.switched


def test_a_refresh_alone_is_not_reported(tmp_path: Path) -> None:
    run = tmp_path / "run"
    a = Announcer(run)
    a.publish(doc("wired", 1), durable=True)
    with UplinkWatcher(run) as w:
        for i in range(5):
            a.publish(doc("wired", 1, updated=float(i)), durable=False)
        assert w.poll(0.2) is None
        assert w.current is not None and w.current.updated_boottime == 4.0
