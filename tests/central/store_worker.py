"""A process that uses the custody store, for tests that kill it or race two of them.

    python -m tests.central.store_worker hammer ROOT PREFIX COUNT SIZE SEED
        offer, store chunks in random order and commit COUNT recordings, printing progress
    python -m tests.central.store_worker commit ROOT PREFIX COUNT TAG
        commit every complete recording PREFIX-i with receipt TAG-i; print what the store
        answered, one line per recording
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

from edge.central.store import CentralStore
from edge.custody.receiver import OfferRecord

DEVICE = "kec-worker-01"


def data_for(prefix: str, i: int, size: int, seed: int) -> bytes:
    return random.Random(f"{prefix}/{i}/{seed}").randbytes(size)


def offer_for(data: bytes) -> OfferRecord:
    return OfferRecord(0, 1, len(data), hashlib.sha256(data).digest(), b'{"m":1}')


def hammer(root: Path, prefix: str, count: int, size: int, seed: int) -> None:
    rng = random.Random(seed)
    with CentralStore(root) as store:
        for i in range(count):
            rid = f"{prefix}-{i}"
            data = data_for(prefix, i, size, seed)
            store.save_offer(DEVICE, rid, offer_for(data))
            while True:
                view = store.load(DEVICE, rid)
                if view.held.complete(size):
                    break
                start, end = rng.choice(list(view.held.gaps(size)))
                off = rng.randrange(start, end)
                n = rng.randint(1, 8192)
                off = max(0, min(off, size - n))
                store.put_chunk(DEVICE, rid, 0, off, data[off:off + n])
                print(f"put {rid} {off} {n}", flush=True)
            store.commit(DEVICE, rid, 0, f"receipt-{rid}".encode())
            print(f"committed {rid}", flush=True)


def commit(root: Path, prefix: str, count: int, tag: str) -> None:
    with CentralStore(root) as store:
        for i in range(count):
            view = store.commit(DEVICE, f"{prefix}-{i}", 0, f"{tag}-{i}".encode())
            print(f"{prefix}-{i} {(view.receipt or b'').decode()}", flush=True)


if __name__ == "__main__":
    mode, root, prefix, count = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if mode == "hammer":
        hammer(root, prefix, count, int(sys.argv[5]), int(sys.argv[6]))
    else:
        commit(root, prefix, count, sys.argv[5])
