from pathlib import Path

import pytest

from edge.config import load_config, parse_config, parse_size
from edge.errors import ConfigError


def minimal(**over: dict) -> dict:
    data: dict = {"device": {"id": "kec-3171-01", "state_dir": "/tmp/x"}}
    data.update(over)
    return data


def test_minimal_config_gets_safe_defaults() -> None:
    cfg = parse_config(minimal())
    assert cfg.device.id == "kec-3171-01"
    assert cfg.seal.kem == "mlkem768-x25519"
    assert cfg.spool.dir == Path("/tmp/x/spool")
    assert cfg.intake.host == "127.0.0.1"


@pytest.mark.parametrize("text,expected", [("8GiB", 8 * 1024**3), ("500 MB", 500_000_000),
                                           (1024, 1024), ("64KiB", 65536)])
def test_sizes(text: object, expected: int) -> None:
    assert parse_size(text) == expected


def test_error_names_key_value_and_fix() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(minimal(spool={"quota_bytes": "lots"}))
    msg = str(e.value)
    assert "[spool] quota_bytes" in msg and "'lots'" in msg and "8GiB" in msg


def test_bad_device_id_is_refused_with_an_example() -> None:
    with pytest.raises(ConfigError, match=r"\[device\] id = 'Kec 1'.*e\.g\."):
        parse_config({"device": {"id": "Kec 1"}})


def test_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown key.*qouta"):
        parse_config(minimal(spool={"qouta": 1}))


def test_plain_http_on_lan_needs_explicit_consent() -> None:
    with pytest.raises(ConfigError, match="biometric"):
        parse_config(minimal(intake={"host": "0.0.0.0"}))
    cfg = parse_config(minimal(intake={"host": "0.0.0.0", "allow_plain_http": True}))
    assert cfg.intake.allow_plain_http


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config"):
        load_config(tmp_path / "nope.toml")


def test_bad_toml_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "edge.toml"
    p.write_text("[device\nid=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)
