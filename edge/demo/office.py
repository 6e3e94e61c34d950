"""``edge demo``: an office and the central site on this machine, end to end.

Makes a throwaway central key set and device identity, starts the office's intake as a real
process, lets simulated enrolment workstations upload synthetic recordings of realistic
sizes (0.2-5 MB), and has the central side open every sealed recording to prove the bytes
survived intact. Everything lives under one work directory that the summary points to.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["register", "run_demo"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_demo(workdir: Path, recordings: int, workstations: int, seed: int) -> int:
    import httpx

    from edge.central.opener import open_sealed
    from edge.intake.tokens import TokenStore
    from edge.seal import generate_sealing_keys
    from edge.seal.keys import write_sealing_keys

    workdir.mkdir(parents=True, exist_ok=True)
    central_dir, office_dir = workdir / "central", workdir / "office"
    central_dir.mkdir(exist_ok=True)
    (office_dir / "state").mkdir(parents=True, exist_ok=True)

    _say("central: making the sealing key set (ML-KEM-768 + X25519)")
    keys = generate_sealing_keys()
    write_sealing_keys(keys, central_dir / "sealing.key", office_dir / "central-seal.pub")
    _say("office: making the device identity key on the device (ECDSA P-256)")
    device_key = ec.generate_private_key(ec.SECP256R1())
    (office_dir / "device.key").write_bytes(device_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    os.chmod(office_dir / "device.key", 0o600)
    port = _free_port()
    cfg = office_dir / "edge.toml"
    cfg.write_text(f"""# demo office appliance
[device]
id = "kec-demo-01"
office = "Kecamatan Demo"
state_dir = "{office_dir / 'state'}"

[identity]
key = "{office_dir / 'device.key'}"

[seal]
central_public_key = "{office_dir / 'central-seal.pub'}"
kem = "mlkem768-x25519"

[spool]
quota_bytes = "4GiB"
reserve_bytes = "256MiB"

[intake]
host = "127.0.0.1"
port = {port}
""")
    store = TokenStore(office_dir / "state" / "tokens.json")
    tokens = [store.add(f"ws-{i + 1:02d}") for i in range(workstations)]

    _say(f"office: starting intake on http://127.0.0.1:{port}")
    log = (office_dir / "intake.log").open("ab")
    intake = subprocess.Popen([sys.executable, "-m", "edge", "--config", str(cfg), "intake"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(400):
            try:
                httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=0.5)
                break
            except httpx.TransportError:
                if intake.poll() is not None:
                    raise SystemExit("intake failed to start; see " + str(log.name)) from None
                time.sleep(0.05)

        rnd = random.Random(seed)
        plan = [(f"nik-{seed}-{i:05d}", rnd.randint(200_000, 5_000_000)) for i in range(
            recordings)]
        uploaded: dict[str, str] = {}
        lock = threading.Lock()
        queue = list(plan)

        def workstation(n: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers={"Authorization": f"Bearer {tokens[n]}"}) as c:
                while True:
                    with lock:
                        if not queue:
                            return
                        rid, size = queue.pop(0)
                    body = random.Random(rid).randbytes(size)
                    r = c.put(f"/v1/recordings/{rid}", content=body,
                              headers={"X-Operator": f"operator-{n + 1}"})
                    if r.status_code not in (200, 201):
                        _say(f"ws-{n + 1:02d}: {rid} refused: {r.status_code} {r.text}")
                        continue
                    with lock:
                        uploaded[rid] = hashlib.sha256(body).hexdigest()
                        done = len(uploaded)
                    if done % max(1, recordings // 10) == 0 or done == recordings:
                        _say(f"workstations: {done}/{recordings} recordings accepted "
                             f"(last: {rid}, {size / 1e6:.1f} MB, seq {r.json()['sequence']})")

        _say(f"{workstations} workstations uploading {recordings} recordings (0.2-5 MB)")
        threads = [threading.Thread(target=workstation, args=(n,)) for n in range(workstations)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        intake.send_signal(signal.SIGTERM)
        intake.wait(timeout=20)

    _say("central: opening every sealed recording with the central private key")
    spool_dir = office_dir / "state" / "spool"
    conn = sqlite3.connect(spool_dir / "spool.db")
    rows = conn.execute("SELECT recording_id, file, manifest, plaintext_sha256 FROM recordings"
                        ).fetchall()
    opened = bad = 0
    for rid, file, manifest, _digest in rows:
        out = io.BytesIO()
        with (spool_dir / "data" / file).open("rb") as f:
            open_sealed(f, manifest, device_key.public_key(), keys, out)
        if hashlib.sha256(out.getvalue()).hexdigest() == uploaded.get(rid):
            opened += 1
        else:
            bad += 1
    lost = len(set(uploaded) - {r[0] for r in rows})
    print()
    print("=== demo summary ===")
    print(f"uploaded by workstations : {len(uploaded)}")
    print(f"sealed in the office spool: {len(rows)}")
    print(f"opened centrally, intact  : {opened}")
    print(f"lost                      : {lost + bad}")
    print(f"work directory            : {workdir}")
    print(f"  office config  {cfg}")
    print(f"  spool          {spool_dir}")
    print(f"  intake log     {office_dir / 'intake.log'}")
    return 0 if lost + bad == 0 and opened == len(uploaded) else 1


def _handler(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    if workdir.exists():
        shutil.rmtree(workdir)  # each run starts from nothing
    return run_demo(workdir.resolve(), args.recordings, args.workstations, args.seed)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="all-in-one office + central site demo on this machine")
    p.add_argument("--recordings", type=int, default=40)
    p.add_argument("--workstations", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", default="demo-run",
                   help="everything the demo makes goes here, cleared first (default: demo-run)")
    p.set_defaults(handler=_handler)
