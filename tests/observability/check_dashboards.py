#!/usr/bin/env python3
"""Static checks of plantwatch's Grafana dashboards (standard library only).

    python3 tests/observability/check_dashboards.py [--promtool] [DASHBOARD.json ...]

Without files it checks grafana/dashboards/*.json. For each dashboard:

- the schema version is the one Grafana writes today, the uid is valid and
  unique among the dashboards, there is a title;
- panel ids are unique (rows and the panels in them included), panel types
  are known, grid positions fit the 24-column grid and no two panels overlap;
- every panel, query and query variable names a Prometheus datasource that
  resolves: the `datasource` variable of type datasource (whose default is the
  provisioned datasource), or the uid of a datasource in
  grafana/provisioning/datasources/;
- every query has an expression and a refId unique in its panel;
- every `$var`, `${var}`, `${var:format}` or `[[var]]` used anywhere is a
  variable of the dashboard (defined before any variable that uses it) or
  one of Grafana's built-in ones;
- links to other dashboards name an existing uid and its variables.

With --promtool, every expression (variables replaced by sample values) is
also parsed by `promtool check rules`, so a PromQL syntax error fails here,
before any Prometheus runs. With --typescript DIR it writes each dashboard as
a TypeScript module checked against the Dashboard type of the npm package
@grafana/schema (`tsc -p DIR`, run by .ci/observability).

The helpers (panels(), queries(), substitute(), ...) are used by
check_live.py as well.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources"

# The dashboard schema version written by current Grafana (12.x) and
# declared by @grafana/schema 13 (defaultDashboard.schemaVersion).
SCHEMA_VERSION = 42

PANEL_TYPES = {
    "row", "timeseries", "stat", "table", "gauge", "bargauge", "text", "piechart", "state-timeline",
    "status-history", "heatmap", "histogram", "barchart", "logs", "nodeGraph", "dashlist", "alertlist", "news",
}
VARIABLE_TYPES = {"query", "datasource", "custom", "constant", "interval", "textbox", "adhoc", "groupby"}

# Grafana's global variables (https://grafana.com/docs/grafana/latest/dashboards/variables/add-template-variables/#global-variables)
BUILTIN_VARIABLES = {
    "__interval", "__interval_ms", "__rate_interval", "__rate_interval_ms", "__range", "__range_s", "__range_ms",
    "__from", "__to", "__now", "__dashboard", "__org", "__user", "__name", "__url_time_range", "__timezone",
    "__all_variables", "__data", "__field", "__series", "__value", "__cell", "__timeFilter", "timeFilter",
    "__auto_interval", "__auto",
}

# $name, ${name}, ${name:format}, ${__data.fields.x}, [[name]], [[name:format]]
VAR_REF = re.compile(r"\$\{([A-Za-z0-9_]+)(?:[.:][^}]*)?\}|\[\[([A-Za-z0-9_]+)(?::[^\]]*)?\]\]|\$([A-Za-z_][A-Za-z0-9_]*)")
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
DS_VARIABLE = re.compile(r"^\$\{?([A-Za-z0-9_]+)\}?$")


def load(path: pathlib.Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def provisioned_uids(directory: pathlib.Path = DATASOURCES) -> dict[str, str]:
    """uid -> type of the provisioned datasources (a small reader for the
    flat `- name/uid/type` lists of Grafana's provisioning YAML)."""
    found: dict[str, str] = {}
    for path in sorted(directory.glob("*.y*ml")):
        uid = kind = None
        for line in path.read_text(encoding="utf-8").splitlines():
            code = line.split("#", 1)[0].rstrip()
            m = re.match(r"^\s*(?:-\s+)?(uid|type|name):\s*['\"]?([^'\"]+?)['\"]?\s*$", code)
            if not m:
                continue
            if re.match(r"^\s*-\s", code):
                if uid:
                    found[uid] = kind or ""
                uid = kind = None
            key, value = m.groups()
            if key == "uid":
                uid = value
            elif key == "type":
                kind = value
        if uid:
            found[uid] = kind or ""
    return found


def panels(dashboard: dict) -> list[dict]:
    """Every panel, rows and the panels inside (collapsed) rows included."""
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []) if p.get("type") == "row" else [])
    return out


def queries(dashboard: dict) -> list[tuple[dict, dict]]:
    """(panel, target) for every Prometheus query of a non-row panel."""
    return [(p, t) for p in panels(dashboard) if p.get("type") != "row" for t in p.get("targets", [])
            if not t.get("hide")]


def variables(dashboard: dict) -> list[dict]:
    return dashboard.get("templating", {}).get("list", [])


def references(text: str) -> set[str]:
    return {a or b or c for a, b, c in VAR_REF.findall(text)}


def strings(node, path="$"):
    """(json path, string) for every string in a JSON tree."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from strings(v, f"{path}[{i}]")


def substitute(expr: str, values: dict[str, str], builtins: dict[str, str], missing: str | None = None) -> str:
    """Replaces variable references by values: `values` for the dashboard's
    variables, `builtins` for Grafana's (e.g. {"__rate_interval": "1m"}).
    An unknown name raises KeyError, unless `missing` is given to use instead."""
    table = dict(builtins)
    table.update(values)

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in table:
            return table[name]
        if missing is None:
            raise KeyError(name)
        return missing

    return VAR_REF.sub(repl, expr)


def query_variable_expr(var: dict) -> str:
    q = var.get("query", "")
    if isinstance(q, dict):
        q = q.get("query", "")
    return q or var.get("definition", "")


# Sample values for --promtool: any syntactically valid value does.
SAMPLE_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600",
                   "__interval_ms": "15000", "__range_ms": "3600000"}


class Checker:
    def __init__(self, datasources: dict[str, str]):
        self.datasources = datasources
        self.errors: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def check_datasource(self, where: str, ref, dsvars: dict[str, dict]) -> None:
        if not isinstance(ref, dict):
            self.error(where, f"datasource must be an object {{type, uid}}, not {ref!r}")
            return
        uid, kind = ref.get("uid"), ref.get("type")
        if kind != "prometheus":
            self.error(where, f"datasource type is {kind!r}, expected 'prometheus'")
        if not isinstance(uid, str) or not uid:
            self.error(where, "datasource has no uid")
            return
        m = DS_VARIABLE.match(uid)
        if m:
            var = dsvars.get(m.group(1))
            if var is None:
                self.error(where, f"datasource {uid} names no datasource variable of the dashboard")
            elif var.get("query") != "prometheus":
                self.error(where, f"datasource variable {m.group(1)} does not list Prometheus datasources")
        elif uid not in self.datasources:
            self.error(where, f"datasource uid {uid!r} is not provisioned ({sorted(self.datasources)})")
        elif self.datasources[uid] != "prometheus":
            self.error(where, f"datasource uid {uid!r} is not a Prometheus datasource")

    def check(self, name: str, d: dict, all_dashboards: dict[str, dict]) -> None:
        if d.get("schemaVersion") != SCHEMA_VERSION:
            self.error(name, f"schemaVersion is {d.get('schemaVersion')!r}, expected {SCHEMA_VERSION}")
        if not isinstance(d.get("uid"), str) or not UID.match(d["uid"]):
            self.error(name, f"uid {d.get('uid')!r} is not 1-40 letters, digits, '-' or '_'")
        if not d.get("title"):
            self.error(name, "no title")
        if d.get("id") is not None:
            self.error(name, "id must be null in a provisioned dashboard")

        # Variables: names, types, datasources, order of use.
        vars_ = variables(d)
        defined: list[str] = []
        dsvars: dict[str, dict] = {}
        for v in vars_:
            vname = v.get("name", "")
            where = f"{name}: variable {vname!r}"
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", vname):
                self.error(where, "not a valid variable name")
            if vname in defined:
                self.error(where, "defined twice")
            if v.get("type") not in VARIABLE_TYPES:
                self.error(where, f"unknown type {v.get('type')!r}")
            if v.get("type") == "datasource":
                dsvars[vname] = v
                current = (v.get("current") or {}).get("value")
                if current is not None and current not in self.datasources:
                    self.error(where, f"default {current!r} is not a provisioned datasource")
            if v.get("type") == "query":
                self.check_datasource(where, v.get("datasource"), dsvars)
                expr = query_variable_expr(v)
                if not expr:
                    self.error(where, "query variable without a query")
                for ref in sorted(references(expr) - BUILTIN_VARIABLES):
                    if ref not in defined:
                        self.error(where, f"uses ${ref}, which is not defined before it")
            defined.append(vname)

        # Every variable reference anywhere resolves.
        known = set(defined) | BUILTIN_VARIABLES
        for path, text in strings(d):
            for ref in sorted(references(text) - known):
                self.error(f"{name} {path}", f"${ref} is not a variable of the dashboard")

        # Panels: ids, types, grid, datasources, queries.
        seen: dict[int, str] = {}
        boxes: list[tuple[str, int, int, int, int]] = []
        for p in panels(d):
            title = p.get("title", "")
            pid = p.get("id")
            where = f"{name}: panel {pid} {title!r}"
            if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
                self.error(where, "id must be a positive integer")
            elif pid in seen:
                self.error(where, f"id {pid} is also the id of panel {seen[pid]!r}")
            else:
                seen[pid] = title
            if p.get("type") not in PANEL_TYPES:
                self.error(where, f"unknown panel type {p.get('type')!r}")
            if not title:
                self.error(where, "no title")
            g = p.get("gridPos") or {}
            if not all(isinstance(g.get(k), int) for k in "hwxy"):
                self.error(where, f"gridPos needs integer h, w, x, y: {g}")
            else:
                if g["x"] < 0 or g["y"] < 0 or g["w"] < 1 or g["h"] < 1 or g["x"] + g["w"] > 24:
                    self.error(where, f"gridPos {g} does not fit the 24-column grid")
                for other, x, y, w, h in boxes:
                    if g["x"] < x + w and x < g["x"] + g["w"] and g["y"] < y + h and y < g["y"] + g["h"]:
                        self.error(where, f"overlaps panel {other!r}")
                boxes.append((title, g["x"], g["y"], g["w"], g["h"]))
            if p.get("type") == "row":
                if p.get("targets"):
                    self.error(where, "a row has no queries")
                continue
            if p.get("type") == "text":
                continue
            self.check_datasource(where, p.get("datasource"), dsvars)
            targets = p.get("targets") or []
            if not targets:
                self.error(where, "no queries")
            refids = set()
            for t in targets:
                rid = t.get("refId")
                twhere = f"{where} query {rid}"
                if not rid or rid in refids:
                    self.error(twhere, "refId missing or not unique in the panel")
                refids.add(rid)
                if "datasource" in t:
                    self.check_datasource(twhere, t["datasource"], dsvars)
                    if t["datasource"] != p.get("datasource"):
                        self.error(twhere, "query datasource differs from the panel's (mixed datasources)")
                if not isinstance(t.get("expr"), str) or not t["expr"].strip():
                    self.error(twhere, "no expr")
            # Links to other dashboards.
            for link in self.links(p):
                self.check_link(where, link, all_dashboards)

    @staticmethod
    def links(panel: dict) -> list[str]:
        urls = [l.get("url", "") for l in panel.get("links", [])]
        fc = panel.get("fieldConfig", {})
        for l in fc.get("defaults", {}).get("links", []):
            urls.append(l.get("url", ""))
        for o in fc.get("overrides", []):
            for prop in o.get("properties", []):
                if prop.get("id") == "links":
                    urls.extend(l.get("url", "") for l in prop.get("value", []))
        return urls

    def check_link(self, where: str, url: str, all_dashboards: dict[str, dict]) -> None:
        m = re.match(r"^/d/([^/?]+)", url)
        if not m:
            return
        target = all_dashboards.get(m.group(1))
        if target is None:
            self.error(where, f"link to dashboard uid {m.group(1)!r}, which is not shipped")
            return
        names = {v.get("name") for v in variables(target)}
        for var in re.findall(r"[?&]var-([A-Za-z0-9_]+)=", url):
            if var not in names:
                self.error(where, f"link sets var-{var}, which dashboard {m.group(1)!r} does not have")


def promtool_parse(dashboards: dict[str, dict]) -> list[str]:
    """Parses every expression with promtool (as recording rules)."""
    lines = ["groups:", "  - name: dashboards", "    rules:"]
    where = []
    for name, d in dashboards.items():
        values = {v["name"]: "x" for v in variables(d)}
        for p, t in queries(d):
            expr = substitute(t["expr"], values, SAMPLE_BUILTINS, missing="x")
            lines.append(f"      - record: dashboard_query_{len(where)}")
            lines.append(f"        expr: {json.dumps(expr)}")
            where.append(f"{name}: panel {p.get('id')} {p.get('title')!r} query {t.get('refId')}")
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    try:
        run = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
    finally:
        pathlib.Path(path).unlink()
    if run.returncode == 0:
        return []
    errors = []
    for line in (run.stdout + run.stderr).splitlines():
        if line.strip().startswith("Checking") or line.strip() == "FAILED:":
            continue
        m = re.search(r"rule (\d+)", line)
        errors.append(f"{where[int(m.group(1)) - 1]}: {line.strip()}" if m else line.strip())
    return [e for e in errors if e] or ["promtool check rules failed"]


# Grafana stores its enums in JSON as their values ("absolute", "value"); the
# TypeScript types declare some as enums, which a string literal does not
# satisfy. Json<T> is T with every string enum widened to its values, and
# nothing else changed: a misspelt key or a value of the wrong type still fails.
TS_PRELUDE = """\
// Generated by tests/observability/check_dashboards.py --typescript: do not edit.
import type { Dashboard } from "@grafana/schema";
import type { Options as StatOptions } from "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";
import type {
  Options as TableOptions,
  FieldConfig as TableFieldConfig,
} from "@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen";
import type {
  Options as TimeSeriesOptions,
  FieldConfig as TimeSeriesFieldConfig,
} from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

type Json<T> = T extends string
  ? `${T}`
  : T extends readonly (infer U)[]
    ? Json<U>[]
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T;

"""

TSCONFIG = {
    "compilerOptions": {
        "strict": True, "noEmit": True, "target": "es2022", "module": "esnext", "moduleResolution": "bundler",
        "skipLibCheck": True, "types": [],
    },
    "include": ["*.ts"],
}


# The Dashboard type leaves a panel's options and custom field config open
# (they belong to the panel plugin): check those of the plugins used here
# against the plugins' own types. Grafana fills in options left out, hence
# Partial at the top level.
TS_PANEL_TYPES = {
    "stat": ("StatOptions", None),
    "table": ("TableOptions", "TableFieldConfig"),
    "timeseries": ("TimeSeriesOptions", "TimeSeriesFieldConfig"),
}


def write_typescript(dashboards: dict[str, dict], directory: pathlib.Path) -> None:
    """One module per dashboard, `export const dashboard = <json> satisfies
    Json<Dashboard>;` and each panel's options and custom field config
    against its plugin's types, and a tsconfig.json, for `tsc -p DIR` with
    @grafana/schema resolvable from DIR."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.ts"):
        old.unlink()
    for name, d in dashboards.items():
        module = re.sub(r"[^A-Za-z0-9_]", "_", pathlib.Path(name).stem)
        body = json.dumps(d, indent=2, ensure_ascii=False)
        text = f"{TS_PRELUDE}// {name}\nexport const dashboard = {body} satisfies Json<Dashboard>;\n"
        for p in panels(d):
            options_type, custom_type = TS_PANEL_TYPES.get(p.get("type"), (None, None))
            if options_type and "options" in p:
                text += (f"\n// panel {p.get('id')} {p.get('title')!r}: options\n"
                         f"export const options_{p.get('id')} = {json.dumps(p['options'], ensure_ascii=False)}"
                         f" satisfies Json<Partial<{options_type}>>;\n")
            custom = p.get("fieldConfig", {}).get("defaults", {}).get("custom")
            if custom_type and custom is not None:
                text += (f"export const custom_{p.get('id')} = {json.dumps(custom, ensure_ascii=False)}"
                         f" satisfies Json<Partial<{custom_type}>>;\n")
        (directory / f"{module}.ts").write_text(text, encoding="utf-8")
    (directory / "tsconfig.json").write_text(json.dumps(TSCONFIG, indent=2) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=pathlib.Path)
    ap.add_argument("--promtool", action="store_true", help="also parse every expression with promtool")
    ap.add_argument("--typescript", type=pathlib.Path, metavar="DIR",
                    help="also write one TypeScript module per dashboard to DIR, for tsc against @grafana/schema")
    args = ap.parse_args()
    files = args.files or sorted(DASHBOARDS.glob("*.json"))
    if not files:
        print("no dashboards found", file=sys.stderr)
        return 1
    checker = Checker(provisioned_uids())
    if not checker.datasources:
        checker.error(str(DATASOURCES), "no provisioned datasource with a uid")
    dashboards: dict[str, dict] = {}
    by_uid: dict[str, dict] = {}
    titles: dict[str, str] = {}
    for path in files:
        try:
            d = load(path)
        except (OSError, json.JSONDecodeError) as e:
            checker.error(str(path), f"not valid JSON: {e}")
            continue
        dashboards[path.name] = d
        uid = d.get("uid")
        if uid in by_uid:
            checker.error(path.name, f"uid {uid!r} is used by another dashboard")
        by_uid[uid] = d
        if d.get("title") in titles:
            checker.error(path.name, f"title {d.get('title')!r} is also the title of {titles[d['title']]}")
        titles[d.get("title")] = path.name
    for name, d in dashboards.items():
        checker.check(name, d, by_uid)
    if args.promtool:
        checker.errors.extend(promtool_parse(dashboards))
    if args.typescript:
        write_typescript(dashboards, args.typescript)
    count = sum(len(queries(d)) for d in dashboards.values())
    panel_count = sum(1 for d in dashboards.values() for p in panels(d) if p.get("type") != "row")
    if checker.errors:
        print(f"dashboards: {len(checker.errors)} problem(s):", file=sys.stderr)
        for e in checker.errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    print(f"dashboards: {len(dashboards)} valid ({panel_count} panels, {count} queries"
          f"{', all parsed by promtool' if args.promtool else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
