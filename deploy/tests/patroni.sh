#!/usr/bin/env bash
# A step of deploy/test.sh: PostgreSQL high availability. Starts the two-node Patroni cluster of
# deploy/services.sh (Debian's patroni and haproxy, installed when missing; ZooKeeper as its
# consensus store; synchronous replication), then runs tests/deploy_patroni.rs: kill -9 of the
# primary while customers write and an agent replies, with the failover time and what was lost
# or duplicated in its report. A cluster this step started is destroyed afterwards; one that
# was running already gets its killed node back.
set -uo pipefail
# shellcheck source=deploy/tests/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

SERVICES="$ROOT/deploy/services.sh"
need_services
started=no
if ! "$SERVICES" patroni status >/dev/null 2>&1; then
    started=yes
    # leftovers of an interrupted run (a node killed, data of another cluster) start afresh
    "$SERVICES" patroni destroy >/dev/null 2>&1 || true
fi
cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        for log in "$ROOT"/.local/patroni/node*/patroni.log /var/tmp/switchboard-*/patroni/node*/patroni.log; do
            [ -f "$log" ] || continue
            say "last lines of $log:"
            tail -n 15 "$log" >&2
        done
    fi
    if [ "$started" = yes ]; then
        "$SERVICES" patroni destroy >/dev/null 2>&1 || say "warning: deploy/services.sh patroni destroy failed"
    else
        for n in 1 2; do "$SERVICES" patroni start-node "$n" >/dev/null 2>&1 || true; done
    fi
}
trap cleanup EXIT

t0=$(now)
"$SERVICES" patroni start || die "deploy/services.sh patroni start failed"
haproxy -c -q -f "$ROOT/deploy/patroni/haproxy.cfg.example" || die "deploy/patroni/haproxy.cfg.example does not check"
say "cluster up in $(since "$t0")s"
eval "$("$SERVICES" env)"
# Patroni's /metrics, for deploy/tests/monitoring.sh (which metrics a live Patroni exports)
metrics="$ROOT/.local/deploy-tests/metrics"
mkdir -p "$metrics"
for port in 26411 26412; do
    port=$((port - 26400 + ${SWITCHBOARD_PATRONI_BASE:-26400}))
    curl -fsS "http://127.0.0.1:$port/metrics" >"$metrics/patroni-$port.prom" 2>/dev/null || true
done
[ -n "${SWITCHBOARD_TEST_PATRONI_URL:-}" ] || die "deploy/services.sh env printed no SWITCHBOARD_TEST_PATRONI_URL"
cd "$ROOT" && cargo test -q --workspace --test deploy_patroni -- --ignored --nocapture
