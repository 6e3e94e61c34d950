"""Telemetry and status message formats, shared by the appliance and the central fleet view.

Place in the data flow: the forwarder on each appliance publishes one telemetry message every
``interval`` seconds on ``edge/{d}/up/telemetry`` and a retained status message on
``edge/{d}/up/status`` (Last Will = offline); the central fleet service
(``edge.central.fleet``) decodes both with this module. Neither message names the device: the
fleet service takes the id from the topic only, because the broker's ACL binds the topic to
the device's certificate, while a payload can say anything.

Why plain JSON with short keys (and not CBOR or protobuf): a typical message is ~300 bytes.
At one message a minute that is ~13 MB of payload a month; MQTT, TLS and TCP framing add
~160 bytes per message on top, whatever the payload encoding (see ``docs/telemetry.md``).
A binary encoding would save perhaps 100 bytes a message (~4 MB a month, well under 1 % of
a typical 4G budget) at the price of a new dependency on both ends and of messages nobody
can read with ``mosquitto_sub``. Integers only (no floats): temperature travels in tenths of
a degree, sizes in bytes, ages in whole seconds.

Versioning: ``"v": "MAJOR.MINOR"``. A decoder accepts its own major version only. Within it,
a newer minor version may add optional keys: a decoder keeps those it does not know in
``extra`` and carries on; a message claiming the decoder's own (or an older) minor version
must not carry unknown keys — that is a bug on the sender and is refused, so typos surface
at once instead of silently losing data. Known keys are always checked strictly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from edge.errors import EdgeError

__all__ = [
    "MAX_MESSAGE_BYTES",
    "SCHEMA_MAJOR",
    "SCHEMA_MINOR",
    "SCHEMA_VERSION",
    "STATUS_QOS",
    "STATUS_RETAIN",
    "TELEMETRY_FIELDS",
    "TELEMETRY_QOS",
    "UPLINKS",
    "FieldSpec",
    "Status",
    "Telemetry",
    "TelemetryError",
    "TelemetryVersionError",
    "ThrottleFlags",
    "decode_status",
    "decode_telemetry",
    "describe_fields",
    "encode_status",
    "encode_telemetry",
    "last_will",
    "online_status",
    "shutdown_status",
    "status_topic",
    "telemetry_topic",
]

SCHEMA_MAJOR: Final = 1
SCHEMA_MINOR: Final = 0
SCHEMA_VERSION: Final = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"

# A telemetry message is a few hundred bytes; anything near this is junk or an attack.
MAX_MESSAGE_BYTES: Final = 4096

# Status is retained so a fleet service that (re)starts learns every office's state at once.
STATUS_QOS: Final = 1
STATUS_RETAIN: Final = True
# Telemetry repeats every interval: losing one costs nothing, a PUBACK costs 4G bytes.
TELEMETRY_QOS: Final = 0

UPLINKS: Final = ("wired", "4g", "none")
PROGRAM_STATES: Final = ("ok", "stale")
STATUS_STATES: Final = ("online", "offline")
OFFLINE_REASONS: Final = ("lost", "shutdown")

_VERSION_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_ERROR_KEY_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
_VERSION_TEXT_RE = re.compile(r"^[\x21-\x7e]{1,64}$")
_UINT_MAX = 2**63 - 1


class TelemetryError(EdgeError, ValueError):
    """A telemetry or status message (or the values for one) breaks the schema."""

    key = "telemetry.invalid"


class TelemetryVersionError(TelemetryError):
    """The message's major version is not the one this code understands."""

    key = "telemetry.version"


def status_topic(device_id: str) -> str:
    return f"edge/{device_id}/up/status"


def telemetry_topic(device_id: str) -> str:
    return f"edge/{device_id}/up/telemetry"


# --- Raspberry Pi throttling bits (``vcgencmd get_throttled``) -------------------------------

@dataclass(frozen=True)
class ThrottleFlags:
    """The firmware's bitmask split into what a technician acts on.

    Bits 0-3 are "now", bits 16-19 "has happened since boot". Under-voltage is the one that
    matters most here: a weak power supply corrupts SD cards.
    """

    under_voltage_now: bool
    freq_capped_now: bool
    throttled_now: bool
    soft_temp_limit_now: bool
    under_voltage_occurred: bool
    freq_capped_occurred: bool
    throttled_occurred: bool
    soft_temp_limit_occurred: bool

    @classmethod
    def from_bits(cls, bits: int) -> ThrottleFlags:
        return cls(
            under_voltage_now=bool(bits & 0x1),
            freq_capped_now=bool(bits & 0x2),
            throttled_now=bool(bits & 0x4),
            soft_temp_limit_now=bool(bits & 0x8),
            under_voltage_occurred=bool(bits & 0x10000),
            freq_capped_occurred=bool(bits & 0x20000),
            throttled_occurred=bool(bits & 0x40000),
            soft_temp_limit_occurred=bool(bits & 0x80000),
        )

    def words(self) -> list[str]:
        """Short labels for the dashboard, "now" first."""
        out = []
        if self.under_voltage_now:
            out.append("under-voltage now")
        if self.throttled_now or self.freq_capped_now:
            out.append("throttled now")
        if self.soft_temp_limit_now:
            out.append("temperature limit now")
        if self.under_voltage_occurred and not self.under_voltage_now:
            out.append("under-voltage since boot")
        if (self.throttled_occurred or self.freq_capped_occurred) and not (
            self.throttled_now or self.freq_capped_now
        ):
            out.append("throttled since boot")
        return out


# --- the telemetry message ---------------------------------------------------------------------

@dataclass(frozen=True)
class Telemetry:
    """One telemetry sample. Optional values are None when the source is absent on the device
    (no thermal zone, no vcgencmd, no 4G modem, no receipt yet) — absent, never zero."""

    sent_at: int                       # device clock, unix seconds
    backlog_items: int                 # recordings not yet receipted by the central site
    backlog_bytes: int
    uplink: str                        # "wired" | "4g" | "none"
    programs: Mapping[str, str] = field(default_factory=dict)  # program -> "ok" | "stale"
    disk_free_bytes: int | None = None         # on the state_dir filesystem
    uptime_s: int | None = None
    backlog_oldest_age_s: int | None = None    # None when the backlog is empty
    mobile_used_bytes: int | None = None       # 4G bytes this billing period
    mobile_budget_bytes: int | None = None     # 4G budget this billing period
    disk_total_bytes: int | None = None
    cpu_temp_c: float | None = None            # carried in tenths of a degree
    throttled: int | None = None               # vcgencmd get_throttled bitmask
    versions: Mapping[str, str] = field(default_factory=dict)  # component -> version
    last_receipt_age_s: int | None = None      # None: no receipt since install
    errors: tuple[str, ...] = ()               # active error keys, e.g. "spool.full"
    seq: int | None = None                     # message counter since the sender started
    schema: str = SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)  # newer-minor keys, kept as sent

    @property
    def throttle_flags(self) -> ThrottleFlags | None:
        return None if self.throttled is None else ThrottleFlags.from_bits(self.throttled)

    @property
    def stale_programs(self) -> list[str]:
        return sorted(p for p, s in self.programs.items() if s != "ok")


# Each check turns a JSON value into the Python value, or raises _Bad saying what is wrong.
Check = Callable[[Any], Any]


class _Bad(Exception):
    pass


def _uint(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise _Bad(f"must be a whole number, got {v!r}")
    if v < 0 or v > _UINT_MAX:
        raise _Bad(f"must be between 0 and {_UINT_MAX}, got {v}")
    return v


def _uplink(v: Any) -> str:
    if v not in UPLINKS:
        raise _Bad(f"must be one of {', '.join(UPLINKS)}, got {v!r}")
    return str(v)


def _temp_tenths(v: Any) -> float:
    if not isinstance(v, int) or isinstance(v, bool) or not -400 <= v <= 1500:
        raise _Bad(f"must be a whole number of tenths of a degree (-400..1500), got {v!r}")
    return v / 10


def _throttled(v: Any) -> int:
    n = _uint(v)
    if n > 0xFFFFFFFF:
        raise _Bad(f"must fit in 32 bits, got {n}")
    return n


def _name_map(allowed: tuple[str, ...] | None, limit: int) -> Check:
    def check(v: Any) -> dict[str, str]:
        if not isinstance(v, dict):
            raise _Bad(f"must be an object, got {type(v).__name__}")
        if len(v) > limit:
            raise _Bad(f"must have at most {limit} entries, got {len(v)}")
        out: dict[str, str] = {}
        for k, item in v.items():
            if not _NAME_RE.match(k):
                raise _Bad(f"has a bad name {k!r} (lowercase letters, digits, '-', '_')")
            if allowed is not None:
                if item not in allowed:
                    raise _Bad(f"[{k!r}] must be one of {', '.join(allowed)}, got {item!r}")
            elif not isinstance(item, str) or not _VERSION_TEXT_RE.match(item):
                raise _Bad(f"[{k!r}] must be 1-64 printable characters, got {item!r}")
            out[k] = item
        return out

    return check


def _error_keys(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or len(v) > 16:
        raise _Bad(f"must be a list of at most 16 error keys, got {v!r}")
    for k in v:
        if not isinstance(k, str) or len(k) > 64 or not _ERROR_KEY_RE.match(k):
            raise _Bad(f"has a bad error key {k!r} (like \"spool.full\")")
    return tuple(v)


@dataclass(frozen=True)
class FieldSpec:
    key: str          # on the wire
    attr: str         # on Telemetry
    required: bool
    check: Check
    doc: str


TELEMETRY_FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("t", "sent_at", True, _uint, "device clock at sampling, unix seconds"),
    FieldSpec("n", "seq", False, _uint, "message counter since the sender started"),
    FieldSpec("bn", "backlog_items", True, _uint, "backlog: recordings not yet receipted"),
    FieldSpec("bb", "backlog_bytes", True, _uint, "backlog: bytes on disk"),
    FieldSpec("ba", "backlog_oldest_age_s", False, _uint,
              "backlog: age of the oldest item, seconds (absent when empty)"),
    FieldSpec("ul", "uplink", True, _uplink, "uplink in use: wired, 4g or none"),
    FieldSpec("mu", "mobile_used_bytes", False, _uint, "4G bytes used this billing period"),
    FieldSpec("mb", "mobile_budget_bytes", False, _uint, "4G budget this billing period, bytes"),
    FieldSpec("df", "disk_free_bytes", False, _uint, "free bytes on the state_dir filesystem"),
    FieldSpec("dt", "disk_total_bytes", False, _uint, "size of that filesystem, bytes"),
    FieldSpec("tc", "cpu_temp_c", False, _temp_tenths, "CPU temperature, tenths of a degree C"),
    FieldSpec("th", "throttled", False, _throttled, "vcgencmd get_throttled bitmask (Pi only)"),
    FieldSpec("up", "uptime_s", False, _uint, "seconds since boot"),
    FieldSpec("ver", "versions", False, _name_map(None, 8), "component -> version text"),
    FieldSpec("p", "programs", True, _name_map(PROGRAM_STATES, 16),
              "program -> ok or stale (heartbeat age)"),
    FieldSpec("ra", "last_receipt_age_s", False, _uint,
              "seconds since the last custody receipt (absent: none yet)"),
    FieldSpec("e", "errors", False, _error_keys, "active error keys, e.g. spool.full"),
)
_BY_KEY = {f.key: f for f in TELEMETRY_FIELDS}


def _dumps(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _no_constants(name: str) -> Any:
    raise _Bad(f"{name} is not allowed")


def _load_object(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE_BYTES:
        raise TelemetryError(f"{what} is {len(data)} bytes; the limit is {MAX_MESSAGE_BYTES}")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise _Bad(f"key {k!r} appears twice")
            out[k] = v
        return out

    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=pairs,
                         parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise TelemetryError(f"{what} is not UTF-8 text") from None
    except _Bad as e:
        raise TelemetryError(f"{what} is not acceptable JSON: {e}") from None
    except json.JSONDecodeError as e:
        raise TelemetryError(f"{what} is not JSON ({e.msg} at byte {e.pos})") from None
    if not isinstance(obj, dict):
        raise TelemetryError(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _check_version(obj: Mapping[str, Any], what: str) -> int:
    """Return the message's minor version after making sure we understand its major."""
    v = obj.get("v")
    m = _VERSION_RE.match(v) if isinstance(v, str) else None
    if m is None:
        raise TelemetryError(f"{what} field 'v' (schema version) must look like "
                             f"\"{SCHEMA_VERSION}\", got {v!r}")
    major, minor = int(m.group(1)), int(m.group(2))
    if major != SCHEMA_MAJOR:
        raise TelemetryVersionError(
            f"{what} has schema version {v}; this program understands {SCHEMA_MAJOR}.x only: "
            + ("upgrade the central site (edge-central)" if major > SCHEMA_MAJOR
               else "upgrade the appliance (edge)")
        )
    return minor


def _unknown_keys(obj: Mapping[str, Any], known: set[str], minor: int, what: str) -> dict[str, Any]:
    unknown = {k: obj[k] for k in obj if k not in known}
    if unknown and minor <= SCHEMA_MINOR:
        raise TelemetryError(
            f"{what} has unknown key(s) {', '.join(sorted(unknown))} for schema version "
            f"{SCHEMA_MAJOR}.{minor}: the sender must raise the minor version when adding keys"
        )
    return unknown


def decode_telemetry(data: bytes) -> Telemetry:
    """Bytes from ``edge/{d}/up/telemetry`` → Telemetry, or TelemetryError saying what is wrong."""
    what = "telemetry message"
    obj = _load_object(data, what)
    minor = _check_version(obj, what)
    extra = _unknown_keys(obj, set(_BY_KEY) | {"v"}, minor, what)
    values: dict[str, Any] = {}
    for spec in TELEMETRY_FIELDS:
        if spec.key not in obj or obj[spec.key] is None:
            if spec.required:
                raise TelemetryError(f"{what} lacks field '{spec.key}' ({spec.doc})")
            continue
        try:
            values[spec.attr] = spec.check(obj[spec.key])
        except _Bad as e:
            raise TelemetryError(f"{what} field '{spec.key}' ({spec.doc}) {e}") from None
    return Telemetry(schema=obj["v"], extra=extra, **values)


def _telemetry_object(t: Telemetry) -> dict[str, Any]:
    obj: dict[str, Any] = {"v": SCHEMA_VERSION}
    for spec in TELEMETRY_FIELDS:
        value = getattr(t, spec.attr)
        if value is None or (spec.key in ("ver", "e") and not value):
            continue
        if spec.key == "tc":
            if not math.isfinite(value):
                raise TelemetryError(f"cpu_temp_c must be a finite number, got {value!r}")
            value = round(value * 10)
        elif spec.key in ("ver", "p"):
            value = dict(value)
        elif spec.key == "e":
            value = list(value)
        obj[spec.key] = value
    return obj


def encode_telemetry(t: Telemetry) -> bytes:
    """Telemetry → compact JSON bytes, checked against the same rules the decoder applies
    (a bad value is the sender's bug and must fail on the device, not at the central site)."""
    data = _dumps(_telemetry_object(t))
    decode_telemetry(data)
    return data


# --- the retained status message ---------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    """``online`` is published (retained) right after connecting; the Last Will, registered at
    connect time, is ``offline`` with reason ``lost``; a clean stop publishes ``offline`` with
    reason ``shutdown`` before disconnecting, so ops can tell a power cut from a planned stop."""

    state: str                       # "online" | "offline"
    sent_at: int | None = None       # device clock; absent in the Last Will (fixed at connect)
    reason: str | None = None        # offline only: "lost" | "shutdown"
    schema: str = SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)


def decode_status(data: bytes) -> Status:
    what = "status message"
    obj = _load_object(data, what)
    minor = _check_version(obj, what)
    extra = _unknown_keys(obj, {"v", "s", "t", "r"}, minor, what)
    state = obj.get("s")
    if state not in STATUS_STATES:
        raise TelemetryError(f"{what} field 's' (state) must be online or offline, got {state!r}")
    sent_at: int | None = None
    if obj.get("t") is not None:
        try:
            sent_at = _uint(obj["t"])
        except _Bad as e:
            raise TelemetryError(f"{what} field 't' (device clock) {e}") from None
    reason = obj.get("r")
    if reason is not None and (state != "offline" or reason not in OFFLINE_REASONS):
        raise TelemetryError(f"{what} field 'r' (reason) is only for offline and must be one "
                             f"of {', '.join(OFFLINE_REASONS)}, got {reason!r}")
    return Status(state=str(state), sent_at=sent_at, reason=reason, schema=obj["v"], extra=extra)


def encode_status(s: Status) -> bytes:
    obj: dict[str, Any] = {"v": SCHEMA_VERSION, "s": s.state}
    if s.sent_at is not None:
        obj["t"] = s.sent_at
    if s.reason is not None:
        obj["r"] = s.reason
    data = _dumps(obj)
    decode_status(data)
    return data


def online_status(now: float) -> bytes:
    return encode_status(Status("online", sent_at=int(now)))


def last_will() -> bytes:
    """Register with ``will_set(status_topic(d), last_will(), qos=STATUS_QOS, retain=True)``."""
    return encode_status(Status("offline", reason="lost"))


def shutdown_status(now: float) -> bytes:
    return encode_status(Status("offline", sent_at=int(now), reason="shutdown"))


def describe_fields(fields: Sequence[FieldSpec] = TELEMETRY_FIELDS) -> str:
    """The field table for docs/telemetry.md, generated so it cannot drift from the code."""
    rows = ["| key | required | meaning |", "| --- | --- | --- |",
            f"| v | yes | schema version \"{SCHEMA_VERSION}\" (major.minor) |"]
    rows += [f"| {f.key} | {'yes' if f.required else 'no'} | {f.doc} |" for f in fields]
    return "\n".join(rows)
