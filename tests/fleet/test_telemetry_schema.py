"""The telemetry and status formats: compact, strict, forward-compatible within a major."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.telemetry.schema import (
    MAX_MESSAGE_BYTES,
    TELEMETRY_FIELDS,
    Status,
    Telemetry,
    TelemetryError,
    TelemetryVersionError,
    ThrottleFlags,
    decode_status,
    decode_telemetry,
    encode_status,
    encode_telemetry,
    last_will,
    online_status,
    shutdown_status,
)

# What a Pi 4 on 4G with a small backlog reports: every field present.
TYPICAL = Telemetry(
    sent_at=1_767_225_600,
    seq=1234,
    backlog_items=17,
    backlog_bytes=17 * 180_000_000,
    backlog_oldest_age_s=5400,
    uplink="4g",
    mobile_used_bytes=3_400_000_000,
    mobile_budget_bytes=10_000_000_000,
    disk_free_bytes=41_000_000_000,
    disk_total_bytes=62_000_000_000,
    cpu_temp_c=61.3,
    throttled=0x50005,
    uptime_s=864_000,
    versions={"edge": "0.1.0", "os": "12", "kernel": "6.6.31+rpt-rpi-v8"},
    programs={"intake": "ok", "forward": "ok", "uplink": "ok", "panel": "stale"},
    last_receipt_age_s=42,
    errors=("uplink.metered",),
)


def raw(t: Telemetry = TYPICAL, **changes: Any) -> bytes:
    obj = json.loads(encode_telemetry(t))
    for k, v in changes.items():
        if v is ...:
            del obj[k]
        else:
            obj[k] = v
    return json.dumps(obj).encode()


def test_typical_message_round_trips_and_stays_small() -> None:
    data = encode_telemetry(TYPICAL)
    assert decode_telemetry(data) == TYPICAL
    # The 4G cost argument in the module docstring rests on this size.
    assert len(data) < 400, data
    assert b" " not in data  # compact separators


def test_minimal_message_has_only_required_keys() -> None:
    t = Telemetry(sent_at=1, backlog_items=0, backlog_bytes=0, uplink="wired")
    obj = json.loads(encode_telemetry(t))
    assert set(obj) == {"v", "t", "bn", "bb", "ul", "p"}
    back = decode_telemetry(encode_telemetry(t))
    assert back.cpu_temp_c is None and back.throttled is None and back.disk_free_bytes is None


def test_payload_cannot_name_a_device() -> None:
    # The fleet service trusts the topic (bound to the certificate), never the payload.
    with pytest.raises(TelemetryError, match="unknown key.*id"):
        decode_telemetry(raw(id="kec-0001"))


@pytest.mark.parametrize(
    "change,words",
    [
        ({"bn": ...}, "lacks field 'bn'"),
        ({"bn": -1}, "'bn'.*between 0"),
        ({"bn": True}, "'bn'.*whole number"),
        ({"bn": 1.5}, "'bn'.*whole number"),
        ({"bb": "12"}, "'bb'.*whole number"),
        ({"ul": "wifi"}, "'ul'.*wired, 4g, none"),
        ({"tc": 2000}, "'tc'.*tenths"),
        ({"th": 2**40}, "'th'.*32 bits"),
        ({"p": {"Intake": "ok"}}, "'p'.*bad name 'Intake'"),
        ({"p": {"intake": "dead"}}, "'p'.*ok, stale"),
        ({"p": ["intake"]}, "'p'.*object"),
        ({"ver": {"edge": ""}}, "'ver'.*printable"),
        ({"e": ["Spool Full"]}, "'e'.*bad error key"),
        ({"v": "1"}, "'v'.*1.0"),
        ({"v": 1.0}, "'v'"),
    ],
)
def test_bad_fields_are_refused_with_the_field_named(change: dict[str, Any], words: str) -> None:
    with pytest.raises(TelemetryError, match=words):
        decode_telemetry(raw(**change))


def test_unknown_key_at_our_minor_version_is_a_sender_bug() -> None:
    with pytest.raises(TelemetryError, match="unknown key.*bq.*raise the minor version"):
        decode_telemetry(raw(bq=3))


def test_newer_minor_version_with_extra_fields_is_accepted() -> None:
    t = decode_telemetry(raw(v="1.7", fan=2300, gps={"lat": -6.2}))
    assert t.schema == "1.7"
    assert t.extra == {"fan": 2300, "gps": {"lat": -6.2}}
    assert t.backlog_items == TYPICAL.backlog_items
    # ...but known fields are still checked in a newer minor.
    with pytest.raises(TelemetryError, match="'bn'"):
        decode_telemetry(raw(v="1.7", bn=-5))


@pytest.mark.parametrize("v,hint", [("2.0", "upgrade the central site"),
                                    ("0.9", "upgrade the appliance")])
def test_other_major_version_is_refused_with_the_fix(v: str, hint: str) -> None:
    with pytest.raises(TelemetryVersionError, match=hint) as e:
        decode_telemetry(raw(v=v))
    assert e.value.key == "telemetry.version"


@pytest.mark.parametrize(
    "data,words",
    [
        (b"", "not JSON"),
        (b"[1,2]", "must be a JSON object"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"v":"1.0","t":NaN}', "NaN is not allowed"),
        (b'{"v":"1.0","v":"1.0"}', "appears twice"),
        (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "limit is 4096"),
    ],
)
def test_garbage_is_refused_clearly(data: bytes, words: str) -> None:
    with pytest.raises(TelemetryError, match=words) as e:
        decode_telemetry(data)
    assert e.value.key == "telemetry.invalid"


def test_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(TelemetryError, match="'bn'"):
        encode_telemetry(Telemetry(sent_at=1, backlog_items=-1, backlog_bytes=0, uplink="4g"))
    with pytest.raises(TelemetryError, match="'ul'"):
        encode_telemetry(Telemetry(sent_at=1, backlog_items=0, backlog_bytes=0, uplink="lte"))
    with pytest.raises(TelemetryError, match="finite"):
        encode_telemetry(Telemetry(sent_at=1, backlog_items=0, backlog_bytes=0, uplink="4g",
                                   cpu_temp_c=float("nan")))


def test_throttle_bits_are_named() -> None:
    f = ThrottleFlags.from_bits(0x50005)
    assert f.under_voltage_now and f.throttled_now and f.under_voltage_occurred
    assert f.throttled_occurred and not f.soft_temp_limit_now and not f.freq_capped_now
    assert f.words() == ["under-voltage now", "throttled now"]
    assert ThrottleFlags.from_bits(0x50000).words() == ["under-voltage since boot",
                                                        "throttled since boot"]
    assert TYPICAL.throttle_flags == f


def test_every_field_has_a_short_unique_key() -> None:
    keys = [f.key for f in TELEMETRY_FIELDS]
    assert len(keys) == len(set(keys))
    assert all(len(k) <= 3 for k in keys)


names = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
uints = st.integers(min_value=0, max_value=2**63 - 1)


@given(
    t=st.builds(
        Telemetry,
        sent_at=uints, backlog_items=uints, backlog_bytes=uints,
        uplink=st.sampled_from(["wired", "4g", "none"]),
        programs=st.dictionaries(names, st.sampled_from(["ok", "stale"]), max_size=6),
        disk_free_bytes=st.none() | uints, uptime_s=st.none() | uints,
        backlog_oldest_age_s=st.none() | uints, mobile_used_bytes=st.none() | uints,
        mobile_budget_bytes=st.none() | uints, disk_total_bytes=st.none() | uints,
        cpu_temp_c=st.none() | st.integers(-400, 1500).map(lambda n: n / 10),
        throttled=st.none() | st.integers(0, 0xFFFFFFFF),
        versions=st.dictionaries(names, st.from_regex(r"[!-~]{1,20}", fullmatch=True),
                                 max_size=4),
        last_receipt_age_s=st.none() | uints,
        errors=st.lists(st.from_regex(r"[a-z_]{1,8}\.[a-z_]{1,8}", fullmatch=True),
                        max_size=3).map(tuple),
        seq=st.none() | uints,
    )
)
def test_any_valid_sample_round_trips(t: Telemetry) -> None:
    assert decode_telemetry(encode_telemetry(t)) == t


# --- status ---------------------------------------------------------------------------------

def test_status_messages() -> None:
    assert decode_status(online_status(1000.7)) == Status("online", sent_at=1000)
    will = decode_status(last_will())
    assert will.state == "offline" and will.reason == "lost" and will.sent_at is None
    assert decode_status(shutdown_status(5)) == Status("offline", sent_at=5, reason="shutdown")
    assert len(last_will()) < 40


@pytest.mark.parametrize(
    "data,words",
    [
        (b'{"v":"1.0","s":"sleeping"}', "online or offline"),
        (b'{"v":"1.0","s":"online","r":"lost"}', "only for offline"),
        (b'{"v":"1.0","s":"offline","r":"bored"}', "lost, shutdown"),
        (b'{"v":"1.0","s":"online","t":-1}', "'t'"),
        (b'{"v":"1.0","s":"online","id":"x"}', "unknown key"),
        (b'{"s":"online"}', "'v'"),
    ],
)
def test_bad_status_is_refused(data: bytes, words: str) -> None:
    with pytest.raises(TelemetryError, match=words):
        decode_status(data)


def test_status_from_newer_minor_keeps_extras() -> None:
    s = decode_status(b'{"v":"1.3","s":"online","t":9,"boot":123}')
    assert s.extra == {"boot": 123} and s.sent_at == 9


def test_encode_status_checks_values() -> None:
    with pytest.raises(TelemetryError):
        encode_status(Status("online", reason="lost"))


def test_field_table_in_docs_matches_the_code() -> None:
    from pathlib import Path

    from edge.telemetry.schema import describe_fields

    doc = (Path(__file__).parents[2] / "docs" / "telemetry.md").read_text()
    assert describe_fields() in doc
    assert encode_telemetry(TYPICAL).decode() in doc
