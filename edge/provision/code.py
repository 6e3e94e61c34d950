"""The one-time enrolment code a technician types: what it holds and what follows from it.

Place in the data flow: ``edge-central enrol`` draws a code and prints it (and a QR code);
the technician types it into ``edge provision`` on the Pi. Everything the two ends need to
trust each other for one enrolment is derived from the code's secret, on both sides, with
HKDF-SHA256:

    claim id      claim-<16 base32>        the MQTT identity of the claim channel (CN)
    claim key     ECDSA P-256 private key  proves "I hold the code" to the broker (TLS) and,
                                           offline, to the CA (signed request file)
    bundle MAC    32-byte HMAC key         proves the provisioning bundle is the one central
                                           issued for this code (its CA, broker, sealing key)

So the central site keeps no secret per code (only the claim id and the claim certificate
it issued for the derived public key), the bundle file holds nothing secret, and a code that
is mistyped leads nowhere: no bundle matches its claim id and no MAC verifies.

Format: 20 characters of Crockford base32 (no I, L, O, U), shown in groups of four,
``K7QM-3XHD-9PWA-TT2C-RN5F``: 19 random characters (95 bits) and one Luhn mod 32 check
character, which catches every single wrong character and almost every swap of two
neighbours before anything leaves the device. Reading is forgiving: case, spaces and dashes
do not matter, O reads as 0 and I/L as 1, and an ``EDGE:`` prefix (the QR payload) is
dropped.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edge.provision.errors import BadCode

__all__ = [
    "ALPHABET",
    "CODE_LENGTH",
    "QR_PREFIX",
    "SECRET_BITS",
    "EnrolmentCode",
    "new_code",
    "parse_code",
]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_ALIASES = {"O": "0", "I": "1", "L": "1"}
CODE_LENGTH = 20
_SECRET_LENGTH = CODE_LENGTH - 1
SECRET_BITS = _SECRET_LENGTH * 5
QR_PREFIX = "EDGE:"
_GROUP = 4
_N = len(ALPHABET)
_SALT = b"edge-enrol-code/1"
# Order of the P-256 group: a derived scalar must lie in [1, n-1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _luhn_sum(symbols: str, *, start_factor: int) -> int:
    """Luhn mod N (N = 32) over symbols, right to left, doubling every other one."""
    factor = start_factor
    total = 0
    for ch in reversed(symbols):
        addend = factor * _VALUE[ch]
        factor = 1 if factor == 2 else 2
        total += addend // _N + addend % _N
    return total


def _check_char(payload: str) -> str:
    return ALPHABET[(_N - _luhn_sum(payload, start_factor=2) % _N) % _N]


def _is_valid(code: str) -> bool:
    return _luhn_sum(code, start_factor=1) % _N == 0


@dataclass(frozen=True)
class EnrolmentCode:
    """A checked code. ``secret`` is the 19 random characters, canonical (upper case)."""

    secret: str

    def __post_init__(self) -> None:
        if len(self.secret) != _SECRET_LENGTH or any(c not in _VALUE for c in self.secret):
            raise BadCode(f"an enrolment code secret is {_SECRET_LENGTH} base32 characters")

    def __repr__(self) -> str:  # never put the secret in a log or a traceback
        return f"EnrolmentCode(claim_id={self.claim_id!r})"

    @property
    def text(self) -> str:
        """The code as shown to people: ``XXXX-XXXX-XXXX-XXXX-XXXX``."""
        raw = self.secret + _check_char(self.secret)
        return "-".join(raw[i:i + _GROUP] for i in range(0, len(raw), _GROUP))

    @property
    def qr_payload(self) -> str:
        """Upper-case letters, digits, ':' and '-' only: QR alphanumeric mode, a small code."""
        return QR_PREFIX + self.text

    def _derive(self, info: bytes, length: int) -> bytes:
        return HKDF(hashes.SHA256(), length, salt=_SALT, info=info).derive(self.secret.encode())

    @property
    def claim_id(self) -> str:
        """The claim identity (certificate CN, MQTT username, topic level) of this code."""
        token = base64.b32encode(self._derive(b"claim-id", 10)).decode("ascii").lower()
        return "claim-" + token

    def claim_key(self) -> ec.EllipticCurvePrivateKey:
        """The claim channel's private key, the same on the device and at central."""
        # 40 bytes (320 bits) reduced mod n-1: the bias is below 2^-64.
        scalar = int.from_bytes(self._derive(b"claim-key", 40), "big") % (_P256_ORDER - 1) + 1
        return ec.derive_private_key(scalar, ec.SECP256R1())

    def bundle_mac_key(self) -> bytes:
        return self._derive(b"bundle-mac", 32)


def new_code() -> EnrolmentCode:
    return EnrolmentCode("".join(secrets.choice(ALPHABET) for _ in range(_SECRET_LENGTH)))


def parse_code(text: str) -> EnrolmentCode:
    """Read a code as a person typed it; refuse it with what to check if it cannot be right."""
    raw = text.strip().upper()
    if raw.startswith(QR_PREFIX):
        raw = raw[len(QR_PREFIX):]
    raw = "".join(_ALIASES.get(c, c) for c in raw if c not in " -\t")
    bad = sorted({c for c in raw if c not in _VALUE})
    if bad:
        raise BadCode(f"the code contains {''.join(bad)!r}, which no enrolment code has "
                      "(codes use digits and the letters A-Z without I, L, O, U); "
                      "read it again from the enrolment sheet")
    if len(raw) != CODE_LENGTH:
        raise BadCode(f"the code has {len(raw)} characters, an enrolment code has "
                      f"{CODE_LENGTH} (five groups of four); read it again from the sheet")
    if not _is_valid(raw):
        raise BadCode("the code's check character does not match: one character is wrong "
                      "or two are swapped; read it again from the enrolment sheet")
    return EnrolmentCode(raw[:-1])
