"""Simulate N appliances publishing status and telemetry, over a few MQTT connections.

One real appliance = one MQTT connection with its own certificate; 7,000 connections from
one bench process would measure the simulator, not the fleet view. So a few connections
multiplex many device topics. The production broker ACL lets a client write only under its
own name (``pattern write edge/%u/up/#``), so this needs a bench broker config (here: plain
TCP on loopback, anonymous) or a simulator identity with ``topic write edge/+/up/#``.

    python bench/fleet_sim.py --broker 127.0.0.1:1884 --devices 7000 --interval 60

Reports are spread evenly over the interval (each device keeps its own phase), like a real
fleet whose devices booted at different times. Each device's backlog, uplink and 4G usage
drift a little between reports; ~3 % of devices sit on 4G, ~1 % fall behind.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.telemetry.schema import (
    Telemetry,
    encode_telemetry,
    online_status,
    status_topic,
    telemetry_topic,
)


class Device:
    def __init__(self, device_id: str, rng: random.Random) -> None:
        self.id = device_id
        self.rng = rng
        self.seq = 0
        self.on_4g = rng.random() < 0.03
        self.behind = rng.random() < 0.01
        self.backlog = rng.randint(0, 3)
        self.mobile_used = rng.randint(0, 6 * 10**9)
        self.boot = time.time() - rng.randint(3600, 90 * 86400)

    def telemetry(self, now: float) -> bytes:
        self.seq += 1
        if self.behind:
            self.backlog += self.rng.randint(0, 2)
        else:
            self.backlog = max(0, self.backlog + self.rng.randint(-2, 2))
        if self.on_4g:
            self.mobile_used += self.rng.randint(1, 5) * 10**6
        age = None
        if self.backlog:
            age = 7200 + self.seq * 60 if self.behind else self.rng.randint(5, 600)
        return encode_telemetry(Telemetry(
            sent_at=int(now), seq=self.seq, backlog_items=self.backlog,
            backlog_bytes=self.backlog * 160_000_000, backlog_oldest_age_s=age,
            uplink="4g" if self.on_4g else "wired",
            mobile_used_bytes=self.mobile_used, mobile_budget_bytes=10 * 10**9,
            disk_free_bytes=40 * 10**9 - self.backlog * 160_000_000,
            disk_total_bytes=60 * 10**9, cpu_temp_c=round(self.rng.uniform(45, 70), 1),
            throttled=0, uptime_s=int(now - self.boot),
            versions={"edge": "0.1.0", "os": "12", "kernel": "6.6.31+rpt-rpi-v8"},
            programs={"intake": "ok", "forward": "ok", "uplink": "ok", "panel": "ok"},
            last_receipt_age_s=self.rng.randint(1, 120),
        ))


def run_connection(idx: int, host: str, port: int, devices: list[Device], interval: float,
                   stop: threading.Event, counts: list[int]) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                    client_id=f"fleet-sim-{idx}", protocol=mqtt.MQTTv5)
    c.max_queued_messages_set(0)
    c.connect(host, port, keepalive=60)
    c.loop_start()
    now = time.time()
    for d in devices:
        c.publish(status_topic(d.id), online_status(now), qos=1, retain=True)
    n = len(devices)
    start = time.monotonic()
    # Device k of this connection reports at start + k * interval / n + j * interval.
    j = 0
    while not stop.is_set():
        for k, d in enumerate(devices):
            due = start + (j + k / n) * interval
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            c.publish(telemetry_topic(d.id), d.telemetry(time.time()), qos=0)
            counts[idx] += 1
        j += 1
    c.disconnect()
    c.loop_stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", default="127.0.0.1:1884", help="host:port (plain TCP)")
    ap.add_argument("--devices", type=int, default=7000)
    ap.add_argument("--interval", type=float, default=60.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--duration", type=float, default=0, help="seconds; 0 = until SIGTERM")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    host, port = args.broker.rsplit(":", 1)
    rng = random.Random(args.seed)
    devices = [Device(f"kec-{i:05d}", rng) for i in range(args.devices)]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    counts = [0] * args.connections
    threads = [threading.Thread(target=run_connection, daemon=True, args=(
        i, host, int(port), devices[i::args.connections], args.interval, stop, counts))
        for i in range(args.connections)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    while not stop.wait(1.0):
        if args.duration and time.monotonic() - t0 >= args.duration:
            stop.set()
    for t in threads:
        t.join(10)
    print(f"fleet_sim: published {sum(counts)} telemetry messages for {args.devices} devices "
          f"in {time.monotonic() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
