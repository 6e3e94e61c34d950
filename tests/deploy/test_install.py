"""provisioning/install.sh into a staging root: the tree it leaves, and that a second run
leaves it byte for byte (and mtime for mtime) alone."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.units import DEVICE_UNITS, REPO, UNIT_DIR

INSTALL = REPO / "provisioning" / "install.sh"
pytestmark = pytest.mark.slow


def run_install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True,
                          timeout=600)


def tree_digest(root: Path) -> str:
    """Every path with its type, mode, size, mtime and content hash."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            h.update(f"{p.relative_to(root)} {stat.filemode(st.st_mode)} {st.st_size} "
                     f"{st.st_mtime_ns}\n".encode())
            if stat.S_ISREG(st.st_mode):
                h.update(hashlib.sha256(p.read_bytes()).digest())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
    return h.hexdigest()


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("stage")
    # what provisioning left before: a key and a one-time secret, both too open
    (root / "etc/edge").mkdir(parents=True)
    (root / "etc/edge/device.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    (root / "etc/edge/device.key").chmod(0o644)
    (root / "etc/edge/claim.secret").write_text("s3cret\n")
    (root / "etc/edge/claim.secret").chmod(0o644)
    r = run_install("--root", str(root))
    assert r.returncode == 0, r.stderr
    yield root


def test_venv_runs_the_installed_programs(staged: Path) -> None:
    for exe, name in (("edge", "edge"), ("edge-central", "edge-central")):
        r = subprocess.run([str(staged / "opt/edge/bin" / exe), "--version"],
                           capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"{name} 0.1.0"
    # a real install, not a link back into the source tree
    site = list((staged / "opt/edge/lib").glob("python3*/site-packages/edge/__init__.py"))
    assert len(site) == 1 and not site[0].is_symlink()
    assert site[0].read_bytes() == (REPO / "edge/__init__.py").read_bytes()
    assert not list(site[0].parents[1].glob("__editable__*"))


def test_units_and_config_files_in_place(staged: Path) -> None:
    for unit in [*DEVICE_UNITS, "edge.target"]:
        dst = staged / "etc/systemd/system" / unit
        assert dst.read_bytes() == (UNIT_DIR / unit).read_bytes()
        assert mode(dst) == 0o644
    assert not (staged / "etc/systemd/system/edge-central-receive.service").exists()
    assert mode(staged / "etc/sysctl.d/60-edge.conf") == 0o644
    assert mode(staged / "etc/tmpfiles.d/edge.conf") == 0o644
    assert not (staged / "etc/supervisor").exists()


def test_directory_and_key_permissions(staged: Path) -> None:
    assert mode(staged / "etc/edge") == 0o750
    assert mode(staged / "var/lib/edge") == 0o700
    assert mode(staged / "etc/edge/device.key") == 0o600
    assert mode(staged / "etc/edge/claim.secret") == 0o600


def test_plan_lists_the_system_changes_it_did_not_make(staged: Path) -> None:
    plan = (staged / ".edge-install-plan").read_text().splitlines()
    assert any(ln.startswith("useradd --system") and ln.endswith("edge (if missing)")
               for ln in plan)
    assert "chown root:edge /etc/edge" in plan
    assert "chown edge:edge /var/lib/edge" in plan
    assert "chown edge:edge /etc/edge/device.key" in plan
    assert "chown root:root /etc/edge/claim.secret" in plan
    assert ("systemctl enable edge.target edge-intake.service edge-forward.service "
            "edge-uplink.service edge-panel.service") in plan
    assert not any("systemctl start" in ln for ln in plan), "enabled, not started"
    assert any(ln.startswith("apt-get install") and "python3-venv" in ln for ln in plan)


def test_second_run_changes_nothing(staged: Path) -> None:
    before = tree_digest(staged)
    r = run_install("--root", str(staged))
    assert r.returncode == 0, r.stderr
    assert "wrote" not in r.stderr and "installing" not in r.stderr
    assert tree_digest(staged) == before


def test_a_changed_unit_is_updated_and_supervisor_mode_adds_its_files(staged: Path) -> None:
    unit = staged / "etc/systemd/system/edge-intake.service"
    unit.write_text(unit.read_text() + "# local edit\n")
    r = run_install("--root", str(staged), "--supervisor")
    assert r.returncode == 0, r.stderr
    assert unit.read_bytes() == (UNIT_DIR / "edge-intake.service").read_bytes()
    conf = staged / "etc/supervisor/conf.d/edge.conf"
    assert conf.read_bytes() == (REPO / "provisioning/supervisor/edge.conf").read_bytes()
    assert mode(staged / "var/log/edge") == 0o750
    plan = (staged / ".edge-install-plan").read_text()
    assert "supervisorctl update" in plan and "supervisor" in plan.splitlines()[0]


def test_start_with_a_staging_root_is_refused(tmp_path: Path) -> None:
    r = run_install("--root", str(tmp_path / "x"), "--start")
    assert r.returncode == 2 and "--start" in r.stderr
