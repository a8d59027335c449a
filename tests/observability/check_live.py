#!/usr/bin/env python3
"""Live checks of plantwatch's metrics and dashboards (standard library only).

    check_live.py metrics URL                     # print /metrics (for promtool)
    check_live.py traffic --api URL --keys FILE   # realistic API traffic
    check_live.py queries --prometheus URL        # every dashboard query has data
    check_live.py expect --prometheus URL ...     # queries that must (not) return series
    check_live.py rule-metrics --prometheus URL RULES.yml  # the rules' metrics exist

`traffic` sends what a plant's users and scripts send: reads with a read key,
a write and its relinquish with the operator key, and the mistakes that the
Service dashboard counts (a request without a key: 401; a read key writing:
403; a write burst past the rate limit: 429; unknown routes, devices and
points: 404; a write to an input, which the device refuses with a BACnet
error: 502). It spreads them over --seconds so that several scrapes see the
counters move. The failed authentications stay under the per-address budget
(auth_failures_per_min), which would otherwise lock out every request from
this address.

`queries` takes every query of every dashboard (check_dashboards.queries),
gives each template variable the value Grafana would show first (label
values from Prometheus, in the variable's sort order) or the one given with
--var, replaces Grafana's built-in intervals, runs it at Prometheus'
/api/v1/query and fails, listing them all, for every query that returns no
series or only NaN.

`expect` checks expressions that must return series (--some) or none
(--none), e.g. the ALERTS of the alert rules that a plant with an offline
device must show and those it must not.

`rule-metrics` checks that every metric name in the `expr` of a rules file
has series in Prometheus: the rules' unit tests run on series they make up,
so a renamed metric would otherwise leave an alert that can never fire.

The keys FILE is the demo's stdout: the `admin key: `, `operator key: ` and
`read key: ` lines are read from it.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import check_dashboards as dash  # noqa: E402


def request(method: str, url: str, key: str | None = None, body=None, timeout: float = 15.0):
    """(status, parsed JSON body or None)."""
    data = None
    headers = {"Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def read_keys(path: pathlib.Path) -> dict[str, str]:
    keys = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^(admin|operator|read) key: (\S+)\s*$", line)
        if m:
            keys[m.group(1)] = m.group(2)
    missing = {"admin", "operator", "read"} - set(keys)
    if missing:
        raise SystemExit(f"{path}: no {', '.join(sorted(missing))} key line")
    return keys


# ---------------------------------------------------------------- traffic


class Traffic:
    def __init__(self, api: str, keys: dict[str, str]):
        self.api = api.rstrip("/")
        self.keys = keys
        self.statuses: dict[int, int] = {}
        self.codes: dict[str, int] = {}

    def send(self, method: str, path: str, role: str | None = "read", body=None, key: str | None = None):
        status, answer = request(method, self.api + path, key or (self.keys[role] if role else None), body)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            code = answer["error"].get("code", "?")
            self.codes[code] = self.codes.get(code, 0) + 1
        return status, answer

    def expect(self, want: int, method: str, path: str, role: str | None = "read", body=None, key=None):
        status, answer = self.send(method, path, role, body, key)
        if status != want:
            raise SystemExit(f"traffic: {method} {path} ({role or 'no'} key): expected {want}, got {status}: {answer}")
        return answer

    def devices(self) -> list[dict]:
        answer = self.expect(200, "GET", "/api/v1/devices?limit=1000")
        items = sorted(answer["items"], key=lambda d: d["instance"])
        if not items:
            raise SystemExit("traffic: the service lists no devices")
        return items

    def wait_enrolled(self, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            devices = self.devices()
            if all(d["status"] != "enrolling" for d in devices) or time.monotonic() > deadline:
                return devices
            time.sleep(0.5)

    def round(self, n: int, devices: list[dict]) -> None:
        """One round of what users do in a second or so."""
        first = devices[0]["instance"]
        # People and dashboards reading.
        self.expect(200, "GET", "/health", None)
        self.expect(200, "GET", "/ready", None)
        self.expect(200, "GET", "/api/v1/networks")
        self.expect(200, "GET", "/api/v1/devices?limit=5&sort=-last_seen")
        for d in devices:
            self.expect(200, "GET", f"/api/v1/devices/{d['instance']}")
        points = self.expect(200, "GET", f"/api/v1/devices/{first}/points")["items"]
        for p in points[:4]:
            self.expect(200, "GET", f"/api/v1/devices/{first}/points/{p['object']}")
        self.expect(200, "GET", f"/api/v1/devices/{first}/points/analog-input:1?live=true")
        self.expect(200, "GET", f"/api/v1/devices/{first}/points/analog-input:1/history")
        if n % 3 == 0:
            self.expect(200, "GET", "/api/v1/openapi.json", None)
            self.expect(200, "GET", "/api/v1/audit", "admin")
        # Mistakes: typos, unknown devices and points, a bad parameter.
        self.expect(404, "GET", "/api/v1/devicez")
        self.expect(404, "GET", "/api/v1/devices/4000000")
        self.expect(404, "GET", f"/api/v1/devices/{first}/points/analog-input:99")
        self.expect(400, "GET", "/api/v1/devices?limit=0")
        self.expect(405, "DELETE", "/api/v1/devices", "admin")
        # A read key trying to write: 403.
        self.expect(403, "PUT", f"/api/v1/devices/{first}/points/analog-output:1", "read", {"value": 1, "priority": 8})
        # No key: 401 (every other round: failed authentications have a
        # budget per address, auth_failures_per_min).
        if n % 2 == 0:
            self.expect(401, "GET", "/api/v1/devices", None)

    def operator(self, devices: list[dict]) -> None:
        """An operator commands a valve, releases it, and tries an input."""
        first = devices[0]["instance"]
        path = f"/api/v1/devices/{first}/points/analog-output:1"
        w = self.expect(200, "PUT", path, "operator", {"value": 42.5, "priority": 8})
        if w.get("outcome") != "accepted":
            raise SystemExit(f"traffic: write not accepted: {w}")
        self.expect(200, "PUT", path, "operator", {"value": None, "priority": 8})
        # The device refuses a write to an input: a BACnet Error
        # (property:write-access-denied), DEVICE_REFUSED 502.
        refused = self.expect(502, "PUT", f"/api/v1/devices/{first}/points/analog-input:1", "operator",
                              {"value": 1.0, "priority": 8})
        if refused["error"]["code"] != "DEVICE_REFUSED":
            raise SystemExit(f"traffic: expected DEVICE_REFUSED, got {refused}")

    def burst(self, devices: list[dict]) -> None:
        """Writes faster than rate_limit.write_per_s allows: 429 at last."""
        first = devices[0]["instance"]
        for i in range(100):
            status, _ = self.send("PUT", f"/api/v1/devices/{first}/points/analog-value:1", "operator",
                                  {"value": 50.0 + i % 2, "priority": 8})
            if status == 429:
                return
        raise SystemExit("traffic: 100 writes in a row were never rate limited (429)")


def run_traffic(args) -> int:
    t = Traffic(args.api, read_keys(args.keys))
    devices = t.wait_enrolled()
    started = time.monotonic()
    n = 0
    while True:
        t.round(n, devices)
        # Twice, so that the counters they create are seen to move (a
        # counter's first sample shows no rate).
        if n in (1, 5):
            t.operator(devices)
        if n == 3:
            t.burst(devices)
        n += 1
        if time.monotonic() - started >= args.seconds and n >= 6:
            break
        time.sleep(max(0.0, min(1.0, started + n - time.monotonic())))
    for status in (401, 403, 404, 429, 502):
        if not t.statuses.get(status):
            raise SystemExit(f"traffic: no {status} answer was produced")
    summary = " ".join(f"{s}:{c}" for s, c in sorted(t.statuses.items()))
    print(f"traffic: {sum(t.statuses.values())} requests in {n} rounds over {time.monotonic() - started:.1f} s "
          f"({summary}); {len(devices)} devices")
    return 0


# ---------------------------------------------------------------- prometheus


class Prometheus:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def get(self, path: str, **params):
        query = urllib.parse.urlencode(params, doseq=True)
        status, answer = request("GET", f"{self.url}{path}?{query}")
        if status != 200 or not isinstance(answer, dict) or answer.get("status") != "success":
            raise RuntimeError(f"{path} {params}: HTTP {status}: {answer}")
        return answer["data"]

    def query(self, expr: str):
        return self.get("/api/v1/query", query=expr)

    def label_values(self, label: str, selector: str | None) -> list[str]:
        params = {"start": str(time.time() - 3600), "end": str(time.time())}
        if selector:
            params["match[]"] = selector
        return self.get(f"/api/v1/label/{urllib.parse.quote(label)}/values", **params)


def parse_label_values(expr: str) -> tuple[str | None, str]:
    """label_values(selector, label) or label_values(label)."""
    m = re.match(r"^\s*label_values\(\s*(?:(.+?)\s*,\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", expr, re.S)
    if not m:
        raise ValueError(f"unsupported variable query {expr!r} (only label_values)")
    return m.group(1), m.group(2)


def natural_key(s: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", s)]


def sort_values(values: list[str], sort: int) -> list[str]:
    """Grafana's variable sort orders (VariableSort)."""
    numeric = lambda s: (float(m.group()) if (m := re.search(r"-?\d+(\.\d+)?", s)) else math.inf)  # noqa: E731
    orders = {
        1: lambda v: sorted(v), 2: lambda v: sorted(v, reverse=True),
        3: lambda v: sorted(v, key=numeric), 4: lambda v: sorted(v, key=numeric, reverse=True),
        5: lambda v: sorted(v, key=str.lower), 6: lambda v: sorted(v, key=str.lower, reverse=True),
        7: lambda v: sorted(v, key=natural_key), 8: lambda v: sorted(v, key=natural_key, reverse=True),
    }
    return orders.get(sort, list)(values)


def resolve_variables(prom: Prometheus, d: dict, builtins: dict[str, str],
                      given: dict[str, str] | None = None) -> dict[str, str]:
    """The value Grafana shows first for each variable of `d`, or the one
    `given` (which must be one of the values Grafana would offer)."""
    given = given or {}
    values: dict[str, str] = {}
    for v in dash.variables(d):
        name = v["name"]
        if v["type"] == "datasource":
            values[name] = "plantwatch-prometheus"
        elif v["type"] == "query":
            selector, label = parse_label_values(dash.substitute(dash.query_variable_expr(v), values, builtins))
            found = sort_values(prom.label_values(label, selector), v.get("sort", 0))
            if v.get("regex"):
                found = [x for x in found if re.search(v["regex"].strip("/"), x)]
            if not found:
                raise LookupError(f"variable {name}: label_values({selector or ''}, {label}) found nothing")
            if name in given:
                if given[name] not in found:
                    raise LookupError(f"variable {name}: {given[name]!r} is not among its values {found}")
                values[name] = given[name]
                continue
            current = (v.get("current") or {}).get("value")
            values[name] = current if current in found else found[0]
        elif v["type"] in ("custom", "constant", "textbox"):
            values[name] = str((v.get("current") or {}).get("value") or v.get("query", "")).split(",")[0]
        else:
            raise LookupError(f"variable {name}: type {v['type']} is not supported by this check")
    return values


def count_series(data) -> tuple[int, int, list[str]]:
    """(series, series with a finite value now, a few of them as text)."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return 1, int(math.isfinite(float(result[1]))), [result[1]]
    if kind == "vector":
        shown = [f"{json.dumps(s['metric'], sort_keys=True)} {s['value'][1]}" for s in result[:3]]
        return len(result), sum(1 for s in result if math.isfinite(float(s["value"][1]))), shown
    return 0, 0, []


def run_queries(args) -> int:
    prom = Prometheus(args.prometheus)
    builtins = {"__rate_interval": args.rate_interval, "__interval": args.interval, "__range": args.range,
                "__range_s": str(int(parse_duration(args.range))), "__range_ms": str(int(parse_duration(args.range) * 1000)),
                "__interval_ms": str(int(parse_duration(args.interval) * 1000))}
    given = dict(v.split("=", 1) for v in args.var)
    files = args.dashboards or sorted(dash.DASHBOARDS.glob("*.json"))
    deadline = time.monotonic() + args.retry_for
    while True:
        problems, checked, series = [], 0, 0
        for path in files:
            d = dash.load(path)
            try:
                values = resolve_variables(prom, d, builtins, given)
            except (LookupError, ValueError, RuntimeError) as e:
                problems.append(f"{path.name}: {e}")
                continue
            shown = ", ".join(f"{k}={v}" for k, v in values.items() if k != "datasource")
            for panel, target in dash.queries(d):
                expr = dash.substitute(target["expr"], values, builtins)
                where = f"{path.name} [{shown}] panel {panel['id']} {panel.get('title')!r} query {target.get('refId')}"
                checked += 1
                try:
                    total, finite, shown_series = count_series(prom.query(expr))
                except RuntimeError as e:
                    problems.append(f"{where}: query failed: {e}\n      {expr}")
                    continue
                series += total
                if args.verbose:
                    print(f"{where}: {total} series\n      {expr}\n      " + "\n      ".join(shown_series))
                if total == 0:
                    problems.append(f"{where}: no series\n      {expr}")
                elif finite == 0:
                    problems.append(f"{where}: {total} series, all NaN\n      {expr}")
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(2)
    if problems:
        print(f"queries: {len(problems)} problem(s) ({checked} queries run):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"queries: all {checked} dashboard queries return data ({series} series)")
    return 0


def run_expect(args) -> int:
    prom = Prometheus(args.prometheus)
    deadline = time.monotonic() + args.retry_for
    while True:
        problems = []
        for expr in args.some:
            if not prom.query(expr)["result"]:
                problems.append(f"no series, expected some: {expr}")
        for expr in args.none:
            result = prom.query(expr)["result"]
            if result:
                shown = "; ".join(json.dumps(r["metric"], sort_keys=True) for r in result[:5])
                problems.append(f"{len(result)} series, expected none: {expr}: {shown}")
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(1)
    for p in problems:
        print(f"expect: {p}", file=sys.stderr)
    if not problems:
        print(f"expect: {len(args.some)} expression(s) with series and {len(args.none)} without, as expected")
    return 1 if problems else 0


def rule_expressions(path: pathlib.Path) -> list[str]:
    """The `expr` of every rule of a Prometheus rules file (a small reader for
    `expr: ...` and `expr: |` blocks; no YAML library needed)."""
    exprs, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        indent, first = len(m.group(1)), m.group(2).strip()
        if first not in ("|", "|-", ">", ">-"):
            exprs.append(first.strip("'\""))
            continue
        block = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            block.append(lines[i].strip())
            i += 1
        exprs.append(" ".join(block))
    return exprs


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def run_rule_metrics(args) -> int:
    prom = Prometheus(args.prometheus)
    names: set[str] = set()
    for expr in rule_expressions(args.rules):
        # Identifiers not followed by "(" (functions) and not inside a label
        # matcher or a string: metric names, label names, keywords.
        text = re.sub(r'"[^"]*"', '""', expr)
        text = re.sub(r"\{[^}]*\}", "{}", text)
        text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
        for word in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text):
            if word.lower() not in PROMQL_WORDS and not re.match(r"^\d", word):
                names.add(word)
    missing = [n for n in sorted(names) if not prom.query(f"count({{__name__={json.dumps(n)}}})")["result"]]
    if missing:
        print(f"rule-metrics: {args.rules}: no series in Prometheus for {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"rule-metrics: the {len(names)} metrics used by {args.rules} all have series")
    return 0


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    m = re.match(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$", text)
    if not m:
        raise SystemExit(f"not a duration: {text!r}")
    return float(m.group(1)) * units[m.group(2)]


def run_metrics(args) -> int:
    status, _ = 0, None
    with urllib.request.urlopen(args.url, timeout=15) as r:
        status, body = r.status, r.read()
    if status != 200:
        raise SystemExit(f"{args.url}: HTTP {status}")
    sys.stdout.buffer.write(body)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("metrics", help="print the Prometheus text at URL")
    m.add_argument("url")
    t = sub.add_parser("traffic", help="send realistic API traffic")
    t.add_argument("--api", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    t.add_argument("--keys", required=True, type=pathlib.Path, help="a file with the demo's key lines")
    t.add_argument("--seconds", type=float, default=8.0, help="spread the traffic over this long")
    q = sub.add_parser("queries", help="check that every dashboard query returns data")
    q.add_argument("--prometheus", required=True, help="base URL of Prometheus")
    q.add_argument("--rate-interval", default="1m", help="value of $__rate_interval")
    q.add_argument("--interval", default="15s", help="value of $__interval")
    q.add_argument("--range", default="1h", help="value of $__range (the dashboard's time range)")
    q.add_argument("--retry-for", type=float, default=10.0,
                   help="seconds to keep retrying while some queries have no data (scrapes still coming)")
    q.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="give a template variable this value instead of the first one")
    q.add_argument("--verbose", action="store_true", help="print every query and a few of its series")
    q.add_argument("dashboards", nargs="*", type=pathlib.Path)
    e = sub.add_parser("expect", help="check expressions that must or must not return series")
    e.add_argument("--prometheus", required=True, help="base URL of Prometheus")
    e.add_argument("--some", action="append", default=[], metavar="EXPR", help="must return series")
    e.add_argument("--none", action="append", default=[], metavar="EXPR", help="must return no series")
    e.add_argument("--retry-for", type=float, default=15.0, help="seconds to keep retrying")
    r = sub.add_parser("rule-metrics", help="check that the metrics of a rules file have series")
    r.add_argument("--prometheus", required=True, help="base URL of Prometheus")
    r.add_argument("rules", type=pathlib.Path)
    args = ap.parse_args()
    commands = {"metrics": run_metrics, "traffic": run_traffic, "queries": run_queries, "expect": run_expect,
                "rule-metrics": run_rule_metrics}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
