"""A throwaway office appliance for tests: config file, device key, central sealing keys,
workstation tokens, and the intake run as a real process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.config import Config, load_config
from edge.intake.tokens import TokenStore
from edge.seal import SealingPrivateKeys, generate_sealing_keys
from edge.seal.keys import write_sealing_keys

REPO = Path(__file__).resolve().parents[2]

_CENTRAL_KEYS: SealingPrivateKeys | None = None


def central_keys() -> SealingPrivateKeys:
    global _CENTRAL_KEYS
    if _CENTRAL_KEYS is None:
        _CENTRAL_KEYS = generate_sealing_keys()
    return _CENTRAL_KEYS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_toml(path: Path, data: dict[str, dict[str, Any]]) -> None:
    lines = []
    for table, values in data.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))


@dataclass
class Office:
    root: Path
    config_path: Path
    device_key: ec.EllipticCurvePrivateKey
    central: SealingPrivateKeys
    token: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    tls_ca: Path | None = None
    fwd: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_ca else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def client(self, **kw: Any) -> httpx.Client:
        if self.tls_ca is not None:
            kw.setdefault("verify", ssl.create_default_context(cafile=str(self.tls_ca)))
        return httpx.Client(base_url=self.url, headers=self.auth, **kw)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start_intake(self, timeout: float = 20.0) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.log_path = self.root / "intake.log"
        log = self.log_path.open("ab")
        env = {**os.environ, **self.extra_env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "--config", str(self.config_path), "intake"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"intake exited: {self.log_path.read_text()[-3000:]}")
            try:
                with self.client(timeout=0.5) as c:
                    c.get("/openapi.json")
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("intake did not start")

    def start_forwarder(self) -> subprocess.Popen[bytes]:
        assert self.fwd is None or self.fwd.poll() is not None
        log = (self.root / "forward.log").open("ab")
        self.fwd = subprocess.Popen(
            [sys.executable, "-m", "edge", "--config", str(self.config_path), "forward"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.extra_env},
            cwd=REPO)
        return self.fwd

    def kill_forwarder(self, sig: int = signal.SIGKILL) -> None:
        if self.fwd is not None and self.fwd.poll() is None:
            self.fwd.send_signal(sig)
            self.fwd.wait(timeout=20)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        self.kill_forwarder(signal.SIGTERM)


def make_office(root: Path, *, kem: str = "x25519", intake: dict[str, Any] | None = None,
                spool: dict[str, Any] | None = None, workstation: str = "ws-01",
                device_id: str = "kec-test-01",
                extra: dict[str, dict[str, Any]] | None = None) -> Office:
    """``kem`` defaults to x25519 to keep tests quick; tests of the hybrid KEM ask for it."""
    root.mkdir(parents=True, exist_ok=True)
    state = root / "state"
    state.mkdir(exist_ok=True)
    device_key = ec.generate_private_key(ec.SECP256R1())
    key_path = root / "device.key"
    key_path.write_bytes(device_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    central = central_keys()
    write_sealing_keys(central, root / "central-seal.key", root / "central-seal.pub")
    port = free_port()
    cfg: dict[str, dict[str, Any]] = {
        "device": {"id": device_id, "state_dir": str(state)},
        "identity": {"key": str(key_path)},
        "seal": {"central_public_key": str(root / "central-seal.pub"), "kem": kem},
        "spool": {"dir": str(state / "spool"), "quota_bytes": "2GiB", "reserve_bytes": "64MiB",
                  **(spool or {})},
        "intake": {"host": "127.0.0.1", "port": port, "tokens_file": str(state / "tokens.json"),
                   "body_idle_timeout_s": 3.0, "max_recording_bytes": "600MiB",
                   **(intake or {})},
    }
    for table, values in (extra or {}).items():
        cfg.setdefault(table, {}).update(values)
    config_path = root / "edge.toml"
    write_toml(config_path, cfg)
    token = TokenStore(state / "tokens.json").add(workstation)
    return Office(root, config_path, device_key, central, token, port)
