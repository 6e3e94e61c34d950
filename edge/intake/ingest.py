"""Taking one recording in: the transport-independent core shared by the HTTP API and the
hot folder.

    begin()  → refuse early (bad id, no space) before a byte is read
    write()  → plaintext chunks are sealed straight into a spool temp file (or, for a
               retry of a known id, only hashed to compare with what we already hold)
    finish() → check length and Content-Digest, make durable, commit the row; only then
               is the outcome "created" (the caller answers 201)
    abort()  → any failure before finish leaves nothing behind
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.asymmetric import ec

from edge.errors import EdgeError, SpoolConflict
from edge.seal import SUITES, Sealer, sign_manifest
from edge.seal.format import RECORDING_ID_RE
from edge.seal.keys import HpkePublicKey
from edge.seal.manifest import Manifest
from edge.spool import IntakeReceipt, Spool

__all__ = [
    "BadUpload",
    "DigestMismatch",
    "Ingestor",
    "Outcome",
    "Upload",
    "parse_content_digest",
]

META_VALUE_RE = re.compile(r"^[\x20-\x7e]{0,128}$")


class BadUpload(EdgeError, ValueError):
    key = "intake.bad_request"


class DigestMismatch(BadUpload):
    key = "intake.digest_mismatch"


class Outcome(StrEnum):
    CREATED = "created"        # 201: new and durable
    DUPLICATE = "duplicate"    # 200: same id, same content, original receipt


_DIGEST_ALGS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
_SF_ITEM = re.compile(r"\s*([a-z0-9_*.-]+)\s*=\s*:([A-Za-z0-9+/=]*):\s*(?:;[^,]*)?")


def parse_content_digest(value: str) -> dict[str, bytes]:
    """RFC 9530 Content-Digest (a structured-field dictionary of byte sequences)."""
    out: dict[str, bytes] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        m = _SF_ITEM.fullmatch(part)
        if not m:
            raise BadUpload(f"Content-Digest is malformed near {part.strip()[:40]!r}: use "
                            "sha-256=:<base64 of the SHA-256>:", key="intake.bad_digest")
        try:
            out[m.group(1)] = base64.b64decode(m.group(2), validate=True)
        except ValueError:
            raise BadUpload("Content-Digest value is not base64",
                            key="intake.bad_digest") from None
    return out


def check_recording_id(recording_id: str) -> None:
    if not RECORDING_ID_RE.match(recording_id) or recording_id in (".", ".."):
        raise BadUpload(
            f"recording id {recording_id[:80]!r} is not allowed: use 1-128 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit", key="intake.bad_id")


def check_metadata(metadata: dict[str, str]) -> None:
    for k, v in metadata.items():
        if not META_VALUE_RE.match(v):
            raise BadUpload(f"metadata {k} must be at most 128 printable ASCII characters",
                            key="intake.bad_metadata")


@dataclass
class Ingestor:
    spool: Spool
    device_id: str
    public_key: HpkePublicKey
    kem: str
    segment_size: int
    signing_key: ec.EllipticCurvePrivateKey

    def sign(self, manifest: Manifest) -> bytes:
        return sign_manifest(manifest, self.signing_key).to_bytes()

    def begin(self, recording_id: str, declared_size: int, metadata: dict[str, str],
              *, priority: int = 1, digests: dict[str, bytes] | None = None) -> Upload:
        check_recording_id(recording_id)
        check_metadata(metadata)
        existing = self.spool.get(recording_id)
        upload = Upload(self, recording_id, declared_size, metadata, priority, digests or {})
        if existing is not None:
            upload.compare_with = existing.plaintext_sha256
            upload.existing_receipt = existing.intake_receipt()
            upload._start_compare()
        else:
            upload._start_seal()
        return upload

    def ingest_file(self, path: Path, recording_id: str, metadata: dict[str, str],
                    priority: int = 1, chunk: int = 256 * 1024) -> tuple[Outcome, IntakeReceipt]:
        size = path.stat().st_size
        up = self.begin(recording_id, size, metadata, priority=priority)
        try:
            with path.open("rb") as f:
                while data := f.read(chunk):
                    up.write(data)
            return up.finish()
        except BaseException:
            up.abort()
            raise


@dataclass
class Upload:
    ingestor: Ingestor
    recording_id: str
    declared_size: int
    metadata: dict[str, str]
    priority: int
    digests: dict[str, bytes]
    compare_with: str | None = None
    existing_receipt: IntakeReceipt | None = None
    received: int = 0
    _extra_hashes: dict[str, hashlib._Hash] = field(default_factory=dict)
    _plain_hash: hashlib._Hash | None = None
    _sealer: Sealer | None = None
    _tmp: Path | None = None
    _file: BinaryIO | None = None
    _stack: contextlib.ExitStack[bool | None] = field(default_factory=contextlib.ExitStack)
    _done: bool = False

    def _start_compare(self) -> None:
        self._plain_hash = hashlib.sha256()
        self._setup_digests()

    def _start_seal(self) -> None:
        ing = self.ingestor
        self._stack.enter_context(ing.spool.reservation(self.declared_size))  # may SpoolFull
        try:
            self._tmp, self._file = ing.spool.new_temp(self.recording_id)
            self._sealer = Sealer(ing.public_key, SUITES[ing.kem], self.recording_id,
                                  ing.segment_size, self._file)
        except BaseException:
            self.abort()
            raise
        self._setup_digests()

    def _setup_digests(self) -> None:
        for alg in self.digests:
            if alg in _DIGEST_ALGS and alg != "sha-256":
                self._extra_hashes[alg] = _DIGEST_ALGS[alg]()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.received += len(data)
        if self.received > self.declared_size:
            raise BadUpload(f"body is longer than Content-Length {self.declared_size}",
                            key="intake.length_mismatch")
        for h in self._extra_hashes.values():
            h.update(data)
        if self._sealer is not None:
            self._sealer.update(data)
        elif self._plain_hash is not None:
            self._plain_hash.update(data)

    def _check_digests(self, sha256_hex: str) -> None:
        for alg, expected in self.digests.items():
            if alg == "sha-256":
                actual = bytes.fromhex(sha256_hex)
            elif alg in self._extra_hashes:
                actual = self._extra_hashes[alg].digest()
            else:
                continue  # RFC 9530: unknown algorithms may be ignored
            if not hmac.compare_digest(actual, expected):
                raise DigestMismatch(
                    f"Content-Digest {alg} does not match the received body: the upload was "
                    "damaged on the way; send it again")
        if self.digests and not any(a in _DIGEST_ALGS for a in self.digests):
            raise BadUpload("Content-Digest has no supported algorithm: use sha-256",
                            key="intake.bad_digest")

    def finish_with(self, last: bytes | bytearray) -> tuple[Outcome, IntakeReceipt]:
        """The body's tail and the finish in one call (one worker-thread hop per upload
        fewer for the HTTP path)."""
        if last:
            try:
                self.write(last)
            except BaseException:
                self.abort()
                raise
        return self.finish()

    def finish(self) -> tuple[Outcome, IntakeReceipt]:
        try:
            if self.received != self.declared_size:
                raise BadUpload(f"received {self.received} bytes but Content-Length said "
                                f"{self.declared_size}: send the whole recording again",
                                key="intake.length_mismatch")
            if self._sealer is None:
                assert self._plain_hash is not None and self.existing_receipt is not None
                digest = self._plain_hash.hexdigest()
                self._check_digests(digest)
                if digest != self.compare_with:
                    raise SpoolConflict(
                        f"recording {self.recording_id!r} already exists with different "
                        "content: give the new recording a new id")
                return Outcome.DUPLICATE, self.existing_receipt
            result = self._sealer.finish()
            self._check_digests(result.plaintext_sha256)
            assert self._tmp is not None and self._file is not None
            receipt, created = self.ingestor.spool.commit_sealed(
                self._tmp, self._file, result, recording_id=self.recording_id,
                device_id=self.ingestor.device_id, metadata=self.metadata,
                priority=self.priority, sign=self.ingestor.sign)
            self._tmp = None  # published: abort must no longer remove it
            return (Outcome.CREATED if created else Outcome.DUPLICATE), receipt
        finally:
            self._release()

    def abort(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._done:
            return
        self._done = True
        if self._tmp is not None:  # not published: the upload never happened
            assert self._file is not None
            self.ingestor.spool.discard_temp(self._tmp, self._file)
            self._tmp = None
        self._stack.close()
