"""Custody tuning from the appliance's TOML file: ``[forward.custody]`` on a device,
``[central.custody]`` at the central site. Keys are loaded by the adapters, not here.

Every key is optional; the defaults suit a metered 4G link and a Mosquitto broker with its
default ``max_inflight_messages`` of 20.
"""

from __future__ import annotations

from edge.config import Config, Section
from edge.custody.receiver import ReceiverConfig
from edge.custody.sender import SenderConfig
from edge.errors import ConfigError

__all__ = ["parse_receiver_config", "parse_receiver_section", "parse_sender_config"]


def parse_sender_config(cfg: Config) -> SenderConfig:
    s = cfg.section("forward").sub("custody")
    d = SenderConfig()
    out = SenderConfig(
        max_payload=s.size("max_payload", d.max_payload, min=1024),
        window_chunks=s.integer("window_chunks", d.window_chunks, min=1, max=1000),
        max_open=s.integer("max_open", d.max_open, min=1, max=100),
        offer_timeout_s=s.number("offer_timeout_s", d.offer_timeout_s, min=0.1),
        progress_timeout_s=s.number("progress_timeout_s", d.progress_timeout_s, min=0.1),
        receipt_timeout_s=s.number("receipt_timeout_s", d.receipt_timeout_s, min=0.1),
        backoff_factor=s.number("backoff_factor", d.backoff_factor, min=1.0, max=10.0),
        backoff_max_s=s.number("backoff_max_s", d.backoff_max_s, min=1.0),
        jitter=s.number("jitter", d.jitter, min=0.0, max=0.9),
        max_verify_failures=s.integer("max_verify_failures", d.max_verify_failures, min=1),
        park_s=s.number("park_s", d.park_s, min=1.0),
    )
    s.check_unknown()
    if out.max_payload > 256 * 1024 * 1024:
        raise ConfigError(f"{cfg.source}: [forward.custody] max_payload = {out.max_payload}: "
                          "MQTT payloads are limited to 256MB; 128KiB is a good value")
    return out


def parse_receiver_config(cfg: Config, receiver_id: str) -> ReceiverConfig:
    """``receiver_id`` names this instance in receipts (e.g. its MQTT client id)."""
    return parse_receiver_section(cfg.section("central").sub("custody"), receiver_id)


def parse_receiver_section(s: Section, receiver_id: str) -> ReceiverConfig:
    """The ``[central.custody]`` table itself: the central site's ``central.toml`` is not a
    device config, so ``edge-central receive`` hands over the table directly."""
    d = ReceiverConfig(receiver_id=receiver_id)
    out = ReceiverConfig(
        receiver_id=receiver_id,
        max_chunk_data=s.size("max_chunk_data", d.max_chunk_data, min=1024),
        max_sealed_size=s.size("max_sealed_size", d.max_sealed_size, min=1),
        max_manifest=s.size("max_manifest", d.max_manifest, min=256),
        max_state_ranges=s.integer("max_state_ranges", d.max_state_ranges, min=1, max=4096),
        max_pending_bytes=s.size("max_pending_bytes", d.max_pending_bytes, min=0),
        idle_forget_s=s.number("idle_forget_s", d.idle_forget_s, min=1.0),
        op_timeout_s=s.number("op_timeout_s", d.op_timeout_s, min=1.0),
    )
    s.check_unknown()
    return out
