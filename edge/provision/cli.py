"""``edge provision`` and ``edge selftest``: the technician's commands on the appliance.

    sudo edge provision CODE                    online: over the MQTT claim channel
    sudo edge provision --bundle FILE [CODE]    offline: writes a request file to carry to
                                                central (edge-central sign-csr), then
    sudo edge provision --install-cert ANSWER   installs the answer and finishes
    sudo edge selftest                          the checklist again, any time

Every command takes ``--root DIR`` to stage into DIR instead of this system (files under
DIR, user/owner/nmcli/systemctl changes listed in DIR/.edge-provision-plan).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

from edge.config import load_config, parse_size
from edge.provision.apn import configure_apn
from edge.provision.bundle import Bundle, find_bundle, open_bundle
from edge.provision.checks import LedCheck, default_checks
from edge.provision.claim import exchange
from edge.provision.code import EnrolmentCode, parse_code
from edge.provision.device import DEVICE_PATHS, Provisioner
from edge.provision.errors import BundleError, EnrolRefused, ProvisionError
from edge.provision.host import Host, make_host
from edge.provision.messages import EnrolAnswer
from edge.provision.selftest import (
    SelfTestContext,
    render_checklist,
    run_selftest,
    save_report,
)

__all__ = ["BUNDLE_PLACES", "PINNED_CA_FILE", "register"]

# Where a bundle is looked for when --bundle is not given (device paths; globs allowed):
# the SD card's boot partition (FAT: writable from any laptop), USB sticks, /etc/edge.
BUNDLE_PLACES = ("/etc/edge/bundles", "/boot/firmware/edge-bundles", "/boot/edge-bundles",
                 "/media/*/*/edge-bundles", "/media/*/*", "/media/*", "/mnt/*")
# An image may pin the fleet CA: one line, the SHA-256 (hex) of the CA certificate's DER.
PINNED_CA_FILE = Path("/etc/edge/fleet-ca.sha256")


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 4GiB") from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("provision", help="enrol this appliance with a one-time code",
                       description="Make this appliance's identity key here, get its "
                       "certificate with a one-time enrolment code, configure it, self-test.")
    p.add_argument("code", nargs="?", metavar="CODE",
                   help="the enrolment code, e.g. K7QM-3XHD-9PWA-TT2C-RN5F (asked for if "
                        "missing)")
    p.add_argument("--bundle", type=Path, metavar="PATH",
                   help="the provisioning bundle (file, or a folder holding it); without "
                        "CODE this selects the offline flow")
    p.add_argument("--offline", action="store_true",
                   help="no network now: write a request file to carry to central")
    p.add_argument("--request-out", type=Path, metavar="FILE",
                   help="offline: where to write the request (default: beside the bundle)")
    p.add_argument("--install-cert", type=Path, metavar="ANSWER",
                   help="offline, second step: install the answer from edge-central sign-csr")
    p.add_argument("--apn", help="4G APN (default: from the bundle)")
    p.add_argument("--workstations", type=int, metavar="N",
                   help="workstation upload tokens to issue (default: from the bundle)")
    p.add_argument("--quota", type=_size, help="spool quota (default: from free space, "
                   "at most 8GiB)")
    p.add_argument("--force", action="store_true",
                   help="provision again over an existing identity (replacement)")
    p.add_argument("--ca-fingerprint", metavar="SHA256",
                   help="trust only a bundle whose fleet CA has this SHA-256 fingerprint "
                        f"(default: {PINNED_CA_FILE} if present)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for central's answer (default 60)")
    p.add_argument("--no-selftest", action="store_true", help="skip the self-test at the end")
    p.add_argument("--root", type=Path, metavar="DIR",
                   help="stage into DIR instead of this system (nothing system-wide changes)")
    p.set_defaults(handler=_provision)

    s = sub.add_parser("selftest", help="check LEDs, uplinks, broker, test recording, clock, "
                       "disk and power; print and keep the checklist")
    s.add_argument("--root", type=Path, metavar="DIR", help="a staged appliance in DIR")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds per network check")
    s.add_argument("--no-leds", action="store_true", help="skip the LED walk")
    s.set_defaults(handler=_selftest)


def _ask(question: str) -> bool:
    while True:
        answer = input(question).strip().lower()
        if answer in ("y", "ya", "yes"):
            return True
        if answer in ("n", "t", "tidak", "no"):
            return False


def _read_code(args: argparse.Namespace) -> EnrolmentCode:
    text = args.code
    if not text:
        if not sys.stdin.isatty():
            raise ProvisionError("give the enrolment code: edge provision CODE",
                                 key="provision.usage")
        text = input("Kode pendaftaran / Enrolment code: ")
    return parse_code(text)


def _pinned(args: argparse.Namespace, host: Host) -> str | None:
    if args.ca_fingerprint:
        return str(args.ca_fingerprint).replace(":", "").lower()
    try:
        return host.path(PINNED_CA_FILE).read_text().strip().replace(":", "").lower() or None
    except FileNotFoundError:
        return None


def _locate_bundle(args: argparse.Namespace, host: Host, code: EnrolmentCode) -> Path:
    if args.bundle is not None:
        places = [args.bundle]
    else:
        places = [Path(m) for pattern in BUNDLE_PLACES
                  for m in sorted(glob.glob(str(host.path(pattern))))]
    found = find_bundle(code, places)
    if found is None:
        where = str(args.bundle) if args.bundle else ", ".join(BUNDLE_PLACES[:3]) + \
            ", a USB stick"
        raise BundleError(f"no provisioning bundle for this code in {where}: copy the "
                          f"*.edge-bundle.json file that came with the code there, or pass "
                          "--bundle FILE (if the code was mistyped, no bundle matches it)")
    return found


def _provision(args: argparse.Namespace) -> int:
    host = make_host(args.root)
    prov = Provisioner(host)
    if args.install_cert is not None:
        return _install_cert(args, host, prov)
    offline = args.offline or (args.bundle is not None and not args.code)
    code = _read_code(args)
    bundle_path = _locate_bundle(args, host, code)
    data = bundle_path.read_bytes()
    bundle = open_bundle(data, code, source=str(bundle_path),
                         pinned_ca_sha256=_pinned(args, host))
    print(f"Perangkat / device {bundle.device_id}, {bundle.office}; pusat / central "
          f"{bundle.broker_host}:{bundle.broker_port} (bundle {bundle_path.name})")
    pending = prov.pending() or {}
    if (pending.get("claim_id") == code.claim_id and pending.get("stage") == "installed"
            and prov.existing_device() is None):
        print("Melanjutkan / resuming: the certificate for this code is already installed")
        return _finish(args, host, prov, bundle)
    request = prov.prepare(bundle, force=args.force)
    prov.save_bundle(data)
    print("Kunci identitas dibuat di perangkat ini / identity key made on this device "
          f"({DEVICE_PATHS.key}, 0600; it never leaves the appliance)")
    if offline:
        out = args.request_out or bundle_path.parent / f"{bundle.device_id}.request.json"
        content = request.encode_file(code.claim_id, bundle.device_id, code.claim_key())
        host.write(DEVICE_PATHS.provision_dir / out.name, content, 0o600)
        out.write_bytes(content)
        host.finish()
        print(f"Berkas permintaan / request file: {out}\n"
              "Bawa ke pusat / take it to central ops: edge-central sign-csr "
              f"{out.name}\nLalu / then: sudo edge provision --install-cert "
              f"{bundle.device_id}.answer.json")
        return 0
    print("Menghubungi pusat / contacting central (claim channel) ...")
    answer = exchange(bundle, code, request, timeout=args.timeout)
    if answer.refused:
        raise EnrolRefused(answer.message, key=answer.reason or "enrol.refused")
    prov.install_answer(bundle, answer)
    print(f"Sertifikat dipasang / certificate installed ({DEVICE_PATHS.cert})")
    return _finish(args, host, prov, bundle)


def _install_cert(args: argparse.Namespace, host: Host, prov: Provisioner) -> int:
    pending = prov.pending()
    if pending is None:
        raise ProvisionError("no offline provisioning was started on this appliance: run "
                             "'edge provision --bundle FILE' first", key="provision.no_pending")
    bundle = Bundle.from_body(json.loads(prov.saved_bundle())["body"])
    try:
        data = args.install_cert.read_bytes()
    except OSError as e:
        raise ProvisionError(f"cannot read {args.install_cert}: {e.strerror}",
                             key="provision.usage") from e
    claim_id, answer = EnrolAnswer.decode_file(data)
    if claim_id != pending.get("claim_id"):
        raise ProvisionError(f"{args.install_cert} answers another enrolment ({claim_id}), "
                             f"not this appliance's ({pending.get('claim_id')})",
                             key="provision.bad_answer")
    if answer.refused:
        raise EnrolRefused(answer.message, key=answer.reason or "enrol.refused")
    prov.install_answer(bundle, answer)
    print(f"Sertifikat dipasang / certificate installed ({DEVICE_PATHS.cert})")
    return _finish(args, host, prov, bundle)


def _finish(args: argparse.Namespace, host: Host, prov: Provisioner, bundle: Bundle) -> int:
    config_path = prov.configure(bundle, quota_bytes=args.quota)
    print(f"Konfigurasi / configuration: {DEVICE_PATHS.config}")
    prov.setup_system()
    apn = args.apn if args.apn is not None else bundle.apn
    if apn:
        _, message = configure_apn(host, apn)
        print(message)
    count = args.workstations if args.workstations is not None else bundle.workstations
    tokens = prov.issue_tokens(count)
    print(prov.start_services())
    host.finish()
    passed = True
    if not args.no_selftest:
        cfg = load_config(config_path)
        ctx = SelfTestContext(cfg, root=host.root, out=sys.stdout,
                              ask=_ask if sys.stdin.isatty() else None)
        report = run_selftest(ctx, default_checks(cfg))
        print(render_checklist(report))
        saved = save_report(report, ctx.path(cfg.device.state_dir) / "selftest")
        print(f"(disimpan / kept in {saved})")
        passed = report.passed
    if tokens:
        print("Token unggah stasiun kerja (hanya ditampilkan SEKALI) / workstation upload "
              "tokens (shown ONCE; enter each in its workstation's upload settings):")
        for name, token in tokens:
            print(f"  {name}: {token}")
    return 0 if passed else 1


def _selftest(args: argparse.Namespace) -> int:
    root = args.root or Path("/")
    config = args.config or (str(root / "etc/edge/edge.toml") if args.root else None)
    cfg = load_config(config)
    ctx = SelfTestContext(cfg, root=root, out=sys.stdout, timeout_s=args.timeout,
                          ask=_ask if sys.stdin.isatty() else None)
    checks = [c for c in default_checks(cfg) if not (args.no_leds and isinstance(c, LedCheck))]
    report = run_selftest(ctx, checks)
    print(render_checklist(report))
    saved = save_report(report, ctx.path(cfg.device.state_dir) / "selftest")
    print(f"(disimpan / kept in {saved})")
    return 0 if report.passed else 1
