"""Byte-range sets: what the central store holds of one sealed file.

Both ends of the custody protocol talk about progress as byte ranges, not chunk numbers, so a
resume works even if the chunk size changed between two runs of the forwarder. The receiver's
store reports the ranges it holds durably; the sender subtracts them (and what it has in
flight) from ``[0, size)`` to find what to send next.

A ``RangeSet`` is immutable: a sorted tuple of disjoint, non-touching half-open intervals.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["RangeSet"]


def _normalise(pairs: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    items = sorted((s, e) for s, e in pairs if e > s)
    out: list[tuple[int, int]] = []
    for s, e in items:
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return tuple(out)


@dataclass(frozen=True)
class RangeSet:
    """Half-open byte intervals; equal sets compare equal whatever order they were built in."""

    spans: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        for s, e in self.spans:
            if s < 0 or e <= s:
                raise ValueError(f"bad range [{s}, {e})")
        if _normalise(self.spans) != self.spans:
            raise ValueError("ranges must be sorted, disjoint and not touching")

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, int]]) -> RangeSet:
        items = list(pairs)
        for s, e in items:
            if s < 0 or e < s:
                raise ValueError(f"bad range [{s}, {e})")
        return cls(_normalise(items))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.spans)

    def __len__(self) -> int:
        return len(self.spans)

    def __bool__(self) -> bool:
        return bool(self.spans)

    @property
    def total(self) -> int:
        """Bytes covered."""
        return sum(e - s for s, e in self.spans)

    def add(self, start: int, end: int) -> RangeSet:
        if end <= start:
            return self
        return RangeSet(_normalise((*self.spans, (start, end))))

    def union(self, other: RangeSet) -> RangeSet:
        if not other.spans:
            return self
        return RangeSet(_normalise((*self.spans, *other.spans)))

    def covers(self, start: int, end: int) -> bool:
        """True if every byte of ``[start, end)`` is in the set."""
        if end <= start:
            return True
        for s, e in self.spans:
            if s <= start and end <= e:
                return True
            if s > start:
                return False
        return False

    def gaps(self, size: int) -> RangeSet:
        """The part of ``[0, size)`` not in the set."""
        out: list[tuple[int, int]] = []
        pos = 0
        for s, e in self.spans:
            if s >= size:
                break
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
        if pos < size:
            out.append((pos, size))
        return RangeSet(tuple(out))

    def complete(self, size: int) -> bool:
        return self.covers(0, size) if size > 0 else True

    def truncated(self, max_spans: int) -> RangeSet:
        """The first ``max_spans`` spans: an honest under-report that fits in one message."""
        return self if len(self.spans) <= max_spans else RangeSet(self.spans[:max_spans])
