#!/usr/bin/env bash
# A step of deploy/test.sh: monitoring. Installs Debian's prometheus (for promtool) when missing,
# then:
#   - promtool check config deploy/monitoring/prometheus.yml (with alerts.yml as its rule file);
#   - promtool check rules and promtool test rules (deploy/monitoring/alerts.test.yml);
#   - the Grafana dashboard is valid JSON, importable (its datasource an input);
#   - every query of deploy/monitoring/postgres-exporter-queries.yaml runs on a freshly migrated
#     database and returns the columns it declares;
#   - deploy/monitoring/check-metrics.py: every metric the dashboard and the rules use is
#     exported (by the hub's code, the exporter queries, or a named exporter), and which of them
#     the processes of the nginx and Patroni steps exported live (their /metrics, kept in
#     .local/deploy-tests/metrics by those steps when they ran before this one).
set -uo pipefail
# shellcheck source=deploy/tests/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

MON="$ROOT/deploy/monitoring"
need_services
apt_need prometheus python3-yaml
trap drop_databases EXIT
work="$ROOT/.local/deploy-tests/monitoring"
rm -rf "$work" && mkdir -p "$work"

# promtool: the config as installed (its rule file beside it), the rules, their unit tests
cp "$MON/prometheus.yml" "$work/prometheus.yml"
cp "$MON/alerts.yml" "$work/switchboard-alerts.yml"
promtool check config "$work/prometheus.yml" >"$work/promtool.log" 2>&1 || die "promtool check config: $(cat "$work/promtool.log")"
promtool check rules "$MON/alerts.yml" >"$work/promtool.log" 2>&1 || die "promtool check rules: $(cat "$work/promtool.log")"
rules=$(sed -n 's/.*SUCCESS: \([0-9]*\) rules found.*/\1/p' "$work/promtool.log")
(cd "$MON" && promtool test rules alerts.test.yml) >"$work/promtool-test.log" 2>&1 ||
    die "promtool test rules: $(cat "$work/promtool-test.log")"
say "promtool: prometheus.yml valid, $rules alert rules valid, alerts.test.yml passes"

# the dashboard
/usr/bin/python3 - "$MON/grafana-dashboard.json" <<'PY' || die "the dashboard is not importable"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["uid"] and d["title"], "uid and title"
assert any(i["name"] == "DS_PROMETHEUS" for i in d["__inputs"]), "a DS_PROMETHEUS input"
def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))
n = 0
for p in panels(d["panels"]):
    if p["type"] == "row":
        continue
    assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
    assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
    n += 1
print(f"monitoring: dashboard: {n} panels, every one on the DS_PROMETHEUS input")
PY

# the exporter's queries on the real schema
new_database
bin=$(switchboard_bin)
SWITCHBOARD_DATABASE__URL="$db_url" "$bin" migrate >/dev/null 2>"$work/migrate.log" || die "migrate: $(cat "$work/migrate.log")"
/usr/bin/python3 - "$MON/postgres-exporter-queries.yaml" "$db_url" <<'PY' || die "an exporter query fails on the schema"
import subprocess, sys, yaml
queries = yaml.safe_load(open(sys.argv[1]))
for name, spec in queries.items():
    declared = [next(iter(c)) for c in spec["metrics"]]
    out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", sys.argv[2], "-c",
                          f"SELECT * FROM ({spec['query']}) q LIMIT 0"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{name}: {out.stderr.strip()}")
    header = [c.strip() for c in out.stdout.splitlines()[0].split("|")]
    if header != declared:
        sys.exit(f"{name}: returns {header}, declares {declared}")
    print(f"monitoring: exporter query {name}: runs, columns {', '.join(declared)}")
PY

# every metric used has a source
scrapes="$ROOT/.local/deploy-tests/metrics"
if [ -d "$scrapes" ]; then
    /usr/bin/python3 "$MON/check-metrics.py" --scrapes "$scrapes" || exit 1
else
    say "no scrapes of live processes in $scrapes (the nginx and patroni steps leave them): checking against the code only"
    /usr/bin/python3 "$MON/check-metrics.py" || exit 1
fi
say "ok"
