"""The central ops authority: issue enrolment codes, answer claims, revoke, refresh the CRL.

Place in the data flow: the library behind ``edge-central enrol``, ``enrol-service``,
``sign-csr``, ``revoke`` and ``crl refresh``. It holds the fleet CA key (loaded on first
use), the enrolment database and the revocation list of one central folder.

Order of durable steps when a claim succeeds:
1. in one SQLite transaction (write lock taken first): re-read the code, decide
   (``codes.decide``), sign the certificates, mark the code USED with them;
2. answer the device;
3. revoke the claim certificate (and, for a replacement, the device's older certificates),
   write a fresh CRL, ask the broker to reload it.
A crash between 1 and 3 leaves a used code whose claim certificate the broker still
accepts; ``reconcile`` (run at every service start) finishes step 3. Until then the claim
can only be refused ("used") or get its own certificates again ("resend").

The revocation list is one JSON file rewritten whole; the enrolment service and an
operator's ``revoke`` may run at once, so every change to it re-reads it under an exclusive
``flock`` on ``DIR/.ops.lock`` (else one writer could drop the other's revocation).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.central.ops.codes import Claim, Decision, Issue, Refuse, Resend, decide
from edge.central.ops.errors import CodeRefused, OpsError
from edge.central.ops.layout import MAX_CODE_TTL, CentralLayout
from edge.central.ops.store import EnrolStore
from edge.durable import atomic_write_bytes
from edge.pki import (
    REVOKED_FILE,
    CrlStatus,
    CsrRejected,
    FleetCA,
    IdentityKind,
    PkiError,
    RevocationList,
    build_csr,
    check_csr,
    classify_identity,
    crl_status,
    load_crl,
    write_crl,
)
from edge.pki.files import load_certificate
from edge.provision.bundle import Bundle, bundle_file_name, seal_bundle
from edge.provision.code import EnrolmentCode, new_code
from edge.provision.messages import (
    EnrolAnswer,
    EnrolRequest,
    MessageError,
    key_fingerprint,
    verify_file_signature,
)

__all__ = ["Central", "IssuedCode"]

log = logging.getLogger("edge.central.enrol")


@dataclass(frozen=True)
class IssuedCode:
    code: EnrolmentCode
    device_id: str
    office: str
    expires_at: datetime
    bundle_path: Path
    cancelled: tuple[str, ...]  # claim ids of older unused codes for the same device


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


class Central:
    def __init__(self, layout: CentralLayout, *, reload: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.layout = layout
        self.store = EnrolStore(layout.path("enrol_db"))
        self._reload = reload
        self._clock = clock
        self._ca: FleetCA | None = None

    def close(self) -> None:
        self.store.close()

    # -- shared pieces -----------------------------------------------------------------
    @property
    def ca(self) -> FleetCA:
        if self._ca is None:
            passphrase = None
            if self.layout.ca_passphrase_file is not None:
                passphrase = self.layout.ca_passphrase_file.read_bytes().strip() or None
            self._ca = FleetCA.load(self.layout.path("ca_dir"), passphrase=passphrase)
        return self._ca

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    @contextmanager
    def _ops_lock(self) -> Iterator[RevocationList]:
        with open(self.layout.lock_file, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield RevocationList(self.layout.path("ca_dir") / REVOKED_FILE)
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def reload_broker(self) -> str:
        """Make the broker read the new CRL; say what was done (or what ops must do)."""
        if self.layout.reload_command:
            try:
                subprocess.run(list(self.layout.reload_command), check=True, timeout=30,
                               capture_output=True)
            except (OSError, subprocess.SubprocessError) as e:
                raise OpsError(f"the CRL was written, but the broker reload command "
                               f"{' '.join(self.layout.reload_command)!r} failed ({e}); "
                               "send the broker SIGHUP by hand (systemctl reload mosquitto)",
                               key="central.reload_failed") from e
            return f"broker reloaded ({' '.join(self.layout.reload_command)})"
        if self._reload is not None:
            self._reload()
            return "broker reloaded"
        return ("the broker loads the new CRL only on SIGHUP: run 'systemctl reload "
                "mosquitto' on the broker host (or set [broker] reload_command)")

    def _write_crl(self, revoked: RevocationList) -> x509.CertificateRevocationList:
        crl = revoked.build_crl(self.ca, now=self.now())
        write_crl(self.layout.path("crl"), crl)
        return crl

    # -- codes -------------------------------------------------------------------------
    def issue_code(self, device_id: str, office: str, *, ttl: timedelta | None = None,
                   apn: str | None = None, workstations: int | None = None,
                   replace: bool = False, out_dir: Path | None = None) -> IssuedCode:
        try:
            kind = classify_identity(device_id)
        except PkiError as e:
            raise OpsError(e.message, key="enrol.bad_device_id") from e
        if kind != IdentityKind.DEVICE:
            raise OpsError(f"{device_id!r} is a {kind} name, not a device id",
                           key="enrol.bad_device_id")
        ttl = ttl or self.layout.code_ttl
        if not timedelta(0) < ttl <= MAX_CODE_TTL:
            raise OpsError(f"--ttl {ttl}: a code may live more than 0 and at most 3 days",
                           key="enrol.bad_ttl")
        now = self.now()
        active = self.store.certs(device_id, kinds=("device",), active_at=now.timestamp())
        if active and not replace:
            until = datetime.fromtimestamp(active[-1].not_after, UTC)
            raise OpsError(
                f"device {device_id} already has a certificate (serial {active[-1].serial}, "
                f"valid until {until:%Y-%m-%d}); to replace the appliance pass --replace "
                f"(its old certificates are revoked when the new one is issued), or revoke it "
                f"first (edge-central revoke {device_id})", key="enrol.device_exists")
        code = new_code()
        claim_cert = self.ca.issue_client_certificate(
            build_csr(code.claim_key(), code.claim_id), expect=IdentityKind.CLAIM,
            validity=ttl, now=now)
        expires = now + ttl
        bundle = Bundle(
            claim_id=code.claim_id, device_id=device_id, office=office,
            broker_host=self.layout.broker_host, broker_port=self.layout.broker_port,
            ca_pem=_pem(self.ca.cert).encode(), claim_cert_pem=_pem(claim_cert).encode(),
            sealing_public_json=self.layout.path("sealing_public_key").read_bytes(),
            kem=self.layout.kem,
            receipt_public_pem=self.layout.path("receipt_public_key").read_bytes(),
            issued_at=now, expires_at=expires,
            apn=self.layout.apn if apn is None else apn,
            workstations=self.layout.workstations if workstations is None else workstations)
        data = seal_bundle(bundle, ca=self.ca, code=code)
        with self.store.transaction() as db:
            cancelled = self.store.cancel_codes(db, device_id)
            self.store.add_code(db, claim_id=code.claim_id, device_id=device_id,
                                office=office, issued_at=now.timestamp(),
                                expires_at=expires.timestamp(),
                                claim_serial=claim_cert.serial_number,
                                claim_cert=_pem(claim_cert), replace_existing=replace)
            self.store.add_cert(db, serial=claim_cert.serial_number, identity=code.claim_id,
                                kind="claim", issued_at=now.timestamp(),
                                not_after=claim_cert.not_valid_after_utc.timestamp(),
                                pem=_pem(claim_cert), claim_id=code.claim_id)
        target_dir = out_dir or self.layout.path("bundles_dir")
        target_dir.mkdir(parents=True, exist_ok=True)
        bundle_path = target_dir / bundle_file_name(device_id, code.claim_id)
        atomic_write_bytes(bundle_path, data, mode=0o644)
        if cancelled:
            log.info("cancelled older code(s) %s for %s", ", ".join(cancelled), device_id)
            self.reconcile()
        return IssuedCode(code, device_id, office, expires, bundle_path, tuple(cancelled))

    def cancel(self, device_id: str) -> list[str]:
        with self.store.transaction() as db:
            cancelled = self.store.cancel_codes(db, device_id)
        if cancelled:
            self.reconcile()
        return cancelled

    # -- claims ------------------------------------------------------------------------
    def handle(self, claim_id: str, request: EnrolRequest, *, via: str = "mqtt"
               ) -> EnrolAnswer:
        """Answer one claim: certificates, the same certificates again, or a refusal."""
        rid = request.request_id
        if self.store.code(claim_id) is None:
            return EnrolAnswer(rid, reason="enrol.code_unknown",
                               message="central knows no enrolment code for this claim; "
                                       "check the code, or ask central ops for a new one")
        try:
            checked = check_csr(request.device_csr)
        except CsrRejected as e:
            self.store.note_refusal(claim_id, "enrol.bad_request")
            return EnrolAnswer(rid, reason="enrol.bad_request", message=e.message)
        now = self.now()
        claim = Claim(checked.name, key_fingerprint(checked.public_key), now.timestamp())
        replaced: list[str] = []
        decision: Decision | None = None
        device_id = ""
        try:
            with self.store.transaction() as db:
                row = self.store.code(claim_id, db)
                assert row is not None  # codes are never deleted
                device_id = row.device_id
                decision = decide(row.view(), claim)
                if isinstance(decision, Refuse):
                    answer = EnrolAnswer(rid, reason=decision.reason, message=decision.message)
                elif isinstance(decision, Resend):
                    assert row.device_cert is not None and row.intake_cert is not None
                    answer = EnrolAnswer(
                        rid, device_cert=x509.load_pem_x509_certificate(
                            row.device_cert.encode()),
                        intake_cert=x509.load_pem_x509_certificate(row.intake_cert.encode()))
                else:
                    assert isinstance(decision, Issue)
                    if row.replace_existing:
                        replaced = [c.serial for c in self.store.certs(
                            row.device_id, active_at=now.timestamp())]
                    answer = self._issue(db, row.claim_id, row.device_id, request, claim, now,
                                         via)
        except CsrRejected as e:
            answer = EnrolAnswer(rid, reason="enrol.bad_request", message=e.message)
        if answer.refused:
            assert answer.reason is not None
            self.store.note_refusal(claim_id, answer.reason)
            log.warning("claim %s refused: %s", claim_id, answer.reason)
            return answer
        if isinstance(decision, Issue):
            log.info("claim %s: issued certificates for %s", claim_id, claim.name)
            self._finish_claim(claim_id, replaced)
        # Before the device hears its answer: once it has a certificate it may send
        # recordings, and the custody receivers must be able to check them.
        self._file_device_cert(device_id)
        return answer

    def _file_device_cert(self, device_id: str) -> None:
        """``devices/<id>.crt`` = the device's newest unrevoked certificate, for the custody
        receivers (edge/central/devices.py). Called on every answer, so a resend repairs a
        file a crash left out, and a late resend to a replaced appliance cannot bring its
        old (revoked) certificate back."""
        rows = self.store.certs(device_id, kinds=("device",), active_at=self.now().timestamp())
        if not rows:
            return
        pem = rows[-1].pem.encode("ascii")
        folder = self.layout.path("device_certs_dir")
        folder.mkdir(mode=0o700, exist_ok=True)   # folders made before this existed
        path = folder / f"{device_id}.crt"
        with contextlib.suppress(FileNotFoundError):
            if path.read_bytes() == pem:
                return
        atomic_write_bytes(path, pem, mode=0o644)

    def _issue(self, db: sqlite3.Connection, claim_id: str, device_id: str,
               request: EnrolRequest, claim: Claim, now: datetime, via: str) -> EnrolAnswer:
        device_cert = self.ca.issue_client_certificate(request.device_csr,
                                                       expect=IdentityKind.DEVICE, now=now)
        intake_cert = self.ca.issue_server_certificate(
            request.intake_csr, dns_names=[f"{device_id}.local", *self.layout.intake_names],
            now=now)
        self.store.mark_used(db, claim_id, at=now.timestamp(), via=via,
                             device_key_sha256=claim.key_sha256,
                             device_cert=_pem(device_cert), intake_cert=_pem(intake_cert))
        for cert, kind in ((device_cert, "device"), (intake_cert, "intake")):
            self.store.add_cert(db, serial=cert.serial_number, identity=device_id, kind=kind,
                                issued_at=now.timestamp(),
                                not_after=cert.not_valid_after_utc.timestamp(),
                                pem=_pem(cert), claim_id=claim_id)
        return EnrolAnswer(request.request_id, device_cert=device_cert,
                           intake_cert=intake_cert)

    def _finish_claim(self, claim_id: str, replaced: list[str]) -> None:
        """Step 3: the claim certificate (and replaced device certificates) onto the CRL."""
        with self._ops_lock() as revoked:
            row = self.store.code(claim_id)
            assert row is not None
            revoked.revoke(x509.load_pem_x509_certificate(row.claim_cert.encode()),
                           reason=x509.ReasonFlags.cessation_of_operation, now=self.now())
            for serial in replaced:
                cert_row = next((c for c in self.store.certs(row.device_id)
                                 if c.serial == serial), None)
                if cert_row is not None:
                    revoked.revoke(x509.load_pem_x509_certificate(cert_row.pem.encode()),
                                   reason=x509.ReasonFlags.superseded, now=self.now())
                    self.store.mark_revoked(serial, self._clock())
            self._write_crl(revoked)
            self.store.mark_claim_revoked(claim_id)
        log.info("claim %s revoked; %s", claim_id, self.reload_broker())

    def reconcile(self) -> list[str]:
        """Revoke the claim certificates of finished codes that are still accepted (a crash
        after answering, or codes cancelled since). Returns their claim ids."""
        rows = self.store.unrevoked_claims()
        if not rows:
            return []
        with self._ops_lock() as revoked:
            for row in rows:
                revoked.revoke(x509.load_pem_x509_certificate(row.claim_cert.encode()),
                               reason=x509.ReasonFlags.cessation_of_operation, now=self.now())
            self._write_crl(revoked)
            for row in rows:
                self.store.mark_claim_revoked(row.claim_id)
        log.info("revoked finished claims %s; %s", ", ".join(r.claim_id for r in rows),
                 self.reload_broker())
        return [r.claim_id for r in rows]

    def sign_request_file(self, data: bytes) -> bytes:
        """The offline path: check a request file made on the device, answer with a file."""
        try:
            claim_id, signed, signature, request = EnrolRequest.decode_file(data)
        except MessageError as e:
            raise CodeRefused(e.message, key="enrol.bad_request") from e
        row = self.store.code(claim_id)
        if row is None:
            raise CodeRefused(f"central knows no enrolment code for claim {claim_id}; was the "
                              "request made with a code from this central site?",
                              key="enrol.code_unknown")
        claim_key = x509.load_pem_x509_certificate(row.claim_cert.encode()).public_key()
        if not isinstance(claim_key, ec.EllipticCurvePublicKey) or \
                not verify_file_signature(claim_key, signed, signature):
            raise CodeRefused("the request file is not signed with this code's claim key: it "
                              "was altered, or made without the code", key="enrol.bad_request")
        answer = self.handle(claim_id, request, via="file")
        if answer.refused:
            raise CodeRefused(answer.message, key=answer.reason or "enrol.refused")
        return answer.encode_file(claim_id)

    # -- revocation --------------------------------------------------------------------
    def revoke_device(self, device_id: str, *,
                      reason: x509.ReasonFlags = x509.ReasonFlags.unspecified
                      ) -> tuple[list[str], str]:
        """Revoke every current certificate of a device and cancel its unused codes.
        Returns the revoked serials and what was done about the broker."""
        now = self.now()
        rows = self.store.certs(device_id, active_at=now.timestamp())
        with self.store.transaction() as db:
            cancelled = self.store.cancel_codes(db, device_id)
        if not rows and not cancelled:
            raise OpsError(f"device {device_id} has no current certificate and no open code: "
                           "nothing to revoke (check the id with 'edge-central codes')",
                           key="central.nothing_to_revoke")
        unrevoked_claims = self.store.unrevoked_claims()
        with self._ops_lock() as revoked:
            for row in rows:
                revoked.revoke(x509.load_pem_x509_certificate(row.pem.encode()),
                               reason=reason, now=now)
                self.store.mark_revoked(row.serial, now.timestamp())
            for code in unrevoked_claims:
                revoked.revoke(x509.load_pem_x509_certificate(code.claim_cert.encode()),
                               reason=x509.ReasonFlags.cessation_of_operation, now=now)
            self._write_crl(revoked)
            for code in unrevoked_claims:
                self.store.mark_claim_revoked(code.claim_id)
        return [r.serial for r in rows], self.reload_broker()

    def refresh_crl(self) -> tuple[CrlStatus, str]:
        """The daily job: re-sign the CRL with the same entries and a new next-update."""
        with self._ops_lock() as revoked:
            crl = self._write_crl(revoked)
        return crl_status(crl, now=self.now()), self.reload_broker()

    def crl_status(self) -> CrlStatus:
        return crl_status(load_crl(self.layout.path("crl")), now=self.now())

    def service_identity(self, name: str) -> tuple[Path, Path]:
        cert, key = self.layout.service_files(name)
        load_certificate(cert)  # a clear error now rather than a TLS error later
        if not os.access(key, os.R_OK):
            raise OpsError(f"cannot read {key}: run as the user that owns the central folder",
                           key="central.no_identity")
        return cert, key
