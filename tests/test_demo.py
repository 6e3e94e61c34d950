"""The README's main job: the all-in-one demo runs end to end and reports lost = 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_end_to_end_with_nothing_lost(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--recordings", "12", "--workstations", "3",
         "--cut-after", "4", "--cut-for", "5", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=400, cwd=REPO)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    out = p.stdout
    assert "uplink CUT" in out and "uplink RESTORED" in out
    assert "held centrally, opened, intact      : 12" in out
    assert "lost                                : 0" in out
    assert "NET  " in out and "double flash" in out  # the LEDs showed the cut, without colour
