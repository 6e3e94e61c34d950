"""Network namespaces for uplink tests: an office device with two uplinks through two ISPs to
the central site. Reusable by any test (and bench/) that needs real links to break.

    central ns     lo: 203.0.113.10 broker (mosquitto: TLS 8883, plain 1883)
                       203.0.113.20 second probe target (mosquitto: TLS 443)
                       203.0.113.30 flow sink (port 5000)
        core1 203.0.113.1/30               core2 203.0.113.5/30
          |                                  |
        up0 203.0.113.2/30  isp_wired ns   up0 203.0.113.6/30  isp_4g ns   (forwarding)
        dn0 192.0.2.1/24                   dn0 198.51.100.1/24
          |                                  |
        eth0 192.0.2.2/24   dev ns         wwan0 198.51.100.2/24
                                           (strict rp_filter; DHCP-like default routes
                                            "proto static metric 202/204")

Faults: ``carrier(link, False)`` sets the ISP side down (the device sees NO-CARRIER, routes
stay, marked linkdown); ``blackhole(link, True)`` makes the ISP drop everything toward the
central site with carrier up (also a HiLink modem whose cellular side is dead);
``shape(link, "4mbit")`` is tbf both ways (ISP egress for downloads, device egress for
uploads); ``portal(link, True)`` answers every connection at the ISP with a foreign
certificate (a captive portal: TCP works, TLS does not). netem does not work here.

``call(ns, fn, *args)`` runs ``fn`` in a thread of this process that has entered ``ns``
(setns): sockets it opens live there, so a test can talk to a service inside a namespace
(upload to the office's intake on the device's loopback, check that the central broker
listens) without a helper process.

Names are unique per process and call (``eut<pid>x<n>-dev``) so tests can run repeatedly and
in parallel; ``close()`` (also at exit, and for stale names of dead processes at the next
start) kills every process started in the namespaces and deletes them.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import ipaddress
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MOSQUITTO = "/usr/sbin/mosquitto"

BROKER = "203.0.113.10"
SECOND = "203.0.113.20"
SINK = "203.0.113.30"
SINK_PORT = 5000
DEV_ADDR = {"wired": "192.0.2.2", "4g": "198.51.100.2"}
ISP_ADDR = {"wired": "192.0.2.1", "4g": "198.51.100.1"}
DEV_IF = {"wired": "eth0", "4g": "wwan0"}
CORE = {"wired": ("203.0.113.1", "203.0.113.2"), "4g": ("203.0.113.5", "203.0.113.6")}
_PREFIX = "eut"
_counter = itertools.count(1)
_open: list[Topology] = []


def run(*argv: str, check: bool = True, input: str | None = None) -> str:
    out = subprocess.run(list(argv), capture_output=True, text=True, input=input)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def netns_available() -> bool:
    if os.geteuid() != 0:
        return False
    name = f"{_PREFIX}{os.getpid()}probe"
    try:
        run("ip", "netns", "add", name)
    except (RuntimeError, FileNotFoundError):
        return False
    run("ip", "netns", "del", name, check=False)
    return True


def enter_netns(ns: str) -> None:
    """Move the calling thread (only it: network namespaces are per thread) into ``ns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {ns}: {os.strerror(e)}")
    finally:
        os.close(fd)


def sweep_stale() -> None:
    """Delete namespaces left by test processes that died without cleaning up."""
    for line in run("ip", "netns", "list", check=False).splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(_PREFIX):
            continue
        pid = name[len(_PREFIX):].split("x")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _kill_ns(name)


def _kill_ns(name: str) -> None:
    for pid in run("ip", "netns", "pids", name, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    run("ip", "netns", "del", name, check=False)


@dataclass
class Topology:
    tag: str
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ca: Path | None = None
    _portals: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    _threads: dict[str, ThreadPoolExecutor] = field(default_factory=dict)

    @property
    def dev(self) -> str:
        return f"{self.tag}-dev"

    def isp(self, link: str) -> str:
        return f"{self.tag}-{'w' if link == 'wired' else 'g'}"

    @property
    def central(self) -> str:
        return f"{self.tag}-c"

    @property
    def namespaces(self) -> list[str]:
        return [self.dev, self.isp("wired"), self.isp("4g"), self.central]

    # --- plumbing -------------------------------------------------------------------------
    def ip(self, ns: str, *args: str, check: bool = True) -> str:
        return run("ip", "-n", ns, *args, check=check)

    def exec(self, ns: str, *argv: str, check: bool = True) -> str:
        return run("ip", "netns", "exec", ns, *argv, check=check)

    def spawn(self, ns: str, argv: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        """Start a real process inside ``ns``; it is SIGKILLed by close()."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO)
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], env=env,  # type: ignore[call-overload]
                             **kw)
        self.procs.append(p)
        return p

    def call(self, ns: str, fn: Callable[..., T], *args: object,
             timeout: float | None = 120.0) -> T:
        """Run ``fn(*args)`` in this process, in a thread that lives inside ``ns``."""
        pool = self._threads.get(ns)
        if pool is None:
            pool = ThreadPoolExecutor(4, thread_name_prefix=f"netns-{ns}",
                                      initializer=enter_netns, initargs=(ns,))
            self._threads[ns] = pool
        return pool.submit(fn, *args).result(timeout=timeout)

    def python(self, ns: str, *args: str, **kw: object) -> subprocess.Popen[bytes]:
        return self.spawn(ns, [sys.executable, *args], **kw)

    def setup(self) -> None:
        for ns in self.namespaces:
            run("ip", "netns", "add", ns)
            self.ip(ns, "link", "set", "lo", "up")
        c = self.central
        for link, core_if in (("wired", "core1"), ("4g", "core2")):
            isp = self.isp(link)
            central_addr, isp_addr = CORE[link]
            self.ip(isp, "link", "add", "up0", "type", "veth", "peer", "name", core_if,
                    "netns", c)
            self.ip(isp, "link", "add", "dn0", "type", "veth", "peer", "name", DEV_IF[link],
                    "netns", self.dev)
            self.ip(isp, "addr", "add", f"{isp_addr}/30", "dev", "up0")
            self.ip(isp, "addr", "add", f"{ISP_ADDR[link]}/24", "dev", "dn0")
            self.ip(c, "addr", "add", f"{central_addr}/30", "dev", core_if)
            self.ip(self.dev, "addr", "add", f"{DEV_ADDR[link]}/24", "dev", DEV_IF[link])
            for ns, ifname in ((isp, "up0"), (isp, "dn0"), (c, core_if),
                               (self.dev, DEV_IF[link])):
                self.ip(ns, "link", "set", ifname, "up")
            self.ip(isp, "route", "add", "default", "via", central_addr)
            self.exec(isp, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            net = str(ipaddress.ip_network(f"{DEV_ADDR[link]}/24", strict=False))
            self.ip(c, "route", "add", net, "via", isp_addr)
        for addr in (BROKER, SECOND, SINK):
            self.ip(c, "addr", "add", f"{addr}/32", "dev", "lo")
        # What dhcpcd would leave on a Pi: both default routes, wired preferred.
        self.ip(self.dev, "route", "add", "default", "via", ISP_ADDR["wired"], "dev", "eth0",
                "proto", "static", "metric", "202")
        self.ip(self.dev, "route", "add", "default", "via", ISP_ADDR["4g"], "dev", "wwan0",
                "proto", "static", "metric", "204")
        self.exec(self.dev, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1",
                  "net.ipv4.conf.default.rp_filter=1", "net.ipv4.conf.eth0.rp_filter=1",
                  "net.ipv4.conf.wwan0.rp_filter=1")

    def close(self) -> None:
        for pool in self._threads.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._threads.clear()
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        for ns in self.namespaces:
            _kill_ns(ns)
        if self in _open:
            _open.remove(self)

    # --- faults ---------------------------------------------------------------------------
    def carrier(self, link: str, up: bool) -> None:
        """The device's ``link`` loses/regains carrier (the ISP side goes down/up)."""
        self.ip(self.isp(link), "link", "set", "dn0", "up" if up else "down")

    def blackhole(self, link: str, on: bool) -> None:
        """The ISP silently drops traffic toward the central site; carrier stays up."""
        if on:
            self.ip(self.isp(link), "route", "replace", "blackhole", "default")
        else:
            self.ip(self.isp(link), "route", "replace", "default", "via", CORE[link][0])

    def short_bursts(self, link: str) -> None:
        """One round of faults below the failover thresholds: a 0.3 s blackhole, then a
        0.1 s cable wiggle, each followed by a second of calm (~2.4 s in all)."""
        self.blackhole(link, True)
        time.sleep(0.3)
        self.blackhole(link, False)
        time.sleep(1.0)
        self.carrier(link, False)  # cable wiggle
        time.sleep(0.1)
        self.carrier(link, True)
        time.sleep(1.0)

    def shape(self, link: str, rate: str = "4mbit") -> None:
        """tbf both ways: downloads on the ISP's egress, uploads on the device's egress."""
        for ns, ifname in ((self.isp(link), "dn0"), (self.dev, DEV_IF[link])):
            self.ip(ns, "link", "set", ifname, "up")  # tc does not need it; keeps symmetry
            run("tc", "-n", ns, "qdisc", "replace", "dev", ifname, "root", "tbf", "rate", rate,
                "burst", "32kbit", "latency", "50ms")

    # --- observation ----------------------------------------------------------------------
    def route_dev(self, dst: str = SINK) -> str:
        """Which device interface a new connection to ``dst`` would leave through."""
        out = self.ip(self.dev, "-j", "route", "get", dst)
        return str(json.loads(out)[0]["dev"])

    def counters(self, link: str) -> tuple[int, int]:
        """(rx, tx) bytes of the device's interface, as the kernel counts them."""
        out = json.loads(self.ip(self.dev, "-j", "-s", "link", "show", DEV_IF[link]))
        st = out[0]["stats64"]
        return int(st["rx"]["bytes"]), int(st["tx"]["bytes"])

    # --- services -------------------------------------------------------------------------
    def start_broker(self) -> Path:
        """Mosquitto in the central namespace with TLS on both probe targets."""
        ca, cert, key = make_pki(self.workdir / "pki", [BROKER, SECOND])
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join([
            "per_listener_settings false", "allow_anonymous true", "persistence false",
            "log_dest stderr", "log_type error", "user root",
            f"listener 8883 {BROKER}", f"certfile {cert}", f"keyfile {key}",
            f"listener 443 {SECOND}", f"certfile {cert}", f"keyfile {key}",
            f"listener 1883 {BROKER}", "",
        ]))
        self.spawn(self.central, [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
        self.wait_listening(self.central, [8883, 443, 1883])
        self.ca = ca
        return ca

    def portal(self, link: str, on: bool) -> None:
        """A captive portal / transparent proxy at the ISP: every connection to the central
        addresses is answered by the ISP itself (TCP connects succeed) with a certificate
        our CA did not sign (TLS fails). Modems without credit behave like this."""
        isp = self.isp(link)
        if not on:
            for p in self._portals.pop(link, []):
                p.kill()
                p.wait()
            for addr in (BROKER, SECOND):
                self.ip(isp, "addr", "del", f"{addr}/32", "dev", "lo", check=False)
            return
        for addr in (BROKER, SECOND):
            self.ip(isp, "addr", "add", f"{addr}/32", "dev", "lo")
        _, cert, key = make_pki(self.workdir / f"portal-{link}", [BROKER, SECOND])
        conf = self.workdir / f"portal-{link}.conf"
        conf.write_text("\n".join([
            "allow_anonymous true", "persistence false", "log_dest none", "user root",
            f"listener 8883 {BROKER}", f"certfile {cert}", f"keyfile {key}",
            f"listener 443 {SECOND}", f"certfile {cert}", f"keyfile {key}", "",
        ]))
        p = self.spawn(isp, [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        self._portals.setdefault(link, []).append(p)
        self.wait_listening(isp, [8883, 443])

    def start_sink(self) -> Path:
        """A TCP sink in the central namespace; returns the JSON file of bytes per peer."""
        out = self.workdir / "sink.json"
        self.python(self.central, str(HERE / "flow_sink.py"), SINK, str(SINK_PORT), str(out))
        self.wait_listening(self.central, [SINK_PORT])
        return out

    def start_flow(self, run_dir: Path) -> Path:
        """A long-lived stream from the device to the sink that reconnects on failure and
        drops its connection when uplink.json announces a switch (as the forwarder will)."""
        log = self.workdir / "flow.jsonl"
        self.python(self.dev, str(HERE / "flow_client.py"), SINK, str(SINK_PORT),
                    str(run_dir), str(log))
        return log

    def wait_listening(self, ns: str, ports: list[int], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.exec(ns, "ss", "-ltnH", check=False)
            have = {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()
                    if line.strip()}
            if set(ports) <= have:
                return
            time.sleep(0.05)
        raise RuntimeError(f"ports {ports} not listening in {ns} after {timeout} s")


def make_pki(directory: Path, ips: list[str]) -> tuple[Path, Path, Path]:
    """A test CA and one server certificate for ``ips``: (ca, cert, key) PEM paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netns test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ips[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@contextlib.contextmanager
def topology(workdir: Path) -> Iterator[Topology]:
    """Build the namespaces; always tear them down, even when the body fails."""
    sweep_stale()
    topo = Topology(tag=f"{_PREFIX}{os.getpid()}x{next(_counter)}", workdir=workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _open.append(topo)
    try:
        topo.setup()
        yield topo
    finally:
        topo.close()


@atexit.register
def _close_all() -> None:
    for topo in list(_open):
        topo.close()
