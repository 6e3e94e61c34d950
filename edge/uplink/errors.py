"""Errors of the uplink part: each names what is wrong with the office's links and what to do.

The keys (``uplink.no_route``, ...) show up in uplink.json, telemetry and the status page.
"""

from __future__ import annotations

from edge.errors import EdgeError, LocalError

__all__ = ["NoInterface", "NoRoute", "NoStatus", "RoutingError", "UplinkError"]


class UplinkError(EdgeError):
    """Root of the uplink part's errors."""

    key = "uplink.error"


class NoRoute(UplinkError, LocalError):
    """A link has no gateway, so neither probes nor traffic can leave through it."""

    key = "uplink.no_route"


class NoInterface(UplinkError, LocalError):
    """The configured interface does not exist (modem unplugged, wrong name in the config)."""

    key = "uplink.no_interface"


class RoutingError(UplinkError, LocalError):
    """The kernel refused a route or rule change."""

    key = "uplink.routing"


class NoStatus(UplinkError, LocalError):
    """uplink.json is missing or unreadable: the uplink daemon is not running."""

    key = "uplink.no_status"
