"""Office directory: the human names behind device ids (optional CSV kept by central ops).

Place in the data flow: read once at start; the dashboard shows and searches the names, the
metrics carry them in ``fleet_device_info`` only (never as labels on every series).
File format (UTF-8 CSV with a header): ``device_id,office,region`` — extra columns ignored.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from edge.central.fleet.ingest import DEVICE_ID_RE
from edge.errors import ConfigError

__all__ = ["Directory", "Office", "load_directory"]


@dataclass(frozen=True)
class Office:
    office: str = ""
    region: str = ""


class Directory:
    def __init__(self, offices: dict[str, Office] | None = None) -> None:
        self.offices = offices or {}

    def get(self, device_id: str) -> Office:
        return self.offices.get(device_id, Office())

    def __len__(self) -> int:
        return len(self.offices)


def load_directory(path: Path) -> Directory:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "device_id" not in reader.fieldnames:
                raise ConfigError(f"{path}: the first line must be a header with device_id "
                                  "(and office, region), e.g. device_id,office,region")
            offices: dict[str, Office] = {}
            for n, row in enumerate(reader, start=2):
                d = (row.get("device_id") or "").strip()
                if not DEVICE_ID_RE.match(d):
                    raise ConfigError(f"{path}:{n}: device_id {d!r} is not a device id "
                                      "(2-63 lowercase letters, digits and '-')")
                offices[d] = Office(office=(row.get("office") or "").strip(),
                                    region=(row.get("region") or "").strip())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the office directory: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text: save the CSV as UTF-8") from None
    return Directory(offices)
