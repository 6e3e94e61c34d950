"""``edge-central``: the central site's command line. Each central part adds a subcommand."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from edge.cli import run

__all__ = ["main"]

SUBCOMMAND_MODULES = [
    "edge.central.keys_cli",
    "edge.central.open_cli",
    "edge.central.receiver_cli",
    "edge.central.fleet_cli",
    "edge.central.ops_cli",
]


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, SUBCOMMAND_MODULES, prog="edge-central", description="e-KTP central site",
               global_config=False)


if __name__ == "__main__":
    sys.exit(main())
