"""The enrolment code as a QR code: half-block text for the ops terminal, SVG and PNG files
for the enrolment sheet. The technician's phone reads it; ``edge provision`` accepts what
it reads (``EDGE:XXXX-XXXX-...``) as well as the typed code.

Uses ``segno`` (pure Python, no Pillow; writes PNG itself), imported on first use so that
the rest of the ops tools run without it. The payload is upper-case letters, digits, ':'
and '-', so segno picks the compact alphanumeric mode: version 2, 25x25 modules, at error
correction level M (15 % of the code may be smudged or folded).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from edge.central.ops.errors import OpsError
from edge.durable import atomic_write_bytes

__all__ = ["QUIET_ZONE", "qr_matrix", "qr_text", "write_qr_files"]

QUIET_ZONE = 2  # modules of light border in the terminal (files get the standard 4)


def _make(payload: str) -> Any:
    try:
        import segno
    except ImportError as e:
        raise OpsError("the QR code needs the segno package: pip install 'segno>=1.6,<2' "
                       "(the enrolment code itself is printed above)", key="central.no_qr"
                       ) from e
    return segno.make(payload, error="m", micro=False, boost_error=False)


def qr_matrix(payload: str) -> list[list[bool]]:
    """True = dark module, without any border."""
    return [[bool(v) for v in row] for row in _make(payload).matrix]


def qr_text(payload: str) -> str:
    """Two module rows per text line with Unicode half blocks. Light modules are drawn (a
    block), dark ones are blank, like ``qrencode -t UTF8``: on the usual dark terminal the
    code shows dark-on-light, as scanners expect."""
    m = qr_matrix(payload)
    size = len(m) + 2 * QUIET_ZONE
    light = [[True] * size for _ in range(QUIET_ZONE)]
    rows = light + [[True] * QUIET_ZONE + [not v for v in r] + [True] * QUIET_ZONE
                    for r in m] + light
    if len(rows) % 2:
        rows.append([True] * size)
    chars = {(True, True): "\u2588", (True, False): "\u2580", (False, True): "\u2584",
             (False, False): " "}
    return "\n".join("".join(chars[(top[i], bottom[i])] for i in range(size))
                     for top, bottom in zip(rows[0::2], rows[1::2], strict=True))


def write_qr_files(payload: str, base: Path) -> list[Path]:
    """``base.svg`` and ``base.png`` (0600: they hold the code until the sheet is sent)."""
    qr = _make(payload)
    out = []
    for kind in ("svg", "png"):
        buf = io.BytesIO()
        qr.save(buf, kind=kind, scale=8, border=4)
        path = base.with_name(f"{base.name}.{kind}")
        atomic_write_bytes(path, buf.getvalue(), mode=0o600)
        out.append(path)
    return out
