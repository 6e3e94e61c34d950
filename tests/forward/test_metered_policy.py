"""Above the 4G soft cap only small or urgent recordings go; above the hard cap none."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.forward.engine import may_send


@given(st.integers(0, 1), st.integers(1, 10**9), st.integers(0, 10**9))
def test_budget_policy(priority: int, size: int, small: int) -> None:
    assert may_send("all", priority, size, small)
    assert not may_send("telemetry_only", priority, size, small)
    assert may_send("priority_only", priority, size, small) == (priority == 0 or size <= small)
