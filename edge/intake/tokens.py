"""Per-workstation upload tokens, stored hashed.

A token is 32 random bytes (shown once, base64url) issued by ``edge token add NAME``. The
appliance keeps only SHA-256(token): tokens are high-entropy, so a fast hash is enough and a
stolen SD card does not yield a usable token. The file is re-read when it changes, so adding
or revoking a workstation takes effect without restarting the intake.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.durable import atomic_write_bytes
from edge.errors import ConfigError

__all__ = ["WORKSTATION_RE", "TokenCheck", "TokenStore"]

WORKSTATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FORMAT = "edge-tokens/1"


@dataclass(frozen=True)
class TokenCheck:
    workstation: str | None   # None: unknown token
    revoked: bool = False


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, dict[str, Any]] = {}

    def _load_doc(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"format": FORMAT, "tokens": []}
        except (OSError, ValueError) as e:
            raise ConfigError(f"{self.path}: token file unreadable ({e}): restore it or issue "
                              "new tokens with 'edge token add'") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ConfigError(f"{self.path}: not an edge token file")
        return doc

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp == self._stamp:
            return
        doc = self._load_doc()
        self._by_hash = {t["sha256"]: t for t in doc["tokens"]}
        self._stamp = stamp

    def check(self, token: str) -> TokenCheck:
        with self._lock:
            self._refresh()
            entry = self._by_hash.get(_hash(token))
        if entry is None:
            return TokenCheck(None)
        return TokenCheck(entry["workstation"], bool(entry.get("revoked")))

    def add(self, workstation: str) -> str:
        if not WORKSTATION_RE.match(workstation):
            raise ConfigError(f"workstation name {workstation!r}: use 1-64 letters, digits, "
                              "'.', '_' or '-'")
        token = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        with self._lock:
            doc = self._load_doc()
            doc["tokens"].append({"workstation": workstation, "sha256": _hash(token),
                                  "created_at": time.time(), "revoked": False})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, json.dumps(doc, indent=2).encode(), mode=0o600)
            self._stamp = None
        return token

    def revoke(self, workstation: str) -> int:
        with self._lock:
            doc = self._load_doc()
            n = 0
            for t in doc["tokens"]:
                if t["workstation"] == workstation and not t.get("revoked"):
                    t["revoked"] = True
                    n += 1
            atomic_write_bytes(self.path, json.dumps(doc, indent=2).encode(), mode=0o600)
            self._stamp = None
        return n

    def list(self) -> list[dict[str, Any]]:
        doc = self._load_doc()
        return [{k: v for k, v in t.items() if k != "sha256"} for t in doc["tokens"]]
