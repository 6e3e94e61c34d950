"""The fleet view's web app: dashboard, per-office pages, JSON API, Prometheus metrics.

Place in the data flow: reads the service's in-memory derived statuses (and the store's
history for charts); writes nothing. Server-rendered HTML that works without JavaScript
(filters are a GET form, sorting is links); ``fleet.js`` only auto-submits the form and
refreshes the page. Every state is a word and a symbol, never only a colour. No external
resources: the machine that shows it may be offline. The JSON API is documented in
``docs/fleet-api.md``.
"""

from __future__ import annotations

import datetime as dt
import time
from html import escape
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from edge import __version__
from edge.central.fleet.charts import line_chart, link_chart
from edge.central.fleet.derive import OfficeStatus, human_age
from edge.central.fleet.ingest import DEVICE_ID_RE
from edge.central.fleet.metrics import CONTENT_TYPE, render_metrics
from edge.central.fleet.query import Query, QueryError, parse_query, select, summary
from edge.central.fleet.service import FleetService
from edge.errors import EdgeError

__all__ = ["RANGES", "create_app", "office_json"]

RANGES = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
# Symbols from fonts every desktop has (DejaVu): no emoji, which offline machines lack.
STATE_SYMBOL = {"online": "✔", "offline": "✖", "stale": "◷", "unknown": "?"}
UPLINK_WORDS = {"4g": "<strong>4G</strong>", "wired": "wired", "none": "✖ none"}
SEVERITY_WORD = {2: ("▲", "act now"), 1: ("◆", "watch"), 0: ("·", "fine")}


def _asset(name: str) -> bytes:
    return resources.files("edge.central.fleet").joinpath("static", name).read_bytes()


def size(n: int | None) -> str:
    if n is None:
        return "–"
    v = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if v < 1000 or unit == "TB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1000
    return f"{n} B"


def clock(t: float | None) -> str:
    if t is None:
        return "–"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


# --- JSON ----------------------------------------------------------------------------------------

def office_json(s: OfficeStatus, service: FleetService) -> dict[str, Any]:
    t = s.telemetry
    o = service.directory.get(s.device_id)
    out: dict[str, Any] = {
        "device_id": s.device_id, "office": o.office, "region": o.region,
        "state": s.state, "since": _iso(s.since), "last_seen": _iso(s.last_seen),
        "severity": s.severity, "conditions": list(s.conditions),
        "uplink": s.uplink, "on_4g": s.on_4g,
        "backlog": {"items": s.backlog_items, "bytes": s.backlog_bytes,
                    "oldest_age_s": s.backlog_age_s, "late": s.backlog_late},
        "disk": {"free_bytes": s.disk_free_bytes,
                 "total_bytes": t.disk_total_bytes if t else None, "low": s.disk_low},
        "mobile": {"used_bytes": t.mobile_used_bytes if t else None,
                   "budget_bytes": t.mobile_budget_bytes if t else None,
                   "fraction": s.mobile_fraction, "warn": s.mobile_warn,
                   "over": s.mobile_over},
        "status": {"state": s.record.status, "at": _iso(s.record.status_at),
                   "reason": s.record.status_reason},
        "telemetry_at": _iso(s.record.telemetry_at),
        "messages": {"telemetry": s.record.telemetry_count,
                     "rejected": s.record.rejected_count,
                     "last_rejected_at": _iso(s.record.last_reject_at),
                     "last_rejected": s.record.last_reject},
    }
    if t is not None:
        flags = t.throttle_flags
        out["device"] = {
            "schema": t.schema, "sent_at": _iso(t.sent_at), "uptime_s": t.uptime_s,
            "cpu_temp_c": t.cpu_temp_c, "throttled": t.throttled,
            "power": flags.words() if flags else None,
            "versions": dict(t.versions), "programs": dict(t.programs),
            "last_receipt_age_s": t.last_receipt_age_s, "errors": list(t.errors),
        }
    return out


def _bad(e: EdgeError, html: bool) -> Response:
    if html:
        return HTMLResponse(_page("Bad request", f"<p role='alert'>{escape(e.message)}</p>"),
                            status_code=400)
    return JSONResponse({"error": e.key, "message": e.message}, status_code=400)


# --- HTML ----------------------------------------------------------------------------------------

def _page(title: str, body: str, *, refresh: bool = False) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)} — fleet</title>"
        "<link rel='stylesheet' href='/static/fleet.css'>"
        f"<script src='/static/fleet.js' defer></script></head>"
        f"<body{' data-refresh=60' if refresh else ''}>{body}"
        f"<footer>edge-central {escape(__version__)} · times in UTC · "
        "<a href='/api/v1/offices'>JSON API</a> · <a href='/metrics'>metrics</a></footer>"
        "</body></html>"
    )


def _state_cell(s: OfficeStatus) -> str:
    return (f"<span class='state state-{s.state}'><span aria-hidden='true'>"
            f"{STATE_SYMBOL[s.state]}</span> {s.state}</span>")


def _sev_cell(sev: int) -> str:
    sym, word = SEVERITY_WORD[sev]
    return f"<span class='sev sev-{sev}'><span aria-hidden='true'>{sym}</span> {word}</span>"


COLUMNS = (("severity", "Attention"), ("office", "Office"), ("state", "Status"),
           ("since", "Since"), ("uplink", "Uplink"), ("backlog_items", "Backlog"),
           ("backlog_age", "Oldest"), ("disk_free", "Disk free"), ("mobile", "4G used"),
           ("last_seen", "Last seen"), (None, "Conditions"))


def _href(q: Query, **changes: Any) -> str:
    p = q.params(**changes)
    return "/?" + urlencode(p) if p else "/"


def _dashboard(service: FleetService, q: Query) -> str:
    statuses = service.statuses()
    now = service.clock()
    counts = summary(statuses, service.thresholds.backlog_warn_s)
    sel = select(statuses, q, service.directory)
    th = service.thresholds
    base = Query(sort=q.sort, desc=q.desc, limit=q.limit)
    chips = [
        ("problems", "▲ Need attention", counts["problems"], base.params(state="problems")),
        ("offline", "✖ Offline", counts["offline"], base.params(state="offline")),
        ("stale", "◷ Stale", counts["stale"], base.params(state="stale")),
        ("on_4g", "On 4G", counts["on_4g"], base.params(on_4g=True)),
        ("backlog", f"⌛ Backlog ≥ {human_age(th.backlog_warn_s)}", counts["backlog_late"],
         base.params(backlog_min_s=th.backlog_warn_s)),
        ("disk", "⚠ Disk low", counts["disk_low"], base.params(disk_low=True)),
        ("budget", f"4G budget ≥ {th.mobile_warn_fraction:.0%}", counts["budget_warn"],
         base.params(budget=True)),
        ("all", "All offices", counts["offices"], base.params()),
    ]
    chip_html = "".join(
        f"<li><a class='chip chip-{k}' href='/?{urlencode(p)}'>{escape(label)} "
        f"<strong data-count='{k}'>{n}</strong></a></li>" for k, label, n, p in chips)
    conn = service.stats.mqtt_connected
    head = (
        "<header><h1>e-KTP office appliances</h1>"
        f"<p class='meta'>Updated {escape(clock(now))} · {counts['offices']} offices · "
        f"broker: <span class='{'ok' if conn else 'bad'}'>"
        f"{'✔ connected' if conn else '✖ NOT connected — data is getting old'}</span></p>"
        f"</header><nav aria-label='Summary'><ul class='chips'>{chip_html}</ul></nav>"
    )

    def opt(value: str, label: str, current: str) -> str:
        sel_attr = " selected" if value == current else ""
        return f"<option value='{value}'{sel_attr}>{escape(label)}</option>"

    backlog_cur = "" if q.backlog_min_s is None else str(q.backlog_min_s)
    form = (
        "<form id='filters' method='get' action='/' role='search'>"
        "<label>Search <input type='search' name='q' id='q' placeholder='device id, office, "
        f"region' value='{escape(q.q, quote=True)}' autocomplete='off'></label>"
        "<label>Status <select name='state' id='state'>"
        + "".join(opt(v, lbl, q.state) for v, lbl in (
            ("all", "any"), ("problems", "needs attention"), ("offline", "offline"),
            ("stale", "stale"), ("online", "online"), ("unknown", "unknown")))
        + "</select></label>"
        "<label>Backlog older than <select name='backlog' id='backlog'>"
        + "".join(opt(v, lbl, backlog_cur) for v, lbl in (
            ("", "any"), ("900", "15 min"), ("3600", "1 h"), ("14400", "4 h"),
            ("86400", "1 day")))
        + "</select></label>"
        f"<label><input type='checkbox' name='on4g' value='1' id='on4g'"
        f"{' checked' if q.on_4g else ''}> on 4G</label>"
        f"<label><input type='checkbox' name='disk' value='low' id='disk'"
        f"{' checked' if q.disk_low else ''}> disk low</label>"
        f"<label><input type='checkbox' name='budget' value='warn' id='budget'"
        f"{' checked' if q.budget else ''}> 4G budget</label>"
        f"<input type='hidden' name='sort' value='{q.sort}'>"
        f"<input type='hidden' name='dir' value='{'desc' if q.desc else 'asc'}'>"
        "<button type='submit'>Apply</button> <a href='/'>Clear</a></form>"
    )

    ths = []
    for key, label in COLUMNS:
        if key is None:
            ths.append(f"<th scope='col'>{label}</th>")
            continue
        active = q.sort == key
        aria = f" aria-sort='{'descending' if q.desc else 'ascending'}'" if active else ""
        arrow = (" ▼" if q.desc else " ▲") if active else ""
        href = _href(q, sort=key, desc=not q.desc if active else key in (
            "severity", "backlog_items", "backlog_age", "mobile", "last_seen"), offset=0)
        ths.append(f"<th scope='col'{aria}><a href='{escape(href, quote=True)}' "
                   f"data-sort='{key}'>{label}{arrow}</a></th>")

    trs = []
    for s in sel.rows:
        o = service.directory.get(s.device_id)
        name = (f"<span class='office-name'>{escape(o.office)}</span>" if o.office else "")
        mob = "–" if s.mobile_fraction is None else f"{s.mobile_fraction:.0%}"
        uplink = UPLINK_WORDS.get(s.uplink or "", "–")
        trs.append(
            f"<tr class='sev-row-{s.severity} row-{s.state}' data-device='{s.device_id}'>"
            f"<td>{_sev_cell(s.severity)}</td>"
            f"<td><a href='/office/{s.device_id}'>{s.device_id}</a>{name}</td>"
            f"<td>{_state_cell(s)}</td>"
            f"<td>{escape(human_age(now - s.since) if s.since else '–')}</td>"
            f"<td>{uplink}</td>"
            f"<td class='num'>{'–' if s.backlog_items is None else s.backlog_items}</td>"
            f"<td class='num'>{escape(human_age(s.backlog_age_s))}</td>"
            f"<td class='num'>{size(s.disk_free_bytes)}{' ⚠' if s.disk_low else ''}</td>"
            f"<td class='num'>{mob}</td>"
            f"<td>{escape(human_age(now - s.last_seen) + ' ago' if s.last_seen else '–')}</td>"
            f"<td class='conditions'>{escape('; '.join(s.conditions)) or 'fine'}</td></tr>"
        )
    if not trs:
        trs.append(f"<tr><td colspan='{len(COLUMNS)}' class='empty'>No office matches these "
                   "filters.</td></tr>")
    shown_to = q.offset + len(sel.rows)
    pager = [f"<span id='shown'>Showing {q.offset + 1 if sel.rows else 0}–{shown_to} of "
             f"<strong id='total'>{sel.total}</strong></span>"]
    if q.offset > 0:
        prev = escape(_href(q, offset=max(0, q.offset - q.limit)), quote=True)
        pager.append(f"<a rel='prev' href='{prev}'>← previous</a>")
    if shown_to < sel.total:
        pager.append(f"<a rel='next' href='{escape(_href(q, offset=shown_to), quote=True)}'>"
                     "next →</a>")
    table = (
        "<main><table id='offices'><caption>Offices, most urgent first unless sorted "
        "otherwise</caption>"
        f"<thead><tr>{''.join(ths)}</tr></thead><tbody>{''.join(trs)}</tbody></table>"
        f"<nav class='pager' aria-label='Pages'>{' · '.join(pager)}</nav></main>"
    )
    return _page("Offices", head + form + table, refresh=True)


def _detail_rows(s: OfficeStatus, service: FleetService) -> str:
    t = s.telemetry
    now = service.clock()
    rows: list[tuple[str, str]] = [
        ("Status", f"{_state_cell(s)} since {escape(clock(s.since))}"),
        ("Attention", _sev_cell(s.severity)),
        ("Conditions", escape("; ".join(s.conditions)) or "fine"),
        ("Last status message", escape(f"{s.record.status or '–'}"
                                       + (f" ({s.record.status_reason})"
                                          if s.record.status_reason else "")
                                       + f" at {clock(s.record.status_at)}")),
        ("Last telemetry", escape(f"{clock(s.record.telemetry_at)}"
                                  + (f" ({human_age(now - s.record.telemetry_at)} ago)"
                                     if s.record.telemetry_at else ""))),
    ]
    if t is not None:
        flags = t.throttle_flags
        rows += [
            ("Uplink", UPLINK_WORDS[t.uplink]),
            ("Backlog", escape(f"{t.backlog_items} recordings, {size(t.backlog_bytes)}, "
                               f"oldest {human_age(s.backlog_age_s)}")),
            ("Last custody receipt", escape(human_age(t.last_receipt_age_s) + " before report"
                                            if t.last_receipt_age_s is not None else "none yet")),
            ("Disk free", escape(f"{size(t.disk_free_bytes)} of {size(t.disk_total_bytes)}"
                                 + (" ⚠ low" if s.disk_low else ""))),
            ("4G this period", escape(
                f"{size(t.mobile_used_bytes)} of {size(t.mobile_budget_bytes)}"
                + (f" ({s.mobile_fraction:.0%})" if s.mobile_fraction is not None else ""))),
            ("CPU temperature", "–" if t.cpu_temp_c is None else f"{t.cpu_temp_c:.1f} °C"),
            ("Power", escape(", ".join(flags.words()) or "fine") if flags else "not reported"),
            ("Uptime", escape(human_age(t.uptime_s))),
            ("Programs", escape(", ".join(f"{p}: {st}" for p, st in sorted(t.programs.items()))
                                or "–")),
            ("Errors", escape(", ".join(t.errors) or "none")),
            ("Versions", escape(", ".join(f"{k} {v}" for k, v in sorted(t.versions.items()))
                                or "–")),
        ]
    if s.record.last_reject:
        rows.append(("Last refused message", escape(
            f"{clock(s.record.last_reject_at)}: {s.record.last_reject}")))
    rows.append(("Messages", f"{s.record.telemetry_count} telemetry, "
                             f"{s.record.rejected_count} refused"))
    return "".join(f"<tr><th scope='row'>{k}</th><td>{v}</td></tr>" for k, v in rows)


def _office_page(service: FleetService, s: OfficeStatus, rng: str) -> str:
    now = service.clock()
    span = RANGES[rng]
    res = service.store.retention.pick(span)
    t0, t1 = now - span, now
    buckets = service.store.history(s.device_id, res, t0 - res, t1)
    o = service.directory.get(s.device_id)
    title = s.device_id + (f" — {o.office}" if o.office else "")
    ranges = " · ".join(
        f"<strong aria-current='page'>{k}</strong>" if k == rng
        else f"<a href='/office/{s.device_id}?range={k}'>{k}</a>" for k in RANGES)
    charts = [
        ("Backlog: recordings waiting for a receipt",
         line_chart(buckets, lambda b: b.backlog_items_max, t0, t1, "Backlog items (maximum "
                    "per interval)", lambda v: f"{v:.0f}")),
        ("Backlog: age of the oldest recording",
         line_chart(buckets, lambda b: b.backlog_age_max, t0, t1, "Oldest backlog age",
                    lambda v: human_age(v))),
        ("Link: uplink in use",
         link_chart(buckets, t0, t1, "Uplink in use per interval")
         + "<p class='legend'><span class='key link-wired'></span> wired "
           "<span class='key link-mobile'></span> 4G (hatched) "
           "<span class='key link-none'></span> none (crossed) · gaps: no telemetry</p>"),
        ("Disk free", line_chart(buckets, lambda b: b.disk_free_min, t0, t1,
                                 "Disk free (minimum per interval)", lambda v: size(int(v)))),
    ]
    chart_html = "".join(f"<section class='chart-box'><h2>{escape(h)}</h2>{svg}</section>"
                         for h, svg in charts)
    region = f" · {escape(o.region)}" if o.region else ""
    body = (
        "<header><p><a href='/'>← all offices</a></p>"
        f"<h1>{escape(title)}</h1><p class='meta'>{_state_cell(s)}{region}</p></header>"
        f"<main><table class='details'>{_detail_rows(s, service)}</table>"
        f"<nav class='ranges' aria-label='Time range'>History: {ranges} "
        f"<span class='meta'>({human_age(res)} resolution)</span></nav>{chart_html}</main>"
    )
    return _page(s.device_id, body, refresh=True)


# --- app -----------------------------------------------------------------------------------------

def create_app(service: FleetService) -> Starlette:
    css, js = _asset("fleet.css"), _asset("fleet.js")

    def dashboard(request: Request) -> Response:
        try:
            q = parse_query(request.query_params, max_limit=1000)
        except EdgeError as e:
            return _bad(e, html=True)
        return HTMLResponse(_dashboard(service, q))

    def office(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        rng = request.query_params.get("range", "24h")
        if rng not in RANGES:
            return _bad(QueryError(f"range={rng!r} must be one of {', '.join(RANGES)}"), True)
        s = service.status(device_id) if DEVICE_ID_RE.match(device_id) else None
        if s is None:
            return HTMLResponse(_page("Unknown office", f"<p role='alert'>No office "
                                      f"{escape(device_id)} has reported.</p>"
                                      "<p><a href='/'>← all offices</a></p>"), status_code=404)
        return HTMLResponse(_office_page(service, s, rng))

    def api_summary(request: Request) -> Response:
        statuses = service.statuses()
        return JSONResponse({
            "at": _iso(service.clock()),
            "counts": summary(statuses, service.thresholds.backlog_warn_s),
            "mqtt_connected": service.stats.mqtt_connected,
            "thresholds": {"interval_s": service.thresholds.interval_s,
                           "stale_after_s": service.thresholds.stale_after_s,
                           "backlog_warn_s": service.thresholds.backlog_warn_s,
                           "backlog_crit_s": service.thresholds.backlog_crit_s,
                           "disk_low_bytes": service.thresholds.disk_low_bytes,
                           "mobile_warn_fraction": service.thresholds.mobile_warn_fraction},
        })

    def api_offices(request: Request) -> Response:
        try:
            q = parse_query(request.query_params)
        except EdgeError as e:
            return _bad(e, html=False)
        sel = select(service.statuses(), q, service.directory)
        return JSONResponse({"total": sel.total, "offset": q.offset, "limit": q.limit,
                             "offices": [office_json(s, service) for s in sel.rows]})

    def api_office(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        s = service.status(device_id) if DEVICE_ID_RE.match(device_id) else None
        if s is None:
            return JSONResponse({"error": "fleet.unknown_office",
                                 "message": f"no office {device_id!r} has reported"},
                                status_code=404)
        return JSONResponse(office_json(s, service))

    def api_history(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        rng = request.query_params.get("range", "24h")
        if rng not in RANGES:
            return _bad(QueryError(f"range={rng!r} must be one of {', '.join(RANGES)}"), False)
        if not DEVICE_ID_RE.match(device_id) or service.record(device_id) is None:
            return JSONResponse({"error": "fleet.unknown_office",
                                 "message": f"no office {device_id!r} has reported"},
                                status_code=404)
        span = RANGES[rng]
        res = service.store.retention.pick(span)
        now = service.clock()
        buckets = service.store.history(device_id, res, now - span - res, now)
        return JSONResponse({
            "device_id": device_id, "range": rng, "resolution_s": res,
            "buckets": [{"start": _iso(b.start), "samples": b.samples,
                         "uplink_samples": {"wired": b.wired, "4g": b.mobile,
                                            "none": b.no_uplink},
                         "backlog_items_max": b.backlog_items_max,
                         "backlog_bytes_max": b.backlog_bytes_max,
                         "backlog_age_max_s": b.backlog_age_max,
                         "disk_free_min_bytes": b.disk_free_min,
                         "mobile_used_max_bytes": b.mobile_used_max} for b in buckets],
        })

    def metrics(request: Request) -> Response:
        return Response(render_metrics(service), media_type=CONTENT_TYPE)

    def healthz(request: Request) -> Response:
        st = service.stats
        records, samples = service.pending
        ok = st.mqtt_connected and st.last_flush_error is None
        return JSONResponse({"ok": ok, "mqtt_connected": st.mqtt_connected,
                             "last_store_error": st.last_flush_error,
                             "pending_records": records, "pending_samples": samples,
                             "uptime_s": round(time.time() - service.started_at)},
                            status_code=200 if ok else 503)

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "fleet.css":
            return Response(css, media_type="text/css",
                            headers={"cache-control": "max-age=3600"})
        if name == "fleet.js":
            return Response(js, media_type="text/javascript",
                            headers={"cache-control": "max-age=3600"})
        return Response("not found", status_code=404)

    routes = [
        Route("/", dashboard),
        Route("/office/{device_id}", office),
        Route("/api/v1/summary", api_summary),
        Route("/api/v1/offices", api_offices),
        Route("/api/v1/offices/{device_id}", api_office),
        Route("/api/v1/offices/{device_id}/history", api_history),
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Route("/static/{name}", static),
    ]
    return Starlette(routes=routes)
