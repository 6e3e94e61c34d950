"""Who may hold a fleet certificate: the naming rules shared by the CA, the broker and the ACL.

A certificate's CN becomes the MQTT username (Mosquitto ``use_identity_as_username``) and the
ACL substitutes it into topics (``edge/%u/up/#``), so the CN *is* the authorisation. This
module decides which names the CA may sign, in three disjoint kinds:

- **device**: an appliance, ``kec-3171-01`` (the agreed device id pattern);
- **service**: a central program with its own ACL section, e.g. ``central-receiver``;
- **claim**: a one-time enrolment identity ``claim-<random>`` that may only talk on
  ``edge/claim/<its CN>/up`` and ``.../down`` (see ``edge/broker/edge.acl``).

The prefixes ``central-`` and ``claim-`` are reserved: no device may be named with them, so
a device can never receive a service's or a claim's topics by choosing its name, and the
``edge/%u/...`` patterns that every user gets stay harmless for services and claims (no
device owns ``edge/central-receiver/...``; consumers ignore reserved names).
"""

from __future__ import annotations

import base64
import os
import re
from enum import StrEnum

from edge.config import DEVICE_ID_RE
from edge.pki.errors import UnsafeIdentity

__all__ = [
    "CLAIM_ID_RE",
    "CLAIM_PREFIX",
    "DEVICE_ID_RE",
    "RESERVED_PREFIXES",
    "SERVICE_IDENTITIES",
    "SERVICE_PREFIX",
    "IdentityKind",
    "classify_identity",
    "new_claim_id",
]

SERVICE_PREFIX = "central-"
CLAIM_PREFIX = "claim-"
RESERVED_PREFIXES = (SERVICE_PREFIX, CLAIM_PREFIX)

# Each has its own section in edge/broker/edge.acl; adding one means adding its ACL too.
SERVICE_IDENTITIES = frozenset({
    "central-receiver",  # custody receiver(s): $share/central/edge/+/up/custody/#
    "central-fleet",     # fleet view: edge/+/up/status, edge/+/up/telemetry
    "central-enrol",     # enrolment service: edge/claim/+/up, edge/claim/+/down
})

# 10+ random base32 characters after the prefix: unguessable, and still a safe topic level.
CLAIM_ID_RE = re.compile(r"^claim-[a-z2-7]{10,56}$")

# Characters that would change the meaning of a topic or an ACL pattern if they reached one.
_MQTT_SPECIAL = frozenset("/+#$\x00")


class IdentityKind(StrEnum):
    DEVICE = "device"
    SERVICE = "service"
    CLAIM = "claim"


def new_claim_id() -> str:
    """A fresh one-time claim identity (80 random bits), usable as CN and topic level."""
    token = base64.b32encode(os.urandom(10)).decode("ascii").lower().rstrip("=")
    return CLAIM_PREFIX + token


def classify_identity(name: str) -> IdentityKind:
    """Say which kind of fleet identity ``name`` is, or refuse it with the reason and a fix."""
    if not isinstance(name, str) or not name:
        raise UnsafeIdentity("the certificate name (CN) is empty; use the device id, "
                             "e.g. 'kec-3171-01'")
    special = sorted(set(name) & _MQTT_SPECIAL)
    if special:
        raise UnsafeIdentity(
            f"the name {name!r} contains {''.join(special)!r}, which would let its holder "
            "reach other devices' MQTT topics; use only a-z, 0-9 and '-', e.g. 'kec-3171-01'"
        )
    if name in SERVICE_IDENTITIES:
        return IdentityKind.SERVICE
    if name.startswith(CLAIM_PREFIX):
        if CLAIM_ID_RE.match(name):
            return IdentityKind.CLAIM
        raise UnsafeIdentity(
            f"the name {name!r} starts with the reserved prefix {CLAIM_PREFIX!r} but is not a "
            "claim id made by new_claim_id(); device ids must not start with it"
        )
    if name.startswith(SERVICE_PREFIX):
        known = ", ".join(sorted(SERVICE_IDENTITIES))
        raise UnsafeIdentity(
            f"the name {name!r} starts with the reserved prefix {SERVICE_PREFIX!r} but is not "
            f"a known central service ({known}); device ids must not start with it"
        )
    if DEVICE_ID_RE.match(name):
        return IdentityKind.DEVICE
    raise UnsafeIdentity(
        f"the name {name!r} is not a valid device id: 2-63 characters, lowercase a-z, 0-9 "
        "and '-', not starting with '-', e.g. 'kec-3171-01'"
    )
