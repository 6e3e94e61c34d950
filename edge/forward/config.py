"""``[mqtt]`` and ``[forward]`` tables: where the central broker is, which identity to use,
and the forwarder's timing. Custody tuning is ``[forward.custody]`` (edge.custody.config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.config import Config
from edge.custody.config import parse_sender_config
from edge.custody.sender import SenderConfig
from edge.errors import ConfigError
from edge.forward.reconnect import ReconnectPolicy

__all__ = ["ForwardConfig", "MqttConfig", "load_receipt_key", "parse_forward_config"]


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    client_id: str
    keepalive_s: int
    session_expiry_s: int
    connect_timeout_s: float
    receipt_public_key: Path


@dataclass(frozen=True)
class ForwardConfig:
    mqtt: MqttConfig
    custody: SenderConfig
    reconnect: ReconnectPolicy
    poll_s: float
    telemetry_interval_s: float
    max_enqueued: int


def parse_forward_config(cfg: Config) -> ForwardConfig:
    m = cfg.section("mqtt")
    ident = cfg.identity

    def default(path: Path | None) -> str | None:
        return None if path is None else str(path)

    mqtt = MqttConfig(
        host=m.text("host"),
        port=m.integer("port", 8883, min=1, max=65535),
        ca=m.path("ca", default(ident.ca)),         # default: [identity] ca
        cert=m.path("cert", default(ident.cert)),   # default: [identity] cert
        key=m.path("key", str(ident.key)),
        client_id=m.text("client_id", cfg.device.id),
        keepalive_s=m.integer("keepalive_s", 20, min=5, max=3600),
        session_expiry_s=m.integer("session_expiry_s", 7 * 86400, min=0),
        connect_timeout_s=m.number("connect_timeout_s", 8.0, min=0.5, max=120.0),
        receipt_public_key=m.path("receipt_public_key", "/etc/edge/central-receipt.pub"),
    )
    m.check_unknown()
    if mqtt.client_id != cfg.device.id:
        raise ConfigError(f"{cfg.source}: [mqtt] client_id = {mqtt.client_id!r}: must equal "
                          f"[device] id {cfg.device.id!r} (the broker binds both to the "
                          "certificate)")
    f = cfg.section("forward")
    f.used.add("custody")
    d = ReconnectPolicy()
    out = ForwardConfig(
        mqtt=mqtt,
        custody=parse_sender_config(cfg),
        reconnect=ReconnectPolicy(
            quick_s=f.number("reconnect_quick_s", d.quick_s, min=0.05, max=60.0),
            base_s=f.number("reconnect_base_s", d.base_s, min=0.05, max=600.0),
            max_s=f.number("reconnect_max_s", d.max_s, min=1.0, max=3600.0),
            stable_s=f.number("reconnect_stable_s", d.stable_s, min=1.0),
        ),
        poll_s=f.number("poll_s", 1.0, min=0.05, max=60.0),
        telemetry_interval_s=f.number("telemetry_interval_s", 60.0, min=1.0),
        max_enqueued=f.integer("max_enqueued", 64, min=1, max=10000),
    )
    f.check_unknown()
    return out


def load_receipt_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: central receipt public key not found: install it from the "
                          "provisioning bundle ([mqtt] receipt_public_key)") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not a PEM public key ({e}): reinstall it") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: the central receipt key must be Ed25519")
    return key
