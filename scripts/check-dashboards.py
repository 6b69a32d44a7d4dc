#!/usr/bin/env python3
"""Checks the queries in the Grafana dashboards with the real parsers.

PromQL: every Prometheus target becomes a recording rule in a temporary
rules file that `promtool check rules` parses (Prometheus' own parser;
$PROMTOOL, else promtool on the PATH).
LogQL and TraceQL: every Loki and Tempo target goes to scripts/querycheck,
which parses them with the grammars Grafana's own query editors use
(@grafana/lezer-logql and @grafana/lezer-traceql, Apache-2.0; installed by
scripts/setup.sh, found through $QUERYCHECK). Grafana's variables are
replaced by values of the right kind first ($__rate_interval -> 5m,
$host -> .*).

Usage: check-dashboards.py DASHBOARD.json... (exit 1 on any failure)
       check-dashboards.py --prometheus URL DASHBOARD.json...
The second form asks a running Prometheus (its HTTP API at URL) every PromQL
panel query instead, and fails for any that returns no series: the
end-to-end test (collector/tests/backends.rs) runs it once the agent's
metrics have arrived.
Names (metrics, labels, attributes) are checked against semconv by
semconv/tests/prometheus_names.rs.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

DURATIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$__auto": "5m"}


def substitute(query):
    for var, value in DURATIONS.items():
        query = query.replace(var, value)
    # Any other variable stands for a label value or regex.
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", query)


def panel_queries(paths):
    """(promql, logql, traceql): lists of (where, query), variables replaced."""
    promql, logql, traceql = [], [], []
    for path in paths:
        with open(path) as f:
            board = json.load(f)
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                kind = target.get("datasource", {}).get("type")
                where = f'{os.path.basename(path)}: {panel["title"]}'
                if kind == "prometheus":
                    promql.append((where, substitute(target["expr"])))
                elif kind == "loki":
                    logql.append((where, substitute(target["expr"])))
                elif kind == "tempo" and target.get("query"):
                    traceql.append((where, substitute(target["query"])))
    return promql, logql, traceql


def ask_prometheus(url, promql):
    """Every PromQL query, asked at `url`: 1 if any fails or finds nothing."""
    failed = False
    for where, expr in promql:
        query = urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=30) as answer:
                result = json.load(answer)
        except OSError as e:
            print(f"{where}: the query failed: {e}\n  {expr}")
            failed = True
            continue
        series = result.get("data", {}).get("result", [])
        if result.get("status") != "success" or not series:
            print(f"{where}: no series\n  {expr}\n  {json.dumps(result)[:300]}")
            failed = True
    if not failed:
        print(f"check-dashboards: {len(promql)} PromQL panel queries each return a series ({url})")
    return 1 if failed else 0


def main(args):
    if args[:1] == ["--prometheus"]:
        if len(args) < 3:
            print(__doc__)
            return 2
        return ask_prometheus(args[1].rstrip("/"), panel_queries(args[2:])[0])
    promql, logql, traceql = panel_queries(args)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        rules = os.path.join(tmp, "dashboards.rules.yaml")
        with open(rules, "w") as f:
            f.write("groups:\n  - name: dashboards\n    rules:\n")
            for i, (where, expr) in enumerate(promql):
                f.write(f"      # {where}\n      - record: dashboard:query:{i}\n")
                f.write(f"        expr: {json.dumps(expr)}\n")
        result = subprocess.run([os.environ.get("PROMTOOL", "promtool"), "check", "rules", rules], capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stdout + result.stderr)
            failed = True
        else:
            print(f"check-dashboards: {len(promql)} PromQL queries parse (promtool)")
        querycheck = os.environ.get("QUERYCHECK")
        if querycheck and os.path.isfile(os.path.join(querycheck, "check.mjs")):
            args = []
            for flag, queries in (("--logql", logql), ("--traceql", traceql)):
                path = os.path.join(tmp, flag[2:] + ".txt")
                with open(path, "w") as f:
                    f.write("".join(expr.replace("\n", " ") + "\n" for _, expr in queries))
                args += [flag, path]
            result = subprocess.run(
                ["node", os.path.join(querycheck, "check.mjs"), *args], capture_output=True, text=True
            )
            print((result.stdout + result.stderr).strip())
            failed |= result.returncode != 0
        else:
            print("check-dashboards: QUERYCHECK names no installed querycheck; LogQL and TraceQL not parsed")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
