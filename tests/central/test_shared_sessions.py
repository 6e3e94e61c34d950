"""Why the receiver keeps a broker session only under a configured client id (measured on
the repo's Mosquitto config): a shared-subscription member whose session outlives its
connection keeps getting its share of the messages, queued until it comes back. Good for a
receiver that restarts under the same id; a trap for an id that never returns."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt

from tests.support.broker import Broker, Inbox, publish_and_wait, subscribe_and_wait

SHARED = "$share/central/edge/+/up/custody/#"


def drop_connection(broker: Broker, client: mqtt.Client, client_id: str) -> None:
    """Vanish like a SIGKILLed process (no DISCONNECT packet, the socket just closes), and
    wait until the broker has noticed."""
    sock = client.socket()
    assert sock is not None
    client.loop_stop()
    sock.close()
    deadline = time.monotonic() + 5
    while f"Client {client_id} closed its connection" not in broker.log():
        assert time.monotonic() < deadline, broker.log()[-2000:]
        time.sleep(0.02)


def test_a_gone_member_with_a_session_keeps_its_share_until_it_resumes(broker: Broker) -> None:
    stay, away = Inbox(), Inbox()
    a = broker.connect("central-receiver", client_id="rx-stay", clean_start=False,
                       session_expiry=300, on_message=stay.on_message)
    subscribe_and_wait(a, SHARED)
    b = broker.connect("central-receiver", client_id="rx-away", clean_start=False,
                       session_expiry=300, on_message=away.on_message)
    subscribe_and_wait(b, SHARED)
    drop_connection(broker, b, "rx-away")
    dev = broker.connect("kec-3171-01")
    for i in range(10):
        assert not publish_and_wait(dev, "edge/kec-3171-01/up/custody/offer",
                                    b"m%d" % i).is_failure
    got_stay = stay.drain(0.3)
    assert 0 < len(got_stay) < 10                      # the absent member kept a share
    back = Inbox()
    broker.connect("central-receiver", client_id="rx-away", clean_start=False,
                   session_expiry=300, on_message=back.on_message)
    got_back = back.drain(0.5)
    assert len(got_stay) + len(got_back) == 10         # ... delivered when it returned
    assert {m.payload for m in got_stay + got_back} == {b"m%d" % i for i in range(10)}


def test_a_gone_member_without_a_session_leaves_everything_to_the_others(
        broker: Broker) -> None:
    stay = Inbox()
    a = broker.connect("central-receiver", client_id="rx-stay", clean_start=False,
                       session_expiry=300, on_message=stay.on_message)
    subscribe_and_wait(a, SHARED)
    b = broker.connect("central-receiver", client_id="central-receiver-host-4242",
                       clean_start=True, session_expiry=0, on_message=Inbox().on_message)
    subscribe_and_wait(b, SHARED)
    drop_connection(broker, b, "central-receiver-host-4242")
    dev = broker.connect("kec-3171-01")
    for i in range(10):
        publish_and_wait(dev, "edge/kec-3171-01/up/custody/offer", b"m%d" % i)
    assert len(stay.drain(0.3)) == 10
