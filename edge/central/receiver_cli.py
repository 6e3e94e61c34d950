"""``edge-central receive``: run one custody receiver (see edge/central/receiver_app.py).

    edge-central receive                                # settings from central.toml
    edge-central receive --config /etc/edge-central/central.toml --client-id rx-a
    edge-central receive --data-dir ./custody --broker 127.0.0.1:8883 --ca ca.pem \\
        --cert central-receiver.pem --key central-receiver.key \\
        --receipt-key receipt.key --device-certs ./devices   # no file at all

Run several on one machine (distinct ``--client-id``) to share the load: they share the
broker's subscription ``$share/central/edge/+/up/custody/#`` and one store.
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from edge.central.settings import add_arguments, settings_from_args

__all__ = ["receive", "register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("receive", help="custody receiver: store recordings from devices "
                              "and sign receipts", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, receive=True)
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    p.set_defaults(handler=receive)


def receive(args: argparse.Namespace) -> int:
    from edge.central.receiver_app import ReceiverApp

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = ReceiverApp(settings_from_args(args))

    def stop(signum: int, frame: object) -> None:
        app.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return app.run()
