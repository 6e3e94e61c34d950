"""RangeSet against a plain set-of-offsets model."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.custody.ranges import RangeSet

spans = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20)).map(
    lambda t: (t[0], t[0] + t[1])), max_size=8)


def model(pairs: list[tuple[int, int]]) -> set[int]:
    return {i for s, e in pairs for i in range(s, e)}


def as_set(r: RangeSet) -> set[int]:
    return model(list(r))


@given(spans, spans, st.integers(0, 90))
def test_rangeset_matches_set_model(a: list[tuple[int, int]], b: list[tuple[int, int]],
                                    size: int) -> None:
    ra, rb = RangeSet.of(a), RangeSet.of(b)
    assert as_set(ra) == model(a)
    assert ra.total == len(model(a))
    assert as_set(ra.union(rb)) == model(a) | model(b)
    assert as_set(ra.gaps(size)) == set(range(size)) - model(a)
    assert ra.complete(size) == (set(range(size)) <= model(a))
    for s, e in b:
        assert ra.covers(s, e) == (set(range(s, e)) <= model(a))
        assert as_set(ra.add(s, e)) == model(a) | set(range(s, e))
    # Canonical: the same bytes give the same value whatever the order of building.
    assert RangeSet.of(reversed(a)) == ra
    # spans are sorted, disjoint and never touch
    flat = [x for pair in ra for x in pair]
    assert all(x < y for x, y in itertools.pairwise(flat))


def test_truncated_is_a_prefix_and_an_under_report() -> None:
    r = RangeSet.of([(0, 2), (4, 6), (8, 10)])
    t = r.truncated(2)
    assert list(t) == [(0, 2), (4, 6)]
    assert as_set(t) <= as_set(r)
    assert r.truncated(5) is r


@pytest.mark.parametrize("bad", [((3, 3),), ((-1, 2),), ((4, 6), (0, 2)), ((0, 2), (2, 4)),
                                 ((0, 3), (2, 5))])
def test_non_canonical_spans_are_refused(bad: tuple[tuple[int, int], ...]) -> None:
    with pytest.raises(ValueError):
        RangeSet(bad)
