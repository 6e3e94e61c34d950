"""``edge``: the appliance's command line. Each part of the flow adds its own subcommand.

    edge intake      LAN upload API for enrolment workstations (+ hot folder)
    edge token       workstation upload tokens
    edge forward     custody-chain forwarder to the central site (MQTT)
    edge uplink      wired/4G health probes and failover
    edge panel       status LEDs
    edge provision   technician enrolment and self-test
    edge demo        all-in-one office + central site on this machine
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from edge import __version__
from edge.errors import EdgeError

__all__ = ["main"]

# module path -> each module exposes ``register(subparsers)``; missing parts are skipped so a
# partial install still runs what it has.
SUBCOMMAND_MODULES = [
    "edge.intake.cli",
    "edge.forward.cli",
    "edge.uplink.cli",
    "edge.panel.cli",
    "edge.provision.cli",
    "edge.demo",
]


def build_parser(modules: Sequence[str] = SUBCOMMAND_MODULES, *, prog: str = "edge",
                 description: str = "e-KTP office edge appliance",
                 global_config: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    if global_config:
        parser.add_argument(
            "--config", help="config file (default: $EDGE_CONFIG or /etc/edge/edge.toml)"
        )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                continue
            raise
        mod.register(sub)
    return parser


def run(argv: Sequence[str] | None, modules: Sequence[str], *, prog: str = "edge",
        description: str = "e-KTP office edge appliance", global_config: bool = True) -> int:
    """Parse, dispatch to the subcommand's handler, and turn an EdgeError into its key and
    sentence on stderr with exit status 1 (shared by ``edge`` and ``edge-central``)."""
    parser = build_parser(modules, prog=prog, description=description,
                          global_config=global_config)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except EdgeError as e:
        print(f"{prog}: {e.key}: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, SUBCOMMAND_MODULES)


if __name__ == "__main__":
    sys.exit(main())
