"""Where provisioning changes the machine: the real system, or a staging root.

Place in the data flow: every step of ``edge provision`` that writes files, creates users,
changes owners or runs ``nmcli``/``systemctl`` goes through a ``Host``. ``SystemHost``
does it to this machine (as root). ``StagingHost`` (``--root DIR``) writes every file
under DIR with the same modes, and instead of creating users, changing owners or running
system commands records each one as a line in ``DIR/.edge-provision-plan`` (the same idea
as ``provisioning/install.sh --root``): an image builder or a test reads what would happen.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from edge.durable import atomic_write_bytes
from edge.provision.errors import ProvisionError

__all__ = ["PLAN_FILE", "Host", "StagingHost", "SystemHost", "make_host"]

PLAN_FILE = ".edge-provision-plan"


class Host(Protocol):
    root: Path
    staging: bool

    def path(self, device_path: str | Path) -> Path:
        """Where a device path (``/etc/edge/edge.toml``) is on this host."""
        ...

    def write(self, device_path: str | Path, data: bytes, mode: int) -> Path: ...

    def mkdir(self, device_path: str | Path, mode: int) -> Path: ...

    def chown(self, device_path: str | Path, owner: str, group: str) -> None: ...

    def ensure_user(self, user: str, groups: Sequence[str]) -> None: ...

    def run(self, argv: Sequence[str], *, plan_note: str = "") -> str | None:
        """Run a system command (stdout), or plan it (None)."""
        ...

    def has_command(self, name: str) -> bool: ...

    def systemd_running(self) -> bool: ...

    def finish(self) -> None: ...


class _Files:
    root: Path

    def path(self, device_path: str | Path) -> Path:
        p = Path(device_path)
        if not p.is_absolute():
            raise ValueError(f"{p}: device paths are absolute")
        return self.root / p.relative_to("/")

    def write(self, device_path: str | Path, data: bytes, mode: int) -> Path:
        target = self.path(device_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data, mode=mode)
        return target

    def mkdir(self, device_path: str | Path, mode: int) -> Path:
        target = self.path(device_path)
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, mode)
        return target


class SystemHost(_Files):
    """This machine, for real (``edge provision`` as root)."""

    staging = False

    def __init__(self) -> None:
        self.root = Path("/")

    def chown(self, device_path: str | Path, owner: str, group: str) -> None:
        try:
            uid = pwd.getpwnam(owner).pw_uid
            gid = grp.getgrnam(group).gr_gid
        except KeyError as e:
            raise ProvisionError(f"no user or group {e.args[0]!r}: run 'sudo "
                                 "provisioning/install.sh' first", key="provision.no_user"
                                 ) from None
        os.chown(self.path(device_path), uid, gid)

    def ensure_user(self, user: str, groups: Sequence[str]) -> None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            self.run(["useradd", "--system", "--user-group", "--home-dir", f"/var/lib/{user}",
                      "--no-create-home", "--shell", "/usr/sbin/nologin", user])
        for g in groups:
            try:
                members = grp.getgrnam(g).gr_mem
            except KeyError:
                self.run(["groupadd", "--system", g])
                members = []
            if user not in members:
                self.run(["usermod", "-a", "-G", g, user])

    def run(self, argv: Sequence[str], *, plan_note: str = "") -> str | None:
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60,
                                  check=False)
        except (OSError, subprocess.SubprocessError) as e:
            raise ProvisionError(f"'{' '.join(argv)}' could not run: {e}",
                                 key="provision.command_failed") from e
        if done.returncode != 0:
            raise ProvisionError(f"'{' '.join(argv)}' failed ({done.returncode}): "
                                 f"{(done.stderr or done.stdout).strip()[:300]}",
                                 key="provision.command_failed")
        return done.stdout

    def has_command(self, name: str) -> bool:
        return shutil.which(name) is not None

    def systemd_running(self) -> bool:
        return Path("/run/systemd/system").is_dir()

    def finish(self) -> None:
        pass


class StagingHost(_Files):
    """A staging root: files for real under ``root``, system changes as a plan."""

    staging = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self.plan: list[str] = []

    def chown(self, device_path: str | Path, owner: str, group: str) -> None:
        self.plan.append(f"chown {owner}:{group} {device_path}")

    def ensure_user(self, user: str, groups: Sequence[str]) -> None:
        self.plan.append(f"useradd --system --user-group --home-dir /var/lib/{user} "
                         f"--no-create-home --shell /usr/sbin/nologin {user} (if missing)")
        for g in groups:
            self.plan.append(f"groupadd --system {g} (if missing); usermod -a -G {g} {user}")

    def run(self, argv: Sequence[str], *, plan_note: str = "") -> str | None:
        line = " ".join(_quote(a) for a in argv)
        self.plan.append(f"{line}{' ' + plan_note if plan_note else ''}")
        return None

    def has_command(self, name: str) -> bool:
        return True  # the target image is assumed to have it; the plan says "if present"

    def systemd_running(self) -> bool:
        return True

    def finish(self) -> None:
        atomic_write_bytes(self.root / PLAN_FILE, "".join(f"{line}\n" for line in self.plan)
                           .encode(), mode=0o644)


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "-_./:=@%+," for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


def make_host(root: Path | None) -> Host:
    if root is None:
        if os.geteuid() != 0:
            raise ProvisionError("provisioning changes the system: run it with sudo, or "
                                 "stage it with --root DIR", key="provision.not_root")
        return SystemHost()
    return StagingHost(root)
