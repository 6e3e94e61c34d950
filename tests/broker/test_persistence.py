"""Sessions and queued QoS 1 messages across broker restarts (persistence in the repo config),
and what a SIGKILL costs."""

from tests.support.broker import Broker, Inbox, publish_and_wait, subscribe_and_wait

HOUR = 3600


def park_device_with_a_queued_receipt(broker: Broker, receipt: bytes) -> None:
    """The device has a persistent session subscribed to its receipts and is offline; the
    receiver then answers it, so the receipt waits in the broker's queue."""
    device = broker.connect("kec-a", clean_start=False, session_expiry=HOUR)
    subscribe_and_wait(device, "edge/kec-a/down/#")
    device.disconnect()
    device.loop_stop()
    receiver = broker.connect("central-receiver", client_id="rx-1")
    assert not publish_and_wait(receiver, "edge/kec-a/down/custody/receipt", receipt).is_failure
    receiver.disconnect()
    receiver.loop_stop()


def come_back(broker: Broker) -> Inbox:
    inbox = Inbox()
    broker.connect("kec-a", clean_start=False, session_expiry=HOUR,
                   on_message=inbox.on_message)
    return inbox


def test_restart_keeps_sessions_and_queued_receipts(broker: Broker) -> None:
    park_device_with_a_queued_receipt(broker, b"receipt-r1")
    port = broker.port

    broker.restart()  # SIGTERM: Mosquitto writes its database, then starts again

    assert broker.port == port
    inbox = come_back(broker)
    assert inbox.get().payload == b"receipt-r1"
    assert inbox.drain(0.3) == []


def test_sigkill_loses_what_was_queued_since_the_last_save(broker: Broker) -> None:
    """autosave_interval is 60 s, so a crash loses recent broker state. Custody survives
    this by design: the device keeps its copy and re-offers until a receipt arrives."""
    park_device_with_a_queued_receipt(broker, b"saved")
    broker.restart()  # the first receipt (and the session) reach the database
    receiver = broker.connect("central-receiver", client_id="rx-1")
    publish_and_wait(receiver, "edge/kec-a/down/custody/receipt", b"unsaved")

    broker.kill()
    broker.start()

    inbox = come_back(broker)
    assert inbox.get().payload == b"saved"
    assert inbox.drain(0.5) == []  # "unsaved" died with the process
