"""``edge-central`` ops subcommands: fleet init, enrolment codes, the enrolment service,
offline CSR signing, revocation and the daily CRL refresh.

    edge-central init DIR --broker-host mqtt.central.example
    edge-central enrol --office "Kecamatan Menteng" --device-id kec-3171-01 [--ttl 24h]
    edge-central enrol-service
    edge-central sign-csr kec-3171-01.request.json        (offline provisioning)
    edge-central revoke kec-3171-01
    edge-central crl refresh | crl status
    edge-central codes [--device-id ID]
    edge-central service-access [--group edge-central]    (after replacing a service key)
    edge-central broker-config --out /etc/mosquitto/edge [--bind ADDR] [--service-bind ADDR]

Every command but ``init`` takes ``--dir`` (default ``$EDGE_CENTRAL_DIR`` or
``/etc/edge-central``). See docs/provisioning.md.
"""

from __future__ import annotations

import argparse
import grp
import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from cryptography import x509

from edge.broker import render_broker_config
from edge.central.ops.access import SERVICE_GROUP, grant_service_access
from edge.central.ops.authority import Central
from edge.central.ops.errors import OpsError
from edge.central.ops.init import init_central
from edge.central.ops.layout import central_dir, load_layout, parse_duration
from edge.central.ops.qr import qr_text, write_qr_files
from edge.central.ops.service import EnrolService
from edge.durable import atomic_write_bytes

__all__ = ["register"]

_REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessation": x509.ReasonFlags.cessation_of_operation,
}


def _dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", help="central folder (default: $EDGE_CENTRAL_DIR or "
                   "/etc/edge-central)")


def _central(args: argparse.Namespace) -> Central:
    return Central(load_layout(central_dir(args.dir)))


def _duration(text: str) -> object:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port")
    return int(text)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="initialise the fleet: CA, central keys, broker and "
                       "service identities, central.toml")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--broker-host", required=True,
                   help="the broker address devices connect to (DNS name or IP)")
    p.add_argument("--broker-port", type=_port, default=8883)
    p.add_argument("--service-port", type=_port, default=8884,
                   help="the broker's listener for central services (default 8884)")
    p.add_argument("--broker-name", action="append", default=[], metavar="NAME",
                   help="DNS name or IP for the broker certificate (repeat; default: "
                        "--broker-host)")
    p.add_argument("--apn", default="", help="default 4G APN put into bundles")
    p.add_argument("--service-group", default=None, metavar="GROUP",
                   help="group the central services run as, given read access to the files "
                        f"they use (default: {SERVICE_GROUP} if that group exists)")
    p.add_argument("--ca-passphrase-file", type=Path,
                   help="encrypt the CA key with the passphrase in this file")
    p.set_defaults(handler=_init)

    p = sub.add_parser("enrol", help="issue a one-time enrolment code, its QR code and "
                       "provisioning bundle for one device")
    _dir_arg(p)
    p.add_argument("--office", required=True, help="office name, e.g. 'Kecamatan Menteng'")
    p.add_argument("--device-id", required=True, help="device id, e.g. kec-3171-01")
    p.add_argument("--ttl", type=_duration, help="how long the code is valid (default "
                   "[enrol] ttl, 24h; at most 3d)")
    p.add_argument("--apn", help="4G APN for this office (default [enrol] apn)")
    p.add_argument("--workstations", type=int, help="workstation upload tokens to issue")
    p.add_argument("--replace", action="store_true",
                   help="the device id already has a certificate (replacement appliance): "
                        "revoke the old one when the new one is issued")
    p.add_argument("--out", type=Path, help="folder for the bundle and QR files "
                   "(default: [paths] bundles_dir)")
    p.add_argument("--no-qr", action="store_true", help="print no QR code, write no QR files")
    p.set_defaults(handler=_enrol)

    p = sub.add_parser("enrol-service", help="answer devices on the claim channel (MQTT)")
    _dir_arg(p)
    p.add_argument("--broker", metavar="HOST:PORT",
                   help="connect here instead of [broker] host/port of central.toml")
    p.set_defaults(handler=_service)

    p = sub.add_parser("sign-csr", help="offline provisioning: answer a request file a "
                       "device wrote (edge provision --bundle)")
    _dir_arg(p)
    p.add_argument("request", type=Path, metavar="REQUEST")
    p.add_argument("-o", "--output", type=Path,
                   help="answer file (default: <device>.answer.json beside the request)")
    p.set_defaults(handler=_sign_csr)

    p = sub.add_parser("revoke", help="revoke a device's certificates and write a fresh CRL")
    _dir_arg(p)
    p.add_argument("device_id", metavar="DEVICE_ID")
    p.add_argument("--reason", choices=sorted(_REASONS), default="unspecified")
    p.set_defaults(handler=_revoke)

    p = sub.add_parser("crl", help="the broker's certificate revocation list")
    csub = p.add_subparsers(dest="crl_cmd", required=True)
    _dir_arg(csub.add_parser("refresh", help="re-sign the CRL (daily timer) and reload the "
                             "broker"))
    _dir_arg(csub.add_parser("status", help="how long the CRL stays valid (exit 0 ok, "
                             "1 warning, 2 expired)"))
    p.set_defaults(handler=_crl)

    p = sub.add_parser("codes", help="list enrolment codes (no secrets: codes are not kept)")
    _dir_arg(p)
    p.add_argument("--device-id")
    p.set_defaults(handler=_codes)

    p = sub.add_parser("broker-config", help="write the central Mosquitto's config (repo "
                       "template + ACL) for this central folder's ports and files")
    _dir_arg(p)
    p.add_argument("--out", type=Path, required=True,
                   help="folder for mosquitto.conf and edge.acl (include it from "
                        "/etc/mosquitto/conf.d or start mosquitto -c OUT/mosquitto.conf)")
    p.add_argument("--bind", default=None, metavar="ADDR",
                   help="address of the device listener (default: every address)")
    p.add_argument("--service-bind", default="127.0.0.1", metavar="ADDR",
                   help="address of the central services' listener: loopback or the "
                        "central network, never what devices reach (default 127.0.0.1)")
    p.add_argument("--persistence", type=Path, default=Path("/var/lib/mosquitto"),
                   help="folder for sessions and queued messages (default /var/lib/mosquitto)")
    p.add_argument("--user", default=None,
                   help="user Mosquitto drops to when started as root (default: mosquitto)")
    p.add_argument("--log-dest", default="syslog", help="syslog (default), stderr or 'file P'")
    p.set_defaults(handler=_broker_config)

    p = sub.add_parser("service-access", help="give the central services' group read access "
                       "to the files they use (init does it; again after replacing a key)")
    _dir_arg(p)
    p.add_argument("--group", default=SERVICE_GROUP)
    p.set_defaults(handler=_service_access)


def _default_service_group() -> str | None:
    try:
        grp.getgrnam(SERVICE_GROUP)
    except KeyError:
        return None
    return SERVICE_GROUP


def _broker_config(args: argparse.Namespace) -> int:
    layout = load_layout(central_dir(args.dir))
    if layout.services_port == layout.broker_port:
        raise OpsError(f"{layout.root / 'central.toml'}: [broker] service_port is the device "
                       "port: give the central services their own port (e.g. 8884) so the "
                       "device listener can hold devices to their own client ids",
                       key="central.one_port")
    ca, cert, key, crl = (layout.path("ca_dir") / "ca.pem", layout.path("broker_cert"),
                          layout.path("broker_key"), layout.path("crl"))
    conf = render_broker_config(
        args.out, port=layout.broker_port, bind_address=args.bind,
        service_port=layout.services_port, service_bind_address=args.service_bind,
        cafile=ca, certfile=cert, keyfile=key, crlfile=crl, persistence_dir=args.persistence,
        user=args.user, log_dest=args.log_dest)
    print(f"wrote {conf} and {conf.with_name('edge.acl')}")
    print(f"  devices:          port {layout.broker_port}"
          f"{' on ' + args.bind if args.bind else ''} (client id = certificate CN)")
    print(f"  central services: port {layout.services_port} on {args.service_bind}")
    print("Mosquitto reads these as its own user (it drops privileges first): make them "
          "readable to it, and keep the CRL current (edge-central crl refresh):")
    for path in (ca, cert, key, crl):
        print(f"  {path}")
    return 0


def _service_access(args: argparse.Namespace) -> int:
    layout = load_layout(central_dir(args.dir))
    changed = grant_service_access(layout, args.group)
    for line in changed:
        print(line)
    print(f"group {args.group} reads what the central services use in {layout.root} "
          f"({len(changed)} change(s))")
    return 0


def _init(args: argparse.Namespace) -> int:
    group = args.service_group or _default_service_group()
    layout = init_central(Path(args.directory), broker_host=args.broker_host,
                          broker_port=args.broker_port, service_port=args.service_port,
                          broker_names=args.broker_name or None,
                          apn=args.apn, ca_passphrase_file=args.ca_passphrase_file,
                          service_group=group)
    root = layout.root
    print(f"fleet initialised in {root}")
    print(f"  fleet CA            {layout.path('ca_dir') / 'ca.pem'}  (key: ca/ca.key, 0600)")
    print(f"  CRL                 {layout.path('crl')}  (re-sign daily: edge-central crl "
          "refresh)")
    print(f"  sealing public key  {layout.path('sealing_public_key')}")
    print(f"  receipt public key  {layout.path('receipt_public_key')}")
    print(f"  broker cert / key   {layout.path('broker_cert')} / {layout.path('broker_key')}")
    print(f"  service identities  {layout.path('services_dir')}/central-*.pem, .key")
    print(f"  settings            {root / 'central.toml'}")
    if group:
        print(f"  group {group} reads the CA certificate, CRL, receipt key, its MQTT "
              "identities and central.toml (not the CA, sealing or enrolment keys)")
    else:
        print(f"  no group {SERVICE_GROUP} here: the folder stays root's; after "
              f"'install.sh --central' run 'edge-central service-access --dir {root}'")
    print("Next: configure the broker with these files (docs/broker-and-pki.md), set "
          "[broker] reload_command, start 'edge-central enrol-service'.")
    return 0


def _enrol(args: argparse.Namespace) -> int:
    central = _central(args)
    try:
        issued = central.issue_code(args.device_id, args.office, ttl=args.ttl, apn=args.apn,
                                    workstations=args.workstations, replace=args.replace,
                                    out_dir=args.out)
    finally:
        central.close()
    code = issued.code
    print(f"Enrolment code for {issued.device_id} ({issued.office}), one use, valid until "
          f"{issued.expires_at:%Y-%m-%d %H:%M} UTC:\n")
    print(f"    {code.text}\n")
    if issued.cancelled:
        print(f"(older unused code(s) for this device cancelled: {', '.join(issued.cancelled)})")
    if not args.no_qr:
        try:
            print(qr_text(code.qr_payload))
            base = issued.bundle_path.with_name(f"{issued.device_id}.{code.claim_id}.qr")
            files = write_qr_files(code.qr_payload, base)
            print(f"QR files (hold the code; send, then delete): "
                  f"{', '.join(map(str, files))}")
        except OpsError as e:  # no segno: the code above is all the technician needs
            print(f"(no QR code: {e.message})", file=sys.stderr)
    print(f"bundle: {issued.bundle_path}")
    print("Give the technician the code and the bundle (USB stick, or the SD card's "
          "edge-bundles folder). On the appliance:\n"
          f"    sudo edge provision {code.text}")
    return 0


def _service(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="edge-central enrol-service: %(levelname)s: %(message)s")
    central = _central(args)
    host = port = None
    if args.broker:
        h, _, p = args.broker.rpartition(":")
        if not h or not p.isdigit():
            raise OpsError(f"--broker {args.broker!r}: write it as HOST:PORT",
                           key="central.usage")
        host, port = h, int(p)
    service = EnrolService(central, host=host, port=port)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, on_signal)
    try:
        return service.run(stop)
    finally:
        central.close()


def _sign_csr(args: argparse.Namespace) -> int:
    central = _central(args)
    try:
        try:
            data = args.request.read_bytes()
        except OSError as e:
            raise OpsError(f"cannot read {args.request}: {e.strerror}",
                           key="central.usage") from e
        answer = central.sign_request_file(data)
    finally:
        central.close()
    device = json.loads(data).get("fields", {}).get("device_id", "device")
    out = args.output or args.request.with_name(f"{device}.answer.json")
    atomic_write_bytes(out, answer, mode=0o644)
    print(f"certificates for {device} written to {out}: bring it to the appliance and run\n"
          f"    sudo edge provision --install-cert {out.name}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    central = _central(args)
    try:
        serials, broker = central.revoke_device(args.device_id,
                                                reason=_REASONS[args.reason])
    finally:
        central.close()
    if serials:
        print(f"revoked {args.device_id}: certificate serial(s) {', '.join(serials)}; "
              f"fresh CRL written to {central.layout.path('crl')}")
    else:
        print(f"{args.device_id} had no certificate yet; its open enrolment code is cancelled")
    print(broker)
    print("A revoked device that is connected right now stays connected until the broker "
          "restarts (Mosquitto checks the CRL only at new TLS handshakes): to cut it off now, "
          "run 'systemctl restart mosquitto' on the broker host.")
    return 0


def _crl(args: argparse.Namespace) -> int:
    central = _central(args)
    try:
        if args.crl_cmd == "status":
            status = central.crl_status()
            print(status.message)
            return {"ok": 0, "warning": 1}.get(status.state, 2)
        try:
            before = central.crl_status()
        except OpsError:
            before = None
        except Exception:  # an unreadable old CRL must not stop writing a fresh one
            before = None
        status, broker = central.refresh_crl()
    finally:
        central.close()
    if before is not None and not before.ok:
        print(f"WARNING: before this refresh {before.message}; check that the daily "
              "'edge-central crl refresh' timer runs", file=sys.stderr)
    print(f"CRL re-signed: {status.message}")
    print(broker)
    return 0


def _codes(args: argparse.Namespace) -> int:
    central = _central(args)
    try:
        rows = central.store.codes(device_id=args.device_id)
    finally:
        central.close()
    now = datetime.now(UTC).timestamp()
    for r in rows:
        state = r.state
        if state == "issued" and r.expires_at <= now:
            state = "expired"
        until = datetime.fromtimestamp(r.expires_at, UTC)
        print(f"{r.device_id:<24} {r.claim_id:<24} {state:<9} until {until:%Y-%m-%d %H:%M} "
              f"refusals={r.refusals}{' (' + r.last_refusal + ')' if r.last_refusal else ''}")
    return 0
