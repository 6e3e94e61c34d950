"""Client ids on the two listeners, proved against a real Mosquitto with the repo's config.

On the device listener the broker makes the client id the certificate's CN
(use_username_as_clientid), so a device (or a stolen device certificate) can hold only its
own session: it can neither kick another device off nor resume another device's session.
Central services connect on the service listener, where several receivers sharing the
"central-receiver" CN keep distinct client ids for one shared subscription.
"""

import threading

from tests.support.broker import Broker, Inbox, publish_and_wait, subscribe_and_wait


def watch_disconnect(client: object) -> threading.Event:
    lost = threading.Event()
    client.on_disconnect = lambda *args: lost.set()  # type: ignore[attr-defined]
    return lost


def test_a_device_cannot_take_another_devices_client_id(broker: Broker) -> None:
    b_inbox = Inbox()
    b = broker.connect("kec-b", clean_start=False, session_expiry=3600,
                       on_message=b_inbox.on_message)
    subscribe_and_wait(b, "edge/kec-b/down/#")
    b_lost = watch_disconnect(b)

    thief_inbox = Inbox()
    thief = broker.connect("kec-c", client_id="kec-b", clean_start=False,
                           session_expiry=3600, on_message=thief_inbox.on_message)

    assert not b_lost.wait(1.0)          # kec-b keeps its connection and its session
    assert "as kec-c (" in broker.log()  # the broker renamed the thief to its own CN
    receiver = broker.connect("central-receiver", client_id="rx-1")
    assert not publish_and_wait(receiver, "edge/kec-b/down/custody/receipt",
                                b"for-b").is_failure
    assert [m.payload for m in b_inbox.drain(1.0)] == [b"for-b"]
    assert thief_inbox.drain(0.3) == []
    assert thief.is_connected() and b.is_connected()


def test_a_device_certificate_holds_one_session_on_the_device_listener(
        broker: Broker) -> None:
    """A second connection with the same certificate replaces the first, whatever client id
    it asks for: a copied device key cannot run beside the real device unnoticed."""
    first = broker.connect("kec-a")
    lost = watch_disconnect(first)
    broker.connect("kec-a", client_id="kec-a-second")
    assert lost.wait(5)


def test_on_the_device_listener_services_sharing_a_cn_would_kick_each_other(
        broker: Broker) -> None:
    """Why central services have their own listener."""
    rx1 = broker.connect("central-receiver", client_id="rx-1", port=broker.port)
    lost = watch_disconnect(rx1)
    broker.connect("central-receiver", client_id="rx-2", port=broker.port)
    assert lost.wait(5)


def test_on_the_service_listener_receivers_keep_their_own_client_ids(broker: Broker) -> None:
    assert broker.service_port is not None
    rx1 = broker.connect("central-receiver", client_id="rx-1", port=broker.service_port)
    lost = watch_disconnect(rx1)
    rx2 = broker.connect("central-receiver", client_id="rx-2", port=broker.service_port)
    assert not lost.wait(1.0)
    assert rx1.is_connected() and rx2.is_connected()
    assert "as rx-1 (" in broker.log() and "as rx-2 (" in broker.log()
