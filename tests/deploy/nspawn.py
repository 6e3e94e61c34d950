"""A throwaway systemd machine for tests: this host's own root, booted by systemd-nspawn
with a tmpfs overlay on top, so the test gets a real systemd (PID 1 of the container) to run
the units under, and nothing it installs or starts reaches the host's filesystem.

The container shares the host's network namespace (pip reaches the package index, the test
talks to the intake on 127.0.0.1); /proc/sys is read-only inside, so it cannot change the
host's sysctls. It boots ``edge-harness.target`` (sysinit + sockets only): none of the
host's own services start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

HARNESS_TARGET = """\
[Unit]
Description=edge test harness (sysinit and sockets only)
Requires=sysinit.target sockets.target
After=sysinit.target sockets.target
AllowIsolate=yes
"""


class Machine:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None
        self._mounted: list[Path] = []

    # -------------------------------------------------------------- lifecycle
    def boot(self, timeout: float = 90) -> None:
        if os.geteuid() != 0:
            pytest.fail("booting a systemd container needs root")
        if shutil.which("systemd-nspawn") is None:
            pytest.fail("systemd-nspawn not found: install the Debian package systemd-container "
                        "(scripts/dev installs it); the units are tested under real systemd")
        layer = self.base / "layer"
        layer.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(layer)],
                       check=True)
        self._mounted.append(layer)
        (layer / "upper").mkdir()
        (layer / "work").mkdir()
        self.root.mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir=/,upperdir={layer}/upper,workdir={layer}/work",
                        str(self.root)], check=True)
        self._mounted.append(self.root)
        self.write("/etc/systemd/system/edge-harness.target", HARNESS_TARGET)
        self._ensure_source_tree()
        self.write("/etc/machine-id", os.urandom(16).hex() + "\n", 0o444)
        log = (self.base / "console.log").open("wb")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--link-journal=no",
             # nspawn drops CAP_NET_ADMIN without --private-network: give it back so the
             # uplink unit's AmbientCapabilities= can be checked (the probe changes nothing)
             "--capability=CAP_NET_ADMIN", "-D", str(self.root),
             "--boot", "systemd.unit=edge-harness.target"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"container exited: {self.console()[-3000:]}")
            self.leader = self._find_leader()
            if self.leader is not None:
                r = self.run("systemctl", "is-system-running", check=False)
                if r.stdout.strip() in ("running", "degraded"):
                    return
            time.sleep(0.5)
        pytest.fail(f"container did not boot: {self.console()[-3000:]}")

    SRC = Path("/usr/local/src/edge")

    def _ensure_source_tree(self) -> None:
        """The checkout may live where the container cannot see it (CI clones into /tmp,
        which the container's systemd mounts a fresh tmpfs over): copy the source tree into
        the overlay at ``Machine.SRC`` and install from there."""
        repo = Path(__file__).resolve().parents[2]
        inside = self.root / self.SRC.relative_to("/")
        shutil.copytree(repo, inside, symlinks=True, ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
            ".hypothesis", "demo-run", "*.egg-info"))

    def _find_leader(self) -> int | None:
        assert self.proc is not None
        r = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        for pid in r.stdout.split():
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if exe.endswith("/systemd"):
                return int(pid)
        return None

    def shutdown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # nspawn asks the container's systemd to power off
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for path in reversed(self._mounted):
            subprocess.run(["umount", "--lazy", str(path)], check=False)
        self._mounted.clear()

    def console(self) -> str:
        p = self.base / "console.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # -------------------------------------------------------------- inside
    def run(self, *argv: str, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        assert self.leader is not None
        environ = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "LANG": "C.UTF-8", "HOME": "/root", "SYSTEMD_PAGER": "",
                   **(env or {})}
        r = subprocess.run(["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-p", "-C",
                            "--", "env", "-i", *(f"{k}={v}" for k, v in environ.items()),
                            *argv], capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            pytest.fail(f"in container: {' '.join(argv)} -> {r.returncode}\n{r.stdout}\n"
                        f"{r.stderr}")
        return r

    def write(self, path: str, text: str | bytes, mode: int = 0o644) -> Path:
        dst = self.root / path.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, str):
            dst.write_text(text)
        else:
            dst.write_bytes(text)
        dst.chmod(mode)
        return dst

    def wait_active(self, unit: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-active", unit, check=False).stdout.strip()
            if state == "active":
                return state
            if state == "failed":
                break
            time.sleep(0.3)
        pytest.fail(f"{unit} is {state!r}:\n{self.journal(unit)}")

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit,
                        check=False).stdout

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()
