"""The enrolment code: typos are caught before anything leaves the device, and both ends
derive the same claim identity from it."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.pki import IdentityKind, classify_identity
from edge.pki.names import CLAIM_ID_RE
from edge.provision.code import ALPHABET, CODE_LENGTH, BadCode, new_code, parse_code


def raw(text: str) -> str:
    return text.replace("-", "")


def test_code_reads_back_and_derives_a_claim_identity() -> None:
    code = new_code()
    assert len(raw(code.text)) == CODE_LENGTH
    assert [len(g) for g in code.text.split("-")] == [4, 4, 4, 4, 4]
    again = parse_code(code.text)
    assert again == code
    assert CLAIM_ID_RE.match(code.claim_id)
    assert classify_identity(code.claim_id) == IdentityKind.CLAIM
    # deterministic on both sides: same code, same key and MAC key
    assert again.claim_key().private_numbers() == code.claim_key().private_numbers()
    assert again.bundle_mac_key() == code.bundle_mac_key()
    assert code.secret not in repr(code)


def test_forgiving_reading() -> None:
    code = new_code()
    messy = " " + code.text.lower().replace("-", " ") + "\n"
    assert parse_code(messy) == code
    assert parse_code(code.qr_payload) == code
    ambiguous = raw(code.text).replace("0", "O").replace("1", "l")
    assert parse_code(ambiguous) == code


def test_every_single_wrong_character_is_caught() -> None:
    text = raw(new_code().text)
    for i, original in enumerate(text):
        for c in ALPHABET:
            if c != original:
                with pytest.raises(BadCode):
                    parse_code(text[:i] + c + text[i + 1:])


@given(st.integers(min_value=0, max_value=CODE_LENGTH - 2))
def test_swapping_neighbours_is_caught_almost_always(i: int) -> None:
    # Luhn mod N misses a swap only for one pair of values; count misses over many codes.
    misses = 0
    for _ in range(50):
        text = raw(new_code().text)
        if text[i] == text[i + 1]:
            continue
        swapped = text[:i] + text[i + 1] + text[i] + text[i + 2:]
        try:
            parse_code(swapped)
            misses += 1
        except BadCode:
            pass
    assert misses <= 2


@pytest.mark.parametrize("bad, why", [
    ("ABCD-EFGH", "characters"),
    ("UUUU-UUUU-UUUU-UUUU-UUUU", "contains"),
    ("", "characters"),
])
def test_refusals_say_what_to_check(bad: str, why: str) -> None:
    with pytest.raises(BadCode, match=why):
        parse_code(bad)


def test_distinct_codes_distinct_claims() -> None:
    ids = {new_code().claim_id for _ in range(200)}
    assert len(ids) == 200
