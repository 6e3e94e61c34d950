"""The custody chain end to end: goodput against raw MQTT in the same run, device CPU per MB,
and the forwarder's memory with a large backlog.

    .venv/bin/python bench/custody_chain.py [--total-mib 200] [--rounds 3]
        [--backlogs 10000,25000,50000] [--out bench/results/custody.md]

Everything runs on this machine over loopback, through one Mosquitto started with the repo's
config (TLS only, client certificates, the per-identity ACL) and a throwaway fleet CA
(edge.broker.local via tests/support/broker.py). ``--out`` writes the figures only.

1. Baseline, raw MQTT: a paho client holding a device certificate (its own process, like the
   forwarder) publishes the round's bytes in 128 KiB QoS 1 messages under its own
   ``edge/<id>/up/`` tree, 20 in flight (what the forwarder gives paho); a paho client
   reads them with a plain subscription. Timed from the first publish to the last message
   received. In the rounds the reader is ``central-fleet`` on ``edge/<id>/up/telemetry`` (the
   ACL grants it), so the custody receivers' shared subscription never sees these messages
   and baseline and chain can alternate: the machine's noise hits both. Once, before any
   receiver runs, the reader is ``central-receiver`` on ``edge/<id>/up/custody/chunk``, to
   show the topic and identity make no difference.
2. Ours, per round: workstation threads upload recordings (256 KiB and 4 MiB) over HTTP to a
   real ``edge intake`` (ML-KEM-768+X25519 sealing), a real ``edge forward`` sends them over
   the custody protocol (production timers) to a real ``edge-central receive``; timed from
   the first upload to the last local copy purged after its verified receipt (``purged_at``).
3. Device CPU: user+sys seconds (/proc/<pid>/stat, all threads) of the intake and forwarder
   processes over each round, divided by the plaintext MB delivered.
4. Backlog: a spool filled with small recordings through the intake's own path (Ingestor
   in-process: sealed, fsynced, signed manifest, group commit), then ``edge forward`` and
   ``edge intake`` started on it with the broker up and no receiver anywhere (nothing
   drains); VmRSS/VmHWM and CPU sampled while they poll; the spool queries timed in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import random
import shlex
import signal
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge.custody.sender import SenderConfig
from edge.intake.ingest import Ingestor
from edge.intake.server import open_spool
from edge.seal import load_device_signing_key, load_sealing_public_keys
from edge.spool import Spool
from tests.e2e.chain import Central, make_central, make_chain_office
from tests.support.broker import Broker, start_broker, subscribe_and_wait
from tests.support.office import Office

KIB = 1024
MIB = 1024 * 1024
MESSAGE = 128 * KIB          # = the forwarder's max_payload (chunk header included)
PAHO_INFLIGHT = SenderConfig().window_chunks + 4   # what edge forward gives paho
CLK_TCK = os.sysconf("SC_CLK_TCK")
BASELINE_DEVICE = "kec-bench-base"
CHAIN_DEVICE = "kec-bench-01"
BACKLOG_DEVICE = "kec-bench-02"
# Production custody timing (tests/e2e/chain.py shortens it for tests).
DEFAULT_CUSTODY = {k: getattr(SenderConfig(), k) for k in
                   ("offer_timeout_s", "progress_timeout_s", "receipt_timeout_s",
                    "backoff_max_s")}


# ----------------------------------------------------------------------------- /proc
def cpu_seconds(pid: int) -> float:
    """user + sys CPU seconds of one process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime, stime (fields 14, 15)


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def log_has(path: Path, text: str) -> bool:
    try:
        return text in path.read_text(errors="replace")
    except FileNotFoundError:
        return False


# ----------------------------------------------------------------------------- baseline
def publisher_main(spec: dict[str, Any]) -> None:
    """Child process: publish ``count`` messages of ``size`` bytes at QoS 1 as fast as paho
    goes with ``inflight`` unacknowledged, then print timings and own CPU as JSON."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=spec["ca"])
    ctx.load_cert_chain(certfile=spec["cert"], keyfile=spec["key"])
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=spec["client_id"],
                    protocol=mqtt.MQTTv5)
    c.tls_set_context(ctx)
    c.max_inflight_messages_set(spec["inflight"])
    n = int(spec["count"])
    room = threading.Semaphore(4 * spec["inflight"])   # paho's own queue stays small
    connected, done = threading.Event(), threading.Event()
    acked = [0]
    refused = [0]

    def on_connect(cl: mqtt.Client, ud: Any, flags: Any, rc: Any, props: Any) -> None:
        connected.set()

    def on_publish(cl: mqtt.Client, ud: Any, mid: int, rc: Any, props: Any) -> None:
        if rc.is_failure:
            refused[0] += 1
        acked[0] += 1
        room.release()
        if acked[0] == n:
            done.set()

    c.on_connect = on_connect
    c.on_publish = on_publish
    c.connect(spec["host"], spec["port"], keepalive=30)
    c.loop_start()
    if not connected.wait(10):
        raise SystemExit("publisher: no CONNACK")
    rnd = random.Random(7)
    payloads = [rnd.randbytes(spec["size"]) for _ in range(16)]
    cpu0 = sum(os.times()[:2])
    t0 = time.monotonic()
    for i in range(n):
        room.acquire()
        c.publish(spec["topic"], payloads[i % len(payloads)], qos=1)
    if not done.wait(600):
        raise SystemExit(f"publisher: only {acked[0]} of {n} PUBACKs")
    t1 = time.monotonic()
    cpu1 = sum(os.times()[:2])
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"t_first_publish": t0, "t_last_puback": t1, "cpu_s": cpu1 - cpu0,
                      "refused": refused[0]}), flush=True)


@dataclass
class BaselineResult:
    seconds: float
    nbytes: int
    publisher_cpu_s: float
    broker_cpu_s: float
    subscriber_cpu_s: float

    @property
    def mb_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds


def run_baseline(broker: Broker, nbytes: int, reader: str = "central-fleet") -> BaselineResult:
    """Raw paho QoS 1 through the same broker. The device writes under its own tree. With
    ``central-fleet`` the reader takes the device's telemetry topic (granted by the ACL), so
    the custody receivers never see these messages; ``central-receiver`` reads the custody
    chunk topic and must run before any receiver subscribes."""
    count = nbytes // MESSAGE
    kind = "telemetry" if reader == "central-fleet" else "custody/chunk"
    topic = f"edge/{BASELINE_DEVICE}/up/{kind}"
    got = [0, 0]                    # messages, bytes
    last = [0.0]
    done = threading.Event()

    def on_message(cl: mqtt.Client, ud: Any, msg: mqtt.MQTTMessage) -> None:
        got[0] += 1
        got[1] += len(msg.payload)
        if got[0] == count:
            last[0] = time.monotonic()
            done.set()

    sub = broker.connect(reader, client_id=f"{reader}-bench")
    sub.on_message = on_message
    subscribe_and_wait(sub, topic, qos=1)
    ident = broker.identity(BASELINE_DEVICE)
    spec = {"host": broker.host, "port": broker.port, "ca": str(broker.ca_path),
            "cert": str(ident.cert), "key": str(ident.key), "client_id": BASELINE_DEVICE,
            "topic": topic, "count": count, "size": MESSAGE, "inflight": PAHO_INFLIGHT}
    broker_cpu0 = cpu_seconds(broker.pid)
    own0 = sum(os.times()[:2])     # this process: the subscriber's paho thread
    out = subprocess.run([sys.executable, __file__, "publish", json.dumps(spec)],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"baseline publisher failed:\n{out.stderr[-3000:]}")
    pub = json.loads(out.stdout.strip().splitlines()[-1])
    if not done.wait(120):
        raise RuntimeError(f"baseline: {got[0]} of {count} messages arrived")
    broker_cpu = cpu_seconds(broker.pid) - broker_cpu0
    sub_cpu = sum(os.times()[:2]) - own0
    sub.disconnect()
    sub.loop_stop()
    if pub["refused"]:
        raise RuntimeError(f"baseline: the broker refused {pub['refused']} publishes (ACL?)")
    return BaselineResult(last[0] - pub["t_first_publish"], got[1], pub["cpu_s"], broker_cpu,
                          sub_cpu)


# ----------------------------------------------------------------------------- ours
@dataclass
class ChainResult:
    seconds: float
    nbytes: int
    recordings: int
    upload_seconds: float
    cpu: dict[str, float]          # CPU seconds per process over the round
    rss_kib: dict[str, tuple[int, int]]
    cpu_window: float               # seconds over which ``cpu`` was measured

    @property
    def mb_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds

    @property
    def cores_busy(self) -> float:
        return sum(self.cpu.values()) / self.cpu_window


def plan_recordings(total: int, prefix: str, seed: int = 2026) -> list[tuple[str, int]]:
    """About 80 % of the bytes in 4 MiB recordings, 20 % in 256 KiB ones, shuffled."""
    big = max(1, round(total * 0.8 / (4 * MIB)))
    small = max(1, (total - big * 4 * MIB) // (256 * KIB))
    plan = [(f"{prefix}big-{i:04d}", 4 * MIB) for i in range(big)]
    plan += [(f"{prefix}small-{i:04d}", 256 * KIB) for i in range(small)]
    random.Random(seed).shuffle(plan)
    return plan


def spool_db(office: Office) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{office.config.spool.dir / 'spool.db'}?mode=ro", uri=True,
                           timeout=30)


def chain_procs(office: Office, central: Central, broker: Broker) -> dict[str, int]:
    assert office.proc is not None and office.fwd is not None
    procs = {"intake": office.proc.pid, "forward": office.fwd.pid}
    for i, p in enumerate(central.procs):
        procs[f"receiver {i + 1}" if len(central.procs) > 1 else "receiver"] = p.pid
    procs["broker"] = broker.pid
    return procs


def run_chain(office: Office, procs: dict[str, int], plan: list[tuple[str, int]],
              prefix: str, clients: int) -> ChainResult:
    """Upload ``plan`` from ``clients`` workstation threads; return once every recording of
    it has been purged after its receipt."""
    rnd = random.Random(1)
    bodies = {size: [rnd.randbytes(size) for _ in range(8)] for size in {s for _, s in plan}}
    work: queue.Queue[tuple[int, str, int]] = queue.Queue()
    for i, (rid, size) in enumerate(plan):
        work.put((i, rid, size))
    errors: list[str] = []

    def workstation() -> None:
        with httpx.Client(base_url=office.url, headers=office.auth, timeout=120) as c:
            while True:
                try:
                    i, rid, size = work.get_nowait()
                except queue.Empty:
                    return
                r = c.put(f"/v1/recordings/{rid}", content=bodies[size][i % 8])
                if r.status_code != 201:
                    errors.append(f"{rid}: {r.status_code} {r.text[:200]}")

    db = spool_db(office)
    mine = (f"{prefix}%",)

    def purged() -> int:
        return int(db.execute("SELECT COUNT(*) FROM recordings WHERE state = 'purged' AND "
                              "recording_id LIKE ?", mine).fetchone()[0])

    cpu0 = {k: cpu_seconds(p) for k, p in procs.items()}
    own0 = sum(os.times()[:2])
    t0 = time.time()
    threads = [threading.Thread(target=workstation) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_uploaded = time.time()
    if errors:
        raise RuntimeError(f"uploads failed: {errors[:5]}")
    wait_for(lambda: purged() == len(plan), 1800, "every receipt")
    cpu1 = {k: cpu_seconds(p) for k, p in procs.items()}
    cpu1["workstations"], cpu0["workstations"] = sum(os.times()[:2]), own0
    rss = {k: memory_kib(p) for k, p in procs.items()}
    t_end = float(db.execute("SELECT MAX(purged_at) FROM recordings WHERE recording_id LIKE ?",
                             mine).fetchone()[0])
    db.close()
    return ChainResult(t_end - t0, sum(s for _, s in plan), len(plan), t_uploaded - t0,
                       {k: cpu1[k] - cpu0[k] for k in cpu1}, rss, time.time() - t0)


def forwarder_totals(office: Office) -> int | None:
    """Chunk bytes sent, from the totals ``edge forward`` logs on a clean stop."""
    office.kill_forwarder(signal.SIGTERM)
    sent: int | None = None
    for line in (office.root / "forward.log").read_text().splitlines():
        if "stopping:" in line and "chunks sent (" in line:
            sent = int(line.split("chunks sent (")[1].split()[0])
    return sent


# ----------------------------------------------------------------------------- backlog
@dataclass
class BacklogResult:
    rows: int
    fill_seconds: float
    forward_rss: list[int] = field(default_factory=list)    # KiB, one per sample
    forward_hwm: int = 0
    forward_cpu_s: float = 0.0
    intake_rss: int = 0
    intake_hwm: int = 0
    intake_cpu_s: float = 0.0
    sample_seconds: float = 0.0
    waiting_ms: float = 0.0
    summary_ms: float = 0.0
    plans: dict[str, list[str]] = field(default_factory=dict)


class BacklogFiller:
    """Fills a spool through the intake's own path, in this process: each recording is
    sealed, fsynced, renamed, its manifest signed and its row committed (group commit)."""

    def __init__(self, office: Office, size: int = 4 * KIB, threads: int = 8) -> None:
        cfg = office.config
        self.spool = open_spool(cfg)
        self.spool.acquire_role("intake")
        self.ingestor = Ingestor(
            spool=self.spool, device_id=cfg.device.id,
            public_key=load_sealing_public_keys(cfg.seal.central_public_key).for_kem(
                cfg.seal.kem),
            kem=cfg.seal.kem, segment_size=cfg.seal.segment_size,
            signing_key=load_device_signing_key(cfg.identity.key))
        self.size = size
        self.threads = threads
        self.count = 0

    def fill_to(self, target: int) -> None:
        lock = threading.Lock()
        errors: list[BaseException] = []

        def work() -> None:
            while True:
                with lock:
                    if self.count >= target or errors:
                        return
                    i = self.count
                    self.count += 1
                try:
                    up = self.ingestor.begin(f"bl-{i:06d}", self.size, {"operator": "bench"},
                                             priority=0 if i % 10 == 0 else 1)
                    up.write(os.urandom(self.size))
                    up.finish()
                except BaseException as e:
                    errors.append(e)
                    return

        threads = [threading.Thread(target=work) for _ in range(self.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def close(self) -> None:
        self.spool.close()


def time_queries(spool: Spool, reps: int = 15) -> tuple[float, float]:
    """Median milliseconds of the forwarder's poll query and of the spool summary (which the
    intake runs every second for its heartbeat, the forwarder for telemetry)."""
    def median_ms(fn: Callable[[], object]) -> float:
        fn()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    return (median_ms(lambda: spool.waiting(limit=64)), median_ms(spool.summary))


def query_plans(spool: Spool) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of every statement the forwarder's poll and the summary run."""
    out: dict[str, list[str]] = {}
    conn = spool._conn
    for name, fn in (("waiting()", lambda: spool.waiting(limit=64)),
                     ("summary()", spool.summary)):
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        try:
            fn()
        finally:
            conn.set_trace_callback(None)
        for i, sql in enumerate(q for q in statements if q.lstrip().upper().startswith("SELECT")):
            out[f"{name} #{i + 1}: `{sql[:70]}…`"] = [
                str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    return out


def run_backlog(office: Office, levels: list[int], sample_s: float,
                say: Callable[[str], None]) -> list[BacklogResult]:
    results: list[BacklogResult] = []
    filler: BacklogFiller | None = BacklogFiller(office)
    for level in levels:
        assert filler is not None
        t = time.monotonic()
        filler.fill_to(level)
        fill_s = time.monotonic() - t
        res = BacklogResult(level, fill_s)
        res.waiting_ms, res.summary_ms = time_queries(filler.spool)
        res.plans = query_plans(filler.spool)
        filler.close()   # the intake process takes the intake role now
        filler = None
        say(f"backlog {level}: filled (+{fill_s:.0f} s); waiting() {res.waiting_ms:.2f} ms, "
            f"summary() {res.summary_ms:.2f} ms; sampling the forwarder for {sample_s:.0f} s")
        office.start_intake(timeout=120)
        fwd = office.start_forwarder()
        assert office.proc is not None
        log = office.root / "forward.log"
        before = log.read_text().count("connected to") if log.exists() else 0
        wait_for(lambda log=log, before=before:  # type: ignore[misc]
                 log.read_text().count("connected to") > before, 60,
                 "the forwarder to connect")
        time.sleep(3.0)            # startup (imports, recover_forwarder, first polls) done
        f0, i0 = cpu_seconds(fwd.pid), cpu_seconds(office.proc.pid)
        t0 = time.monotonic()
        while time.monotonic() - t0 < sample_s:
            time.sleep(1.0)
            res.forward_rss.append(memory_kib(fwd.pid)[0])
        res.sample_seconds = time.monotonic() - t0
        res.forward_cpu_s = cpu_seconds(fwd.pid) - f0
        res.intake_cpu_s = cpu_seconds(office.proc.pid) - i0
        res.forward_hwm = memory_kib(fwd.pid)[1]
        res.intake_rss, res.intake_hwm = memory_kib(office.proc.pid)
        office.stop()
        db = spool_db(office)
        drained = db.execute("SELECT COUNT(*) FROM recordings WHERE state = 'purged'"
                             ).fetchone()[0]
        db.close()
        if drained:
            raise RuntimeError(f"{drained} recordings were drained: is a receiver running?")
        results.append(res)
        if level != levels[-1]:
            filler = BacklogFiller(office)
            filler.count = level
    if filler is not None:
        filler.close()
    return results


# ----------------------------------------------------------------------------- report
def raw_cpu(b: BaselineResult) -> float:
    return b.publisher_cpu_s + b.broker_cpu_s + b.subscriber_cpu_s


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{platform.node()}, {os.cpu_count()} cores ({cpu}), Python "
            f"{platform.python_version()}, load average before the run "
            f"{os.getloadavg()[0]:.2f}")


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def report(args: argparse.Namespace, rounds: list[tuple[BaselineResult, ChainResult]],
           reference: BaselineResult | None, sent: int | None, backlog: list[BacklogResult],
           header: str) -> str:
    lines = ["# Custody chain: goodput, device CPU, forwarder memory with a backlog", "",
             f"Command: `{args.command_line}`", "", f"Machine: {header}.", ""]
    if rounds:
        chain0 = rounds[0][1]
        ratios = [c.mb_s / b.mb_s for b, c in rounds]
        lines += [
            "## Goodput (intake → receipt) vs raw MQTT, same broker, same run", "",
            f"Each round: the baseline, then {chain0.recordings} recordings "
            f"({chain0.nbytes / MIB:.0f} MiB; 80 % of the bytes in 4 MiB recordings, 20 % in "
            f"256 KiB ones) uploaded by {args.clients} workstation threads through the chain "
            f"({args.receivers} receiver process{'es' if args.receivers > 1 else ''}). "
            f"Baseline: the same bytes as {chain0.nbytes // MESSAGE} raw paho QoS 1 messages "
            f"of 128 KiB, {PAHO_INFLIGHT} in flight, from a device certificate to a "
            "subscriber holding a central certificate.",
            "",
            "| round | raw paho QoS 1 MB/s (first publish → last message received) | custody "
            "chain MB/s (first upload → last receipt, local copy purged) | ratio "
            "(target ≥ 0.6) | uploads alone, MB/s into the intake |",
            "| --- | --- | --- | --- | --- |",
        ]
        for i, (b, c) in enumerate(rounds):
            lines.append(f"| {i + 1} | {b.mb_s:.1f} | {c.mb_s:.1f} | {c.mb_s / b.mb_s:.2f} | "
                         f"{c.nbytes / 1e6 / c.upload_seconds:.1f} |")
        lines += [
            f"| **median** | {statistics.median(b.mb_s for b, _ in rounds):.1f} | "
            f"{statistics.median(c.mb_s for _, c in rounds):.1f} | "
            f"**{statistics.median(ratios):.2f}** | |",
            "",
        ]
        if reference is not None:
            lines += [f"Reference, before any receiver ran: the same bytes read by "
                      f"`central-receiver` on `edge/<id>/up/custody/chunk`: "
                      f"{reference.mb_s:.1f} MB/s (the rounds' reader: `central-fleet` on "
                      "`edge/<id>/up/telemetry`).", ""]
        total_mb = sum(c.nbytes for _, c in rounds) / 1e6
        if sent is not None:
            lines += [f"Chunk bytes the forwarder sent over all rounds: {sent / 1e6:.1f} MB for "
                      f"{total_mb:.1f} MB of plaintext (sealing overhead plus any resends).", ""]
        keys = list(chain0.cpu)
        lines += [
            "## CPU seconds per MB (median over the rounds)", "",
            "| process | CPU s per MB | RSS at the end of the last round (peak), MiB |",
            "| --- | --- | --- |",
        ]

        def per_mb(k: str) -> float:
            return statistics.median(c.cpu[k] / (c.nbytes / 1e6) for _, c in rounds)

        last = rounds[-1][1]
        for k in keys:
            if k == "workstations":
                continue
            rss, hwm = last.rss_kib[k]
            side = "device" if k in ("intake", "forward") else "central"
            lines.append(f"| {k} ({side}) | {per_mb(k):.4f} | {mib(rss)} ({mib(hwm)}) |")
        lines.append(f"| workstations (the bench's HTTP upload threads) | "
                     f"{per_mb('workstations'):.4f} | |")
        device = statistics.median((c.cpu["intake"] + c.cpu["forward"]) / (c.nbytes / 1e6)
                                   for _, c in rounds)
        lines += [
            f"| **device total (intake + forward)** | **{device:.4f}** | |",
            f"| baseline publisher (raw paho, same bytes) | "
            f"{statistics.median(b.publisher_cpu_s / (b.nbytes / 1e6) for b, _ in rounds):.4f}"
            " | |",
            f"| broker during the baseline | "
            f"{statistics.median(b.broker_cpu_s / (b.nbytes / 1e6) for b, _ in rounds):.4f} | |",
            f"| baseline subscriber (raw paho) | "
            f"{statistics.median(b.subscriber_cpu_s / (b.nbytes / 1e6) for b, _ in rounds):.4f}"
            " | |",
            "",
            f"Every process together, CPU s per MB: custody chain "
            f"{statistics.median(sum(c.cpu.values()) / (c.nbytes / 1e6) for _, c in rounds):.4f}"
            f", raw MQTT "
            f"{statistics.median(raw_cpu(b) / (b.nbytes / 1e6) for b, _ in rounds):.4f}.",
            "",
            f"CPU busy during the chain rounds, every process above together: "
            f"{', '.join(f'{c.cores_busy:.2f}' for _, c in rounds)} of {os.cpu_count()} "
            "cores.",
            "",
        ]
    if backlog:
        lines += [
            "## Forwarder memory with a backlog (no receiver: nothing drains)", "",
            "Recordings of 4 KiB sealed and committed through the Ingestor in-process "
            "(10 % urgent), then `edge forward` and `edge intake` started on the spool with "
            f"the broker up and no receiver; samples every second for {args.sample_s:.0f} s "
            "after a 3 s settle. Query times: median of 15 calls in-process on the same "
            "spool.", "",
            "| backlog | forward VmRSS min–max, MiB | forward VmHWM, MiB | forward CPU "
            "(cores) | intake VmRSS (HWM), MiB | intake CPU (cores) | waiting() ms | "
            "summary() ms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in backlog:
            lines.append(
                f"| {r.rows:,} | {mib(min(r.forward_rss))}–{mib(max(r.forward_rss))} | "
                f"{mib(r.forward_hwm)} | {r.forward_cpu_s / r.sample_seconds:.3f} | "
                f"{mib(r.intake_rss)} ({mib(r.intake_hwm)}) | "
                f"{r.intake_cpu_s / r.sample_seconds:.3f} | {r.waiting_ms:.2f} | "
                f"{r.summary_ms:.2f} |")
        first, last_b = backlog[0], backlog[-1]
        lines += [
            "",
            f"Forwarder VmHWM {mib(first.forward_hwm)} MiB at {first.rows:,} rows, "
            f"{mib(last_b.forward_hwm)} MiB at {last_b.rows:,} rows (target ≤ 80 MB and "
            "flat).",
            "",
            "Query plans at the largest backlog:", "",
        ]
        for name, plan in last_b.plans.items():
            lines.append(f"- {name} → " + "; ".join(f"`{p}`" for p in plan))
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "publish":
        publisher_main(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total-mib", type=int, default=200, help="plaintext per round")
    ap.add_argument("--rounds", type=int, default=3,
                    help="baseline + chain rounds (interleaved: the machine's noise hits both)")
    ap.add_argument("--clients", type=int, default=4, help="workstation upload threads")
    ap.add_argument("--receivers", type=int, default=1,
                    help="edge-central receive processes sharing the subscription")
    ap.add_argument("--backlogs", default="10000,25000,50000",
                    help="comma-separated backlog sizes; empty to skip")
    ap.add_argument("--sample-s", type=float, default=20.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    args.command_line = " ".join(shlex.quote(a) for a in [".venv/bin/python",
                                                          "bench/custody_chain.py",
                                                          *sys.argv[1:]])
    levels = [int(x) for x in args.backlogs.split(",") if x.strip()]
    header = machine()

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    rounds: list[tuple[BaselineResult, ChainResult]] = []
    reference: BaselineResult | None = None
    sent: int | None = None
    backlog: list[BacklogResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-custody-", dir="/var/tmp") as d, \
            start_broker(Path(d) / "broker") as broker:
        root = Path(d)
        central = make_central(root / "central", broker)
        if args.rounds:
            round_bytes = sum(s for _, s in plan_recordings(args.total_mib * MIB, "x"))
            reference = run_baseline(broker, round_bytes, reader="central-receiver")
            say(f"reference baseline (central-receiver, custody topic): "
                f"{reference.mb_s:.1f} MB/s")
            for i in range(args.receivers):
                central.start_receiver(f"central-receiver-t{i + 1}")
            office = make_chain_office(
                root / "office", central, device_id=CHAIN_DEVICE, custody=DEFAULT_CUSTODY,
                kem="mlkem768-x25519",
                spool={"quota_bytes": "64GiB", "reserve_bytes": "1GiB"})
            try:
                office.start_intake()
                office.start_forwarder()
                wait_for(lambda: log_has(office.root / "forward.log", "connected to"), 60,
                         "the forwarder to connect")
                wait_for(lambda: all(log_has(central.root / f"central-receiver-t{i + 1}.log",
                                             "connected to the broker")
                                     for i in range(args.receivers)), 60,
                         "the receivers to subscribe")
                procs = chain_procs(office, central, broker)
                for n in range(args.rounds):
                    prefix = f"r{n + 1}-"
                    plan = plan_recordings(args.total_mib * MIB, prefix)
                    total = sum(s for _, s in plan)
                    base = run_baseline(broker, total)
                    chain = run_chain(office, procs, plan, prefix, args.clients)
                    rounds.append((base, chain))
                    say(f"round {n + 1}: baseline {base.mb_s:.1f} MB/s, chain "
                        f"{chain.mb_s:.1f} MB/s ({len(plan)} recordings, "
                        f"{total / MIB:.0f} MiB): ratio {chain.mb_s / base.mb_s:.2f}")
                sent = forwarder_totals(office)
            finally:
                office.stop()
                central.stop()
        if levels:
            office2 = make_chain_office(
                root / "backlog", central, device_id=BACKLOG_DEVICE, custody=DEFAULT_CUSTODY,
                kem="mlkem768-x25519",
                spool={"quota_bytes": "64GiB", "reserve_bytes": "1GiB"})
            try:
                backlog = run_backlog(office2, levels, args.sample_s, say)
            finally:
                office2.stop()
    text = report(args, rounds, reference, sent, backlog, header)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
