"""Hot folder: for enrolment software that can only write files.

A file dropped in the folder is taken in once it is complete — either it was renamed into
place (writers should write ``name.part`` or ``.name`` and rename), or its size and mtime
have not changed for ``settle_s`` seconds. It then goes through the same ingest path as an
HTTP upload (sealed, durable, row committed) and only after that is it removed from the
folder. ``<name>.json`` next to it may carry metadata (operator, captured_at, content_type,
priority). A file that can never be accepted (bad name, conflicting content) moves to
``rejected/`` with a ``.reason.txt``; a full spool leaves it in place to retry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.durable import fsync_dir
from edge.errors import EdgeError, SpoolConflict, SpoolFull
from edge.intake.ingest import BadUpload, Ingestor, Outcome

__all__ = ["HotFolder"]

log = logging.getLogger("edge.intake.hotfolder")

IGNORED_SUFFIXES = (".part", ".tmp", ".json", ".reason.txt", ".crdownload")


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


@dataclass
class HotFolder:
    folder: Path
    ingestor: Ingestor
    workstation: str = "hot-folder"
    settle_s: float = 2.0
    poll_s: float = 1.0
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _last_scan: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "rejected").mkdir(exist_ok=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hot-folder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def last_scan_age_s(self) -> float:
        """For the watchdog: a hot folder that stopped scanning is a stuck program."""
        return time.monotonic() - self._last_scan

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan_once()
            except Exception:  # keep watching; a bad file must not stop intake
                log.exception("hot folder scan failed")
            self._last_scan = time.monotonic()
            self._stop.wait(self.poll_s)

    def scan_once(self, now: float | None = None) -> list[tuple[str, str]]:
        """One pass. Returns (file name, what happened) for files acted upon."""
        now = time.monotonic() if now is None else now
        done: list[tuple[str, str]] = []
        present: set[str] = set()
        for entry in os.scandir(self.folder):
            name = entry.name
            if name.startswith(".") or not entry.is_file(follow_symlinks=False) or \
                    name.endswith(IGNORED_SUFFIXES):
                continue
            present.add(name)
            st = entry.stat(follow_symlinks=False)
            prev = self._seen.get(name)
            if prev is None or (prev.size, prev.mtime_ns) != (st.st_size, st.st_mtime_ns):
                self._seen[name] = _Seen(st.st_size, st.st_mtime_ns, now)
                if self.settle_s > 0:
                    continue
                prev = self._seen[name]
            if now - prev.since < self.settle_s:
                continue
            done.append((name, self._take(name)))
        for name in list(self._seen):
            if name not in present:
                del self._seen[name]
        return done

    def _take(self, name: str) -> str:
        path = self.folder / name
        recording_id = name.rsplit(".", 1)[0] if "." in name[1:] else name
        sidecar = self.folder / f"{name}.json"
        metadata = {"workstation": self.workstation, "operator": "", "captured_at": "",
                    "content_type": "application/octet-stream"}
        priority = 1
        if sidecar.exists():
            try:
                meta = json.loads(sidecar.read_text())
                for k in ("operator", "captured_at", "content_type"):
                    if isinstance(meta.get(k), str):
                        metadata[k] = meta[k]
                priority = 0 if meta.get("priority") == "urgent" else 1
            except (OSError, ValueError) as e:
                return self._reject(name, f"metadata file {sidecar.name} is not valid JSON: {e}")
        try:
            outcome, receipt = self.ingestor.ingest_file(path, recording_id, metadata, priority)
        except SpoolFull as e:
            log.warning("hot folder: %s waits: %s", name, e.message)
            return "waiting: spool full"
        except (BadUpload, SpoolConflict) as e:
            return self._reject(name, e.message)
        except FileNotFoundError:
            return "vanished"
        except EdgeError as e:
            log.error("hot folder: %s not taken: %s", name, e.message)
            return f"error: {e.key}"
        # Durable in the spool: now, and only now, the file may leave the folder.
        path.unlink()
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()
        fsync_dir(self.folder)
        self._seen.pop(name, None)
        log.info("hot folder: %s taken as %s (seq %d, %s)", name, recording_id,
                 receipt.sequence, outcome.value)
        return "created" if outcome is Outcome.CREATED else "duplicate"

    def _reject(self, name: str, reason: str) -> str:
        rejected = self.folder / "rejected"
        shutil.move(str(self.folder / name), str(rejected / name))
        sidecar = self.folder / f"{name}.json"
        if sidecar.exists():
            shutil.move(str(sidecar), str(rejected / sidecar.name))
        (rejected / f"{name}.reason.txt").write_text(reason + "\n")
        fsync_dir(rejected)
        fsync_dir(self.folder)
        self._seen.pop(name, None)
        log.warning("hot folder: %s rejected: %s", name, reason)
        return f"rejected: {reason}"
