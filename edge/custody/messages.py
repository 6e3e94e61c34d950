"""Wire format of the custody protocol: MQTT topics and message bytes (docs/custody-protocol.md).

Place in the data flow: the device's forwarder (``sender.py``) and the central receiver
(``receiver.py``) never see bytes on the wire, only the frozen dataclasses below; the thin
MQTT adapters call ``encode_*`` / ``decode_up`` / ``decode_down`` at the edge. Every payload is
binary, big-endian, with a 4-byte preamble (``EC``, version, type) so that a 128 KiB chunk
costs ~40 bytes of header, never base64. Decoding is strict: a wrong length, a trailing byte,
a bad id, a CRC mismatch or an unknown version raises ``MalformedMessage`` (with a reason a
person can read) and nothing else.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field

from edge.custody.errors import MalformedMessage, UnsupportedVersion
from edge.custody.ranges import RangeSet

__all__ = [
    "DOWN",
    "KIND_CHUNK",
    "KIND_OFFER",
    "KIND_RECEIPT",
    "KIND_REJECT",
    "KIND_STATE",
    "MAGIC",
    "MAX_CHUNK_DATA",
    "MAX_MANIFEST",
    "MAX_RANGES",
    "MAX_SEALED_SIZE",
    "PHASE_NAMES",
    "PHASE_RECEIVING",
    "PHASE_UNKNOWN",
    "PHASE_VERIFYING",
    "UP",
    "VERSION",
    "Alert",
    "Chunk",
    "ChunkCorrupt",
    "Offer",
    "Publish",
    "ReceiptDelivery",
    "Reject",
    "State",
    "check_device_id",
    "check_recording_id",
    "chunk_header_size",
    "decode_down",
    "decode_up",
    "encode_chunk",
    "encode_offer",
    "encode_reject",
    "encode_state",
    "parse_topic",
    "subscription",
    "topic",
]

MAGIC = b"EC"
VERSION = 1

UP = "up"
DOWN = "down"
KIND_OFFER = "offer"
KIND_CHUNK = "chunk"
KIND_STATE = "state"
KIND_REJECT = "reject"
KIND_RECEIPT = "receipt"

_T_OFFER = 0x01
_T_CHUNK = 0x02
_T_STATE = 0x81
_T_REJECT = 0x82
_TYPE_OF_KIND = {KIND_OFFER: _T_OFFER, KIND_CHUNK: _T_CHUNK,
                 KIND_STATE: _T_STATE, KIND_REJECT: _T_REJECT}
_UP_KINDS = (KIND_OFFER, KIND_CHUNK)
_DOWN_KINDS = (KIND_STATE, KIND_REJECT, KIND_RECEIPT)

# Phases the receiver reports in a State message.
PHASE_UNKNOWN = 0     # the central store has no (valid) offer for this recording: offer again
PHASE_RECEIVING = 1   # offer accepted; ``held`` says which bytes are durably stored
PHASE_VERIFYING = 2   # every byte held; the receiver is checking hash and manifest
PHASE_NAMES = {PHASE_UNKNOWN: "unknown", PHASE_RECEIVING: "receiving",
               PHASE_VERIFYING: "verifying"}

# Hard limits of the wire format (the machines' configs are tighter).
MAX_MANIFEST = 256 * 1024
MAX_CHUNK_DATA = 16 * 1024 * 1024
MAX_RANGES = 4096
MAX_SEALED_SIZE = 2**63 - 1
_MAX_DETAIL = 1024

# fullmatch, not ``$``: ``$`` would let a trailing newline through.
_DEVICE_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
_RECORDING_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_REASON_RE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")


def check_device_id(value: str) -> str:
    if not isinstance(value, str) or not _DEVICE_ID_RE.fullmatch(value):
        raise MalformedMessage(f"device id {value!r} is not 2-63 of [a-z0-9-]")
    return value


def check_recording_id(value: str) -> str:
    if not isinstance(value, str) or not _RECORDING_ID_RE.fullmatch(value):
        raise MalformedMessage(f"recording id {value!r} is not 1-128 of [A-Za-z0-9._-]")
    return value


class ChunkCorrupt(MalformedMessage):
    """A chunk whose data does not match its CRC-32: damaged between sender and receiver."""

    key = "custody.chunk_corrupt"


# --------------------------------------------------------------------------- topics


def topic(device_id: str, direction: str, kind: str) -> str:
    """``edge/{device}/up/custody/{kind}`` or ``edge/{device}/down/custody/{kind}``."""
    check_device_id(device_id)
    kinds = _UP_KINDS if direction == UP else _DOWN_KINDS if direction == DOWN else ()
    if kind not in kinds:
        raise ValueError(f"no custody topic {direction}/{kind}")
    return f"edge/{device_id}/{direction}/custody/{kind}"


def subscription(direction: str, device_id: str | None = None, *, share: str | None = None) -> str:
    """Topic filter: the receivers' shared ``$share/central/edge/+/up/custody/#``, or a
    device's own ``edge/{device}/down/custody/#``."""
    dev = "+" if device_id is None else check_device_id(device_id)
    filt = f"edge/{dev}/{direction}/custody/#"
    return f"$share/{share}/{filt}" if share else filt


def parse_topic(value: str) -> tuple[str, str, str]:
    """``(device_id, direction, kind)``; MalformedMessage for anything else."""
    parts = value.split("/")
    if len(parts) != 5 or parts[0] != "edge" or parts[3] != "custody":
        raise MalformedMessage(f"topic {value!r} is not edge/<device>/<up|down>/custody/<kind>")
    _, device_id, direction, _, kind = parts
    check_device_id(device_id)
    if (direction == UP and kind in _UP_KINDS) or (direction == DOWN and kind in _DOWN_KINDS):
        return device_id, direction, kind
    raise MalformedMessage(f"topic {value!r}: no custody message {direction}/{kind}")


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Alert:
    """Output of both machines: something ops or a technician should see (log, telemetry).

    Nothing to carry out; the machine has already dealt with it (dropped, rejected, retried).
    """

    key: str
    detail: str
    device_id: str | None = None
    recording_id: str | None = None


@dataclass(frozen=True)
class Publish:
    """Output of both machines: the adapter publishes ``payload`` on ``topic`` at ``qos``."""

    topic: str
    payload: bytes = field(repr=False)
    qos: int = 1


@dataclass(frozen=True)
class Offer:
    """Device → central: "I hold this sealed file; what do you have of it?".

    Also the sender's query: sent again (with a fresh ``query_id``) whenever the sender needs
    the receiver's current state; the receiver's State echoes ``query_id``.
    """

    recording_id: str
    seq: int
    priority: int
    sealed_size: int
    sealed_sha256: bytes
    manifest: bytes = field(repr=False)
    query_id: int = 0


@dataclass(frozen=True)
class Chunk:
    """Device → central: bytes ``[offset, offset+len(data))`` of the sealed file."""

    recording_id: str
    generation: int
    offset: int
    data: bytes = field(repr=False)

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True)
class State:
    """Central → device: the durable truth about one recording (progress ack / query answer)."""

    recording_id: str
    generation: int
    phase: int
    held: RangeSet
    query_id: int = 0


@dataclass(frozen=True)
class Reject:
    """Central → device: the offer is refused for a reason retrying soon will not fix."""

    recording_id: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class ReceiptDelivery:
    """Central → device: a custody receipt (bytes as signed; see receipt.py)."""

    receipt: bytes = field(repr=False)


# --------------------------------------------------------------------------- encoding

_PRE = struct.Struct(">2sBB")


def _pre(kind: str) -> bytes:
    return _PRE.pack(MAGIC, VERSION, _TYPE_OF_KIND[kind])


def _rid(recording_id: str) -> bytes:
    raw = check_recording_id(recording_id).encode("ascii")
    return bytes((len(raw),)) + raw


def _u(bits: int, value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**bits:
        raise ValueError(f"{name} = {value!r} does not fit in u{bits}")


def encode_offer(m: Offer) -> bytes:
    _u(64, m.seq, "seq")
    _u(8, m.priority, "priority")
    _u(63, m.sealed_size, "sealed_size")
    _u(32, m.query_id, "query_id")
    if len(m.sealed_sha256) != 32:
        raise ValueError("sealed_sha256 must be 32 bytes")
    if not 0 < len(m.manifest) <= MAX_MANIFEST:
        raise ValueError(f"manifest must be 1..{MAX_MANIFEST} bytes")
    return b"".join((
        _pre(KIND_OFFER), _rid(m.recording_id),
        struct.pack(">QBQ", m.seq, m.priority, m.sealed_size), m.sealed_sha256,
        struct.pack(">II", m.query_id, len(m.manifest)), m.manifest,
    ))


def chunk_header_size(recording_id: str) -> int:
    """Bytes of a chunk frame that are not data (for sizing against the broker's limit)."""
    return 4 + 1 + len(recording_id) + 4 + 8 + 4


def encode_chunk(recording_id: str, generation: int, offset: int, data: bytes) -> bytes:
    _u(32, generation, "generation")
    _u(63, offset, "offset")
    if not 0 < len(data) <= MAX_CHUNK_DATA:
        raise ValueError(f"chunk data must be 1..{MAX_CHUNK_DATA} bytes")
    return b"".join((
        _pre(KIND_CHUNK), _rid(recording_id),
        struct.pack(">IQI", generation, offset, zlib.crc32(data)), data,
    ))


def encode_state(m: State) -> bytes:
    _u(32, m.generation, "generation")
    _u(32, m.query_id, "query_id")
    if m.phase not in PHASE_NAMES:
        raise ValueError(f"phase {m.phase!r}")
    if len(m.held) > MAX_RANGES:
        raise ValueError(f"at most {MAX_RANGES} ranges in one State")
    parts = [_pre(KIND_STATE), _rid(m.recording_id),
             struct.pack(">IBIH", m.generation, m.phase, m.query_id, len(m.held))]
    parts.extend(struct.pack(">QQ", s, e) for s, e in m.held)
    return b"".join(parts)


def encode_reject(m: Reject) -> bytes:
    if not _REASON_RE.fullmatch(m.reason) or len(m.reason) > 64:
        raise ValueError(f"reason {m.reason!r} is not a dotted key")
    detail = m.detail.encode("utf-8")[:_MAX_DETAIL]
    # Cutting UTF-8 may split a character: drop the broken tail rather than send invalid text.
    detail = detail.decode("utf-8", "ignore").encode("utf-8")
    return b"".join((
        _pre(KIND_REJECT), _rid(m.recording_id),
        bytes((len(m.reason),)), m.reason.encode("ascii"),
        struct.pack(">H", len(detail)), detail,
    ))


# --------------------------------------------------------------------------- decoding


class _Reader:
    def __init__(self, what: str, data: bytes) -> None:
        self.what = what
        self.data = data
        self.pos = 0

    def fail(self, reason: str) -> MalformedMessage:
        return MalformedMessage(f"{self.what}: {reason}")

    def take(self, n: int, name: str) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"truncated in {name} (need {n} bytes at {self.pos}, "
                            f"have {len(self.data) - self.pos})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, name: str) -> int:
        return self.take(1, name)[0]

    def u16(self, name: str) -> int:
        v: int = struct.unpack(">H", self.take(2, name))[0]
        return v

    def u32(self, name: str) -> int:
        v: int = struct.unpack(">I", self.take(4, name))[0]
        return v

    def u64(self, name: str, limit: int = 2**64 - 1) -> int:
        v: int = struct.unpack(">Q", self.take(8, name))[0]
        if v > limit:
            raise self.fail(f"{name} = {v} is larger than {limit}")
        return v

    def rid(self) -> str:
        n = self.u8("recording id length")
        raw = self.take(n, "recording id")
        try:
            return check_recording_id(raw.decode("ascii"))
        except (UnicodeDecodeError, MalformedMessage):
            raise self.fail(f"recording id {raw!r} is not 1-128 of [A-Za-z0-9._-]") from None

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} unexpected trailing byte(s)")


def _open(kind: str, payload: bytes) -> _Reader:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise MalformedMessage(f"{kind}: payload is {type(payload).__name__}, not bytes")
    r = _Reader(kind, bytes(payload))
    magic = r.take(2, "magic")
    if magic != MAGIC:
        raise r.fail(f"magic {magic!r} is not {MAGIC!r}: not a custody message")
    version = r.u8("version")
    if version != VERSION:
        raise UnsupportedVersion(f"{kind}: protocol version {version}; this build speaks "
                                 f"version {VERSION}: update the older side")
    mtype = r.u8("type")
    if mtype != _TYPE_OF_KIND[kind]:
        raise r.fail(f"type 0x{mtype:02x} sent on the {kind!r} topic")
    return r


def _decode_offer(r: _Reader) -> Offer:
    rid = r.rid()
    seq = r.u64("seq")
    priority = r.u8("priority")
    size = r.u64("sealed_size", MAX_SEALED_SIZE)
    sha = r.take(32, "sealed_sha256")
    query_id = r.u32("query_id")
    mlen = r.u32("manifest length")
    if not 0 < mlen <= MAX_MANIFEST:
        raise r.fail(f"manifest length {mlen} is not 1..{MAX_MANIFEST}")
    manifest = r.take(mlen, "manifest")
    r.end()
    return Offer(rid, seq, priority, size, sha, manifest, query_id)


def _decode_chunk(r: _Reader) -> Chunk:
    rid = r.rid()
    generation = r.u32("generation")
    offset = r.u64("offset", MAX_SEALED_SIZE)
    crc = r.u32("crc32")
    data = r.rest()
    if not 0 < len(data) <= MAX_CHUNK_DATA:
        raise r.fail(f"chunk data of {len(data)} bytes is not 1..{MAX_CHUNK_DATA}")
    if offset + len(data) > MAX_SEALED_SIZE:
        raise r.fail("chunk ends past the largest possible file")
    if zlib.crc32(data) != crc:
        raise ChunkCorrupt(f"chunk {rid}@{offset}: data does not match its CRC-32 "
                           "(damaged in transit); it is dropped and will be sent again")
    return Chunk(rid, generation, offset, data)


def _decode_state(r: _Reader) -> State:
    rid = r.rid()
    generation = r.u32("generation")
    phase = r.u8("phase")
    if phase not in PHASE_NAMES:
        raise r.fail(f"unknown phase {phase}")
    query_id = r.u32("query_id")
    count = r.u16("range count")
    if count > MAX_RANGES:
        raise r.fail(f"{count} ranges; at most {MAX_RANGES}")
    spans = []
    last_end = -1
    for i in range(count):
        s = r.u64(f"range {i} start", MAX_SEALED_SIZE)
        e = r.u64(f"range {i} end", MAX_SEALED_SIZE)
        # Canonical form only: sorted, disjoint, not touching, non-empty.
        if not (last_end < s < e):
            raise r.fail(f"range {i} [{s}, {e}) is empty, unsorted or touches the previous one")
        spans.append((s, e))
        last_end = e
    r.end()
    return State(rid, generation, phase, RangeSet(tuple(spans)), query_id)


def _decode_reject(r: _Reader) -> Reject:
    rid = r.rid()
    n = r.u8("reason length")
    raw = r.take(n, "reason")
    try:
        reason = raw.decode("ascii")
    except UnicodeDecodeError:
        raise r.fail("reason is not ASCII") from None
    if not _REASON_RE.fullmatch(reason) or len(reason) > 64:
        raise r.fail(f"reason {reason!r} is not a dotted key")
    dlen = r.u16("detail length")
    if dlen > _MAX_DETAIL:
        raise r.fail(f"detail of {dlen} bytes; at most {_MAX_DETAIL}")
    try:
        detail = r.take(dlen, "detail").decode("utf-8")
    except UnicodeDecodeError:
        raise r.fail("detail is not UTF-8") from None
    r.end()
    return Reject(rid, reason, detail)


def decode_up(topic_name: str, payload: bytes) -> tuple[str, Offer | Chunk]:
    """A device → central message: ``(device id from the topic, message)``."""
    device_id, direction, kind = parse_topic(topic_name)
    if direction != UP:
        raise MalformedMessage(f"topic {topic_name!r} is not device → central")
    r = _open(kind, payload)
    msg: Offer | Chunk = _decode_offer(r) if kind == KIND_OFFER else _decode_chunk(r)
    return device_id, msg


def decode_down(topic_name: str, payload: bytes) -> tuple[str, State | Reject | ReceiptDelivery]:
    """A central → device message: ``(device id from the topic, message)``."""
    device_id, direction, kind = parse_topic(topic_name)
    if direction != DOWN:
        raise MalformedMessage(f"topic {topic_name!r} is not central → device")
    if kind == KIND_RECEIPT:
        if not isinstance(payload, (bytes, bytearray)) or not 0 < len(payload) <= 4096:
            raise MalformedMessage("receipt: payload must be 1..4096 bytes")
        return device_id, ReceiptDelivery(bytes(payload))
    r = _open(kind, payload)
    msg: State | Reject = _decode_state(r) if kind == KIND_STATE else _decode_reject(r)
    return device_id, msg
