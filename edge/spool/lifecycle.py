"""The spool row lifecycle as a pure state machine.

Theory of operation
-------------------
A recording's row moves forward through::

    stored ──claim──▶ sending ──receipt──▶ receipted ──purge──▶ purged
      ▲                  │
      └─────release──────┘      (forwarder stopped, link dropped, restart recovery)

``stored`` and ``sending`` both mean "waiting": the sealed file is on disk and must be
delivered. ``receipt`` may also arrive straight from ``stored`` (the central site already had
the recording, e.g. after a forwarder restart), and is idempotent in ``receipted``. Only a
``receipted`` row may be purged: the file is deleted after, never before, a verified custody
receipt. ``lost`` marks a waiting row whose file vanished (card fault, human error); it is
reported, never silently dropped, and it is terminal.

This module holds only the table; ``edge.spool.store`` turns each transition into one
conditional UPDATE (``WHERE state IN (<allowed sources>)``), so the database enforces the
same table across every process sharing the spool.
"""

from __future__ import annotations

from enum import StrEnum

from edge.errors import StateError

__all__ = ["TRANSITIONS", "WAITING", "Event", "State", "next_state", "sources_for"]


class State(StrEnum):
    STORED = "stored"
    SENDING = "sending"
    RECEIPTED = "receipted"
    PURGED = "purged"
    LOST = "lost"


class Event(StrEnum):
    CLAIM = "claim"
    RELEASE = "release"
    RECEIPT = "receipt"
    PURGE = "purge"
    FILE_LOST = "file_lost"


WAITING = (State.STORED, State.SENDING)

TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.STORED, Event.CLAIM): State.SENDING,
    (State.SENDING, Event.CLAIM): State.SENDING,
    (State.SENDING, Event.RELEASE): State.STORED,
    (State.STORED, Event.RELEASE): State.STORED,
    (State.STORED, Event.RECEIPT): State.RECEIPTED,
    (State.SENDING, Event.RECEIPT): State.RECEIPTED,
    (State.RECEIPTED, Event.RECEIPT): State.RECEIPTED,
    (State.RECEIPTED, Event.PURGE): State.PURGED,
    (State.STORED, Event.FILE_LOST): State.LOST,
    (State.SENDING, Event.FILE_LOST): State.LOST,
}


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise StateError(f"a recording in state {state.value!r} cannot take {event.value!r}") \
            from None


def sources_for(event: Event) -> tuple[State, ...]:
    return tuple(s for (s, e) in TRANSITIONS if e is event)
