"""What does the central custody store cost per chunk, next to the bare durable write?

Baseline (same run, same disk): ``pwrite`` + ``fsync`` of each chunk into one file — the least
any store must do before it may acknowledge a chunk. Compared: ``CentralStore.put_chunk``
(the same write and fsync, plus one SQLite transaction in WAL with synchronous=FULL under
``BEGIN IMMEDIATE``), in one process and in several processes sharing the store (each its
own recording, as receivers behind a shared subscription would).

    .venv/bin/python bench/central_store.py [--chunks 400] [--chunk-kib 128] [--procs 2]
        [--dir PATH] [--out bench/results/central-store.md]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

from edge.central.store import CentralStore
from edge.custody.receiver import OfferRecord

DEVICE = "kec-bench-01"


def baseline(path: Path, chunks: int, size: int) -> float:
    data = os.urandom(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    start = time.perf_counter()
    try:
        for i in range(chunks):
            os.pwrite(fd, data, i * size)
            os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def store_run(root: Path, rid: str, chunks: int, size: int) -> float:
    data = os.urandom(size)
    with CentralStore(root) as store:
        total = chunks * size
        store.save_offer(DEVICE, rid, OfferRecord(0, 1, total, hashlib.sha256(b"").digest(),
                                                  b"{}"))
        start = time.perf_counter()
        for i in range(chunks):
            store.put_chunk(DEVICE, rid, 0, i * size, data)
        return time.perf_counter() - start


def _proc(kind: str, root: str, n: int, chunks: int, size: int, barrier: object,
          out: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    if kind == "baseline":
        secs = baseline(Path(root) / f"raw-{n}", chunks, size)
    else:
        secs = store_run(Path(root), f"rec-{n}", chunks, size)
    out.put(secs)  # type: ignore[attr-defined]


def parallel(kind: str, root: Path, procs: int, chunks: int, size: int) -> float:
    """Aggregate chunks per second of ``procs`` processes started together."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(procs)
    out: mp.Queue[float] = ctx.Queue()
    ps = [ctx.Process(target=_proc, args=(kind, str(root), n, chunks, size, barrier, out))
          for n in range(procs)]
    for p in ps:
        p.start()
    times = [out.get() for _ in ps]
    for p in ps:
        p.join()
    return procs * chunks / max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=400)
    ap.add_argument("--chunk-kib", type=int, default=128)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="a directory on the disk to test")
    ap.add_argument("--out", type=Path, default=None, help="also write a Markdown report")
    args = ap.parse_args()
    size = args.chunk_kib * 1024
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        CentralStore(root / "store").close()
        rows.append(("pwrite+fsync, 1 process (baseline)",
                     args.chunks / baseline(root / "raw", args.chunks, size)))
        rows.append(("put_chunk, 1 process",
                     args.chunks / store_run(root / "store", "single", args.chunks, size)))
        rows.append((f"pwrite+fsync, {args.procs} processes",
                     parallel("baseline", root, args.procs, args.chunks, size)))
        rows.append((f"put_chunk, {args.procs} processes sharing the store",
                     parallel("store", root / "store", args.procs, args.chunks, size)))
    base = rows[0][1]
    lines = [
        "# Central custody store: cost per chunk",
        "",
        f"Command: `python bench/central_store.py --chunks {args.chunks} --chunk-kib "
        f"{args.chunk_kib} --procs {args.procs}`",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {args.chunk_kib} KiB chunks, each durable (fsync) "
        "before it counts.",
        "",
        "| what | chunks/s | MiB/s | vs baseline |",
        "| --- | --- | --- | --- |",
    ]
    for name, rate in rows:
        lines.append(f"| {name} | {rate:.0f} | {rate * size / 2**20:.1f} | "
                     f"{rate / base:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
