"""The 4G APN through NetworkManager: planned in a staging root, absent cleanly, and the
real nmcli calls (against a stand-in nmcli on PATH that records its arguments)."""

from pathlib import Path

import pytest

from edge.provision.apn import CONNECTION_NAME, configure_apn
from edge.provision.host import StagingHost, SystemHost


def test_staging_plans_the_profile(tmp_path: Path) -> None:
    host = StagingHost(tmp_path)
    done, message = configure_apn(host, "internet")
    assert done and "planned" in message
    assert host.plan[0].startswith("nmcli connection add type gsm ifname '*' con-name "
                                   f"{CONNECTION_NAME} apn internet")


def test_no_network_manager_is_reported_not_failed(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing here
    done, message = configure_apn(SystemHost(), "internet")
    assert not done and "NetworkManager is not installed" in message


def test_bad_apn_is_refused(tmp_path: Path) -> None:
    done, message = configure_apn(StagingHost(tmp_path), "inter net; rm")
    assert not done and "not a valid access point name" in message


def stand_in_nmcli(bin_dir: Path, log: Path, *, running: str, profiles: str) -> None:
    bin_dir.mkdir()
    script = bin_dir / "nmcli"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$*" in
  "-t -f RUNNING general") echo {running} ;;
  "-t -f NAME connection show") printf '{profiles}' ;;
esac
""")
    script.chmod(0o755)


@pytest.mark.parametrize("profiles, last", [
    ("Wired connection 1\\n", f"connection add type gsm ifname * con-name {CONNECTION_NAME} "
                              "apn internet connection.autoconnect yes"),
    (f"{CONNECTION_NAME}\\n", f"connection modify {CONNECTION_NAME} gsm.apn internet"),
])
def test_real_host_adds_once_then_modifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           profiles: str, last: str) -> None:
    log = tmp_path / "calls"
    stand_in_nmcli(tmp_path / "bin", log, running="running", profiles=profiles)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    done, _ = configure_apn(SystemHost(), "internet")
    assert done
    assert log.read_text().splitlines()[-1] == last


def test_stopped_network_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in_nmcli(tmp_path / "bin", tmp_path / "calls", running="starting", profiles="")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    done, message = configure_apn(SystemHost(), "internet")
    assert not done and "not running" in message
