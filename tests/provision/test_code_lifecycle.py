"""The code's life as a pure decision (edge.central.ops.codes)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.central.ops.codes import (
    CANCELLED,
    ISSUED,
    STATES,
    USED,
    Cancel,
    Claim,
    CodeView,
    Issue,
    Refuse,
    Resend,
    decide,
    next_state,
)

CODE = CodeView(ISSUED, "kec-a", expires_at=1000.0)


def test_first_good_claim_issues() -> None:
    assert decide(CODE, Claim("kec-a", "k1", 999.0)) == Issue()
    assert next_state(ISSUED, Issue) == USED


def test_used_code_resends_to_the_same_key_only() -> None:
    used = CodeView(USED, "kec-a", 1000.0, device_key_sha256="k1")
    assert decide(used, Claim("kec-a", "k1", 5000.0)) == Resend()
    refused = decide(used, Claim("kec-a", "k2", 10.0))
    assert isinstance(refused, Refuse) and refused.reason == "enrol.code_used"


def test_expired_and_wrong_device() -> None:
    late = decide(CODE, Claim("kec-a", "k1", 1000.0))
    assert isinstance(late, Refuse) and late.reason == "enrol.code_expired"
    other = decide(CODE, Claim("kec-b", "k1", 1.0))
    assert isinstance(other, Refuse) and other.reason == "enrol.wrong_device"
    assert "kec-a" in other.message


def test_final_states_take_nothing() -> None:
    for state in (USED, CANCELLED):
        for event in (Issue, Cancel):
            with pytest.raises(ValueError):
                next_state(state, event)
    cancelled = decide(CodeView(CANCELLED, "kec-a", 1000.0), Claim("kec-a", "k", 1.0))
    assert isinstance(cancelled, Refuse) and cancelled.reason == "enrol.code_cancelled"


@given(st.sampled_from(STATES), st.sampled_from(["kec-a", "kec-b"]), st.sampled_from(["k1", "k2"]),
       st.floats(min_value=0, max_value=2000))
def test_only_an_issued_unexpired_code_for_this_device_issues(state: str, name: str, key: str,
                                                             at: float) -> None:
    code = CodeView(state, "kec-a", 1000.0, "k1" if state == USED else None)
    decision = decide(code, Claim(name, key, at))
    assert isinstance(decision, Issue) == (state == ISSUED and at < 1000.0 and name == "kec-a")
    assert isinstance(decision, Resend) == (state == USED and key == "k1")
