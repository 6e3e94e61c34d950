"""[forward.custody] and [central.custody] tables."""

from __future__ import annotations

import pytest

from edge.config import parse_config
from edge.custody.config import parse_receiver_config, parse_sender_config
from edge.custody.receiver import ReceiverConfig
from edge.custody.sender import SenderConfig
from edge.errors import ConfigError


def cfg(**tables: dict[str, object]) -> object:
    return parse_config({"device": {"id": "kec-3171-01"}, **tables})


def test_absent_tables_give_the_defaults() -> None:
    assert parse_sender_config(cfg()) == SenderConfig()  # type: ignore[arg-type]
    assert parse_receiver_config(cfg(), "rx-1") == ReceiverConfig("rx-1")  # type: ignore[arg-type]


def test_values_are_read_with_sizes_and_numbers() -> None:
    c = cfg(forward={"custody": {"max_payload": "64KiB", "window_chunks": 8, "jitter": 0.1}},
            central={"custody": {"max_sealed_size": "1GiB", "op_timeout_s": 30}})
    s = parse_sender_config(c)  # type: ignore[arg-type]
    assert (s.max_payload, s.window_chunks, s.jitter) == (65536, 8, 0.1)
    r = parse_receiver_config(c, "rx-1")  # type: ignore[arg-type]
    assert (r.max_sealed_size, r.op_timeout_s) == (1024**3, 30.0)


@pytest.mark.parametrize(("tables", "needle"), [
    ({"forward": {"custody": {"window": 8}}}, "unknown key"),
    ({"forward": {"custody": {"max_payload": 100}}}, "max_payload"),
    ({"forward": {"custody": {"window_chunks": 0}}}, "window_chunks"),
    ({"central": {"custody": {"max_chunk_data": "lots"}}}, "max_chunk_data"),
])
def test_bad_values_name_the_key(tables: dict[str, dict[str, object]], needle: str) -> None:
    c = cfg(**tables)
    with pytest.raises(ConfigError, match=needle):
        parse_sender_config(c)  # type: ignore[arg-type]
        parse_receiver_config(c, "rx-1")  # type: ignore[arg-type]
