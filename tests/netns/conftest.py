"""Fixtures for tests that need real links to break: network namespaces (topology.py) and the
uplink daemon running inside the device namespace as a real process (uplink_harness.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netns.topology import Topology, topology
from tests.netns.uplink_harness import FAST, Uplink, merge


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    with topology(tmp_path / "net") as t:
        t.start_broker()
        yield t


@pytest.fixture
def uplink(topo: Topology) -> Callable[..., Uplink]:
    """Start ``edge uplink`` in the device namespace with FAST thresholds plus overrides."""
    def start(**over: Any) -> Uplink:
        return Uplink(topo, merge(FAST, over)).start()
    return start
