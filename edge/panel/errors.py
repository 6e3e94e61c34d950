"""Errors of the status panel, with stable keys a technician can look up."""

from __future__ import annotations

from edge.errors import LocalError

__all__ = ["NoGpioBackend", "PanelError", "SpoolSummaryUnavailable"]


class PanelError(LocalError):
    key = "panel.error"


class NoGpioBackend(PanelError, RuntimeError):
    """No pin factory could drive the LEDs on this machine."""

    key = "panel.no_gpio"


class SpoolSummaryUnavailable(PanelError):
    """The spool's summary cannot be read (owner not running, or not published yet)."""

    key = "panel.no_spool_summary"
