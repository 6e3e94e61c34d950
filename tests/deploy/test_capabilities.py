"""Why the uplink unit grants CAP_NET_ADMIN but not CAP_NET_RAW, checked on this kernel.

Each probe runs as an unprivileged user with every capability dropped (setpriv), in a
fresh network namespace (so the sysctl set for the ping probe does not touch the host).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.deploy.units import REPO

pytestmark = pytest.mark.netns


def run_unprivileged(code: str, *, sysctls: dict[str, str] | None = None,
                     caps: str = "-all") -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0:
        pytest.fail("this test must run as root (it drops to nobody itself)")
    for tool in ("unshare", "setpriv"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: install the Debian package util-linux")
    setup = "ip link set lo up; "
    for key, value in (sysctls or {}).items():
        setup += f"sysctl -q -w {key}='{value}'; "
    drop = (f"setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps={caps} "
            f"--ambient-caps={caps} --bounding-set={caps}")
    script = setup + f"exec {drop} {sys.executable} -c \"$0\""
    return subprocess.run(["unshare", "--net", "sh", "-c", script, textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def test_so_bindtodevice_needs_no_capability_on_an_unbound_socket() -> None:
    r = run_unprivileged("""
        import os, socket
        assert os.geteuid() == 65534
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        print("bound", s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16))
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        except PermissionError:
            print("rebind refused")
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        print("tcp bound")
    """)
    assert r.returncode == 0, r.stderr
    assert "bound b'lo" in r.stdout
    # changing an existing binding is what still needs CAP_NET_RAW: one socket per probe
    assert "rebind refused" in r.stdout
    assert "tcp bound" in r.stdout


ICMP_ECHO_TO_LOOPBACK = """
    import socket, struct
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    s.settimeout(5)
    s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"edge-probe", ("127.0.0.1", 0))
    reply = s.recv(1024)
    assert reply[0] == 0 and reply.endswith(b"edge-probe"), reply
    print("echo reply")
"""


def test_icmp_probe_works_without_cap_net_raw_given_the_installed_sysctl() -> None:
    conf = (REPO / "provisioning" / "sysctl.d" / "60-edge.conf").read_text()
    line = next(ln for ln in conf.splitlines() if ln.startswith("net.ipv4.ping_group_range"))
    value = line.split("=", 1)[1].strip()
    r = run_unprivileged(ICMP_ECHO_TO_LOOPBACK,
                         sysctls={"net.ipv4.ping_group_range": value})
    assert r.returncode == 0, r.stderr
    assert "echo reply" in r.stdout


def test_icmp_probe_is_refused_with_the_kernel_default() -> None:
    """Without the sysctl (kernel default '1 0') the same probe fails: the file matters."""
    r = run_unprivileged(ICMP_ECHO_TO_LOOPBACK, sysctls={"net.ipv4.ping_group_range": "1 0"})
    assert r.returncode != 0
    assert "PermissionError" in r.stderr or "Permission denied" in r.stderr


def test_route_changes_need_cap_net_admin_and_it_suffices() -> None:
    """The one capability the uplink unit keeps, as an ambient capability of a non-root
    user: exactly what AmbientCapabilities=CAP_NET_ADMIN gives edge-uplink."""
    code = """
        import subprocess, sys
        r = subprocess.run(["ip", "route", "add", "blackhole", "198.51.100.0/24"],
                           capture_output=True, text=True)
        print("rc", r.returncode, r.stderr.strip())
    """
    without = run_unprivileged(code)
    assert "rc 2" in without.stdout and "Operation not permitted" in without.stdout
    with_admin = run_unprivileged(code, caps="-all,+net_admin")
    assert with_admin.returncode == 0, with_admin.stderr
    assert "rc 0" in with_admin.stdout
