"""``edge demo``: an office appliance and the central site, end to end, on this machine.

    central site   Mosquitto (the repo's config: TLS only, client certificates, ACL)
                   edge-central receive (custody store, signed receipts)
                   edge-central fleet serve (dashboard, JSON API, /metrics)
    office         edge intake (HTTP LAN API) + edge forward (MQTT) + the status LEDs,
                   drawn in this terminal; its uplink is a relay the demo cuts and restores
    workstations   threads uploading synthetic recordings of 0.2-5 MB

Keys and certificates come from a throwaway fleet CA made on the spot. Midway the uplink is
cut (uploads keep being accepted: they wait sealed in the spool), then restored; the demo
ends when every upload has its central custody receipt, and prints a summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["register", "run_demo"]

DEVICE = "kec-demo-01"


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Procs:
    items: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        f = log.open("ab")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                             env={**os.environ, **(env or {})}, start_new_session=True)
        f.close()
        self.items.append((name, p))
        return p

    def check(self) -> None:
        for name, p in self.items:
            if p.poll() is not None:
                raise SystemExit(f"demo: {name} exited with {p.returncode}; see its log")

    def stop(self) -> None:
        for _, p in reversed(self.items):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in reversed(self.items):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: {what} exited at start; see its log")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"demo: {what} did not start within {timeout:.0f} s")


def _write_uplink(run_dir: Path, up: bool, seq: int, started: float) -> None:
    """The demo has no second link: it announces its relay's state the way edge uplink does,
    so the forwarder, the panel and the staff page react as on a real appliance."""
    from edge.uplink.announce import Announcer, boottime

    Announcer(run_dir).publish({
        "active": "wired" if up else None, "state": "wired" if up else "offline",
        "switch_seq": seq, "daemon_started": started, "metered_policy": "all",
        "links": {"wired": {"role": "wired", "interface": "demo-relay", "metered": False,
                            "carrier": up, "healthy": up}},
        "updated_boottime": boottime(), "simulated": True}, durable=False)


def run_demo(workdir: Path, recordings: int, workstations: int, seed: int,
             cut_after: float, cut_for: float, timeout: float) -> int:
    import httpx

    from edge.broker.local import LocalBroker, free_port
    from edge.config import load_config
    from edge.demo.relay import UplinkRelay
    from edge.health.heartbeat import runtime_dir
    from edge.intake.tokens import TokenStore
    from edge.panel import TerminalPanel, build_runner
    from edge.pki import generate_device_key, save_private_key
    from edge.seal import generate_sealing_keys
    from edge.seal.keys import write_sealing_keys

    central, office = workdir / "central", workdir / "office"
    for d in (central, office / "state", central / "devices"):
        d.mkdir(parents=True, exist_ok=True)
    procs = Procs()
    py = sys.executable

    _say("central: fleet CA, broker certificate, service identities (throwaway)")
    broker = LocalBroker(central / "broker")
    receiver_id = broker.identity("central-receiver")
    fleet_id = broker.identity("central-fleet")
    _say("central: sealing key set (ML-KEM-768 + X25519) and receipt signing key (Ed25519)")
    seal_keys = generate_sealing_keys()
    write_sealing_keys(seal_keys, central / "sealing.key", office / "central-seal.pub")
    receipt_key = Ed25519PrivateKey.generate()
    (central / "receipt.key").write_bytes(receipt_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (central / "receipt.key").chmod(0o600)
    (office / "central-receipt.pub").write_bytes(receipt_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    _say(f"office: device key made on the device, certificate for {DEVICE} from the CA")
    from edge.pki import build_csr, save_certificate
    device_key = generate_device_key()
    save_private_key(office / "device.key", device_key)
    cert = broker.ca.issue_client_certificate(build_csr(device_key, DEVICE))
    save_certificate(office / "device.crt", cert)
    save_certificate(central / "devices" / f"{DEVICE}.crt", cert)
    shutil.copy(broker.ca_path, office / "fleet-ca.crt")

    broker.start()
    _say(f"central: Mosquitto on 127.0.0.1:{broker.port} for devices and "
         f":{broker.services_port} for central services (TLS, client certificates, ACL)")
    relay = UplinkRelay((broker.host, broker.port))
    fleet_port, intake_port = free_port(), free_port()
    try:
        procs.start("receiver", [
            py, "-m", "edge.central.cli", "receive",
            "--data-dir", str(central / "custody"), "--ca", str(broker.ca_path),
            "--cert", str(receiver_id.cert), "--key", str(receiver_id.key),
            "--receipt-key", str(central / "receipt.key"),
            "--device-certs", str(central / "devices"),
            "--broker", f"{broker.host}:{broker.services_port}",
            "--client-id", "central-receiver-demo"],
            central / "receiver.log")
        fleet = procs.start("fleet view", [
            py, "-m", "edge.central.cli", "fleet", "serve",
            "--broker", f"{broker.host}:{broker.services_port}", "--mqtt-ca", str(broker.ca_path),
            "--mqtt-cert", str(fleet_id.cert), "--mqtt-key", str(fleet_id.key),
            "--store", f"sqlite:///{central / 'fleet.db'}",
            "--listen", f"127.0.0.1:{fleet_port}", "--interval", "10"],
            central / "fleet.log")
        _wait_http(f"http://127.0.0.1:{fleet_port}/", fleet, "fleet view")
        _say(f"central: receiver running; fleet view on http://127.0.0.1:{fleet_port}/")

        cfg_path = office / "edge.toml"
        cfg_path.write_text(f"""# demo office appliance (made by edge demo)
[device]
id = "{DEVICE}"
office = "Kecamatan Demo"
state_dir = "{office / 'state'}"

[identity]
key = "{office / 'device.key'}"
cert = "{office / 'device.crt'}"
ca = "{office / 'fleet-ca.crt'}"

[seal]
central_public_key = "{office / 'central-seal.pub'}"
kem = "mlkem768-x25519"

[spool]
quota_bytes = "4GiB"
reserve_bytes = "256MiB"

[intake]
host = "127.0.0.1"
port = {intake_port}

[mqtt]
host = "127.0.0.1"
port = {relay.port}
receipt_public_key = "{office / 'central-receipt.pub'}"
keepalive_s = 10
connect_timeout_s = 3

[forward]
telemetry_interval_s = 10

[panel]
programs = ["intake", "forward"]
""")
        cfg = load_config(cfg_path)
        run_dir = runtime_dir(cfg.device.state_dir)
        started = time.clock_gettime(time.CLOCK_BOOTTIME)
        switch_seq = 0
        _write_uplink(run_dir, True, switch_seq, started)
        store = TokenStore(cfg.intake.tokens_file)
        tokens = [store.add(f"ws-{i + 1:02d}") for i in range(workstations)]
        base = [py, "-m", "edge", "--config", str(cfg_path)]
        intake = procs.start("intake", [*base, "intake"], office / "intake.log")
        _wait_http(f"http://127.0.0.1:{intake_port}/openapi.json", intake, "intake")
        procs.start("forwarder", [*base, "forward"], office / "forward.log")
        _say(f"office: intake on http://127.0.0.1:{intake_port}/ (staff page), forwarder "
             f"connecting through the uplink relay 127.0.0.1:{relay.port}")
        panel = build_runner(cfg, TerminalPanel(sys.stdout, lang="en", title=DEVICE))

        rnd = random.Random(seed)
        plan = [(f"nik-{seed}-{i:05d}", rnd.randint(200_000, 5_000_000))
                for i in range(recordings)]
        uploaded: dict[str, str] = {}
        refused: list[str] = []
        lock = threading.Lock()
        queue_ = list(plan)
        pace = max(0.05, (cut_after + cut_for + 10) / max(1, recordings) * workstations)

        def workstation(n: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{intake_port}", timeout=120,
                              headers={"Authorization": f"Bearer {tokens[n]}"}) as c:
                while True:
                    with lock:
                        if not queue_:
                            return
                        rid, size = queue_.pop(0)
                    body = random.Random(rid).randbytes(size)
                    r = c.put(f"/v1/recordings/{rid}", content=body,
                              headers={"X-Operator": f"operator-{n + 1}"})
                    with lock:
                        if r.status_code in (200, 201):
                            uploaded[rid] = hashlib.sha256(body).hexdigest()
                        else:
                            refused.append(f"{rid}: {r.status_code} {r.text}")
                    time.sleep(pace * random.uniform(0.5, 1.5))

        _say(f"{workstations} workstations start uploading {recordings} recordings "
             "(0.2-5 MB each)")
        t0 = time.monotonic()
        threads = [threading.Thread(target=workstation, args=(n,), daemon=True)
                   for n in range(workstations)]
        for t in threads:
            t.start()
        phase = "up"
        spool_db = cfg.spool.dir / "spool.db"
        last_report = 0.0
        while True:
            now = time.monotonic() - t0
            procs.check()
            if phase == "up" and now >= cut_after:
                relay.cut()
                switch_seq += 1
                _write_uplink(run_dir, False, switch_seq, started)
                _say(f"*** uplink CUT for {cut_for:.0f} s: uploads continue, recordings wait "
                     "sealed in the spool ***")
                phase = "cut"
            elif phase == "cut" and now >= cut_after + cut_for:
                relay.restore()
                switch_seq += 1
                _write_uplink(run_dir, True, switch_seq, started)
                _say("*** uplink RESTORED: the forwarder reconnects and resumes ***")
                phase = "restored"
            panel.step()
            state = _spool_counts(spool_db)
            with lock:
                n_up = len(uploaded)
            if now - last_report >= 3:
                last_report = now
                _say(f"uploaded {n_up}/{recordings} · waiting in spool {state['waiting']} · "
                     f"delivered+receipted {state['done']} · uplink "
                     f"{'UP' if relay.is_up else 'CUT'}")
            all_in = not any(t.is_alive() for t in threads)
            if phase == "restored" and all_in and state["waiting"] == 0 and \
                    state["done"] >= n_up:
                break
            if now > timeout:
                _say("demo: timed out waiting for receipts")
                break
            time.sleep(0.5)
        panel.step()
        elapsed = time.monotonic() - t0
        fleet_doc = _fleet_office(fleet_port)
    finally:
        procs.stop()
        relay.close()
        broker.close()

    _say("central: checking every uploaded recording against the central store")
    got = _central_hashes(py, central, seal_keys_path=central / "sealing.key",
                          device_cert=office / "device.crt", ca=broker.ca_path)
    intact = sum(1 for rid, h in uploaded.items() if got.get(rid) == h)
    lost = len(uploaded) - intact
    receipts_ok = _receipts_verified(cfg.spool.dir / "spool.db", receipt_key)
    print()
    print("=== demo summary ===")
    print(f"recordings uploaded by workstations : {len(uploaded)}")
    print(f"refused at intake                   : {len(refused)}")
    print(f"held centrally, opened, intact      : {intact}")
    print(f"local copies removed after a valid receipt: {receipts_ok}")
    print(f"lost                                : {lost}")
    print(f"uplink cut                          : {cut_for:.0f} s (uploads kept being accepted)")
    print(f"time                                : {elapsed:.0f} s")
    if fleet_doc:
        print(f"fleet view's last word on {DEVICE}: {fleet_doc}")
    print(f"work directory: {workdir}")
    print("  logs: office/*.log, central/*.log; the staff page and fleet view run only while "
          "the demo does")
    print(f"  office:  {office}/edge.toml, intake.log, forward.log, state/spool/")
    print(f"  central: {central}/custody/ (sealed files + index), receiver.log, fleet.db")
    print("  open one: edge-central open ID --data-dir demo-run/central/custody "
          "--sealing-key demo-run/central/sealing.key --out FILE")
    for line in refused[:5]:
        print(f"  refused: {line}")
    return 0 if lost == 0 and not refused and intact == len(uploaded) else 1


def _spool_counts(db: Path) -> dict[str, int]:
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        rows = dict(conn.execute("SELECT state, COUNT(*) FROM recordings GROUP BY state"))
        conn.close()
    except sqlite3.Error:
        return {"waiting": 0, "done": 0}
    return {"waiting": rows.get("stored", 0) + rows.get("sending", 0),
            "done": rows.get("receipted", 0) + rows.get("purged", 0)}


def _fleet_office(port: int) -> str:
    import httpx

    try:
        doc = httpx.get(f"http://127.0.0.1:{port}/api/v1/offices/{DEVICE}", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return ""
    if not isinstance(doc, dict) or "state" not in doc:
        return json.dumps(doc)[:200]
    backlog = doc.get("backlog") or {}
    return (f"state {doc['state']}, uplink {doc.get('uplink')}, backlog "
            f"{backlog.get('items')} items, conditions {doc.get('conditions') or 'none'}")


def _central_hashes(py: str, central: Path, *, seal_keys_path: Path, device_cert: Path,
                    ca: Path) -> dict[str, str]:
    """Open every recording the central store holds and hash the plaintext."""
    out = subprocess.run([py, "-m", "edge.central.cli", "list", "--json",
                          "--data-dir", str(central / "custody")],
                         capture_output=True, text=True, check=True)
    held: list[dict[str, Any]] = json.loads(out.stdout)
    hashes: dict[str, str] = {}
    for item in held:
        rid = item["recording_id"]
        dest = central / "opened" / rid
        dest.parent.mkdir(exist_ok=True)
        r = subprocess.run([py, "-m", "edge.central.cli", "open", rid, "--device", DEVICE,
                            "--data-dir", str(central / "custody"),
                            "--sealing-key", str(seal_keys_path),
                            "--device-certs", str(central / "devices"), "--ca", str(ca),
                            "--out", str(dest)], capture_output=True, text=True)
        if r.returncode == 0:
            hashes[rid] = hashlib.sha256(dest.read_bytes()).hexdigest()
            dest.unlink()
    return hashes


def _receipts_verified(db: Path, key: Ed25519PrivateKey) -> int:
    import sqlite3

    from edge.custody.receipt import verify_receipt

    conn = sqlite3.connect(db)
    n = 0
    for rid, digest, receipt in conn.execute(
            "SELECT recording_id, sealed_sha256, receipt FROM recordings WHERE state='purged'"):
        verify_receipt(key.public_key(), receipt, DEVICE, rid, bytes.fromhex(digest))
        n += 1
    conn.close()
    return n


def _handler(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    if workdir.exists():
        shutil.rmtree(workdir)  # each run starts from nothing
    return run_demo(workdir.resolve(), args.recordings, args.workstations, args.seed,
                    args.cut_after, args.cut_for, args.timeout)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="all-in-one office + central site demo on this machine")
    p.add_argument("--recordings", type=int, default=60)
    p.add_argument("--workstations", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cut-after", type=float, default=12.0, help="seconds before the cut")
    p.add_argument("--cut-for", type=float, default=15.0, help="how long the uplink is down")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--workdir", default="demo-run",
                   help="everything the demo makes goes here, cleared first (default: demo-run)")
    p.set_defaults(handler=_handler)
