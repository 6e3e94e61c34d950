"""The device end of the one-time claim channel (MQTT v5 over mutual TLS).

Place in the data flow: ``edge provision CODE`` connects to the broker named in the bundle
as the claim identity (certificate from the bundle, key derived from the code), subscribes
to ``edge/claim/<claim>/down``, publishes its ``EnrolRequest`` on ``.../up`` once the
subscription is granted (so the answer cannot arrive before anyone listens), waits for the
answer with the same request id, and disconnects. A thin adapter over paho; the decisions
are the enrolment service's.

When the broker will not talk to the claim at all (the code was used and its claim
certificate revoked, or it expired), paho reports only "connection lost". ``diagnose_tls``
then makes one plain TLS handshake plus an MQTT CONNECT with the same files to read the
broker's TLS alert ("certificate revoked", "certificate expired") and turns it into a
sentence the technician can act on.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.pki.files import private_key_pem
from edge.provision.bundle import Bundle
from edge.provision.code import EnrolmentCode
from edge.provision.errors import ClaimChannelError
from edge.provision.messages import (
    EnrolAnswer,
    EnrolRequest,
    MessageError,
    claim_down_topic,
    claim_up_topic,
)

__all__ = ["claim_files", "diagnose_tls", "exchange"]

# MQTT 3.1.1 CONNECT, clean session, keepalive 60, client id "probe": enough to make a TLS
# 1.3 server send its verdict on our certificate.
_PROBE_CONNECT = b"\x10\x11\x00\x04MQTT\x04\x02\x00\x3c\x00\x05probe"


@contextlib.contextmanager
def claim_files(bundle: Bundle, code: EnrolmentCode) -> Iterator[tuple[Path, Path, Path]]:
    """(CA, claim certificate, claim key) as files in a private temp folder, removed after.
    The key is derivable from the code anyway; it still never lingers on disk."""
    tmp = Path(tempfile.mkdtemp(prefix="edge-claim-"))
    try:
        os.chmod(tmp, 0o700)
        ca, cert, key = tmp / "ca.pem", tmp / "claim.pem", tmp / "claim.key"
        ca.write_bytes(bundle.ca_pem)
        cert.write_bytes(bundle.claim_cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_key_pem(code.claim_key()))
        yield ca, cert, key
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def diagnose_tls(host: str, port: int, ca: Path, cert: Path, key: Path,
                 timeout: float = 10.0) -> str:
    """What the broker says to these files at the TLS level: "" if it answers MQTT."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(_PROBE_CONNECT)
            answer = tls.recv(4)
    except (ssl.SSLError, OSError) as e:
        return str(e)
    return "" if answer[:1] == b"\x20" else "the broker closed the connection"


def _explain(reason: str, bundle: Bundle) -> str:
    low = reason.lower()
    until = f"{bundle.expires_at:%Y-%m-%d %H:%M} UTC"
    if "certificate verify failed" in low:
        return (f"this device does not trust the broker's certificate ({reason}): check the "
                "device clock (date) and that the bundle is from our central site")
    if "revoked" in low:
        return ("the broker refused the claim certificate as revoked: this code has already "
                "been used (or central ops cancelled it); ask central ops for a new code")
    if "expired" in low:
        return (f"the broker refused the claim certificate as expired (the code was valid "
                f"until {until}); ask central ops for a new code")
    if "unknown ca" in low:
        return (f"the broker does not know this claim ({reason}): the bundle is from another "
                "central site or CA")
    # Mosquitto closes the connection without a TLS alert when it refuses a client
    # certificate, so the device cannot tell revoked from expired; say both.
    return (f"the broker closed the claim connection right after TLS ({reason}): it no longer "
            f"accepts this code's claim certificate. The code has most likely already been "
            f"used (or was cancelled), or it has expired (valid until {until}); ask central "
            "ops for a new code")


def exchange(bundle: Bundle, code: EnrolmentCode, request: EnrolRequest, *,
             timeout: float = 60.0, host: str | None = None,
             port: int | None = None) -> EnrolAnswer:
    """Send the request on the claim channel and return the central answer (which may be a
    refusal: the caller raises ``EnrolRefused`` for it)."""
    host = host or bundle.broker_host
    port = port or bundle.broker_port
    claim_id = code.claim_id
    answers: queue.Queue[EnrolAnswer | str] = queue.Queue()
    published = threading.Event()

    def on_connect(c: mqtt.Client, ud: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            answers.put(f"CONNACK {rc}")
            return
        c.subscribe(claim_down_topic(claim_id), qos=1)

    def on_subscribe(c: mqtt.Client, ud: Any, mid: int, rcs: list[ReasonCode],
                     props: Any) -> None:
        if rcs and rcs[0].is_failure:
            answers.put(f"SUBACK {rcs[0]}")
            return
        if not published.is_set():
            published.set()
            c.publish(claim_up_topic(claim_id), request.encode(), qos=1)

    def on_message(c: mqtt.Client, ud: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            answer = EnrolAnswer.decode(bytes(msg.payload))
        except MessageError as e:
            answers.put(f"unreadable answer: {e.message}")
            return
        if answer.request_id in (request.request_id, ""):
            answers.put(answer)

    def on_disconnect(c: mqtt.Client, ud: Any, flags: Any, rc: ReasonCode,
                      props: Any) -> None:
        answers.put(f"disconnected: {rc}")

    with claim_files(bundle, code) as (ca, cert, key):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=claim_id,
                             protocol=mqtt.MQTTv5)
        client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key),
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.on_disconnect = on_disconnect
        try:
            client.connect(host, port, keepalive=30, clean_start=True)
        except (OSError, ssl.SSLError) as e:
            if isinstance(e, ssl.SSLError) or "certificate" in str(e).lower():
                raise ClaimChannelError(_explain(str(e), bundle)) from e
            raise ClaimChannelError(f"cannot reach the central broker at {host}:{port} ({e}): "
                                    "check the network cable or 4G, then try again (the code "
                                    "stays valid until it is used)") from e
        client.loop_start()
        try:
            result: EnrolAnswer | str
            try:
                result = answers.get(timeout=timeout)
            except queue.Empty:
                result = ""
            if isinstance(result, EnrolAnswer):
                return result
            if result.startswith("disconnected") or result.startswith("CONNACK"):
                why = diagnose_tls(host, port, ca, cert, key)
                raise ClaimChannelError(_explain(why or result, bundle))
            if result:
                raise ClaimChannelError(f"the claim channel failed: {result}")
            raise ClaimChannelError(
                f"no answer from the central enrolment service within {timeout:g} s: it may "
                "be stopped (central ops: edge-central enrol-service); try again later, the "
                "code stays valid until it is used")
        finally:
            client.disconnect()
            client.loop_stop()
