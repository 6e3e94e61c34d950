from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.office import Office, make_office


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    o = make_office(tmp_path_factory.mktemp("office"), intake={"body_idle_timeout_s": 1.0})
    o.start_intake()
    yield o
    o.stop()


@pytest.fixture
def fresh_office(tmp_path: Path) -> Iterator[Office]:
    o = make_office(tmp_path / "office")
    yield o
    o.kill()
