#!/usr/bin/env python3
"""The two-site federation check of issue 13 section 3 (run by .ci/federation).

    check_fleet.py serve-config --simulator SIM.log --site NAME --store DIR --out FILE
    check_fleet.py traffic --api URL --key KEY [--offline INSTANCE]
    check_fleet.py wait --prometheus URL --query EXPR [--seconds S]
    check_fleet.py check --prometheus CENTRAL --sites site-a,site-b --offline-site site-a
                         [--site-prometheus site-a=URL ...] [--retry-for S]

`serve-config` writes a `plantwatch serve` configuration for one site
(`[server] site = NAME`) from the JSON lines a `plantwatch simulate` printed.

`traffic` is what a site's operators do: writes at priority 8 that the device
accepts and their relinquish, a write to an input that the device refuses
(502 DEVICE_REFUSED, a refused write), and a few mistakes (404); spread over a
few seconds so that the site's Prometheus sees the counters move.

`check` takes every query of the fleet dashboard (grafana/fleet/fleet.json),
with the `site` variable at "All" (its allValue) and the datasource
variable replaced, runs it at the central Prometheus's /api/v1/query and
fails unless each returns a series with a finite value for every site of
--sites. On top, what the two sites' traffic and faults must show (EXPECT):
every site up, writes and API errors at every site, one offline device, fewer
points and some BACnet timeouts at --offline-site only. It retries until
--retry-for passes (federation lags a scrape or two), then lists every
problem. Finally it prints how many series each site sends to the centre
(scrape_samples_scraped of the centre's /federate scrape of it) and, with
--site-prometheus, how many its plantwatch exposes.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
import urllib.parse

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "observability"))
import pwlib  # noqa: E402
import check_dashboards as dash  # noqa: E402

DASHBOARD = HERE.parents[1] / "grafana" / "fleet" / "fleet.json"

# (panel title, refId) -> what its series must show, per site, beyond "a
# finite value for every site". `offline` is --offline-site, `others` the
# rest. Every entry must name a query of the dashboard.
EXPECT = {
    ("Sites up", "A"): ("every site up (1)", lambda v, off: all(x == 1 for x in v.values())),
    ("Devices offline by site", "A"): (
        "at least one device offline at the offline site, none elsewhere",
        lambda v, off: v[off] >= 1 and all(x == 0 for s, x in v.items() if s != off)),
    ("Points polled by site", "A"): (
        "fewer points at the offline site than at every other",
        lambda v, off: all(v[off] < x for s, x in v.items() if s != off)),
    ("Writes by site", "A"): ("writes at every site", lambda v, off: all(x > 0 for x in v.values())),
    ("Writes by site", "B"): ("refused writes at every site", lambda v, off: all(x > 0 for x in v.values())),
    ("API errors by site", "A"): ("5xx answers at every site", lambda v, off: all(x > 0 for x in v.values())),
    ("API errors by site", "B"): ("4xx answers at every site", lambda v, off: all(x > 0 for x in v.values())),
    ("BACnet timeouts and errors by site", "A"): (
        "BACnet timeouts at the offline site", lambda v, off: v[off] > 0),
    ("Sites", "C"): (
        "the table's offline column: one device or more at the offline site, none elsewhere",
        lambda v, off: v[off] >= 1 and all(x == 0 for s, x in v.items() if s != off)),
}


# ---------------------------------------------------------------- serve-config


def run_serve_config(args) -> int:
    lines = pathlib.Path(args.simulator).read_text().splitlines()
    devices = [json.loads(l) for l in lines if l.startswith('{"instance"')]
    if not devices:
        raise SystemExit(f"{args.simulator}: the simulator listed no devices")
    toml = f"""[server]
listen = "127.0.0.1:0"
site = "{args.site}"
[store]
path = "{args.store}"
[[network]]
name = "{args.site}-field"
bind = "127.0.0.1:0"
poll = "1s"
apdu_timeout = "250ms"
apdu_retries = 1
offline_after = 2
"""
    for d in devices:
        toml += f"""[[network.device]]
instance = {d["instance"]}
address = "{d["address"]}"
name = "{args.site} device {d["instance"]}"
"""
    pathlib.Path(args.out).write_text(toml)
    return 0


# ---------------------------------------------------------------- traffic


def run_traffic(args) -> int:
    api = args.api.rstrip("/")

    def expect(want, method, path, body=None):
        status, raw = pwlib.call(method, api + path, args.key, body)
        if status != want:
            raise SystemExit(f"traffic {api}: {method} {path} {body}: expected {want}, got {status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None

    devices = pwlib.wait_until(
        f"{api}: every device enrolled",
        lambda: (lambda items: items if items and all(d["status"] != "enrolling" for d in items) else None)(
            pwlib.paged(f"{api}/api/v1/devices?limit=100", args.key)), 30)
    first = next(d["instance"] for d in devices if d["instance"] != args.offline)
    writes = 0
    for n in range(args.rounds):
        started = time.monotonic()
        w = expect(200, "PUT", f"/api/v1/devices/{first}/points/analog-output:1", {"value": 40.0 + n, "priority": 8})
        if w.get("outcome") != "accepted" or w.get("active_priority") != 8:
            raise SystemExit(f"traffic {api}: write not accepted at priority 8: {w}")
        expect(200, "PUT", f"/api/v1/devices/{first}/points/analog-output:1", {"value": None, "priority": 8})
        refused = expect(502, "PUT", f"/api/v1/devices/{first}/points/analog-input:1", {"value": 1.0, "priority": 8})
        if refused["error"]["code"] != "DEVICE_REFUSED":
            raise SystemExit(f"traffic {api}: expected DEVICE_REFUSED, got {refused}")
        expect(404, "GET", "/api/v1/devices/4000000")
        writes += 3
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    print(f"traffic {api}: {writes} writes to device {first} ({args.rounds} accepted, {args.rounds} relinquished, "
          f"{args.rounds} refused) and {args.rounds} 404s over {args.rounds} s")
    return 0


# ---------------------------------------------------------------- prometheus


def query(prom: str, expr: str) -> dict:
    answer = pwlib.get_json(f"{prom.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    if answer.get("status") != "success":
        raise OSError(f"{expr}: {answer}")
    return answer["data"]


def by_site(data: dict) -> dict[str, float]:
    """{site: value} of an instant vector (series without `site` under "")."""
    out: dict[str, float] = {}
    if data.get("resultType") != "vector":
        return out
    for s in data["result"]:
        out[s["metric"].get("site", "")] = float(s["value"][1])
    return out


def run_wait(args) -> int:
    pwlib.wait_until(f"{args.prometheus}: {args.query}", lambda: query(args.prometheus, args.query)["result"],
                     args.seconds, every=0.25)
    return 0


def dashboard_queries(path: pathlib.Path):
    """(panel title, refId, expr) of every query, as Grafana runs it with
    site = All and the datasource variable set."""
    d = dash.load(path)
    values = {}
    for v in dash.variables(d):
        if v["type"] == "datasource":
            values[v["name"]] = "plantwatch-prometheus"
        elif v["name"] == "site":
            if not (v.get("includeAll") and v.get("allValue")):
                raise SystemExit(f"{path}: the site variable must have includeAll and an allValue")
            values["site"] = v["allValue"]
        else:
            raise SystemExit(f"{path}: variable {v['name']}: not known to this check")
    builtins = dict(dash.SAMPLE_BUILTINS)
    return [(p.get("title"), t.get("refId"), dash.substitute(t["expr"], values, builtins))
            for p, t in dash.queries(d)]


def run_check(args) -> int:
    sites = args.sites.split(",")
    off = args.offline_site
    if off not in sites:
        raise SystemExit(f"--offline-site {off} is not among --sites {sites}")
    items = dashboard_queries(args.dashboard)
    known = {(title, ref) for title, ref, _ in items}
    unknown = [k for k in EXPECT if k not in known]
    if unknown:
        raise SystemExit(f"{args.dashboard}: EXPECT names queries the dashboard does not have: {unknown}")

    deadline = time.monotonic() + args.retry_for
    while True:
        problems, shown = [], []
        for title, ref, expr in items:
            where = f"panel {title!r} query {ref}"
            try:
                values = by_site(query(args.prometheus, expr))
            except OSError as e:
                problems.append(f"{where}: query failed: {e}\n      {expr}")
                continue
            missing = [s for s in sites if s not in values or not math.isfinite(values[s])]
            text = ", ".join(f"{s}={values[s]:g}" for s in sorted(values))
            shown.append(f"{where}: {text or 'no series'}")
            if missing:
                problems.append(f"{where}: no finite value for {', '.join(missing)} (got: {text or 'no series'})"
                                f"\n      {expr}")
                continue
            if (title, ref) in EXPECT:
                what, ok = EXPECT[(title, ref)]
                if not ok(values, off):
                    problems.append(f"{where}: expected {what} (got: {text})\n      {expr}")
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(1)
    if args.verbose or problems:
        for line in shown:
            print(f"  {line}")
    if problems:
        print(f"fleet check: {len(problems)} problem(s) of {len(items)} dashboard queries at {args.prometheus}:",
              file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"fleet check: all {len(items)} queries of {args.dashboard.name} return data for {', '.join(sites)} "
          f"at the central Prometheus; {len(EXPECT)} expectations hold ({off}: a device offline)")

    # The cost: series per site at the centre.
    federated = by_site(query(args.prometheus, 'scrape_samples_scraped{job="plantwatch-sites"}'))
    exposed = {}
    for given in args.site_prometheus:
        site, url = given.split("=", 1)
        got = by_site(query(url, 'sum(scrape_samples_scraped{job="plantwatch"})'))
        exposed[site] = got.get("", float("nan"))
    for site in sites:
        line = f"series: {site} sends {federated.get(site, float('nan')):.0f} series to the centre"
        if site in exposed:
            line += f" (its plantwatch's /metrics has {exposed[site]:.0f} samples)"
        print(line)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve-config")
    p.add_argument("--simulator", required=True)
    p.add_argument("--site", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("traffic")
    p.add_argument("--api", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--offline", type=int, help="a device instance not to write to (it goes silent)")
    p.add_argument("--rounds", type=int, default=4)
    p = sub.add_parser("wait")
    p.add_argument("--prometheus", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--seconds", type=float, default=30)
    p = sub.add_parser("check")
    p.add_argument("--prometheus", required=True, help="the central Prometheus")
    p.add_argument("--sites", required=True, help="comma-separated site names, all of which must show")
    p.add_argument("--offline-site", required=True, help="the site with a device that stopped answering")
    p.add_argument("--site-prometheus", action="append", default=[], metavar="SITE=URL")
    p.add_argument("--dashboard", type=pathlib.Path, default=DASHBOARD)
    p.add_argument("--retry-for", type=float, default=45)
    p.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    return {"serve-config": run_serve_config, "traffic": run_traffic, "wait": run_wait,
            "check": run_check}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
