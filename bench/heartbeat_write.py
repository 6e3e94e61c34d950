"""How cheap is a heartbeat? Per-beat cost vs a durable write, measured in the same run.

Baseline: ``edge.durable.atomic_write_bytes`` (temp, fsync, rename, fsync dir) of the same
payload in the same directory, which is what a heartbeat would cost if it were written like
spool state. Compared: ``Heartbeat.beat()`` (temp, rename, no fsync) on that disk, and on
tmpfs (/dev/shm here; /run/edge on the device).

    .venv/bin/python bench/heartbeat_write.py [--beats 300] [--dir PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edge.durable import atomic_write_bytes
from edge.health.heartbeat import Heartbeat, _fs_type


def per_call_us(fn: Callable[[int], None], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beats", type=int, default=300)
    ap.add_argument("--dir", type=Path, default=None, help="a directory on the disk to test")
    args = ap.parse_args()
    detail = {"spool": {"waiting_count": 12, "oldest_waiting_age_s": 40.5,
                        "free_bytes": 2**34, "quota_bytes": 2**33, "used_bytes": 2**30,
                        "refusing": False}}
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as disk:
        d = Path(disk)
        payload = json.dumps({"status": "ok", "detail": detail}).encode()
        results["durable write (baseline)"] = per_call_us(
            lambda i: atomic_write_bytes(d / "durable", payload), args.beats)
        beat = Heartbeat(d / "hb", "intake", min_interval_s=0.0)
        results[f"beat on {_fs_type(d)}"] = per_call_us(
            lambda i: beat.beat("ok" if i % 2 else "starting", detail), args.beats)
    shm = Path("/dev/shm")
    if _fs_type(shm) == "tmpfs":
        with tempfile.TemporaryDirectory(dir=shm) as ram:
            beat = Heartbeat(Path(ram), "intake", min_interval_s=0.0)
            results["beat on tmpfs"] = per_call_us(
                lambda i: beat.beat("ok" if i % 2 else "starting", detail), args.beats)
    base = results["durable write (baseline)"]
    for name, us in results.items():
        print(f"{name:<28} {us:9.1f} us/beat   {base / us:6.1f}x cheaper than baseline")


if __name__ == "__main__":
    main()
