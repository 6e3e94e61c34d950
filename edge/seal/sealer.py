"""Streaming sealer: the intake feeds it request-body chunks as they arrive and it writes
sealed segments to the spool's temp file. Memory stays at about one segment whatever the
recording's size; the plaintext is hashed on the way through, the sealed bytes on the way out.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.seal.format import (
    NONCE_PREFIX_SIZE,
    RECORDING_ID_RE,
    Header,
    Suite,
    segment_nonce,
)
from edge.seal.keys import HpkePublicKey

__all__ = ["SealResult", "Sealer"]


@dataclass(frozen=True)
class SealResult:
    plaintext_size: int
    plaintext_sha256: str   # hex
    sealed_size: int
    sealed_sha256: str      # hex
    suite: str
    segment_size: int


class Sealer:
    def __init__(self, public_key: HpkePublicKey, suite: Suite, recording_id: str,
                 segment_size: int, out: BinaryIO) -> None:
        if not RECORDING_ID_RE.match(recording_id):
            raise ValueError(f"unsafe recording id {recording_id!r}")
        self._out = out
        self._suite = suite
        self._segment_size = segment_size
        content_key = AESGCM.generate_key(bit_length=256)
        self._aes = AESGCM(content_key)
        self._prefix = os.urandom(NONCE_PREFIX_SIZE)
        unwrapped = Header(suite, segment_size, self._prefix, recording_id, b"")
        wrapped = suite.hpke_suite().encrypt(content_key, public_key, info=unwrapped.hpke_info())
        header = Header(suite, segment_size, self._prefix, recording_id, wrapped)
        self._aad = header.aad()
        self._plain_hash = hashlib.sha256()
        self._sealed_hash = hashlib.sha256()
        self._plain_size = 0
        self._sealed_size = 0
        self._index = 0
        self._buf = bytearray()
        self._finished = False
        self._write(header.encode())

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._sealed_hash.update(data)
        self._sealed_size += len(data)

    def _emit(self, plaintext: bytes | bytearray | memoryview, last: bool) -> None:
        nonce = segment_nonce(self._prefix, self._index, last)
        self._write(self._aes.encrypt(nonce, plaintext, self._aad))
        self._index += 1

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._finished:
            raise RuntimeError("sealer already finished")
        self._plain_hash.update(data)
        self._plain_size += len(data)
        s = self._segment_size
        view = memoryview(data)
        start = 0
        if self._buf:
            # top up the partial segment first
            take = min(s - len(self._buf), len(view))
            self._buf += view[:take]
            start = take
            if len(self._buf) == s and start < len(view):
                self._emit(self._buf, last=False)
                self._buf = bytearray()
        # Whole segments straight from the caller's buffer (no copy); keep at least one byte
        # back, because the final segment must carry the "last" flag and we only know a
        # segment is last when the body ends.
        while len(view) - start > s and not self._buf:
            self._emit(view[start:start + s], last=False)
            start += s
        if start < len(view):
            self._buf += view[start:]

    def finish(self) -> SealResult:
        if self._finished:
            raise RuntimeError("sealer already finished")
        self._emit(self._buf, last=True)
        self._buf = bytearray()
        self._finished = True
        return SealResult(
            plaintext_size=self._plain_size,
            plaintext_sha256=self._plain_hash.hexdigest(),
            sealed_size=self._sealed_size,
            sealed_sha256=self._sealed_hash.hexdigest(),
            suite=self._suite.label,
            segment_size=self._segment_size,
        )

    @property
    def plaintext_sha256_so_far(self) -> str:
        return self._plain_hash.copy().hexdigest()
