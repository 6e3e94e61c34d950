"""``edge forward``: run the custody-chain forwarder until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from edge.config import load_config
from edge.forward.config import parse_forward_config
from edge.forward.engine import Forwarder
from edge.intake.server import open_spool

__all__ = ["register"]


def _forward(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    cfg = load_config(args.config)
    fcfg = parse_forward_config(cfg)
    spool = open_spool(cfg)
    spool.acquire_role("forward")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fwd = Forwarder(cfg, fcfg, spool)
    try:
        fwd.run(stop)
    finally:
        spool.close()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("forward", help="forward sealed recordings to the central site (MQTT)")
    p.set_defaults(handler=_forward)
