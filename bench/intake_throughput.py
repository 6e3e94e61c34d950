"""Intake throughput vs the bare durable steps, measured in the same run.

    .venv/bin/python bench/intake_throughput.py [--seconds-per-case 8]

For 256 KiB and 4 MiB recordings, 4 concurrent clients (wrk, a C load generator, so the
client's own CPU use stays small on a 2-core machine; httpx threads if wrk is missing)
upload to a real intake process over loopback HTTP (sealing with the default
ML-KEM-768+X25519 suite, signed manifest,
durable file, SQLite commit). The baseline writes the same bytes from 4 threads with only
the bare durable steps: temp file, fsync, rename, fsync dir, and one synchronous=FULL WAL
commit per file. Also reports the intake's peak RSS growth over a 500 MB upload.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.office import Office, make_office

CLIENTS = 4


def run_clients(n_clients: int, seconds: float, one: Callable[[int, int], None]) -> float:
    """Run ``one(client, i)`` in n threads for ~seconds; return bytes/s given by counters."""
    stop = time.monotonic() + seconds
    counts = [0] * n_clients

    def loop(c: int) -> None:
        i = 0
        while time.monotonic() < stop:
            one(c, i)
            i += 1
        counts[c] = i

    threads = [threading.Thread(target=loop, args=(c,)) for c in range(n_clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def baseline(root: Path, size: int, seconds: float) -> float:
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    body = os.urandom(size)
    local = threading.local()

    def conn() -> sqlite3.Connection:
        if not hasattr(local, "c"):
            c = sqlite3.connect(root / "b.db", timeout=30, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=FULL")
            c.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, size INT)")
            local.c = c
        return local.c  # type: ignore[no-any-return]

    conn()

    def one(c: int, i: int) -> None:
        name = f"{size}-{c}-{i}"
        tmp = data_dir / f".tmp-{name}"
        with tmp.open("wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, data_dir / name)
        fd = os.open(data_dir, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        conn().execute("INSERT INTO t VALUES (?, ?)", (name, size))

    return run_clients(CLIENTS, seconds, one) * size


WRK_SCRIPT = """
local size = tonumber(os.getenv("BODY_SIZE"))
local token = os.getenv("TOKEN")
local threads = {}
local n = 0
function setup(thread)
  n = n + 1
  thread:set("tid", n)
  table.insert(threads, thread)
end
function init(args)
  math.randomseed(tid * 7919)
  local parts = {}
  for i = 1, size / 1024 do
    parts[i] = string.rep(string.char(math.random(0, 255)), 1024)
  end
  body = table.concat(parts)
  counter = 0
  bad = 0
end
function request()
  counter = counter + 1
  return wrk.format("PUT", "/v1/recordings/w" .. size .. "-" .. tid .. "-" .. counter,
    {["Authorization"] = "Bearer " .. token, ["Content-Length"] = tostring(size)}, body)
end
function response(status, headers, body)
  if status ~= 201 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  io.write(string.format("WRK %d %d %f\\n", summary.requests, b, summary.duration / 1e6))
end
"""


def ours_wrk(office: Office, size: int, seconds: float) -> float:
    script = office.root / "put.lua"
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", "-t", str(CLIENTS), "-c", str(CLIENTS), "-d", f"{int(seconds)}s",
         "--timeout", "30s", "-s", str(script), office.url],
        capture_output=True, text=True, check=True,
        env={**os.environ, "BODY_SIZE": str(size), "TOKEN": office.token})
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("WRK "))
    _, requests, bad, duration = line.split()
    assert int(bad) == 0, f"{bad} uploads were not answered 201"
    return int(requests) * size / float(duration)


def ours(office: Office, size: int, seconds: float) -> float:
    if shutil.which("wrk"):
        return ours_wrk(office, size, seconds)
    body = os.urandom(size)
    clients = [httpx.Client(base_url=office.url, headers=office.auth, timeout=60)
               for _ in range(CLIENTS)]

    def one(c: int, i: int) -> None:
        r = clients[c].put(f"/v1/recordings/b{size}-{c}-{i}", content=body)
        assert r.status_code == 201, r.text

    try:
        return run_clients(CLIENTS, seconds, one) * size
    finally:
        for cl in clients:
            cl.close()


def peak_rss_growth_mib(office: Office, size: int) -> tuple[float, float]:
    assert office.proc is not None

    def hwm() -> int:
        for line in Path(f"/proc/{office.proc.pid}/status").read_text().splitlines():  # type: ignore[union-attr]
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    before = hwm()
    block = os.urandom(64 * 1024)

    def gen() -> Iterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    r = httpx.put(f"{office.url}/v1/recordings/big-{size}", content=gen(),
                  headers={**office.auth, "Content-Length": str(size)}, timeout=600)
    assert r.status_code == 201, r.text
    return (hwm() - before) / 1024, hwm() / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds-per-case", type=float, default=8.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-intake-", dir="/var/tmp") as d:
        root = Path(d)
        office = make_office(root / "office", kem="mlkem768-x25519",
                             spool={"quota_bytes": "64GiB", "reserve_bytes": "1GiB"})
        office.start_intake()
        try:
            print(f"{'case':<10} {'baseline MB/s':>14} {'intake MB/s':>12} {'ratio':>6}")
            for size in (256 * 1024, 4 * 1024 * 1024):
                b = baseline(root / f"base-{size}", size, args.seconds_per_case)
                o = ours(office, size, args.seconds_per_case)
                label = f"{size // 1024} KiB" if size < 2**20 else f"{size // 2**20} MiB"
                print(f"{label:<10} {b / 1e6:>14.1f} {o / 1e6:>12.1f} {o / b:>6.2f}")
            growth, peak = peak_rss_growth_mib(office, 500 * 1024 * 1024)
            print(f"intake peak RSS {peak:.1f} MiB; growth during one 500 MiB upload: "
                  f"{growth:.1f} MiB")
        finally:
            office.stop()


if __name__ == "__main__":
    main()
