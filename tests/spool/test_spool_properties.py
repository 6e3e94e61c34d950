"""Hypothesis drives the real spool (real SQLite file, real files) through arbitrary
sequences of intake, claims, receipts (valid and forged), purges and crashes, and checks it
against a model: nothing accepted is ever lost, and nothing leaves without a receipt."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge.errors import IntegrityError, SpoolConflict, StateError
from edge.intake.ingest import Outcome
from edge.spool import Spool, State

from .helpers import make_ingestor, make_spool, put, receipt_for

IDS = st.sampled_from([f"r{i}" for i in range(8)])
BODIES = st.sampled_from([b"", b"a", b"b" * 5000, b"c" * 9000])


class SpoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-prop-"))
        self.spool: Spool = make_spool(self.dir)
        self.ing = make_ingestor(self.spool)
        self.model: dict[str, tuple[bytes, State]] = {}
        self.last_seq = 0

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(rid=IDS, body=BODIES)
    def upload(self, rid: str, body: bytes) -> None:
        known = self.model.get(rid)
        try:
            outcome, receipt = put(self.ing, rid, body)
        except SpoolConflict:
            assert known is not None and known[0] != body
            return
        if known is None:
            assert outcome is Outcome.CREATED
            assert receipt.sequence > self.last_seq
            self.last_seq = receipt.sequence
            self.model[rid] = (body, State.STORED)
        else:
            assert outcome is Outcome.DUPLICATE and known[0] == body

    @rule(rid=IDS)
    def claim(self, rid: str) -> None:
        known = self.model.get(rid)
        try:
            self.spool.claim(rid)
        except (StateError, KeyError):
            assert known is None or known[1] not in (State.STORED, State.SENDING)
            return
        assert known is not None
        self.model[rid] = (known[0], State.SENDING)

    @rule(rid=IDS)
    def release(self, rid: str) -> None:
        known = self.model.get(rid)
        try:
            self.spool.release(rid)
        except (StateError, KeyError):
            assert known is None or known[1] not in (State.STORED, State.SENDING)
            return
        assert known is not None
        self.model[rid] = (known[0], State.STORED)

    @rule(rid=IDS, forged=st.booleans())
    def receipt(self, rid: str, forged: bool) -> None:
        known = self.model.get(rid)
        rec = self.spool.get(rid)
        if rec is None:
            assert known is None
            return
        digest = "f" * 64 if forged else rec.sealed_sha256
        try:
            self.spool.mark_receipted(receipt_for(self.spool, rid, sealed_sha256=digest))
        except IntegrityError:
            assert forged
            return
        except StateError:
            assert rec.state is State.PURGED
            return
        assert not forged and known is not None
        if known[1] is not State.PURGED:
            self.model[rid] = (known[0], State.RECEIPTED)

    @rule(rid=IDS)
    def purge(self, rid: str) -> None:
        known = self.model.get(rid)
        try:
            self.spool.purge(rid)
        except (StateError, KeyError):
            assert known is None or known[1] in (State.STORED, State.SENDING)
            return
        assert known is not None and known[1] in (State.RECEIPTED, State.PURGED)
        self.model[rid] = (known[0], State.PURGED)

    @rule()
    def crash_and_restart(self) -> None:
        # Drop the connection without any shutdown step, then do what the programs do at start.
        self.spool.close()
        self.spool = make_spool(self.dir)
        self.ing = make_ingestor(self.spool)
        self.spool.acquire_role("intake")
        report = self.spool.recover_intake()
        assert report.clean
        self.spool.recover_forwarder()
        for rid, (body, state) in self.model.items():
            if state is State.SENDING:
                self.model[rid] = (body, State.STORED)

    @precondition(lambda self: bool(self.model))
    @invariant()
    def matches_model_and_files(self) -> None:
        files = {p.name for p in (self.dir / "data").iterdir()}
        for rid, (_body, state) in self.model.items():
            rec = self.spool.require(rid)
            assert rec.state is state, (rid, rec.state, state)
            if state is State.PURGED:
                assert rec.file is None and rec.receipt
            else:
                assert rec.file in files  # every accepted, unpurged recording is on disk
        assert len(files) == sum(s is not State.PURGED for _, s in self.model.values())


SpoolMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30,
                                          deadline=None)
TestSpoolLifecycle = SpoolMachine.TestCase
