"""The life of one enrolment code, as a pure decision: no database, no MQTT, no clock.

Theory of operation
-------------------
``edge-central enrol`` creates a code in state ISSUED, bound to one device id and an
expiry. A claim (the device's request, online or as a file) is an event carrying the name
in the device's CSR and the fingerprint of its public key, and the time central received
it. ``decide`` answers with one of:

- ``Issue``   — first good claim: sign the certificates; the code moves to USED;
- ``Resend``  — the same device key claims a USED code again (its answer was lost on the
                way back): send the same certificates again, nothing new is signed;
- ``Refuse``  — with a stable reason key and a sentence for the technician.

A code moves only along ``TRANSITIONS``: ISSUED → USED (Issue) and ISSUED → CANCELLED
(ops cancel it, a newer code for the same device replaces it, or the device is revoked).
USED and CANCELLED are final. Expiry is not a state: it is decided at each claim from the
stored expiry time, so no timer has to run for a code to die.

Order of checks: a final state wins over expiry (a used code is "used", not "expired");
expiry wins over a wrong name (an expired code tells nothing about who may use it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CANCELLED",
    "ISSUED",
    "STATES",
    "TRANSITIONS",
    "USED",
    "Cancel",
    "Claim",
    "CodeView",
    "Decision",
    "Issue",
    "Refuse",
    "Resend",
    "decide",
    "next_state",
]

ISSUED = "issued"
USED = "used"
CANCELLED = "cancelled"
STATES = (ISSUED, USED, CANCELLED)


@dataclass(frozen=True)
class CodeView:
    """What the decision needs to know about a stored code."""

    state: str
    device_id: str
    expires_at: float                  # seconds since the epoch (UTC)
    device_key_sha256: str | None = None  # set once USED


@dataclass(frozen=True)
class Claim:
    name: str          # CN of the device CSR
    key_sha256: str    # fingerprint of the CSR's public key
    at: float          # when central received it (central's clock)


@dataclass(frozen=True)
class Cancel:
    at: float


@dataclass(frozen=True)
class Issue:
    pass


@dataclass(frozen=True)
class Resend:
    pass


@dataclass(frozen=True)
class Refuse:
    reason: str   # stable key
    message: str  # what the technician should do


Decision = Issue | Resend | Refuse
Event = Claim | Cancel

TRANSITIONS: dict[tuple[str, type], str] = {
    (ISSUED, Issue): USED,
    (ISSUED, Cancel): CANCELLED,
}


def next_state(state: str, what: type) -> str:
    try:
        return TRANSITIONS[(state, what)]
    except KeyError:
        raise ValueError(f"a code in state {state!r} cannot take {what.__name__}") from None


def decide(code: CodeView, claim: Claim) -> Decision:
    if code.state == CANCELLED:
        return Refuse("enrol.code_cancelled",
                      "this enrolment code was cancelled by central ops (a newer code was "
                      "issued for this device, or the device was revoked); ask central ops "
                      "for the current code")
    if code.state == USED:
        if code.device_key_sha256 is not None and claim.key_sha256 == code.device_key_sha256:
            return Resend()
        return Refuse("enrol.code_used",
                      "this enrolment code has already been used to enrol a device; each "
                      "code works once: ask central ops for a new code for this device")
    if claim.at >= code.expires_at:
        return Refuse("enrol.code_expired",
                      "this enrolment code has expired; ask central ops for a new code "
                      "(edge-central enrol) and provision again")
    if claim.name != code.device_id:
        return Refuse("enrol.wrong_device",
                      f"this code was issued for device {code.device_id!r}, but the device "
                      f"asked to be {claim.name!r}; use the bundle issued with this code")
    return Issue()
