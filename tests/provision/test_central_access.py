"""The central services' group reads what they use in the central folder, nothing more.
(As the services themselves see it, under their units: tests/deploy/test_systemd_chain.py.)"""

from __future__ import annotations

import grp
import stat
from pathlib import Path

import pytest

from edge.central.ops import OpsError, init_central
from edge.central.ops.access import grant_service_access

GROUP = "daemon"   # any existing group stands in for edge-central on the test machine


def mode_gid(p: Path) -> tuple[int, int]:
    st = p.stat()
    return stat.S_IMODE(st.st_mode), st.st_gid


def test_init_with_a_service_group_opens_exactly_the_service_files(tmp_path: Path) -> None:
    gid = grp.getgrnam(GROUP).gr_gid
    layout = init_central(tmp_path / "c", broker_host="mqtt.central.example",
                          service_group=GROUP)
    root = layout.root
    readable = [root / "central.toml", root / "ca/ca.pem", root / "keys/receipt.key",
                root / "services/central-receiver.pem", root / "services/central-receiver.key",
                root / "services/central-fleet.pem", root / "services/central-fleet.key"]
    for f in readable:
        assert mode_gid(f) == (0o640, gid), f
    for d in (root, root / "ca", root / "keys", root / "services", root / "devices"):
        assert mode_gid(d) == (0o750, gid), d
    assert stat.S_IMODE((root / "crl.pem").stat().st_mode) == 0o644
    # secrets stay root's alone
    for f in (root / "ca/ca.key", root / "keys/central-seal.key",
              root / "services/central-enrol.key", root / "broker/server.key",
              root / "enrol.db", root / "ca/revoked.json", root / "bundles"):
        assert mode_gid(f)[0] & 0o077 == 0, f
    assert grant_service_access(layout, GROUP) == []   # idempotent


def test_without_a_group_the_folder_stays_private(tmp_path: Path) -> None:
    layout = init_central(tmp_path / "c", broker_host="mqtt.central.example")
    assert stat.S_IMODE(layout.root.stat().st_mode) == 0o700
    assert stat.S_IMODE((layout.root / "keys/receipt.key").stat().st_mode) == 0o600


def test_an_unknown_group_is_refused_with_what_to_do(tmp_path: Path) -> None:
    layout = init_central(tmp_path / "c", broker_host="mqtt.central.example")
    with pytest.raises(OpsError, match="group 'no-such-group' does not exist: create it"):
        grant_service_access(layout, "no-such-group")
