"""Provisioning a blank Pi: one command and a one-time code, then a self-test checklist.

    code    = parse_code("K7QM-3XHD-9PWA-TT2C-RN5F")      # typed by the technician
    bundle  = open_bundle(find_bundle(code, places), code)  # fleet CA, broker, central keys
    edge provision CODE        online: keys made here, CSR over the MQTT claim channel
    edge provision --bundle F  offline: CSR file to central, then --install-cert ANSWER
    edge selftest              LEDs, uplinks, broker, test recording, clock, disk, power

See docs/provisioning.md for the flows and the threat model.
"""

from edge.provision.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_SUFFIX,
    Bundle,
    bundle_file_name,
    ca_fingerprint,
    find_bundle,
    open_bundle,
    seal_bundle,
)
from edge.provision.code import EnrolmentCode, new_code, parse_code
from edge.provision.errors import (
    BadCode,
    BundleError,
    ClaimChannelError,
    EnrolRefused,
    ProvisionError,
)
from edge.provision.messages import EnrolAnswer, EnrolRequest

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_SUFFIX",
    "BadCode",
    "Bundle",
    "BundleError",
    "ClaimChannelError",
    "EnrolAnswer",
    "EnrolRefused",
    "EnrolRequest",
    "EnrolmentCode",
    "ProvisionError",
    "bundle_file_name",
    "ca_fingerprint",
    "find_bundle",
    "new_code",
    "open_bundle",
    "parse_code",
    "seal_bundle",
]
