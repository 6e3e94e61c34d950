"""The sealed file layout, version 1 (the authoritative description is docs/sealed-format.md).

    header   magic "EKTPSEAL" | version | KEM, KDF, key-wrap AEAD, payload AEAD ids |
             segment size | nonce prefix | recording id | HPKE-wrapped content key
    body     AES-256-GCM segments; segment i is sealed under
             nonce = prefix(7) || i (u32 BE) || last (u8), aad = SHA-256(header)

Binding each segment's nonce to its index and to a "last" flag (the STREAM construction)
detects reordering and truncation; binding the AAD to the header ties every segment to this
recording id and this wrapped key.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hpke

from edge.errors import IntegrityError

__all__ = [
    "HPKE_INFO_LABEL",
    "MAGIC",
    "PAYLOAD_AEAD_AES256GCM",
    "RECORDING_ID_RE",
    "SUITES",
    "TAG_SIZE",
    "VERSION",
    "Header",
    "Suite",
    "segment_nonce",
]

MAGIC = b"EKTPSEAL"
VERSION = 1
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
HPKE_INFO_LABEL = b"edge-seal/v1\x00"
PAYLOAD_AEAD_AES256GCM = 0x0002
MAX_HEADER = 8192

# Workstation-chosen ids end up in file names and MQTT topics: keep them boring.
RECORDING_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")

ReadFn = Callable[[int], bytes]

_FIXED = struct.Struct(">8sBHHHHI7sB")  # magic ver kem kdf aead payload_aead segsize prefix idlen


@dataclass(frozen=True)
class Suite:
    name: str          # config name: "mlkem768-x25519" or "x25519"
    kem_id: int        # code recorded in the file (HPKE registry values)
    kem: hpke.KEM
    kdf_id: int
    kdf: hpke.KDF
    aead_id: int
    aead: hpke.AEAD

    def hpke_suite(self) -> hpke.Suite:
        return hpke.Suite(self.kem, self.kdf, self.aead)

    @property
    def label(self) -> str:
        return f"{self.name}/hkdf-sha256/chacha20poly1305+aes256gcm"


SUITES: dict[str, Suite] = {
    # Default: post-quantum hybrid. Biometric data stays sensitive for a lifetime, so a
    # recording captured today must resist a quantum computer built later.
    "mlkem768-x25519": Suite("mlkem768-x25519", 0x647A, hpke.KEM.MLKEM768_X25519,
                             0x0001, hpke.KDF.HKDF_SHA256, 0x0003, hpke.AEAD.CHACHA20_POLY1305),
    "x25519": Suite("x25519", 0x0020, hpke.KEM.X25519,
                    0x0001, hpke.KDF.HKDF_SHA256, 0x0003, hpke.AEAD.CHACHA20_POLY1305),
}
_BY_KEM_ID = {s.kem_id: s for s in SUITES.values()}


def segment_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


@dataclass(frozen=True)
class Header:
    suite: Suite
    segment_size: int
    nonce_prefix: bytes
    recording_id: str
    wrapped_key: bytes

    def prefix_bytes(self) -> bytes:
        """Everything before the wrapped key: the HPKE ``info`` binds the key to it."""
        rid = self.recording_id.encode("ascii")
        return _FIXED.pack(MAGIC, VERSION, self.suite.kem_id, self.suite.kdf_id,
                           self.suite.aead_id, PAYLOAD_AEAD_AES256GCM, self.segment_size,
                           self.nonce_prefix, len(rid)) + rid

    def encode(self) -> bytes:
        return self.prefix_bytes() + struct.pack(">H", len(self.wrapped_key)) + self.wrapped_key

    def hpke_info(self) -> bytes:
        return HPKE_INFO_LABEL + self.prefix_bytes()

    def aad(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    @classmethod
    def decode_from(cls, read: ReadFn) -> Header:
        """Parse a header from a stream; every malformation is an IntegrityError."""
        fixed = read(_FIXED.size)
        if len(fixed) < _FIXED.size:
            raise IntegrityError("sealed file is shorter than its header",
                                 key="seal.truncated")
        magic, ver, kem_id, kdf_id, aead_id, paead, segsize, prefix, idlen = _FIXED.unpack(fixed)
        if magic != MAGIC:
            raise IntegrityError("not an edge sealed file (bad magic)", key="seal.bad_magic")
        if ver != VERSION:
            raise IntegrityError(f"sealed format version {ver} is not supported (this is v1)",
                                 key="seal.bad_version")
        suite = _BY_KEM_ID.get(kem_id)
        if suite is None or kdf_id != suite.kdf_id or aead_id != suite.aead_id:
            raise IntegrityError(f"unknown suite kem={kem_id:#06x} kdf={kdf_id:#06x} "
                                 f"aead={aead_id:#06x}", key="seal.bad_suite")
        if paead != PAYLOAD_AEAD_AES256GCM:
            raise IntegrityError(f"unknown payload AEAD {paead:#06x}", key="seal.bad_suite")
        if not 4096 <= segsize <= 16 * 1024 * 1024:
            raise IntegrityError(f"segment size {segsize} out of range", key="seal.bad_header")
        rid_raw = read(idlen)
        try:
            rid = rid_raw.decode("ascii")
        except UnicodeDecodeError:
            rid = ""
        if len(rid_raw) != idlen or not RECORDING_ID_RE.match(rid):
            raise IntegrityError("bad recording id in sealed header", key="seal.bad_header")
        klen_raw = read(2)
        if len(klen_raw) != 2:
            raise IntegrityError("sealed file is shorter than its header", key="seal.truncated")
        (klen,) = struct.unpack(">H", klen_raw)
        if klen > MAX_HEADER:
            raise IntegrityError("wrapped key too long", key="seal.bad_header")
        wrapped = read(klen)
        if len(wrapped) != klen:
            raise IntegrityError("sealed file is shorter than its header", key="seal.truncated")
        return cls(suite, segsize, prefix, rid, wrapped)
