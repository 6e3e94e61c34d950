from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.config import parse_config
from edge.errors import ConfigError
from edge.uplink.config import Target, parse_target, parse_uplink_config


def cfg(**uplink: Any) -> Any:
    data: dict[str, Any] = {"device": {"id": "kec-3171-01", "state_dir": "/var/lib/edge"},
                            "uplink": {"targets": ["mqtt.central.example:8883"], **uplink}}
    return parse_config(data)


def test_defaults_give_wired_only_with_safe_thresholds() -> None:
    u = parse_uplink_config(cfg())
    assert [link.name for link in u.links] == ["wired"]
    wired = u.links[0]
    assert (wired.interface, wired.metered, wired.gateway) == ("eth0", False, "auto")
    assert (wired.table, wired.rule_priority, wired.metric) == (101, 1000, 10)
    p = u.policy
    # silent loss bound: fail_after probes of max(interval, timeout) + timeout <= 6 s
    assert p.fail_after * max(wired.interval_s, wired.timeout_s) + wired.timeout_s <= 6.0
    assert p.carrier_grace_s <= 3.0 and p.holddown_s == 60.0
    assert u.run_dir == Path("/var/lib/edge/run")
    assert u.budget_file == Path("/var/lib/edge/uplink-budget.json")


def test_4g_link_is_metered_and_probed_rarely_when_idle() -> None:
    u = parse_uplink_config(cfg(**{"4g": {"interface": "wwan0", "gateway": "none"}}))
    g = u.link("4g")
    assert g.metered and g.rank == 1 and g.gateway == "none"
    assert g.standby_interval_s >= 10 * g.urgent_interval_s
    assert (g.table, g.rule_priority, g.metric) == (102, 1002, 11)


def test_tls_cadence_is_rarer_on_4g_unless_set_for_all() -> None:
    u = parse_uplink_config(cfg(**{"4g": {"interface": "wwan0"}}))
    assert (u.link("wired").tls_every_s, u.link("4g").tls_every_s) == (300.0, 1800.0)
    u = parse_uplink_config(cfg(tls_every_s=60, **{"4g": {"interface": "wwan0"}}))
    assert (u.link("wired").tls_every_s, u.link("4g").tls_every_s) == (60.0, 60.0)
    u = parse_uplink_config(cfg(tls_every_s=60, **{"4g": {"interface": "wwan0",
                                                         "tls_every_s": 0}}))
    assert u.link("4g").tls_every_s == 0.0  # TCP probes only


def test_targets_accept_strings_and_tables() -> None:
    u = parse_uplink_config(cfg(targets=[
        "198.51.100.7:8883",
        {"host": "203.0.113.5", "port": 443, "tls": True, "server_name": "probe.example"},
    ]))
    assert u.targets == (Target("198.51.100.7", 8883),
                         Target("203.0.113.5", 443, True, "probe.example"))


@pytest.mark.parametrize("bad", ["nohost", "host:", ":80", "host:99999", "a b:1", 5,
                                 {"host": "x"}, {"host": "x", "port": 1, "tsl": True}])
def test_bad_targets_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_target(bad)


def test_missing_targets_say_what_to_add() -> None:
    data = {"device": {"id": "kec-3171-01"}, "uplink": {}}
    with pytest.raises(ConfigError, match=r"targets = \["):
        parse_uplink_config(parse_config(data))


def test_bad_gateway_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="point-to-point"):
        parse_uplink_config(cfg(wired={"gateway": "router"}))


def test_soft_cap_above_hard_cap_is_refused() -> None:
    with pytest.raises(ConfigError, match="soft_cap"):
        parse_uplink_config(cfg(budget={"soft_cap": "10GB", "hard_cap": "1GB"}))


def test_unknown_keys_are_refused_in_every_table() -> None:
    for over in ({"holdown_s": 5}, {"wired": {"intervall_s": 1}}, {"budget": {"cap": 1}}):
        with pytest.raises(ConfigError, match="unknown key"):
            parse_uplink_config(cfg(**over))


def test_same_interface_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="same interface"):
        parse_uplink_config(cfg(wired={"interface": "eth0"}, **{"4g": {"interface": "eth0"}}))


def test_no_link_at_all_is_refused() -> None:
    with pytest.raises(ConfigError, match="no link configured"):
        parse_uplink_config(cfg(wired={"interface": ""}))


def test_client_certificate_comes_from_the_identity() -> None:
    data = {"device": {"id": "kec-3171-01"},
            "identity": {"key": "/etc/edge/device.key", "cert": "/etc/edge/device.crt"},
            "uplink": {"targets": ["h:1"]}}
    u = parse_uplink_config(parse_config(data))
    assert u.tls_cert == Path("/etc/edge/device.crt")
    assert u.tls_key == Path("/etc/edge/device.key")
    data["uplink"]["tls_client_cert"] = False  # type: ignore[index]
    u = parse_uplink_config(parse_config(data))
    assert u.tls_cert is None and u.tls_key is None
