"""The self-test's checks, each against the real thing it names.

Place in the data flow: ``edge.provision.selftest`` runs these in order (``default_checks``)
and prints the checklist. Each check reads the device config; paths go through
``SelfTestContext.path`` so a staging root can be tested like a device.

- ``LedCheck``: the three LEDs light in turn (through the running panel's "locate" when the
  panel service holds the pins, else directly via gpiozero), and the technician confirms.
- ``UplinkCheck``: per configured uplink interface (``[uplink.wired]``/``[uplink.4g]``
  ``interface``), a TLS handshake with the broker from a socket bound to that interface
  (SO_BINDTODEVICE); with none configured, one over the default route.
- ``BrokerCheck``: MQTT over TLS with the device certificate; a QoS 1 publish on the
  device's own ``edge/<id>/up/selftest`` must get a successful PUBACK (0x87 = the ACL
  refused: wrong identity). The broker gives each device certificate one session (client
  id = certificate CN), so when the forwarder service runs and reports itself connected
  (its heartbeat), that connection is the proof and the check opens no second one (which
  would cut the forwarder off).
- ``RecordingCheck``: a test recording through the forwarder to the central site and back
  with its signed receipt (``edge.forward.selftest.send_test_recording``).
- ``ClockCheck``: NTP synchronised (timedatectl, else the kernel's adjtimex state), and the
  wall clock inside the device certificate's validity.
- ``DiskCheck``: free space on the spool's filesystem against the reserve and quota; the
  spool folder takes a durable write.
- ``PowerCheck``: under-voltage and throttling flags from ``vcgencmd get_throttled``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import os
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import Config
from edge.durable import atomic_write_bytes
from edge.errors import EdgeError
from edge.health.heartbeat import (
    FORWARDER,
    PANEL,
    heartbeat_dir,
    read_heartbeats,
    runtime_dir,
)
from edge.panel.config import parse_panel_config
from edge.panel.driver import GpioPanel, PanelOutput, TerminalPanel, WalkStep, run_walk
from edge.panel.errors import NoGpioBackend, PanelError
from edge.panel.patterns import OFF, ON, Led
from edge.panel.sources import write_locate
from edge.pki import load_certificate
from edge.provision.claim import diagnose_tls
from edge.provision.selftest import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    Check,
    CheckResult,
    SelfTestContext,
)
from edge.telemetry.collect import read_throttled

__all__ = [
    "BrokerCheck",
    "ClockCheck",
    "DiskCheck",
    "LedCheck",
    "MqttSettings",
    "PowerCheck",
    "RecordingCheck",
    "UplinkCheck",
    "clock_verdict",
    "default_checks",
    "is_raspberry_pi",
    "parse_mqtt_settings",
    "power_verdict",
    "read_ntp_synchronized",
]

SELFTEST_TOPIC = "edge/{d}/up/selftest"
_MODEL = Path("/proc/device-tree/model")


def is_raspberry_pi(model_file: Path = _MODEL) -> bool:
    try:
        return b"Raspberry Pi" in model_file.read_bytes()
    except OSError:
        return False


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    receipt_public_key: Path | None


def parse_mqtt_settings(cfg: Config) -> MqttSettings:
    """The ``[mqtt]`` keys provisioning writes (the forwarder owns the rest of the table)."""
    s = cfg.section("mqtt")
    return MqttSettings(
        host=s.text("host"),
        port=s.integer("port", 8883, min=1, max=65535),
        ca=s.path("ca", str(cfg.identity.ca or "/etc/edge/fleet-ca.crt")),
        cert=s.path("cert", str(cfg.identity.cert or "/etc/edge/device.crt")),
        key=s.path("key", str(cfg.identity.key)),
        receipt_public_key=s.opt_path("receipt_public_key"),
    )


def _result(check: Check, status: str, text_id: str, text_en: str, detail: str = ""
            ) -> CheckResult:
    return CheckResult(check.key, status, check.title_id, check.title_en, text_id, text_en,
                       detail)


# -- LEDs ------------------------------------------------------------------------------------
class LedCheck:
    key = "leds"
    title_id = "Lampu status"
    title_en = "Status lights"

    def run(self, ctx: SelfTestContext) -> CheckResult:
        pcfg = parse_panel_config(ctx.cfg)
        state_dir = ctx.path(ctx.cfg.device.state_dir)
        beats = read_heartbeats(heartbeat_dir(state_dir))
        panel_beat = beats.get(PANEL)
        if panel_beat is not None and not panel_beat.stale:
            # The panel service holds the pins: ask it to run the three lights in turn.
            seconds = max(6.0, 4 * ctx.led_hold_s)
            write_locate(runtime_dir(state_dir), seconds)
            ctx.say(f"  Lihat lampu: NET, DATA, SYS menyala bergantian selama {seconds:.0f} "
                    f"detik. / Watch: NET, DATA, SYS light in turn for {seconds:.0f} s.")
            time.sleep(seconds)
            return self._confirm(ctx, "via the running panel (locate)")
        output: PanelOutput
        try:
            output = GpioPanel(pcfg.pins, active_high=pcfg.active_high)
            how = "GPIO " + ", ".join(f"{led.value}={pin}" for led, pin in pcfg.pins.items())
        except (NoGpioBackend, PanelError) as e:
            if is_raspberry_pi():
                return _result(self, FAIL,
                               "Lampu tidak bisa dinyalakan: pustaka GPIO tidak ada.",
                               "The LEDs cannot be driven: no GPIO backend.",
                               f"{e.message}; install with: pip install 'edge[pi]'")
            ctx.say("  (tidak ada lampu di mesin ini / no LEDs on this machine: shown as text)")
            if ctx.out is not None:
                self._walk(ctx, TerminalPanel(ctx.out, title="selftest"), pcfg.pins,
                           min(ctx.led_hold_s, 0.2))
            return _result(self, SKIP, "Bukan Raspberry Pi: lampu ditampilkan sebagai teks.",
                           "Not a Raspberry Pi: the lights were shown as text.", str(e))
        except Exception as e:  # pin busy, wrong pin number: gpiozero's own errors
            return _result(self, FAIL, "Lampu tidak bisa dinyalakan.",
                           "The LEDs cannot be driven.", f"{type(e).__name__}: {e}")
        try:
            self._walk(ctx, output, pcfg.pins, ctx.led_hold_s)
        finally:
            output.close()
        return self._confirm(ctx, how)

    @staticmethod
    def _walk(ctx: SelfTestContext, output: PanelOutput, pins: Any, hold: float) -> None:
        plan = [WalkStep(patterns={o: (ON if o is led else OFF) for o in Led}, hold_s=hold,
                         say_en=f"{led.value} (GPIO{pins[led]}) on, the others dark",
                         say_id=f"{led.value} (GPIO{pins[led]}) menyala, lainnya mati")
                for led in Led]

        def say(text: str) -> None:
            ctx.say(f"  {text}")

        run_walk(output, plan, say=say, lang="id")

    def _confirm(self, ctx: SelfTestContext, how: str) -> CheckResult:
        if ctx.ask is None:
            return _result(self, WARN,
                           "Lampu sudah dinyalakan, tetapi belum dikonfirmasi teknisi.",
                           "The lights were run, but nobody confirmed seeing them.",
                           f"{how}; run 'sudo edge selftest' at a terminal to confirm")
        seen = ctx.ask("Apakah NET, DATA, SYS menyala satu per satu? / Did NET, DATA and SYS "
                       "light one after another? [y/n] ")
        if seen:
            return _result(self, PASS, "Ketiga lampu menyala bergantian (dikonfirmasi).",
                           "The three lights came on in turn (confirmed).", how)
        return _result(self, FAIL, "Lampu tidak menyala seperti seharusnya: periksa kabel "
                       "dan pin.", "The lights did not show as expected: check the wiring "
                       "and the pins in [panel].", how)


# -- uplinks and broker --------------------------------------------------------------------
def _tls_context(ctx: SelfTestContext, m: MqttSettings) -> ssl.SSLContext:
    tls = ssl.create_default_context(cafile=str(ctx.path(m.ca)))
    tls.load_cert_chain(str(ctx.path(m.cert)), str(ctx.path(m.key)))
    return tls


class UplinkCheck:
    """One uplink: ``interface`` None means "whatever the default route uses"."""

    def __init__(self, link: str, interface: str | None) -> None:
        self.link = link
        self.interface = interface
        self.key = f"uplink.{link}"
        names = {"wired": ("kabel", "wired"), "4g": ("4G", "4G"), "default": ("rute utama",
                                                                              "default route")}
        n_id, n_en = names.get(link, (link, link))
        self.title_id = f"Jaringan ({n_id}{', ' + interface if interface else ''})"
        self.title_en = f"Uplink ({n_en}{', ' + interface if interface else ''})"

    def run(self, ctx: SelfTestContext) -> CheckResult:
        m = parse_mqtt_settings(ctx.cfg)
        tls = _tls_context(ctx, m)
        start = time.monotonic()
        try:
            infos = socket.getaddrinfo(m.host, m.port, type=socket.SOCK_STREAM)
            family, stype, proto, _, addr = infos[0]
            with socket.socket(family, stype, proto) as s:
                s.settimeout(ctx.timeout_s)
                if self.interface:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                                 self.interface.encode() + b"\0")
                s.connect(addr)
                with tls.wrap_socket(s, server_hostname=m.host) as t:
                    version = t.version()
        except OSError as e:  # ssl.SSLError is an OSError
            where = f"via {self.interface}" if self.interface else "via the default route"
            return _result(self, FAIL,
                           f"Server pusat {m.host}:{m.port} tidak terjangkau: periksa kabel, "
                           "modem 4G, atau jaringan kantor.",
                           f"The central server {m.host}:{m.port} cannot be reached {where}: "
                           "check the cable, the 4G modem or the office network.",
                           f"{type(e).__name__}: {e}")
        ms = (time.monotonic() - start) * 1000
        return _result(self, PASS, f"Server pusat terjangkau ({ms:.0f} ms).",
                       f"The central server answers ({ms:.0f} ms, {version}).",
                       f"{m.host}:{m.port}")


def uplink_checks(cfg: Config) -> list[Check]:
    s = cfg.section("uplink")
    found: list[Check] = []
    for link in ("wired", "4g"):
        iface = s.sub(link).opt_text("interface")
        if iface:
            found.append(UplinkCheck(link, iface))
    return found or [UplinkCheck("default", None)]


class BrokerCheck:
    key = "broker"
    title_id = "Koneksi ke pusat (MQTT)"
    title_en = "Central broker (MQTT, device certificate)"

    def run(self, ctx: SelfTestContext) -> CheckResult:
        m = parse_mqtt_settings(ctx.cfg)
        device = ctx.cfg.device.id
        ca, cert, key = ctx.path(m.ca), ctx.path(m.cert), ctx.path(m.key)
        beat = read_heartbeats(heartbeat_dir(ctx.path(ctx.cfg.device.state_dir))).get(FORWARDER)
        if (beat is not None and not beat.stale and beat.status == "ok"
                and beat.detail.get("connected") is True):
            return _result(self, PASS,
                           "Layanan pengirim sedang terhubung ke pusat dengan sertifikat "
                           "perangkat ini.",
                           "The forwarder service is connected to central with this "
                           "device's certificate (one session per device: no second "
                           "connection is opened).",
                           f"{m.host}:{m.port} as {device}, forwarder heartbeat "
                           f"{beat.age_s:.0f} s old")
        done = threading.Event()
        outcome: list[str] = []

        def on_connect(c: mqtt.Client, ud: Any, flags: Any, rc: ReasonCode, p: Any) -> None:
            if rc.is_failure:
                outcome.append(f"CONNACK {rc}")
                done.set()
                return
            c.publish(SELFTEST_TOPIC.format(d=device), b'{"selftest":1}', qos=1)

        def on_publish(c: mqtt.Client, ud: Any, mid: int, rc: ReasonCode, p: Any) -> None:
            outcome.append("ok" if not rc.is_failure else f"PUBACK {rc}")
            done.set()

        def on_disconnect(c: mqtt.Client, ud: Any, flags: Any, rc: ReasonCode,
                          p: Any) -> None:
            outcome.append(f"disconnected: {rc}")
            done.set()

        # The broker makes the client id the certificate's CN anyway; with the forwarder
        # stopped this session replaces its broker session (it re-offers anything not yet
        # receipted when it starts: nothing is lost).
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device,
                             protocol=mqtt.MQTTv5)
        client.tls_set_context(_tls_context(ctx, m))
        client.on_connect = on_connect
        client.on_publish = on_publish
        client.on_disconnect = on_disconnect
        try:
            client.connect(m.host, m.port, keepalive=30, clean_start=True)
        except OSError as e:
            outcome.append(f"{type(e).__name__}: {e}")
            done.set()
        else:
            client.loop_start()
        try:
            done.wait(ctx.timeout_s)
        finally:
            client.disconnect()
            client.loop_stop()
        first = outcome[0] if outcome else f"no answer within {ctx.timeout_s:g} s"
        if first == "ok":
            return _result(self, PASS, "Terhubung ke pusat dengan sertifikat perangkat ini.",
                           "Connected with this device's certificate; publishing under its "
                           "own topic works.", f"{m.host}:{m.port} as {device}")
        if first.startswith("PUBACK"):
            return _result(self, FAIL, "Pusat menolak pesan dari perangkat ini (hak akses).",
                           "The broker refused this device's message (ACL): the certificate "
                           "is not for this device id.", first)
        why = diagnose_tls(m.host, m.port, ca, cert, key, ctx.timeout_s) or first
        return _result(self, FAIL,
                       "Tidak bisa terhubung ke pusat dengan sertifikat perangkat (dicabut, "
                       "kedaluwarsa, atau jaringan): hubungi pusat.",
                       "Cannot connect to the central broker with the device certificate "
                       "(revoked, expired, or no network): call central ops.", why)


# -- end to end ----------------------------------------------------------------------------
class RecordingCheck:
    key = "recording"
    title_id = "Rekaman uji sampai pusat (dengan tanda terima)"
    title_en = "Test recording to central (with its receipt)"

    def run(self, ctx: SelfTestContext) -> CheckResult:
        try:
            module = importlib.import_module("edge.forward.selftest")
            send = module.send_test_recording
        except (ImportError, AttributeError) as e:
            return _result(self, FAIL, "Tidak tersedia dalam versi perangkat lunak ini.",
                           "Not available in this build (the forwarder's self-test is "
                           "missing).", f"{type(e).__name__}: {e}")
        start = time.monotonic()
        try:
            info = send(ctx.cfg, ctx.timeout_s * 3)
        except EdgeError as e:
            return _result(self, FAIL, "Rekaman uji tidak mendapat tanda terima dari pusat.",
                           "The test recording got no receipt from central.",
                           f"{e.key}: {e.message}"[:300])
        elapsed = time.monotonic() - start
        rid = getattr(info, "recording_id", None) or "?"
        return _result(self, PASS, f"Rekaman uji diterima pusat ({elapsed:.1f} detik).",
                       f"The test recording was receipted by central ({elapsed:.1f} s).",
                       f"recording {rid}: {info!r}"[:300])


# -- clock -----------------------------------------------------------------------------------
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


def read_ntp_synchronized(timeout_s: float = 5.0) -> tuple[bool | None, str]:
    """(synchronised?, how we know). ``timedatectl`` where systemd runs, else the kernel's
    own flag (adjtimex, read-only call: ``modes`` = 0)."""
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                             capture_output=True, text=True, timeout=timeout_s, check=False)
        if out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
            return out.stdout.strip() == "yes", "timedatectl"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex is 208 bytes on 64-bit
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None, "no timedatectl, no adjtimex"
    if state < 0:
        return None, f"adjtimex failed (errno {ctypes.get_errno()})"
    return state != _TIME_ERROR, f"adjtimex state {state}"


# The oldest wall clock this software can be running at (a Pi without an RTC boots at its
# image's date, or 1970 without fake-hwclock).
CLOCK_FLOOR = datetime(2025, 1, 1, tzinfo=UTC)


def clock_verdict(now: datetime, synced: bool | None, cert_from: datetime | None,
                  cert_until: datetime | None) -> tuple[str, str, str]:
    """(status, Bahasa Indonesia, English) for the clock."""
    if now < CLOCK_FLOOR or (cert_from is not None and now < cert_from):
        return (FAIL, f"Jam perangkat salah ({now:%Y-%m-%d %H:%M} UTC): periksa NTP.",
                f"The device clock is wrong ({now:%Y-%m-%d %H:%M} UTC, before the device "
                "certificate): check NTP (UDP 123) and the network")
    if cert_until is not None and now > cert_until:
        return (FAIL, "Jam melewati masa berlaku sertifikat: perangkat harus diperbarui.",
                "The clock is past the device certificate's validity: renew the certificate")
    if synced is None:
        return (WARN, "Jam tampak wajar, tetapi sinkronisasi NTP tidak dapat diperiksa.",
                "The clock looks sane, but NTP synchronisation cannot be read here.")
    if not synced:
        return (FAIL, "Jam belum tersinkron (NTP): tunggu 1 menit, lalu ulangi 'sudo edge "
                "selftest'; jika tetap gagal, izinkan NTP (UDP 123) di jaringan kantor.",
                "The clock is not NTP-synchronised: wait a minute and run 'sudo edge "
                "selftest' again; if it stays so, allow NTP (UDP 123) on the office network.")
    return PASS, "Jam tersinkron (NTP) dan wajar.", "The clock is NTP-synchronised and sane."


class ClockCheck:
    key = "clock"
    title_id = "Jam"
    title_en = "Clock"

    def run(self, ctx: SelfTestContext) -> CheckResult:
        synced, how = read_ntp_synchronized()
        now = datetime.fromtimestamp(ctx.now(), UTC)
        cert_from = cert_until = None
        if ctx.cfg.identity.cert is not None:
            try:
                cert = load_certificate(ctx.path(ctx.cfg.identity.cert))
                cert_from, cert_until = cert.not_valid_before_utc, cert.not_valid_after_utc
            except (OSError, ValueError, EdgeError):
                pass
        status, text_id, text_en = clock_verdict(now, synced, cert_from, cert_until)
        return _result(self, status, text_id, text_en, f"{now:%Y-%m-%d %H:%M:%S} UTC, {how}")


# -- disk ------------------------------------------------------------------------------------
def _human(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class DiskCheck:
    key = "disk"
    title_id = "Kartu memori (ruang dan tulis)"
    title_en = "Storage (free space, spool writable)"

    def run(self, ctx: SelfTestContext) -> CheckResult:
        spool = ctx.path(ctx.cfg.spool.dir)
        reserve, quota = ctx.cfg.spool.reserve_bytes, ctx.cfg.spool.quota_bytes
        probe = spool / ".selftest-write"
        try:
            spool.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(probe, os.urandom(4096), mode=0o600)
            ok = len(probe.read_bytes()) == 4096
            probe.unlink()
        except OSError as e:
            return _result(self, FAIL, "Folder penyimpanan tidak bisa ditulisi.",
                           f"The spool folder {ctx.cfg.spool.dir} cannot be written.",
                           f"{type(e).__name__}: {e}")
        st = os.statvfs(spool)
        free = st.f_bavail * st.f_frsize
        detail = f"free {_human(free)}, reserve {_human(reserve)}, quota {_human(quota)}"
        if not ok:
            return _result(self, FAIL, "Data yang ditulis tidak terbaca kembali.",
                           "What was written could not be read back.", detail)
        if free <= reserve:
            return _result(self, FAIL, "Kartu memori hampir penuh: rekaman akan ditolak.",
                           "The card is nearly full: recordings would be refused.", detail)
        if free < reserve + quota:
            return _result(self, WARN, "Ruang cukup untuk mulai, tetapi kurang dari kuota.",
                           "Enough room to start, but less than the spool quota.", detail)
        return _result(self, PASS, "Ruang cukup dan folder penyimpanan bisa ditulisi.",
                       "Enough free space, and the spool folder takes a durable write.",
                       detail)


# -- power -----------------------------------------------------------------------------------
_UNDERVOLT_NOW, _CAPPED_NOW, _THROTTLED_NOW, _SOFTTEMP_NOW = 0x1, 0x2, 0x4, 0x8
_UNDERVOLT_SINCE, _THROTTLED_SINCE = 0x10000, 0x40000


def power_verdict(flags: int) -> tuple[str, str, str]:
    if flags & _UNDERVOLT_NOW:
        return (FAIL, "Tegangan listrik kurang SEKARANG: ganti adaptor daya (5,1 V 3 A resmi).",
                "Under-voltage NOW: replace the power supply (official 5.1 V 3 A).")
    if flags & (_THROTTLED_NOW | _CAPPED_NOW | _SOFTTEMP_NOW):
        return (WARN, "Prosesor sedang diperlambat (panas atau daya): beri ventilasi.",
                "The CPU is being throttled (heat or power): give it air.")
    if flags & _UNDERVOLT_SINCE:
        return (WARN, "Sempat terjadi tegangan kurang sejak dinyalakan: periksa adaptor dan "
                "kabel daya.", "Under-voltage occurred since boot: check the power supply "
                "and cable.")
    if flags & _THROTTLED_SINCE:
        return (WARN, "Sempat diperlambat sejak dinyalakan.", "Throttled since boot.")
    return PASS, "Daya dan suhu normal.", "Power and temperature are normal."


class PowerCheck:
    key = "power"
    title_id = "Daya listrik"
    title_en = "Power supply"

    def __init__(self, vcgencmd: str | None = None) -> None:
        self.vcgencmd = vcgencmd

    def run(self, ctx: SelfTestContext) -> CheckResult:
        flags = read_throttled(self.vcgencmd)
        if flags is None:
            if is_raspberry_pi():
                return _result(self, FAIL, "Status daya tidak terbaca (vcgencmd).",
                               "Power flags cannot be read (vcgencmd missing or failing).")
            return _result(self, SKIP, "Bukan Raspberry Pi: tidak ada data daya.",
                           "Not a Raspberry Pi: no power flags to read.")
        status, text_id, text_en = power_verdict(flags)
        return _result(self, status, text_id, text_en, f"get_throttled=0x{flags:x}")


def default_checks(cfg: Config) -> list[Check]:
    checks: list[Check] = [LedCheck()]
    checks += uplink_checks(cfg)
    checks += [BrokerCheck(), RecordingCheck(), ClockCheck(), DiskCheck(), PowerCheck()]
    return checks

