"""``edge intake`` and ``edge token``: the LAN side of the appliance."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from edge.config import load_config
from edge.intake.server import run_intake
from edge.intake.tokens import TokenStore

__all__ = ["register"]


def _intake(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    return run_intake(load_config(args.config))


def _token(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    store = TokenStore(cfg.intake.tokens_file)
    if args.token_cmd == "add":
        token = store.add(args.workstation)
        print(f"token for workstation {args.workstation} (shown once; enter it in the "
              f"workstation's upload settings):\n{token}")
    elif args.token_cmd == "revoke":
        n = store.revoke(args.workstation)
        print(f"revoked {n} token(s) of {args.workstation}")
        return 0 if n else 1
    else:
        json.dump(store.list(), sys.stdout, indent=2)
        print()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("intake", help="serve the LAN upload API (and the hot folder)")
    p.set_defaults(handler=_intake)
    t = sub.add_parser("token", help="workstation upload tokens")
    tsub = t.add_subparsers(dest="token_cmd", required=True)
    a = tsub.add_parser("add", help="issue a token for a workstation (printed once)")
    a.add_argument("workstation")
    r = tsub.add_parser("revoke", help="revoke every token of a workstation")
    r.add_argument("workstation")
    tsub.add_parser("list", help="list workstations and token states (no secrets)")
    t.set_defaults(handler=_token)
