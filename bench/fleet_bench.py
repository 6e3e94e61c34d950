"""Fleet view at scale: 7,000 appliances reporting every 60 s.

Starts, on loopback only: a bench Mosquitto (plain TCP, anonymous: the simulator publishes
for many devices over a few connections, which the production ACL forbids), the fleet
service as a real process (``edge-central fleet serve``), and ``fleet_sim.py``. Waits until
every device has reported, then measures in two windows:

1. ingest only: CPU (cores = CPU seconds / wall seconds) and RSS of the fleet service, with
   the broker's CPU over the same window as the baseline (both handle every message once);
2. dashboard: sequential requests to the dashboard, filters, search, an office page and
   the JSON API, with ``/static/fleet.css`` from the same server as the baseline (same
   stack, no work of ours); p50/p95/max per kind, and /metrics (~140k series) apart.

    python bench/fleet_bench.py --devices 7000 --interval 60 --measure 120 \\
        --out bench/results/fleet.md

Targets: fleet service < 0.3 core at 7,000 × 1/60 s; dashboard p95 < 300 ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.05)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=7000)
    ap.add_argument("--interval", type=float, default=60.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--measure", type=float, default=120.0, help="ingest window, seconds")
    ap.add_argument("--requests", type=int, default=60, help="per dashboard request kind")
    ap.add_argument("--store", default="", help="store URL (default: SQLite in a temp dir)")
    ap.add_argument("--out", type=Path, help="write the Markdown report here")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    mqtt_port, http_port = free_port(), free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"user root\npersistence false\nlistener {mqtt_port} 127.0.0.1\n"
                    "allow_anonymous true\nmax_queued_messages 100000\n")
    procs: list[subprocess.Popen[bytes]] = []
    log = (tmp / "procs.log").open("wb")
    try:
        broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=log,
                                  stderr=log)
        procs.append(broker)
        wait_port(mqtt_port, broker, "mosquitto")
        store = args.store or f"sqlite://{tmp}/fleet.db"
        fleet = subprocess.Popen(
            [sys.executable, "-m", "edge.central.cli", "fleet", "serve",
             "--broker", f"127.0.0.1:{mqtt_port}", "--insecure-plain-mqtt",
             "--store", store, "--listen", f"127.0.0.1:{http_port}",
             "--interval", str(args.interval), "--log-level", "warning"],
            stdout=log, stderr=log, cwd=ROOT)
        procs.append(fleet)
        wait_port(http_port, fleet, "fleet service")
        sim = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "fleet_sim.py"),
             "--broker", f"127.0.0.1:{mqtt_port}", "--devices", str(args.devices),
             "--interval", str(args.interval), "--connections", str(args.connections)],
            stdout=log, stderr=log)
        procs.append(sim)
        http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30)

        # Warm-up: every device has reported at least once (one interval), then a bit more.
        t_start = time.monotonic()
        while True:
            counts = http.get("/api/v1/summary").json()["counts"]
            if counts["offices"] >= args.devices and counts["online"] >= args.devices * 0.99:
                break
            if time.monotonic() - t_start > args.interval * 3 + 60:
                raise SystemExit(f"warm-up did not finish: {counts}")
            time.sleep(1)
        time.sleep(min(10.0, args.interval / 4))
        warmup_s = time.monotonic() - t_start

        # Window 1: ingest only.
        c0 = {p.pid: cpu_seconds(p.pid) for p in procs}
        m0 = http.get("/metrics").text
        w0 = time.monotonic()
        time.sleep(args.measure)
        wall = time.monotonic() - w0
        cores = {p.pid: (cpu_seconds(p.pid) - c0[p.pid]) / wall for p in procs}
        m1 = http.get("/metrics").text
        rss = rss_mib(fleet.pid)

        def counter(text: str, name: str) -> float:
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith(name) and not line.startswith("#"))

        msgs = counter(m1, "fleet_messages_received_total") - counter(
            m0, "fleet_messages_received_total")
        flush_s = counter(m1, "fleet_store_flush_seconds_total") - counter(
            m0, "fleet_store_flush_seconds_total")
        flushes = counter(m1, "fleet_store_flushes_total") - counter(
            m0, "fleet_store_flushes_total")
        failures = counter(m1, "fleet_store_flush_failures_total")

        # Window 2: dashboard latency (sequential, like a few operators' browsers).
        office = "kec-00042"
        kinds = {
            "static css (baseline)": "/static/fleet.css",
            "dashboard /": "/",
            "filter problems": "/?state=problems",
            "filter on 4G": "/?on4g=1",
            "search": "/?q=kec-012",
            "sort backlog age": "/?sort=backlog_age",
            "office page 24h": f"/office/{office}",
            "api offices limit=100": "/api/v1/offices?limit=100",
        }
        lat: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(args.requests):
            for k, path in kinds.items():
                t = time.perf_counter()
                r = http.get(path)
                lat[k].append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (path, r.status_code)
        metrics_ms = []
        metrics_bytes = 0
        for _ in range(5):
            t = time.perf_counter()
            r = http.get("/metrics")
            metrics_ms.append((time.perf_counter() - t) * 1000)
            metrics_bytes = len(r.content)
        dash = [v for k, vs in lat.items() if k != "static css (baseline)" for v in vs]
        rss_after = rss_mib(fleet.pid)
        hwm = rss_mib(fleet.pid, "VmHWM")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()

    fleet_cores, broker_cores, sim_cores = cores[fleet.pid], cores[broker.pid], cores[sim.pid]
    cmd = "python bench/fleet_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Fleet view at scale",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, store: {'SQLite (WAL)' if not args.store else 'PostgreSQL' if args.store.startswith('postgres') else args.store}. "  # noqa: E501
        f"{args.devices} simulated appliances, one telemetry message each per "
        f"{args.interval:.0f} s, over {args.connections} MQTT connections (bench broker: plain "
        "TCP on loopback, anonymous). Warm-up (every device reported): "
        f"{warmup_s:.0f} s.",
        "",
        f"## Ingest ({wall:.0f} s window, no HTTP load)",
        "",
        "| process | CPU (cores) | note |",
        "| --- | --- | --- |",
        f"| fleet service | **{fleet_cores:.3f}** | target < 0.3; RSS {rss:.0f} MiB "
        f"(peak {hwm:.0f} MiB) |",
        f"| mosquitto (baseline) | {broker_cores:.3f} | same messages, routed once |",
        f"| simulator | {sim_cores:.3f} | encodes every message (not part of the service) |",
        "",
        f"Fleet service / broker CPU ratio: **{fleet_cores / max(broker_cores, 1e-9):.1f}×**. "
        f"Messages accepted: {msgs:.0f} ({msgs / wall:.1f}/s; expected "
        f"{args.devices / args.interval:.1f}/s). Store: {flushes:.0f} batches, "
        f"{flush_s / max(flushes, 1) * 1000:.1f} ms per batch on average, "
        f"{flush_s / wall:.3f} cores in writes; flush failures: {failures:.0f}.",
        "",
        f"## Dashboard ({args.requests} sequential requests per kind, during ingest)",
        "",
        "| request | p50 ms | p95 ms | max ms |",
        "| --- | --- | --- | --- |",
    ]
    for k, vs in lat.items():
        lines.append(f"| {k} | {statistics.median(vs):.1f} | {pct(vs, 95):.1f} | "
                     f"{max(vs):.1f} |")
    base95 = pct(lat["static css (baseline)"], 95)
    lines += [
        "",
        f"All dashboard/API requests together: p95 **{pct(dash, 95):.1f} ms** (target < 300 ms), "
        f"{pct(dash, 95) / max(base95, 1e-9):.0f}× the static-file p95 from the same server "
        f"({base95:.1f} ms). `/metrics` ({metrics_bytes / 1e6:.1f} MB, "
        f"{len(m1.splitlines())} lines): median {statistics.median(metrics_ms):.0f} ms. "
        f"RSS after the requests: {rss_after:.0f} MiB.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
