"""The dashboard, JSON API and /metrics over a real loopback socket (uvicorn + httpx)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from edge.central.fleet.metrics import METRIC_NAMES
from edge.central.fleet.service import FleetService
from tests.fleet.fleet_seed import NOW, OFFICES, serve_fleet

ROOT = Path(__file__).parents[2]
ALERTS = ROOT / "edge" / "central" / "fleet" / "alerts.yml"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, FleetService]]:
    with serve_fleet(tmp_path_factory.mktemp("web"), fillers=20) as (url, svc), \
            httpx.Client(base_url=url, timeout=10) as client:
        yield client, svc


def rows(html: str) -> list[str]:
    return re.findall(r"<tr class='sev-row-\d row-\w+' data-device='([a-z0-9-]+)'>", html)


def test_dashboard_puts_the_urgent_offices_first(site: tuple[httpx.Client, FleetService]) -> None:
    client, _ = site
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    order = rows(r.text)
    assert len(order) == 26
    # "act now" first, then "watch", then the fine ones
    assert set(order[:4]) == {"kec-offline", "kec-stale", "kec-late", "kec-disk"}
    assert order[4] == "kec-on-4g"
    # words and symbols, not only colour
    assert "✖</span> offline" in r.text and "◷</span> stale" in r.text
    assert "https://" not in r.text and "http://" not in r.text  # nothing external


@pytest.mark.parametrize("query,expected", [
    ("state=offline", ["kec-offline"]),
    ("state=stale", ["kec-stale"]),
    ("on4g=1", ["kec-on-4g"]),
    ("disk=low", ["kec-disk"]),
    ("budget=warn", ["kec-on-4g"]),
    # kec-offline reported a 10-min-old backlog 3 h ago: it is 3 h old by now.
    ("backlog=3600", ["kec-late", "kec-offline"]),
    ("q=bali", ["kec-stale", "kec-on-4g"]),          # by region, case-insensitive
    ("q=LEMBANG", ["kec-late"]),                      # by office name
    ("q=kec-000&sort=office&dir=asc&limit=3", ["kec-0000", "kec-0001", "kec-0002"]),
    ("state=problems&sort=backlog_items", ["kec-on-4g", "kec-late", "kec-offline", "kec-disk",
                                           "kec-stale"]),
])
def test_filters_search_and_sort(site: tuple[httpx.Client, FleetService], query: str,
                                 expected: list[str]) -> None:
    client, _ = site
    r = client.get("/?" + query)
    assert r.status_code == 200
    got = rows(r.text)
    assert got == expected if "sort" in query else sorted(got) == sorted(expected)


def test_bad_parameters_are_explained(site: tuple[httpx.Client, FleetService]) -> None:
    client, _ = site
    r = client.get("/?state=sleeping")
    assert r.status_code == 400 and "state=&#x27;sleeping&#x27; must be one of" in r.text
    r = client.get("/api/v1/offices?sort=colour")
    assert r.status_code == 400
    assert r.json()["error"] == "fleet.bad_query" and "sort='colour'" in r.json()["message"]
    assert client.get("/api/v1/offices?limit=0").status_code == 400


def test_pages_link_to_each_other(site: tuple[httpx.Client, FleetService]) -> None:
    client, _ = site
    r = client.get("/?limit=10")
    assert "Showing 1–10 of <strong id='total'>26</strong>" in r.text
    nxt = re.search(r"<a rel='next' href='([^']+)'", r.text)
    assert nxt is not None
    r2 = client.get(nxt.group(1).replace("&amp;", "&"))
    assert "Showing 11–20 of" in r2.text and not set(rows(r.text)) & set(rows(r2.text))


def test_office_page_has_details_and_charts(site: tuple[httpx.Client, FleetService]) -> None:
    client, _ = site
    r = client.get("/office/kec-on-4g")
    assert r.status_code == 200
    assert "Kecamatan Kuta" in r.text and "<strong>4G</strong>" in r.text
    svgs = re.findall(r"<svg class=\"chart\".*?</svg>", r.text)
    assert len(svgs) == 4
    backlog, age, link, disk = svgs
    assert "<path d=\"M" in backlog and "<title>Backlog items" in backlog
    assert "<title>Oldest backlog age" in age and "<title>Disk free" in disk
    # 18 h wired then 6 h on 4G, as seeded: both patterns drawn, shares in the description
    assert "url(#p-mobile)" in link and "class=\"link-wired\"" in link
    assert "wired 75%, 4G 25%" in link
    assert client.get("/office/kec-on-4g?range=30d").status_code == 200
    assert client.get("/office/kec-on-4g?range=1y").status_code == 400
    assert client.get("/office/kec-nobody").status_code == 404
    assert "offline (power or link lost)" in client.get("/office/kec-offline").text


def test_a_chart_without_data_says_so() -> None:
    from edge.central.fleet.charts import line_chart, link_chart

    svg = line_chart([], lambda b: b.backlog_items_max, NOW - 86400, NOW, "Backlog", str)
    assert "no telemetry in this period" in svg and "<path" not in svg
    assert "<rect x=" in link_chart([], NOW - 86400, NOW, "Link")


def test_api_offices_and_office(site: tuple[httpx.Client, FleetService]) -> None:
    client, _ = site
    body = client.get("/api/v1/offices", params={"state": "offline"}).json()
    assert body["total"] == 1
    [o] = body["offices"]
    assert o["device_id"] == "kec-offline" and o["office"] == "Kecamatan Tanah Abang"
    assert o["status"] == {"state": "offline", "at": "2026-01-01T10:00:00+00:00",
                           "reason": "lost"}
    assert o["conditions"][0] == "offline (power or link lost)"
    one = client.get("/api/v1/offices/kec-late").json()
    assert one["backlog"]["items"] == 31 and one["backlog"]["late"] is True
    assert one["backlog"]["oldest_age_s"] == 5 * 3600 + 45
    assert one["device"]["power"] == ["under-voltage now", "throttled now"]
    assert one["device"]["programs"] == {"intake": "ok", "forward": "ok"}
    assert client.get("/api/v1/offices/kec-nobody").status_code == 404
    page = client.get("/api/v1/offices", params={"limit": 5, "offset": 5, "sort": "office",
                                                  "dir": "asc"}).json()
    assert page["total"] == 26 and [x["device_id"] for x in page["offices"]] == [
        f"kec-{i:04d}" for i in range(5, 10)]


def test_api_summary_and_history(site: tuple[httpx.Client, FleetService]) -> None:
    client, _ = site
    s = client.get("/api/v1/summary").json()
    assert s["counts"] == {"offices": 26, "online": 24, "stale": 1, "offline": 1, "unknown": 0,
                           "problems": 5, "on_4g": 1, "backlog_late": 2, "disk_low": 1,
                           "budget_warn": 1}
    h = client.get("/api/v1/offices/kec-on-4g/history").json()
    assert h["resolution_s"] == 300 and len(h["buckets"]) == 288
    last = h["buckets"][-1]
    assert last["uplink_samples"] == {"wired": 0, "4g": 1, "none": 0}
    assert h["buckets"][0]["uplink_samples"]["wired"] == 1
    assert client.get("/api/v1/offices/kec-on-4g/history?range=7d").json()["resolution_s"] == 3600


def test_health_reports_the_broker_connection(site: tuple[httpx.Client, FleetService]) -> None:
    client, svc = site
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["mqtt_connected"] is False
    svc.set_connected(True)
    try:
        assert client.get("/healthz").status_code == 200
    finally:
        svc.set_connected(False)


def test_static_assets_are_served_locally(site: tuple[httpx.Client, FleetService]) -> None:
    client, _ = site
    assert client.get("/static/fleet.css").headers["content-type"].startswith("text/css")
    assert "addEventListener" in client.get("/static/fleet.js").text
    assert client.get("/static/nope.js").status_code == 404


# --- /metrics -----------------------------------------------------------------------------------

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def parse_metrics(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    types: dict[str, str] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            m = SAMPLE_RE.match(line)
            assert m, line
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return types, samples


def test_metrics_follow_prometheus_conventions(site: tuple[httpx.Client, FleetService]) -> None:
    client, _ = site
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    types, samples = parse_metrics(r.text)
    assert set(types) == set(METRIC_NAMES)
    for name, kind in types.items():
        assert (kind == "counter") == name.endswith("_total"), name
    for name, labels, _ in samples:
        assert name in types
        if name.startswith("fleet_device_") and name != "fleet_device_info":
            assert list(labels) == ["device_id"], (name, labels)
    by = {(n, lb.get("device_id")): v for n, lb, v in samples}
    assert by[("fleet_device_connected", "kec-offline")] == 0
    assert by[("fleet_device_up", "kec-stale")] == 0
    assert by[("fleet_device_on_4g", "kec-on-4g")] == 1
    assert by[("fleet_device_backlog_oldest_age_seconds", "kec-late")] == 5 * 3600 + 45
    assert by[("fleet_device_last_telemetry_timestamp_seconds", "kec-wired-ok")] == NOW - 30
    assert by[("fleet_device_under_voltage", "kec-late")] == 1
    assert ("fleet_device_cpu_temperature_celsius", "kec-late") not in by  # not reported
    info = [lb for n, lb, _ in samples if n == "fleet_device_info"]
    assert len(info) == 26
    assert {"device_id": "kec-late", "office": "Kecamatan Lembang", "region": "Jawa Barat",
            "edge_version": "0.1.0"} in info
    assert by[("fleet_offices", None)] is not None
    states = {lb["state"]: v for n, lb, v in samples if n == "fleet_offices"}
    assert states == {"online": 24, "stale": 1, "offline": 1, "unknown": 0}


def test_alert_rules_only_use_exported_metrics() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    names = set(re.findall(r"\b(fleet_[a-z0-9_]+)", ALERTS.read_text()))
    assert names <= set(METRIC_NAMES), names - set(METRIC_NAMES)
    alerts = {r["alert"]: r for g in doc["groups"] for r in g["rules"]}
    assert {"FleetOfficeOffline", "FleetBacklogOld", "FleetDiskLow",
            "FleetMobileBudgetExceeded"} <= set(alerts)
    for name, rule in alerts.items():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'); the YAML structure "
                    "test above still checked alerts.yml")
    check = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", "tests/fleet/alerts_test.yml"], cwd=ROOT,
                          capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_seeded_offices_are_all_listed() -> None:
    assert len(OFFICES) == 6
