"""The forwarder: moves sealed recordings from the spool to the central site over MQTT and
deletes a local copy only after a verified custody receipt.

    spool ──waiting()──▶ Sender (edge.custody, pure) ──Publish/PublishChunk──▶ MqttLink
      ▲                      ▲                                                  │
      └─ mark_receipted,     └──────────── State / Receipt messages ◀───────────┘
         then purge

One engine thread owns the Sender, the spool connection and the open sealed files; paho's
network thread only turns packets into events on a queue. Timing (``now``) is monotonic.
Telemetry and the retained online status ride the same connection. Every loop can be run a
step at a time (``step``), so tests drive it without sleeping.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import BinaryIO

from edge.config import Config
from edge.custody.messages import DOWN, Alert, Publish
from edge.custody.sender import (
    GaveUp,
    PublishChunk,
    Receipted,
    Recording,
    Sender,
    SenderOutput,
    VerifyLocal,
)
from edge.errors import EdgeError
from edge.forward.config import ForwardConfig, load_receipt_key
from edge.forward.mqtt_link import Connected, Disconnected, LinkEvent, Message, MqttLink
from edge.forward.reconnect import Reconnector
from edge.health import FORWARDER
from edge.health.heartbeat import Heartbeat, heartbeat_dir, runtime_dir
from edge.health.sdnotify import Notifier
from edge.panel.config import parse_panel_config
from edge.spool import Spool, State
from edge.telemetry import build_telemetry, last_will, online_status, shutdown_status
from edge.telemetry.schema import status_topic, telemetry_topic
from edge.uplink.announce import UplinkChange, UplinkWatcher

__all__ = ["Forwarder", "ForwarderStats"]

log = logging.getLogger("edge.forward")

OPEN_FILES = 8


@dataclass(frozen=True)
class UplinkChanged:
    change: UplinkChange


def may_send(policy: str, priority: int, sealed_size: int, small_bytes: int) -> bool:
    """The 4G budget's word on one recording: everything, only small or urgent ones (above the
    soft cap), or nothing but telemetry (above the hard cap)."""
    if policy == "all":
        return True
    if policy == "priority_only":
        return priority == 0 or sealed_size <= small_bytes
    return False


@dataclass
class ForwarderStats:
    receipted: int = 0
    bytes_sent: int = 0
    chunks_sent: int = 0
    connects: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    last_receipt_mono: float | None = None


class Forwarder:
    def __init__(self, cfg: Config, fcfg: ForwardConfig, spool: Spool, *,
                 notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.fcfg = fcfg
        self.spool = spool
        self.device_id = cfg.device.id
        self.events: queue.Queue[LinkEvent | UplinkChanged] = queue.Queue()
        self.sender = Sender(self.device_id, load_receipt_key(fcfg.mqtt.receipt_public_key),
                             fcfg.custody)
        self.link = MqttLink(
            fcfg.mqtt, self.events.put, will=(status_topic(self.device_id), last_will()),
            subscriptions=[f"edge/{self.device_id}/{DOWN}/custody/#"],
            max_inflight=fcfg.custody.window_chunks + 4)
        self.reconnect = Reconnector(fcfg.reconnect)
        self.connected = False
        self.stats = ForwarderStats()
        self.notifier = notifier or Notifier()
        self.heartbeat = Heartbeat(heartbeat_dir(cfg.device.state_dir), FORWARDER)
        self._enqueued: set[str] = set()
        self._files: OrderedDict[str, BinaryIO] = OrderedDict()
        self._next_poll = 0.0
        self._more_waiting = False   # the last poll saw more waiting rows than it could take
        self._next_telemetry = 0.0
        self._telemetry_seq = 0
        self._connecting = False
        self._attempt_at = 0.0  # when the current connection's attempt began (monotonic)
        self._switched_at: float | None = None  # the last announced uplink switch
        # report the programs the panel watches (an office without an uplink daemon runs
        # no "uplink" program, and must not be reported as having a stuck one)
        self._programs = tuple(parse_panel_config(cfg).thresholds.programs)
        self.watcher = UplinkWatcher(runtime_dir(cfg.device.state_dir))
        self.watcher.on_change(lambda ch: self.events.put(UplinkChanged(ch)))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        released = self.spool.recover_forwarder()
        if released:
            log.info("%d in-flight recordings back in the queue; the protocol resumes them",
                     released)
        finished = self.spool.finish_purges()
        if finished:
            log.info("%d receipted recordings still had their local copy (stopped between "
                     "receipt and deletion); removed now", len(finished))
        self.link.start()
        self.notifier.ready(status="forwarding")

    def stop(self) -> None:
        st = self.stats
        log.info("stopping: %d chunks sent (%d bytes), %d receipts, %d connects, alerts %s",
                 st.chunks_sent, st.bytes_sent, st.receipted, st.connects,
                 dict(st.alerts) or "none")
        self.watcher.close()
        self.link.stop(final=(status_topic(self.device_id), shutdown_status(time.time())))
        self.heartbeat.beat("stopped")
        self.notifier.stopping()
        for f in self._files.values():
            f.close()
        self._files.clear()

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            while not stop.is_set():
                self.step(wait=True)
        finally:
            self.stop()

    def link_changed(self) -> None:
        """The uplink daemon switched links: drop the connection and reconnect at once,
        instead of waiting for keepalive to notice the old path is dead."""
        now = time.monotonic()
        self._switched_at = now
        self.reconnect.link_changed(now)
        if self.connected or self._connecting:
            self.link.drop()

    # ------------------------------------------------------------------ one step
    def step(self, wait: bool = False) -> None:
        now = time.monotonic()
        deadline = min(self._next_poll, self.sender.next_deadline() or now + 1.0, now + 1.0)
        if not self.connected and not self._connecting:
            deadline = min(deadline, self.reconnect.next_attempt)
        timeout = max(0.0, deadline - now) if wait else 0.0
        try:
            ev: LinkEvent | UplinkChanged | None = self.events.get(timeout=timeout)
        except queue.Empty:
            ev = None
        while ev is not None:
            self._on_event(ev, time.monotonic())
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                ev = None
        now = time.monotonic()
        if not self.connected and not self._connecting and self.reconnect.due(now):
            self._connecting = True
            self._attempt_at = now
            self.link.request_connect()
        if now >= self._next_poll:
            self._next_poll = now + self.fcfg.poll_s
            self._poll_spool(now)
        nd = self.sender.next_deadline()
        if nd is not None and now >= nd:
            self._apply(self.sender.tick(now), now)
        if self.connected and now >= self._next_telemetry:
            self._next_telemetry = now + self.fcfg.telemetry_interval_s
            self._publish_telemetry(now)
        self.heartbeat.beat("ok", {"connected": self.connected,
                                   "in_progress": len(self._enqueued),
                                   "receipted": self.stats.receipted,
                                   "chunks_sent": self.stats.chunks_sent,
                                   "bytes_sent": self.stats.bytes_sent})
        self.notifier.ping()

    def _on_event(self, ev: LinkEvent | UplinkChanged, now: float) -> None:
        if isinstance(ev, UplinkChanged):
            if ev.change.switched:
                log.info("uplink switched to %s: reconnecting over it now",
                         ev.change.current.active)
                self.link_changed()
            if ev.change.policy_changed:
                log.info("4G budget: sending %s", ev.change.current.allowed)
                self._next_poll = now  # re-filter what is enqueued
        elif isinstance(ev, Message):
            self._apply(self.sender.receive(ev.topic, ev.payload, now), now)
        elif isinstance(ev, Connected):
            self._connecting = False
            self.connected = True
            self.stats.connects += 1
            self.reconnect.connected(now)
            log.info("connected to %s:%d (session present: %s)", self.fcfg.mqtt.host,
                     self.fcfg.mqtt.port, ev.session_present)
            self.link.publish(status_topic(self.device_id), online_status(time.time()),
                              qos=1, retain=True)
            self._next_telemetry = now
            self._apply(self.sender.link_up(now), now)
        elif isinstance(ev, Disconnected):
            self._connecting = False
            was = self.connected
            self.connected = False
            if self._switched_at is not None and self._attempt_at <= self._switched_at:
                # dropped for (or cut short by) an uplink switch: the new link's attempt,
                # scheduled by link_changed, stands
                delay = self.reconnect.superseded(now)
            else:
                delay = (self.reconnect.disconnected(ev.kind, now) if was
                         else self.reconnect.failed(ev.kind, now))
            log.info("%s; next attempt in %.1f s (%s)", ev.reason, delay, ev.kind.value)
            self._apply(self.sender.link_down(now), now)

    # ------------------------------------------------------------------ spool → sender
    def _metered(self) -> tuple[str, int]:
        st = self.watcher.current
        if st is None:
            return "all", 0
        small = int((st.doc.get("budget") or {}).get("small_recording_bytes", 0) or 0)
        return st.allowed, small

    def _poll_spool(self, now: float) -> None:
        policy, small = self._metered()
        waiting = self.spool.waiting(limit=self.fcfg.max_enqueued,
                                     max_priority=0 if policy == "telemetry_only" else 1)
        self._more_waiting = len(waiting) >= self.fcfg.max_enqueued
        allowed = {r.recording_id for r in waiting
                   if may_send(policy, r.priority, r.sealed_size, small)}
        for rid in list(self._enqueued - allowed):
            rec_now = self.spool.get(rid)
            if rec_now is not None and rec_now.state in (State.STORED, State.SENDING) and \
                    not may_send(policy, rec_now.priority, rec_now.sealed_size, small):
                # bulk waits for the wired line; it resumes where it stopped
                self.sender.forget(rid)
                self._enqueued.discard(rid)
                self._close(rid)
                self.spool.release(rid)
        for rec in waiting:
            if rec.recording_id in self._enqueued or rec.manifest is None or \
                    rec.recording_id not in allowed:
                continue
            r = Recording(recording_id=rec.recording_id, seq=rec.seq, priority=rec.priority,
                          sealed_size=rec.sealed_size,
                          sealed_sha256=bytes.fromhex(rec.sealed_sha256),
                          manifest=rec.manifest)
            self._enqueued.add(rec.recording_id)
            if rec.state is State.STORED:
                self.spool.claim(rec.recording_id)
            self._apply(self.sender.enqueue(r, now), now)

    # ------------------------------------------------------------------ outputs
    def _apply(self, outputs: list[SenderOutput], now: float) -> None:
        pending = list(outputs)
        while pending:
            out = pending.pop(0)
            if isinstance(out, PublishChunk):
                data = self._read(out.recording_id, out.offset, out.length)
                if data is None:
                    continue
                self.link.publish(out.topic, out.frame(data), qos=out.qos)
                self.stats.chunks_sent += 1
                self.stats.bytes_sent += len(data)
            elif isinstance(out, Publish):
                self.link.publish(out.topic, out.payload, qos=out.qos)
            elif isinstance(out, Receipted):
                self._receipted(out, now)
            elif isinstance(out, VerifyLocal):
                pending.extend(self.sender.local_verified(out.recording_id,
                                                          self._verify_local(out), now))
            elif isinstance(out, GaveUp):
                self._gave_up(out)
            elif isinstance(out, Alert):
                self.stats.alerts[out.key] += 1
                log.warning("custody alert %s: %s", out.key, out.detail)

    def _file(self, recording_id: str) -> BinaryIO:
        f = self._files.get(recording_id)
        if f is None:
            rec = self.spool.require(recording_id)
            f = self.spool.file_path(rec).open("rb")
            self._files[recording_id] = f
            while len(self._files) > OPEN_FILES:
                _, old = self._files.popitem(last=False)
                old.close()
        else:
            self._files.move_to_end(recording_id)
        return f

    def _close(self, recording_id: str) -> None:
        f = self._files.pop(recording_id, None)
        if f is not None:
            f.close()

    def _read(self, recording_id: str, offset: int, length: int) -> bytes | None:
        try:
            return os.pread(self._file(recording_id).fileno(), length, offset)
        except (OSError, EdgeError) as e:
            log.error("cannot read sealed file of %s: %s", recording_id, e)
            self.sender.forget(recording_id)
            self._enqueued.discard(recording_id)
            self._close(recording_id)
            self.stats.alerts["spool.unreadable"] += 1
            return None

    def _receipted(self, out: Receipted, now: float) -> None:
        rid = out.recording_id
        self._close(rid)
        try:
            # The receipt is durable in the spool row before the file goes: only then delete.
            self.spool.mark_receipted(out.receipt)
            self.spool.purge(rid)
        except EdgeError as e:
            self.stats.alerts[e.key] += 1
            log.error("receipt for %s not applied: %s", rid, e.message)
            return
        self._enqueued.discard(rid)
        self.stats.receipted += 1
        self.stats.last_receipt_mono = now
        if not self._enqueued or (self._more_waiting
                                  and len(self._enqueued) <= self.fcfg.max_enqueued // 2):
            # Refill now rather than at the next poll: a run of small recordings empties
            # the queue in well under poll_s and the link would sit idle until then.
            self._next_poll = now
        log.info("custody receipt for %s; local copy removed", rid)

    def _verify_local(self, out: VerifyLocal) -> bool:
        h = hashlib.sha256()
        n = 0
        try:
            f = self._file(out.recording_id)
            f.seek(0)
            while chunk := f.read(1024 * 1024):
                h.update(chunk)
                n += len(chunk)
        except (OSError, EdgeError):
            return False
        return n == out.sealed_size and h.digest() == out.sealed_sha256

    def _gave_up(self, out: GaveUp) -> None:
        self.stats.alerts[out.key] += 1
        log.error("stopped forwarding %s: %s (%s)", out.recording_id, out.detail, out.key)
        if out.retry_at is None:
            self._close(out.recording_id)
            self._enqueued.discard(out.recording_id)
            try:
                self.spool.quarantine(out.recording_id, f"{out.key}: {out.detail}")
            except EdgeError as e:
                log.error("could not quarantine %s: %s", out.recording_id, e.message)

    # ------------------------------------------------------------------ telemetry
    def _uplink_in_use(self) -> str:
        st = self.watcher.current
        if st is not None and st.age_s() < 120:
            return st.active if st.active in ("wired", "4g") else "none"
        # no uplink daemon on this box: we are on its one (wired) link, or offline
        return "wired" if self.connected else "none"

    def _mobile_budget(self) -> tuple[int | None, int | None]:
        st = self.watcher.current
        budget = (st.doc.get("budget") or {}) if st is not None else {}
        used, cap = budget.get("used_bytes"), budget.get("hard_cap_bytes")
        return (int(used) if isinstance(used, int) else None,
                int(cap) if isinstance(cap, int) else None)

    def _publish_telemetry(self, now: float) -> None:
        try:
            s = self.spool.summary()
            last = (None if self.stats.last_receipt_mono is None
                    else int(now - self.stats.last_receipt_mono))
            self._telemetry_seq += 1
            payload = build_telemetry(
                state_dir=self.cfg.device.state_dir, backlog_items=s.waiting_count,
                backlog_bytes=s.waiting_bytes,
                backlog_oldest_age_s=(None if s.oldest_waiting_age_s is None
                                      else int(s.oldest_waiting_age_s)),
                uplink=self._uplink_in_use(), last_receipt_age_s=last,
                mobile_used_bytes=self._mobile_budget()[0],
                mobile_budget_bytes=self._mobile_budget()[1],
                errors=tuple(sorted(k for k in self.stats.alerts if "." in k))[:8],
                seq=self._telemetry_seq, programs=self._programs)
        except Exception:
            log.exception("telemetry not built")
            return
        self.link.publish(telemetry_topic(self.device_id), payload, qos=0)
