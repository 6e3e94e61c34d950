"""Filter, search and sort of the office list: one definition for the dashboard and the API.

Place in the data flow: web request parameters → ``parse_query`` → ``select`` over the
service's derived statuses. Bad parameters raise ``QueryError`` (HTTP 400) naming the
parameter and the accepted values, rather than being silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from edge.central.fleet.derive import STATES, OfficeStatus
from edge.central.fleet.directory import Directory
from edge.errors import EdgeError

__all__ = ["SORT_KEYS", "Query", "QueryError", "Selection", "parse_query", "select", "summary"]

_STATE_ORDER = {"offline": 0, "stale": 1, "unknown": 2, "online": 3}


class QueryError(EdgeError, ValueError):
    key = "fleet.bad_query"


def _num(v: float | int | None) -> float:
    """None sorts as smallest so "largest first" puts real values on top."""
    return float("-inf") if v is None else float(v)


SORT_KEYS: dict[str, Callable[[OfficeStatus], Any]] = {
    "severity": lambda s: (s.severity, -_STATE_ORDER[s.state], _num(s.backlog_age_s)),
    "office": lambda s: s.device_id,
    "state": lambda s: _STATE_ORDER[s.state],
    "since": lambda s: _num(s.since),
    "uplink": lambda s: s.uplink or "",
    "backlog_items": lambda s: _num(s.backlog_items),
    "backlog_age": lambda s: _num(s.backlog_age_s),
    "disk_free": lambda s: _num(s.disk_free_bytes),
    "mobile": lambda s: _num(s.mobile_fraction),
    "last_seen": lambda s: _num(s.last_seen),
}
# Natural first direction of each column (most urgent first).
DEFAULT_DESC = {"severity", "backlog_items", "backlog_age", "mobile", "last_seen"}

STATE_FILTERS = (*STATES, "problems", "all")


@dataclass(frozen=True)
class Query:
    state: str = "all"               # one of STATE_FILTERS
    on_4g: bool = False
    backlog_min_s: int | None = None
    disk_low: bool = False
    budget: bool = False             # 4G budget at or over the warn fraction
    q: str = ""                      # substring of device id, office name or region
    sort: str = "severity"
    desc: bool = True
    offset: int = 0
    limit: int = 100

    def params(self, **changes: Any) -> dict[str, str]:
        """Query string parameters for a link that changes some of this query."""
        q = replace(self, **changes)
        out: dict[str, str] = {}
        if q.state != "all":
            out["state"] = q.state
        if q.on_4g:
            out["on4g"] = "1"
        if q.backlog_min_s is not None:
            out["backlog"] = str(q.backlog_min_s)
        if q.disk_low:
            out["disk"] = "low"
        if q.budget:
            out["budget"] = "warn"
        if q.q:
            out["q"] = q.q
        if q.sort != "severity" or not q.desc:
            out["sort"] = q.sort
            out["dir"] = "desc" if q.desc else "asc"
        if q.offset:
            out["offset"] = str(q.offset)
        if q.limit != 100:
            out["limit"] = str(q.limit)
        return out


def _int(params: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    v = params.get(name)
    if v is None or v == "":
        return None
    try:
        n = int(v)
    except ValueError:
        raise QueryError(f"parameter {name}={v!r} must be a whole number") from None
    if not lo <= n <= hi:
        raise QueryError(f"parameter {name}={v!r} must be between {lo} and {hi}")
    return n


def _flag(params: Mapping[str, str], name: str, on: str) -> bool:
    v = params.get(name, "")
    if v in ("", "0"):
        return False
    if v in ("1", on, "true"):
        return True
    raise QueryError(f"parameter {name}={v!r} must be {on!r} or absent")


def parse_query(params: Mapping[str, str], max_limit: int = 10_000) -> Query:
    state = params.get("state") or "all"
    if state not in STATE_FILTERS:
        raise QueryError(f"parameter state={state!r} must be one of {', '.join(STATE_FILTERS)}")
    sort = params.get("sort") or "severity"
    if sort not in SORT_KEYS:
        raise QueryError(f"parameter sort={sort!r} must be one of {', '.join(SORT_KEYS)}")
    d = params.get("dir") or ("desc" if sort in DEFAULT_DESC else "asc")
    if d not in ("asc", "desc"):
        raise QueryError(f"parameter dir={d!r} must be asc or desc")
    q = (params.get("q") or "").strip()
    if len(q) > 100:
        raise QueryError("parameter q is longer than 100 characters")
    limit = _int(params, "limit", 1, max_limit)
    return Query(
        state=state, on_4g=_flag(params, "on4g", "1"),
        backlog_min_s=_int(params, "backlog", 0, 10**9),
        disk_low=_flag(params, "disk", "low"), budget=_flag(params, "budget", "warn"),
        q=q, sort=sort, desc=d == "desc",
        offset=_int(params, "offset", 0, 10**7) or 0,
        limit=100 if limit is None else limit,
    )


@dataclass(frozen=True)
class Selection:
    total: int                      # offices matching the filters
    rows: list[OfficeStatus]        # the requested page of them


def _matches(s: OfficeStatus, q: Query, directory: Directory) -> bool:
    if q.state == "problems":
        if s.severity == 0:
            return False
    elif q.state != "all" and s.state != q.state:
        return False
    if q.on_4g and not s.on_4g:
        return False
    if q.backlog_min_s is not None and (s.backlog_age_s or 0) < q.backlog_min_s:
        return False
    if q.disk_low and not s.disk_low:
        return False
    if q.budget and not s.mobile_warn:
        return False
    if q.q:
        needle = q.q.casefold()
        o = directory.get(s.device_id)
        if not any(needle in x.casefold() for x in (s.device_id, o.office, o.region)):
            return False
    return True


def select(statuses: Sequence[OfficeStatus], q: Query, directory: Directory) -> Selection:
    rows = [s for s in statuses if _matches(s, q, directory)]
    key = SORT_KEYS[q.sort]
    # Stable two-pass sort: device id as the tie-breaker, always ascending.
    rows.sort(key=lambda s: s.device_id)
    rows.sort(key=key, reverse=q.desc)
    return Selection(total=len(rows), rows=rows[q.offset:q.offset + q.limit])


def summary(statuses: Sequence[OfficeStatus], backlog_warn_s: int) -> dict[str, int]:
    """Counts for the summary bar and ``/api/v1/summary``."""
    out = {"offices": len(statuses), "problems": 0, "on_4g": 0, "backlog_late": 0,
           "disk_low": 0, "budget_warn": 0}
    for st in STATES:
        out[st] = 0
    for s in statuses:
        out[s.state] += 1
        out["problems"] += s.severity > 0
        out["on_4g"] += s.on_4g
        out["backlog_late"] += (s.backlog_age_s or 0) >= backlog_warn_s
        out["disk_low"] += s.disk_low
        out["budget_warn"] += s.mobile_warn
    return out
