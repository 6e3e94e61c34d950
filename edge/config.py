"""The appliance's one configuration file, read and validated at start.

``/etc/edge/edge.toml`` on a device; ``--config`` or ``EDGE_CONFIG`` elsewhere. Every program
(intake, forwarder, uplink, panel) reads the same file and takes its own sections. A bad value
stops the program before it touches anything, with an error naming the key, the value and
the fix.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edge.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "DeviceConfig",
    "IdentityConfig",
    "IntakeConfig",
    "SealConfig",
    "Section",
    "SpoolConfig",
    "load_config",
    "parse_config",
    "parse_size",
]

DEFAULT_CONFIG_PATH = Path("/etc/edge/edge.toml")

DEVICE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}\Z")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}

T = TypeVar("T")


def parse_size(value: object) -> int:
    """``8GiB``, ``500 MB``, ``1048576`` → bytes."""
    if isinstance(value, bool):
        raise ValueError("not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            unit = (m.group(2) or "B").lower()
            return int(float(m.group(1)) * _UNITS[unit])
    raise ValueError("not a size")


class Section:
    """Typed access to one TOML table that remembers where each value came from."""

    def __init__(self, source: str, name: str, data: dict[str, Any]) -> None:
        self.source = source
        self.name = name
        self.data = data
        self.used: set[str] = set()

    def _fail(self, key: str, value: object, fix: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{self.name}] {key} = {value!r}: {fix}")

    def _get(self, key: str, default: object, required: bool) -> object:
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        if required:
            raise ConfigError(
                f"{self.source}: [{self.name}] {key} is missing: add it to the [{self.name}] table"
            )
        return default

    def text(self, key: str, default: str | None = None, *, pattern: re.Pattern[str] | None = None,
            choices: tuple[str, ...] | None = None, hint: str = "") -> str:
        v = self._get(key, default, default is None)
        if not isinstance(v, str):
            raise self._fail(key, v, "must be a string (in quotes)")
        if choices is not None and v not in choices:
            raise self._fail(key, v, f"must be one of {', '.join(choices)}")
        if pattern is not None and not pattern.match(v):
            raise self._fail(key, v, hint or f"must match {pattern.pattern}")
        return v

    def opt_text(self, key: str) -> str | None:
        v = self._get(key, None, False)
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            raise self._fail(key, v, "must be a string (in quotes)")
        return v

    def path(self, key: str, default: str | None = None) -> Path:
        return Path(self.text(key, default))

    def opt_path(self, key: str) -> Path | None:
        v = self.opt_text(key)
        return Path(v) if v is not None else None

    def flag(self, key: str, default: bool) -> bool:
        v = self._get(key, default, False)
        if not isinstance(v, bool):
            raise self._fail(key, v, "must be true or false (no quotes)")
        return v

    def integer(self, key: str, default: int, *, min: int | None = None,
                max: int | None = None) -> int:
        v = self._get(key, default, False)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._fail(key, v, "must be a whole number (no quotes)")
        if min is not None and v < min:
            raise self._fail(key, v, f"must be at least {min}")
        if max is not None and v > max:
            raise self._fail(key, v, f"must be at most {max}")
        return v

    def number(self, key: str, default: float, *, min: float | None = None,
              max: float | None = None) -> float:
        v = self._get(key, default, False)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise self._fail(key, v, "must be a number (no quotes)")
        if min is not None and v < min:
            raise self._fail(key, v, f"must be at least {min}")
        if max is not None and v > max:
            raise self._fail(key, v, f"must be at most {max}")
        return float(v)

    def size(self, key: str, default: str | int, *, min: int = 0) -> int:
        v = self._get(key, default, False)
        try:
            n = parse_size(v)
        except ValueError:
            raise self._fail(
                key, v, 'must be a size such as "8GiB", "500MB" or a byte count'
            ) from None
        if n < min:
            raise self._fail(key, v, f"must be at least {min} bytes")
        return n

    def list_of(self, key: str, conv: Callable[[object], T], default: list[T]) -> list[T]:
        v = self._get(key, default, False)
        if not isinstance(v, list):
            raise self._fail(key, v, "must be a list like [\"a\", \"b\"]")
        out = []
        for item in v:
            try:
                out.append(conv(item))
            except (TypeError, ValueError) as e:
                raise self._fail(key, v, f"has a bad item {item!r}: {e}") from None
        return out

    def sub(self, key: str) -> Section:
        v = self.data.get(key, {})
        if not isinstance(v, dict):
            raise self._fail(key, v, "must be a table")
        self.used.add(key)
        return Section(self.source, f"{self.name}.{key}", v)

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(
                f"{self.source}: [{self.name}] has unknown key(s) {', '.join(unknown)}: "
                "check the spelling against README.md (Configuration)"
            )


@dataclass(frozen=True)
class DeviceConfig:
    id: str
    state_dir: Path
    office: str = ""


@dataclass(frozen=True)
class IdentityConfig:
    key: Path          # device private key (ECDSA P-256), made on the device
    cert: Path | None  # device certificate from the fleet CA
    ca: Path | None    # fleet CA certificate


@dataclass(frozen=True)
class SealConfig:
    central_public_key: Path
    kem: str = "mlkem768-x25519"
    segment_size: int = 64 * 1024


@dataclass(frozen=True)
class SpoolConfig:
    dir: Path
    quota_bytes: int
    reserve_bytes: int
    keep_purged_days: int = 30


@dataclass(frozen=True)
class IntakeConfig:
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_plain_http: bool = False
    max_recording_bytes: int = 600 * 1024**2
    body_idle_timeout_s: float = 30.0
    tokens_file: Path = Path("/var/lib/edge/tokens.json")
    hot_folder: Path | None = None
    hot_folder_settle_s: float = 2.0
    hot_folder_workstation: str = "hot-folder"


@dataclass(frozen=True)
class Config:
    source: str
    device: DeviceConfig
    identity: IdentityConfig
    seal: SealConfig
    spool: SpoolConfig
    intake: IntakeConfig
    # Tables read by later parts of the flow (mqtt, forward, uplink, panel, telemetry).
    raw: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Section:
        data = self.raw.get(name, {})
        if not isinstance(data, dict):
            raise ConfigError(f"{self.source}: [{name}] must be a table")
        return Section(self.source, name, data)


KNOWN_TABLES = {"device", "identity", "seal", "spool", "intake",
                "mqtt", "forward", "uplink", "panel", "telemetry", "central"}


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def parse_config(data: dict[str, Any], source: str = "edge.toml") -> Config:
    unknown = sorted(set(data) - KNOWN_TABLES)
    if unknown:
        raise ConfigError(
            f"{source}: unknown table(s) [{'], ['.join(unknown)}]: "
            f"expected some of [{'], ['.join(sorted(KNOWN_TABLES))}]"
        )
    for name, value in data.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {name} = {value!r}: must be a [{name}] table")

    d = Section(source, "device", data.get("device", {}))
    device = DeviceConfig(
        id=d.text("id", pattern=DEVICE_ID_RE,
                 hint="use 2-63 lowercase letters, digits and '-', e.g. \"kec-3171-01\""),
        state_dir=d.path("state_dir", "/var/lib/edge"),
        office=d.text("office", ""),
    )
    d.check_unknown()

    i = Section(source, "identity", data.get("identity", {}))
    identity = IdentityConfig(
        key=i.path("key", str(Path("/etc/edge") / "device.key")),
        cert=i.opt_path("cert"),
        ca=i.opt_path("ca"),
    )
    i.check_unknown()

    s = Section(source, "seal", data.get("seal", {}))
    seal = SealConfig(
        central_public_key=s.path("central_public_key", "/etc/edge/central-seal.pub"),
        kem=s.text("kem", "mlkem768-x25519", choices=("mlkem768-x25519", "x25519")),
        segment_size=s.size("segment_size", 64 * 1024, min=4096),
    )
    if seal.segment_size > 16 * 1024 * 1024:
        raise ConfigError(f"{source}: [seal] segment_size = {seal.segment_size}: "
                          "must be at most 16MiB; 64KiB is a good value")
    s.check_unknown()

    sp = Section(source, "spool", data.get("spool", {}))
    spool = SpoolConfig(
        dir=sp.path("dir", str(device.state_dir / "spool")),
        quota_bytes=sp.size("quota_bytes", "8GiB", min=1),
        reserve_bytes=sp.size("reserve_bytes", "1GiB"),
        keep_purged_days=sp.integer("keep_purged_days", 30, min=0),
    )
    sp.check_unknown()

    it = Section(source, "intake", data.get("intake", {}))
    intake = IntakeConfig(
        host=it.text("host", "127.0.0.1"),
        port=it.integer("port", 8443, min=0, max=65535),
        tls_cert=it.opt_path("tls_cert"),
        tls_key=it.opt_path("tls_key"),
        allow_plain_http=it.flag("allow_plain_http", False),
        max_recording_bytes=it.size("max_recording_bytes", "600MiB", min=1),
        body_idle_timeout_s=it.number("body_idle_timeout_s", 30.0, min=0.1),
        tokens_file=it.path("tokens_file", str(device.state_dir / "tokens.json")),
        hot_folder=it.opt_path("hot_folder"),
        hot_folder_settle_s=it.number("hot_folder_settle_s", 2.0, min=0.0),
        hot_folder_workstation=it.text("hot_folder_workstation", "hot-folder"),
    )
    it.check_unknown()
    if (intake.tls_cert is None) != (intake.tls_key is None):
        raise ConfigError(f"{source}: [intake] tls_cert and tls_key must be set together "
                          "(both paths, or neither)")
    if intake.tls_cert is None and not _is_loopback(intake.host) and not intake.allow_plain_http:
        raise ConfigError(
            f"{source}: [intake] host = {intake.host!r} without tls_cert/tls_key: recordings are "
            "biometric data; set tls_cert and tls_key (issued at provisioning), or bind to "
            "127.0.0.1, or set allow_plain_http = true if the LAN is trusted"
        )
    if intake.max_recording_bytes > spool.quota_bytes:
        raise ConfigError(
            f"{source}: [intake] max_recording_bytes = {intake.max_recording_bytes}: larger than "
            f"[spool] quota_bytes = {spool.quota_bytes}; raise the quota or lower the cap"
        )

    return Config(source=source, device=device, identity=identity, seal=seal, spool=spool,
                  intake=intake, raw=data)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the config from ``path``, ``$EDGE_CONFIG`` or /etc/edge/edge.toml, in that order."""
    p = Path(path) if path else Path(os.environ.get("EDGE_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        with p.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: no such file: pass --config PATH, set EDGE_CONFIG, or provision the device "
            "(edge provision) to create /etc/edge/edge.toml"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e}): fix the syntax at that line") from None
    return parse_config(data, str(p))
