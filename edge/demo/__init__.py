"""``edge demo``: an office appliance and the central site, end to end, on this machine."""

from edge.demo.office import register, run_demo

__all__ = ["register", "run_demo"]
