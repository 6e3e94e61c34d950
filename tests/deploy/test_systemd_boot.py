"""The real thing: install.sh run for real inside a booted systemd container, then the
units started by systemd 252 as PID 1 with every sandbox directive in force.

- ``edge intake`` itself runs under edge-intake.service and takes a recording over HTTP:
  HPKE (ML-KEM-768+X25519) sealing in cryptography, SQLite WAL, fsyncs in /var/lib/edge,
  under MemoryDenyWriteExecute=, the seccomp filter, PrivateUsers= and ProtectSystem=strict.
- forward, uplink and panel run a probe in place of their programs, under their own unit
  files plus a drop-in that replaces only ExecStart=: it reports what the sandbox lets it do
  (capabilities, writable paths, sockets, W+X memory, cffi) and speaks sd_notify through
  edge.health.sdnotify. (The real forwarder and the central services run under their units
  end to end in test_systemd_chain.py.)
- the panel probe stops pinging: systemd's watchdog must kill and restart it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.deploy.nspawn import Machine
from tests.support.office import make_office, write_toml

pytestmark = pytest.mark.slow

PROBE = r'''
import ctypes, json, os, socket, sys, time
from pathlib import Path
from edge.health.sdnotify import Notifier

name, mode = sys.argv[1], sys.argv[2]
res = {"uid": os.getuid(), "groups": sorted(os.getgroups())}
status = dict(ln.split(":\t", 1) for ln in Path("/proc/self/status").read_text().splitlines()
              if ":\t" in ln)
res["cap_eff"] = int(status["CapEff"], 16)
res["no_new_privs"] = status["NoNewPrivs"].strip()
res["seccomp"] = status["Seccomp"].strip()

# cryptography (Rust + OpenSSL) and the project's own sealing keys: ML-KEM-768 + X25519
from edge.seal import generate_sealing_keys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
keys = generate_sealing_keys()
res["crypto"] = len(AESGCM(AESGCM.generate_key(256)).encrypt(b"\0" * 12, b"x" * 100, None))
try:
    import cffi
    ffi = cffi.FFI()
    cb = ffi.callback("int(int)", lambda x: x + 1)
    res["cffi_callback"] = cb(41)
except Exception as e:
    res["cffi_callback"] = repr(e)

# MemoryDenyWriteExecute=: an anonymous writable+executable mapping must be refused
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
p = libc.mmap(None, 4096, 7, 0x22, -1, 0)  # PROT_READ|WRITE|EXEC, MAP_PRIVATE|ANONYMOUS
res["wx_mmap"] = "refused" if p in (None, 2**64 - 1) else "allowed"

def can_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
        return True
    except OSError:
        return False

res["writes"] = {p: can_write(p) for p in
                 ["/etc/edge/probe", "/opt/edge/probe", "/var/lib/edge/probe",
                  "/run/edge/heartbeat/probe", "/tmp/probe", "/root/probe", "/srv/probe"]}
res["home_visible"] = os.path.exists("/root/.cache")

def try_socket(*args):
    try:
        socket.socket(*args).close()
        return True
    except OSError:
        return False

res["af_inet"] = try_socket(socket.AF_INET, socket.SOCK_STREAM)
res["af_netlink"] = try_socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
res["af_packet"] = try_socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
    res["so_bindtodevice"] = True
except OSError as e:
    res["so_bindtodevice"] = repr(e)
try:  # glibc's if_nameindex() asks the kernel over netlink
    res["interfaces"] = sorted(n for _, n in socket.if_nameindex())
except OSError as e:
    res["interfaces"] = repr(e)
res["dev"] = sorted(os.listdir("/dev"))

n = Notifier()
res["watchdog_interval_s"] = n.watchdog_interval_s
tmp = Path(f"/run/edge/.probe-{name}.json")
tmp.write_text(json.dumps(res))
os.replace(tmp, f"/run/edge/probe-{name}.json")
n.ready(status=f"probe {name}")
pings = 0
while True:
    if mode == "ping" or pings < 3:
        n.ping(force=True)
        pings += 1
    time.sleep(0.5)
'''


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    m = Machine(tmp_path_factory.mktemp("machine"))
    try:
        m.boot()
        r = m.run("bash", str(Machine.SRC / "provisioning/install.sh"), timeout=600)
        assert "done: edge 0.1.0" in r.stderr, r.stderr
        yield m
    finally:
        m.shutdown()


@pytest.fixture(scope="module")
def office(machine: Machine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Keys and config made on the host, placed as provisioning would place them."""
    o = make_office(tmp_path_factory.mktemp("office"), kem="mlkem768-x25519")
    machine.write("/etc/edge/device.key", (o.root / "device.key").read_bytes(), 0o640)
    machine.write("/etc/edge/central-seal.pub", (o.root / "central-seal.pub").read_bytes(),
                  0o640)
    cfg_path = o.root / "device.toml"
    write_toml(cfg_path, {
        "device": {"id": "kec-boot-01", "state_dir": "/var/lib/edge"},
        "identity": {"key": "/etc/edge/device.key"},
        "seal": {"central_public_key": "/etc/edge/central-seal.pub"},
        "spool": {"quota_bytes": "256MiB", "reserve_bytes": "16MiB"},
        "intake": {"host": "127.0.0.1", "port": o.port, "max_recording_bytes": "64MiB",
                   "tokens_file": "/var/lib/edge/tokens.json"},
    })
    machine.write("/etc/edge/edge.toml", cfg_path.read_text(), 0o640)
    machine.write("/var/lib/edge/tokens.json",
                  (o.root / "state/tokens.json").read_bytes(), 0o600)
    machine.run("chown", "root:edge", "/etc/edge/device.key", "/etc/edge/central-seal.pub",
                "/etc/edge/edge.toml")
    machine.run("chown", "-R", "edge:edge", "/var/lib/edge")
    machine.write("/opt/edge-probe/probe.py", PROBE)
    for name, mode, extra in (("forward", "ping", ""), ("uplink", "ping", ""),
                              ("panel", "hang", "WatchdogSec=3s\nRestartSec=1s\n")):
        machine.write(f"/etc/systemd/system/edge-{name}.service.d/probe.conf",
                      f"[Service]\nExecStart=\nExecStart=/opt/edge/bin/python "
                      f"/opt/edge-probe/probe.py {name} {mode}\n{extra}")
    machine.run("systemctl", "daemon-reload")
    machine.run("systemctl", "start", "edge.target", timeout=300)
    return {"port": o.port, "token": o.token}


def probe(machine: Machine, name: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = machine.run("cat", f"/run/edge/probe-{name}.json", check=False)
        if r.returncode == 0:
            doc: dict[str, object] = json.loads(r.stdout)
            return doc
        time.sleep(0.3)
    pytest.fail(f"no probe result from {name}:\n{machine.journal(f'edge-{name}.service')}")


def test_installer_made_user_groups_and_enabled_units(machine: Machine) -> None:
    assert machine.run("id", "-nG", "edge").stdout.split() == ["edge", "gpio"]
    for unit in ("edge.target", "edge-intake.service", "edge-forward.service",
                 "edge-uplink.service", "edge-panel.service"):
        assert machine.run("systemctl", "is-enabled", unit).stdout.strip() == "enabled"
    stat = machine.run("stat", "-c", "%U:%G %a", "/etc/edge", "/var/lib/edge").stdout.split("\n")
    assert stat[:2] == ["root:edge 750", "edge:edge 700"]
    again = machine.run("bash", str(Machine.SRC / "provisioning/install.sh"), timeout=600)
    assert "wrote" not in again.stderr and "useradd" not in again.stderr


def test_intake_takes_a_recording_under_its_unit(machine: Machine,
                                                  office: dict[str, object]) -> None:
    machine.wait_active("edge-intake.service")
    url = f"http://127.0.0.1:{office['port']}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with httpx.Client(base_url=url, timeout=10,
                              headers={"Authorization": f"Bearer {office['token']}"}) as c:
                r = c.put("/v1/recordings/nik-boot-0001", content=b"\x5a" * 300_000)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                pytest.fail(machine.journal("edge-intake.service"))
            time.sleep(0.3)
    assert r.status_code == 201, r.text
    assert r.json()["size"] == 300_000
    owners = machine.run("find", "/var/lib/edge/spool", "-type", "f", "-printf",
                         "%u %m\n").stdout.split("\n")
    assert owners and all(ln in ("edge 600", "") for ln in owners), owners
    main_pid = machine.show("edge-intake.service", "MainPID")
    status = machine.run("cat", f"/proc/{main_pid}/status").stdout
    assert "NoNewPrivs:\t1" in status and "Seccomp:\t2" in status
    assert "CapEff:\t0000000000000000" in status


def test_forward_sandbox_and_notify(machine: Machine, office: dict[str, object]) -> None:
    machine.wait_active("edge-forward.service")
    res = probe(machine, "forward")
    assert res["uid"] != 0 and res["cap_eff"] == 0
    assert res["no_new_privs"] == "1" and res["seccomp"] == "2"
    # MemoryDenyWriteExecute= is in force: W+X memory is refused, and with it cffi's
    # dynamic ffi.callback() (no dependency of ours uses it) ...
    assert res["wx_mmap"] == "refused"
    assert "write+execute memory for ffi.callback()" in str(res["cffi_callback"])
    # ... while cryptography (Rust, OpenSSL, its embedded cffi bindings) works
    assert res["crypto"] == 116
    assert res["writes"] == {"/etc/edge/probe": False, "/opt/edge/probe": False,
                             "/var/lib/edge/probe": True, "/run/edge/heartbeat/probe": True,
                             "/tmp/probe": True, "/root/probe": False, "/srv/probe": False}
    assert res["home_visible"] is False
    assert res["af_inet"] is True and res["af_netlink"] is False and res["af_packet"] is False
    # no AF_NETLINK: glibc cannot list interfaces (getaddrinfo falls back, connect works)
    assert "Address family not supported" in str(res["interfaces"])
    assert res["watchdog_interval_s"] == 60.0
    assert machine.show("edge-forward.service", "StatusText") == "probe forward"


def test_uplink_has_net_admin_and_netlink_only(machine: Machine,
                                               office: dict[str, object]) -> None:
    machine.wait_active("edge-uplink.service")
    res = probe(machine, "uplink")
    cap_net_admin, cap_net_raw = 1 << 12, 1 << 13
    assert res["cap_eff"] == cap_net_admin and not int(str(res["cap_eff"])) & cap_net_raw
    assert res["af_netlink"] is True and res["af_packet"] is False
    assert res["so_bindtodevice"] is True
    assert "lo" in res["interfaces"]  # type: ignore[operator]
    assert res["crypto"] == 116 and res["wx_mmap"] == "refused"


def test_panel_has_no_network_gpio_group_and_watchdog_restarts_it(
        machine: Machine, office: dict[str, object]) -> None:
    machine.wait_active("edge-panel.service")
    res = probe(machine, "panel")
    gpio_gid = int(machine.run("getent", "group", "gpio").stdout.split(":")[2])
    assert gpio_gid in res["groups"]  # type: ignore[operator]
    assert res["af_inet"] is False and "Address family not supported" in str(res["interfaces"])
    assert machine.show("edge-panel.service", "PrivateNetwork") == "yes"
    assert res["writes"]["/var/lib/edge/probe"] is False  # type: ignore[index]
    # the probe stops pinging after 3 pings: WatchdogSec=3s kills it, Restart= brings it back
    deadline = time.monotonic() + 30
    while int(machine.show("edge-panel.service", "NRestarts") or 0) < 1:
        if time.monotonic() > deadline:
            pytest.fail(machine.journal("edge-panel.service"))
        time.sleep(0.5)
    assert "Watchdog timeout" in machine.journal("edge-panel.service")
