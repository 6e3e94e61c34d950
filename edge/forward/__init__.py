"""Forwarding: sealed recordings leave the spool over MQTT in resumable chunks and are
deleted locally only after a verified central custody receipt (see engine.py)."""

from edge.forward.config import ForwardConfig, MqttConfig, parse_forward_config
from edge.forward.engine import Forwarder, ForwarderStats
from edge.forward.reconnect import Failure, Reconnector, ReconnectPolicy

__all__ = [
    "Failure",
    "ForwardConfig",
    "Forwarder",
    "ForwarderStats",
    "MqttConfig",
    "ReconnectPolicy",
    "Reconnector",
    "parse_forward_config",
]
