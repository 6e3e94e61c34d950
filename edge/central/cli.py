"""``edge-central``: the central site's command line. Each central part adds a subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from edge import __version__
from edge.errors import EdgeError

__all__ = ["main"]

SUBCOMMAND_MODULES = [
    "edge.central.keys_cli",
    "edge.central.open_cli",
    "edge.central.receiver_cli",
    "edge.central.fleet_cli",
    "edge.central.ops_cli",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-central", description="e-KTP central site")
    parser.add_argument("--version", action="version", version=f"edge-central {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                continue
            raise
        mod.register(sub)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except EdgeError as e:
        print(f"edge-central: {e.key}: {e.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
