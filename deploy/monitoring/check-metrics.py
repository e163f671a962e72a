#!/usr/bin/python3
"""Every metric the dashboard and the alert rules use is exported by something we run.

  deploy/monitoring/check-metrics.py [--scrapes DIR]

Reads the PromQL of deploy/monitoring/grafana-dashboard.json and alerts.yml, takes every
metric name out of it, and finds where each comes from:

  hub       a metric the Switchboard code registers (metrics::counter!/gauge!/histogram! with a
            literal name, in any crate of this repository; _bucket/_sum/_count of a histogram);
  postgres  a column of a query in postgres-exporter-queries.yaml (<query>_<column>);
  external  an exporter we document and name here (Prometheus' own `up`, node exporter,
            Patroni's REST /metrics; Patroni's names are also checked against the installed
            Patroni's source when it is installed).

With --scrapes DIR (Prometheus text files: the /metrics of the processes the nginx and Patroni
steps of deploy/test.sh ran), it also says which of them were seen exported by a live process.
Exit status 1 if any name comes from none of these.
"""
import argparse
import glob
import json
import os
import re
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.join(ROOT, "deploy", "monitoring")

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "and", "or", "unless", "inf", "nan", "atan2",
}
EXTERNAL = {
    "up": "Prometheus (every scrape)",
    "node_filesystem_avail_bytes": "node exporter",
    "node_filesystem_size_bytes": "node exporter",
    "patroni_primary": "Patroni REST /metrics",
    "patroni_sync_standby": "Patroni REST /metrics",
    "patroni_xlog_location": "Patroni REST /metrics",
    "patroni_xlog_replayed_location": "Patroni REST /metrics",
}
PATRONI_SOURCE = "/usr/lib/python3/dist-packages/patroni/api.py"


def metric_names(expr):
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)", s):
        name = m.group(1)
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or name in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def used():
    """metric -> the places that use it"""
    uses = {}
    dashboard = json.load(open(os.path.join(HERE, "grafana-dashboard.json")))

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dashboard["panels"]):
        for t in p.get("targets", []):
            for name in metric_names(t["expr"]):
                uses.setdefault(name, []).append("dashboard: " + p["title"])
    rules = yaml.safe_load(open(os.path.join(HERE, "alerts.yml")))
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in metric_names(rule["expr"]):
                uses.setdefault(name, []).append("alert: " + rule.get("alert", rule.get("record", "?")))
    return uses


def hub_metrics():
    """name -> kind, from every metrics macro with a literal name in the repository's Rust code.
    A histogram with buckets set (set_buckets_for_metric) is rendered as a Prometheus histogram
    (`_bucket`, `_sum`, `_count`), any other as a summary (`{quantile=...}`, `_sum`, `_count`)."""
    found = {}
    pattern = re.compile(r'\b(counter|gauge|histogram)!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
    bucketed = re.compile(r'set_buckets_for_metric\(\s*Matcher::Full\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
    for path in glob.glob(os.path.join(ROOT, "**", "*.rs"), recursive=True):
        rel = os.path.relpath(path, ROOT)
        if rel.startswith(("target", ".local")) or "/tests/" in "/" + rel or "/benches/" in "/" + rel:
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
            for kind, name in pattern.findall(text):
                found.setdefault(name, kind)
            for name in bucketed.findall(text):
                found[name] = "histogram with buckets"
    return found


def postgres_metrics():
    queries = yaml.safe_load(open(os.path.join(HERE, "postgres-exporter-queries.yaml")))
    names = {}
    for query, spec in queries.items():
        for column in spec["metrics"]:
            (col, attrs), = column.items()
            if attrs["usage"] in ("GAUGE", "COUNTER"):
                names[f"{query}_{col}"] = query
    return names


def scraped(directory):
    names = set()
    for path in glob.glob(os.path.join(directory, "*")):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line and not line.startswith("#"):
                    m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)", line)
                    if m:
                        names.add(m.group(1))
    return names


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scrapes", help="directory of /metrics scrapes of live processes")
    args = parser.parse_args()
    uses = used()
    hub = hub_metrics()
    pg = postgres_metrics()
    live = scraped(args.scrapes) if args.scrapes and os.path.isdir(args.scrapes) else None
    patroni_src = open(PATRONI_SOURCE).read() if os.path.exists(PATRONI_SOURCE) else None
    unknown, lines, seen_live = [], [], 0
    for name in sorted(uses):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        suffix = name[len(base) + 1:]
        histogram = hub.get(base, "").startswith("histogram")
        if name in hub or (histogram and (suffix != "bucket" or hub[base] == "histogram with buckets")):
            source = "hub (" + (hub.get(name) or hub[base]) + ")"
        elif name in pg:
            source = "postgres exporter query " + pg[name]
        elif name in EXTERNAL:
            source = EXTERNAL[name]
            if name.startswith("patroni_") and patroni_src is not None and name not in patroni_src:
                unknown.append(f"{name}: not in the installed Patroni's {PATRONI_SOURCE}")
                continue
        else:
            unknown.append(f"{name}: used by {', '.join(sorted(set(uses[name])))}")
            continue
        state = ""
        if live is not None:
            if name in live or base in live:
                state = "  [seen live]"
                seen_live += 1
        lines.append(f"  {name:55} {source}{state}")
    print(f"check-metrics: {len(uses)} metrics used by the dashboard ({HERE}/grafana-dashboard.json) and the alert rules:")
    print("\n".join(lines))
    if live is not None:
        print(f"check-metrics: {seen_live} of them seen in the /metrics of live processes ({args.scrapes}); "
              "the others are registered in the code and appear with their first event")
    if unknown:
        print("check-metrics: FAILED, no source exports:", file=sys.stderr)
        for u in unknown:
            print("  " + u, file=sys.stderr)
        return 1
    print("check-metrics: ok, every metric has a source")
    return 0


if __name__ == "__main__":
    sys.exit(main())
