"""Revocation: the CA's durable list of withdrawn certificates and the CRL the broker loads.

Place in the data flow: ops revokes a lost or retired device here; ``build_crl`` signs a CRL
that Mosquitto reads from its ``crlfile``; Mosquitto applies it only after a SIGHUP, and
only to new TLS handshakes: a revoked device that is connected at that moment stays
connected (Mosquitto 2.0.11, tests/broker/test_tls.py) until the broker is restarted
(``systemctl restart``; persistence keeps everyone else's sessions). The
CRL has a ``next_update``: once that passes, OpenSSL treats the CRL as expired and Mosquitto
refuses *every* client certificate, so the whole fleet is locked out. Hence ``crl_status``,
which ops tooling and the fleet view call to warn days before, and a CRL that is re-signed
on a schedule (daily) far inside its validity.

The list lives in a JSON file (``revoked.json`` beside the CA), replaced durably on every
change; it also holds the CRL number, which must only ever grow (RFC 5280 5.2.3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from edge.durable import atomic_write_bytes
from edge.pki.ca import FleetCA
from edge.pki.errors import PkiFileError

__all__ = [
    "CRL_STATES",
    "CRL_VALIDITY",
    "CRL_WARN_BEFORE",
    "REVOKED_FILE",
    "CrlStatus",
    "Revocation",
    "RevocationList",
    "crl_status",
    "load_crl",
    "write_crl",
]

REVOKED_FILE = "revoked.json"
# Re-signed daily by a timer; two weeks of validity leave room for a broken timer to be
# noticed (warning at one week) and fixed before devices are locked out.
CRL_VALIDITY = timedelta(days=14)
CRL_WARN_BEFORE = timedelta(days=7)

CRL_OK = "ok"
CRL_WARNING = "warning"
CRL_EXPIRED = "expired"
CRL_STATES = (CRL_OK, CRL_WARNING, CRL_EXPIRED)


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else now


@dataclass(frozen=True)
class Revocation:
    serial: int
    identity: str
    revoked_at: datetime
    reason: x509.ReasonFlags
    cert_not_after: datetime  # once past, the entry may leave the CRL (RFC 5280 3.3)

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": format(self.serial, "x"),
            "identity": self.identity,
            "revoked_at": self.revoked_at.isoformat(),
            "reason": self.reason.value,
            "cert_not_after": self.cert_not_after.isoformat(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Revocation:
        return cls(
            serial=int(d["serial"], 16),
            identity=str(d["identity"]),
            revoked_at=datetime.fromisoformat(d["revoked_at"]),
            reason=x509.ReasonFlags(d["reason"]),
            cert_not_after=datetime.fromisoformat(d["cert_not_after"]),
        )


class RevocationList:
    """The revoked serials and the CRL counter, kept in one durably replaced JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.crl_number = 0
        self._entries: dict[int, Revocation] = {}
        self._load()

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return  # a new CA has revoked nothing yet
        except OSError as e:
            raise PkiFileError(f"cannot read revocation list {self.path}: {e.strerror}") from e
        try:
            data = json.loads(raw)
            self.crl_number = int(data["crl_number"])
            for item in data["revoked"]:
                rev = Revocation.from_json(item)
                self._entries[rev.serial] = rev
        except (ValueError, KeyError, TypeError) as e:
            raise PkiFileError(f"revocation list {self.path} is damaged ({e}); restore it from "
                               "the CA backup: a lost entry would let a revoked device back in"
                               ) from e

    def _save(self) -> None:
        data = {
            "version": 1,
            "crl_number": self.crl_number,
            "revoked": [r.to_json() for r in sorted(self._entries.values(),
                                                    key=lambda r: r.revoked_at)],
        }
        atomic_write_bytes(self.path, json.dumps(data, indent=1).encode() + b"\n", mode=0o600)

    @property
    def entries(self) -> tuple[Revocation, ...]:
        return tuple(self._entries.values())

    def is_revoked(self, serial: int) -> bool:
        return serial in self._entries

    def revoke(self, cert: x509.Certificate, *,
               reason: x509.ReasonFlags = x509.ReasonFlags.unspecified,
               now: datetime | None = None) -> Revocation:
        """Record the revocation durably. Takes effect at the broker after the next
        ``build_crl`` + ``write_crl`` + SIGHUP. Revoking twice keeps the first record."""
        existing = self._entries.get(cert.serial_number)
        if existing is not None:
            return existing
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        rev = Revocation(
            serial=cert.serial_number,
            identity=str(cns[0].value) if cns else "",
            revoked_at=_now(now).replace(microsecond=0),
            reason=reason,
            cert_not_after=cert.not_valid_after_utc,
        )
        self._entries[rev.serial] = rev
        self._save()
        return rev

    def build_crl(self, ca: FleetCA, *, validity: timedelta = CRL_VALIDITY,
                  now: datetime | None = None) -> x509.CertificateRevocationList:
        """Sign a fresh CRL. The CRL number is bumped and saved *before* signing, so two CRLs
        never share a number even if we crash in between."""
        start = _now(now)
        self.crl_number += 1
        self._save()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.cert.subject)
            .last_update(start - timedelta(minutes=5))
            .next_update(start + validity)
            .add_extension(x509.CRLNumber(self.crl_number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                critical=False,
            )
        )
        for rev in self._entries.values():
            if rev.cert_not_after < start:
                continue  # expired certificates are refused anyway; keep the CRL small
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(rev.serial)
                .revocation_date(rev.revoked_at)
                .add_extension(x509.CRLReason(rev.reason), critical=False)
                .build()
            )
            builder = builder.add_revoked_certificate(entry)
        return builder.sign(ca.key, hashes.SHA256())


def write_crl(path: Path, crl: x509.CertificateRevocationList) -> None:
    """Replace the broker's CRL file durably (0644: the broker's unprivileged user reads it).
    The broker still needs a SIGHUP to load it."""
    atomic_write_bytes(Path(path), crl.public_bytes(serialization.Encoding.PEM), mode=0o644)


def load_crl(path: Path) -> x509.CertificateRevocationList:
    path = Path(path)
    try:
        return x509.load_pem_x509_crl(path.read_bytes())
    except OSError as e:
        raise PkiFileError(f"cannot read CRL {path}: {e.strerror}") from e
    except ValueError as e:
        raise PkiFileError(f"{path} is not a PEM CRL ({e})") from e


@dataclass(frozen=True)
class CrlStatus:
    """How long the broker's CRL stays usable, and what to tell ops."""

    state: str  # one of CRL_STATES
    next_update: datetime
    remaining: timedelta  # negative once expired
    message: str

    @property
    def ok(self) -> bool:
        return self.state == CRL_OK


def _human(delta: timedelta) -> str:
    secs = int(abs(delta).total_seconds())
    days, rest = divmod(secs, 86400)
    hours = rest // 3600
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours} h"
    return f"{hours} h {rest % 3600 // 60} min"


def crl_status(crl: x509.CertificateRevocationList, *, now: datetime | None = None,
               warn_before: timedelta = CRL_WARN_BEFORE) -> CrlStatus:
    """Say whether the CRL is fine, soon to expire, or expired (fleet locked out)."""
    next_update = crl.next_update_utc
    if next_update is None:
        # OpenSSL accepts a CRL without nextUpdate forever; we never make one, so it is
        # someone else's file: flag it rather than guess.
        return CrlStatus(CRL_WARNING, datetime.max.replace(tzinfo=UTC), timedelta.max,
                         "the CRL has no next-update time; re-sign it with the fleet CA tools")
    remaining = next_update - _now(now)
    when = next_update.strftime("%Y-%m-%d %H:%M UTC")
    fix = "re-sign the CRL with the fleet CA and send the broker SIGHUP"
    if remaining <= timedelta(0):
        return CrlStatus(CRL_EXPIRED, next_update, remaining,
                         f"the CRL expired {_human(remaining)} ago ({when}): the broker now "
                         f"refuses every device; {fix} now")
    if remaining <= warn_before:
        return CrlStatus(CRL_WARNING, next_update, remaining,
                         f"the CRL expires in {_human(remaining)} ({when}); after that the "
                         f"broker refuses every device; {fix}")
    return CrlStatus(CRL_OK, next_update, remaining,
                     f"the CRL is valid for {_human(remaining)} more ({when})")
