"""The rendered config, read as text. Its behaviour is proved against a real broker in the
other tests of this package; these pin the properties a careless edit could break."""

from pathlib import Path

import pytest

from edge.broker import BrokerConfigError, acl_text, render_broker_config


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("ca.pem", "server.pem", "server.key", "crl.pem"):
        (tmp_path / name).write_text("x")
        out[name] = tmp_path / name
    return out


def render(tmp_path: Path, files: dict[str, Path], **kw: object) -> str:
    path = render_broker_config(tmp_path / "conf", port=8883, cafile=files["ca.pem"],
                                certfile=files["server.pem"], keyfile=files["server.key"],
                                **kw)  # type: ignore[arg-type]
    return path.read_text()


def directives(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_one_tls_listener_with_client_certificates(tmp_path: Path,
                                                   files: dict[str, Path]) -> None:
    lines = directives(render(tmp_path, files, crlfile=files["crl.pem"],
                              persistence_dir=tmp_path / "p"))
    assert [d for d in lines if d.startswith("listener")] == ["listener 8883"]
    for wanted in ("require_certificate true", "use_identity_as_username true",
                   "allow_anonymous false", "tls_version tlsv1.2", "max_qos 1",
                   f"crlfile {files['crl.pem']}", "persistence true",
                   f"acl_file {tmp_path / 'conf' / 'edge.acl'}"):
        assert wanted in lines
    assert not any(d.startswith(("use_username_as_clientid", "password_file", "{{", "port"))
                   for d in lines)
    # Listener options above the first "listener" line open a plain default listener.
    first_listener = next(i for i, d in enumerate(lines) if d.startswith("listener"))
    listener_opts = ("protocol", "max_qos", "cafile", "certfile", "keyfile", "crlfile",
                     "require_certificate", "use_identity_as_username", "tls_version")
    assert not any(d.split()[0] in listener_opts for d in lines[:first_listener])


def test_service_listener_lets_the_device_listener_force_client_ids(
        tmp_path: Path, files: dict[str, Path]) -> None:
    lines = directives(render(tmp_path, files, crlfile=files["crl.pem"], bind_address="192.0.2.1",
                              service_port=8884, service_bind_address="10.0.0.5"))
    starts = [i for i, d in enumerate(lines) if d.startswith("listener")]
    assert [lines[i] for i in starts] == ["listener 8883 192.0.2.1", "listener 8884 10.0.0.5"]
    device, service = lines[starts[0]:starts[1]], lines[starts[1]:]
    assert "use_username_as_clientid true" in device        # one session per certificate
    assert "use_username_as_clientid true" not in service   # receivers pick their ids
    for block in (device, service):                          # the same TLS door on both
        for wanted in ("require_certificate true", "use_identity_as_username true",
                       "tls_version tlsv1.2", "max_qos 1", "protocol mqtt",
                       f"cafile {files['ca.pem']}", f"crlfile {files['crl.pem']}"):
            assert wanted in block, (wanted, block)
    assert not any("@service-listener" in line for line in render(
        tmp_path, files, service_port=8884).splitlines())


def test_the_service_listener_defaults_to_loopback(tmp_path: Path,
                                                   files: dict[str, Path]) -> None:
    assert "listener 8884 127.0.0.1" in directives(render(tmp_path, files, service_port=8884))


def test_one_port_cannot_be_both_listeners(tmp_path: Path, files: dict[str, Path]) -> None:
    with pytest.raises(BrokerConfigError, match="service_port = 8883: must differ"):
        render(tmp_path, files, service_port=8883)


def test_acl_is_copied_next_to_the_config(tmp_path: Path, files: dict[str, Path]) -> None:
    render(tmp_path, files)
    assert (tmp_path / "conf" / "edge.acl").read_text() == acl_text()


def test_without_crl_and_persistence_the_config_says_so(tmp_path: Path,
                                                        files: dict[str, Path]) -> None:
    lines = directives(render(tmp_path, files))
    assert "persistence false" in lines
    assert not any(d.startswith("crlfile") for d in lines)


@pytest.mark.parametrize("kw,match", [
    ({"port": 0}, "port"),
    ({"user": "root; rm"}, "user"),
    ({"session_expiration": "forever"}, "session_expiration"),
    ({"max_packet_size": 10}, "max_packet_size"),
    ({"log_dest": "file"}, "log_dest"),
])
def test_bad_values_are_refused(tmp_path: Path, files: dict[str, Path], kw: dict[str, object],
                                match: str) -> None:
    args: dict[str, object] = {"port": 8883}
    args.update(kw)
    with pytest.raises(BrokerConfigError, match=match):
        render_broker_config(tmp_path / "c", cafile=files["ca.pem"],
                             certfile=files["server.pem"], keyfile=files["server.key"],
                             **args)  # type: ignore[arg-type]


def test_missing_or_spaced_paths_are_refused(tmp_path: Path, files: dict[str, Path]) -> None:
    with pytest.raises(BrokerConfigError, match="does not exist"):
        render(tmp_path, files, crlfile=tmp_path / "nope.pem")
    spaced = tmp_path / "a b.pem"
    spaced.write_text("x")
    with pytest.raises(BrokerConfigError, match="spaces"):
        render_broker_config(tmp_path / "c", port=1, cafile=spaced,
                             certfile=files["server.pem"], keyfile=files["server.key"])
