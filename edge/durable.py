"""Durable file steps, spelled out one per line (as Litestream does, plus the directory fsync).

Everything that must survive a power cut on the SD card goes through these helpers:
write to a temp file next to the target, fsync it, rename it into place, fsync the directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_PREFIX", "atomic_write_bytes", "fsync_dir", "publish_temp", "temp_file_for"]

TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def temp_file_for(target: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """Open a fresh temp file in ``target``'s directory; remove it if the block fails."""
    directory = target.parent
    name = f"{TEMP_PREFIX}{target.name}.{os.getpid()}.{os.urandom(4).hex()}"
    tmp = directory / name
    # O_EXCL: never share a temp file with another writer.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    f = os.fdopen(fd, "wb")
    try:
        yield tmp, f
    except BaseException:
        f.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        if not f.closed:
            f.close()


def publish_temp(tmp: Path, f: BinaryIO, target: Path) -> None:
    """Make the temp file's bytes durable, then make it appear at ``target``."""
    f.flush()
    # 1. the file's data and size reach the card
    os.fsync(f.fileno())
    f.close()
    # 2. the name switches atomically (a reader sees the old state or the whole new file)
    os.replace(tmp, target)
    # 3. the directory entry reaches the card
    fsync_dir(target.parent)


def atomic_write_bytes(target: Path, data: bytes, mode: int = 0o600) -> None:
    """Small files only (keys, certificates, config): whole-content durable replace."""
    with temp_file_for(target) as (tmp, f):
        os.fchmod(f.fileno(), mode)
        f.write(data)
        publish_temp(tmp, f, target)
