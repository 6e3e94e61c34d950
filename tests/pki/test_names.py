import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.pki import (
    CLAIM_ID_RE,
    IdentityKind,
    UnsafeIdentity,
    classify_identity,
    new_claim_id,
)


@pytest.mark.parametrize("name,kind", [
    ("kec-3171-01", IdentityKind.DEVICE),
    ("k1", IdentityKind.DEVICE),
    ("central-receiver", IdentityKind.SERVICE),
    ("central-fleet", IdentityKind.SERVICE),
    ("central-enrol", IdentityKind.SERVICE),
    ("claim-abcdefghij2345", IdentityKind.CLAIM),
])
def test_each_kind_is_recognised(name: str, kind: IdentityKind) -> None:
    assert classify_identity(name) == kind


@pytest.mark.parametrize("name,why", [
    ("kec/01", "topics"),              # would become two topic levels in edge/%u/up/#
    ("kec+01", "topics"),
    ("kec#", "topics"),
    ("$SYS", "topics"),
    ("KEC-01", "not a valid device id"),
    ("kec 01", "not a valid device id"),
    ("-kec", "not a valid device id"),
    ("k", "not a valid device id"),
    ("", "empty"),
    ("central-admin", "reserved prefix 'central-'"),
    ("claim-x", "reserved prefix 'claim-'"),
    ("claim-ABCDEFGHIJKL", "reserved prefix 'claim-'"),
])
def test_unsafe_names_are_refused_with_the_reason(name: str, why: str) -> None:
    with pytest.raises(UnsafeIdentity, match=why) as e:
        classify_identity(name)
    assert e.value.key == "pki.unsafe_identity"


def test_claim_ids_are_fresh_and_are_claims() -> None:
    ids = {new_claim_id() for _ in range(50)}
    assert len(ids) == 50
    for cid in ids:
        assert CLAIM_ID_RE.match(cid)
        assert classify_identity(cid) == IdentityKind.CLAIM


@given(st.text(max_size=80))
def test_whatever_is_accepted_is_a_safe_topic_level(name: str) -> None:
    try:
        classify_identity(name)
    except UnsafeIdentity:
        return
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,62}", name)
