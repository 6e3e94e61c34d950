"""Sealing at arrival: a recording is encrypted to the central site's public key as it streams
in from the workstation, so the plaintext never touches the SD card and a stolen card
reveals nothing. The appliance holds no key that can open what it sealed.

    format.py    the sealed file layout (versioned; see docs/sealed-format.md)
    keys.py      central sealing key files (public on the device, private at the centre)
    sealer.py    streaming encryption, constant memory, any size
    manifest.py  the signed manifest that travels with each sealed file
"""

from edge.seal.format import SUITES, Suite
from edge.seal.keys import (
    SealingPrivateKeys,
    SealingPublicKeys,
    generate_sealing_keys,
    load_sealing_private_keys,
    load_sealing_public_keys,
)
from edge.seal.manifest import (
    Manifest,
    SignedManifest,
    load_device_signing_key,
    sign_manifest,
    verify_manifest,
)
from edge.seal.sealer import Sealer, SealResult

__all__ = [
    "SUITES",
    "Manifest",
    "SealResult",
    "Sealer",
    "SealingPrivateKeys",
    "SealingPublicKeys",
    "SignedManifest",
    "Suite",
    "generate_sealing_keys",
    "load_device_signing_key",
    "load_sealing_private_keys",
    "load_sealing_public_keys",
    "sign_manifest",
    "verify_manifest",
]
