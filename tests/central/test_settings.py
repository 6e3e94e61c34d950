"""central.toml for the custody programs: keys, relative paths, the tables `edge-central init`
writes, flags over the file, and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.central.settings import (
    DEFAULT_DATA_DIR,
    CentralSettings,
    default_client_id,
    find_config,
    load_settings,
)
from edge.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_central_table_with_relative_paths(tmp_path: Path) -> None:
    cfg = write(tmp_path / "central.toml", """
[central]
data_dir = "store"
ca = "ca.pem"
crl = "/etc/edge-central/crl.pem"
cert = "rx.pem"
key = "rx.key"
receipt_key = "keys/receipt.key"
sealing_key = "keys/seal.key"
device_certs_dir = "devices"
broker_host = "mqtt.central"
broker_port = 8884
client_id = "rx-a"
session_expiry_s = 60
verify_workers = 3

[central.custody]
op_timeout_s = 30
max_sealed_size = "1GiB"
""")
    s = load_settings(cfg)
    assert s.data_dir == tmp_path / "store"
    assert s.ca == tmp_path / "ca.pem"
    assert s.crl == Path("/etc/edge-central/crl.pem")
    assert (s.receipt_key, s.sealing_key) == (tmp_path / "keys/receipt.key",
                                              tmp_path / "keys/seal.key")
    assert s.device_certs_dir == tmp_path / "devices"
    assert (s.broker_host, s.broker_port, s.client_id) == ("mqtt.central", 8884, "rx-a")
    assert (s.session_expiry_s, s.verify_workers) == (60, 3)
    rc = s.receiver_config("rx-a")
    assert (rc.receiver_id, rc.op_timeout_s, rc.max_sealed_size) == ("rx-a", 30.0, 1024**3)


def test_falls_back_to_the_tables_edge_central_init_writes(tmp_path: Path) -> None:
    cfg = write(tmp_path / "central.toml", """
[broker]
host = "mqtt.example.go.id"
port = 8883
reload_command = []

[paths]
ca_dir = "ca"
crl = "crl.pem"
receipt_private_key = "keys/receipt.key"
sealing_private_key = "keys/central-seal.key"
services_dir = "services"

[enrol]
ttl = "24h"
""")
    s = load_settings(cfg)
    assert s.broker_host == "mqtt.example.go.id" and s.broker_port == 8883
    assert s.ca == tmp_path / "ca" / "ca.pem"
    assert s.crl == tmp_path / "crl.pem"
    assert s.cert == tmp_path / "services" / "central-receiver.pem"
    assert s.key == tmp_path / "services" / "central-receiver.key"
    assert s.receipt_key == tmp_path / "keys" / "receipt.key"
    assert s.sealing_key == tmp_path / "keys" / "central-seal.key"
    assert s.device_certs_dir == tmp_path / "devices"
    assert s.data_dir == DEFAULT_DATA_DIR


def test_flags_override_the_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[central]\nbroker_host = "a"\nclient_id = "rx-a"\n')
    s = load_settings(cfg, {"broker_host": "b", "client_id": None, "data_dir": tmp_path})
    assert (s.broker_host, s.client_id, s.data_dir) == ("b", "rx-a", tmp_path)


def test_no_file_means_flags_only() -> None:
    s = load_settings(None, {"broker_host": "h", "broker_port": 1883})
    assert s.source == "command line" and s.broker_port == 1883
    with pytest.raises(ConfigError, match=r"receipt_key \(--receipt-key\)"):
        s.require("broker_host", "receipt_key")


@pytest.mark.parametrize(("text", "match"), [
    ('[central]\nbrokr_host = "x"\n', r"unknown key\(s\) brokr_host"),
    ("[central]\nbroker_port = 0\n", "broker_port = 0: must be at least 1"),
    ('[central]\nclient_id = "rx a"\n', "client_id 'rx a'"),
    ("[central.custody]\nop_timeout_s = 0\n", r"\[central.custody\] op_timeout_s"),
    ("[central.custody]\nwindow = 3\n", r"\[central.custody\] has unknown key"),
    ("[central\n", "not valid TOML"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_settings(write(tmp_path / "c.toml", text))


def test_missing_file_given_explicitly_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "nope.toml")


def test_config_is_found_from_flag_then_environment(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_CONFIG", str(tmp_path / "env.toml"))
    assert find_config("x.toml") == Path("x.toml")
    assert find_config(None) == tmp_path / "env.toml"
    monkeypatch.delenv("EDGE_CONFIG")
    monkeypatch.setenv("EDGE_CENTRAL_DIR", str(tmp_path))
    assert find_config(None) == tmp_path / "central.toml"


def test_default_client_id_is_a_valid_receiver_id() -> None:
    cid = default_client_id("a-very-long-host-name-" * 5 + ".example.org", 4194304)
    assert len(cid) <= 64 and cid.startswith("central-receiver-a-very") and \
        cid.endswith("-4194304")
    assert default_client_id("host_name.local", 12) == "central-receiver-host-name-12"
    CentralSettings("x").receiver_config(cid)          # accepted by the machine
