"""Fixtures shared by every test package."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import MOSQUITTO, Broker, start_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto with the repo's config, TLS and ACL, fresh CA, free port (see
    tests/support/broker.py)."""
    if shutil.which(MOSQUITTO) is None:
        pytest.fail(f"{MOSQUITTO} is missing: run scripts/dev setup (installs mosquitto)")
    with start_broker(tmp_path) as b:
        yield b
