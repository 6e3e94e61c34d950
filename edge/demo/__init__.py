"""``edge demo``: an office appliance and the central site, end to end, on this machine."""

from edge.demo.run import register, run_demo

__all__ = ["register", "run_demo"]
