#!/usr/bin/env bash
# The inbound benchmark (benches/inbound.rs) twice: first on a PostgreSQL with its production
# settings (fsync and synchronous_commit on: every commit waits for its WAL flush), then on the
# test cluster of deploy/services.sh (fsync off, synchronous_commit off). The hub, PostgreSQL
# and ZooKeeper each run in their own process; the benchmark reads their CPU from /proc.
#
#   bench/inbound.sh                      both runs
#   bench/inbound.sh durable              the durable run only
#   BENCH_PG_SETTINGS="-c commit_delay=200 -c commit_siblings=2" bench/inbound.sh durable
#                                         the durable cluster with extra settings
#
# The durable cluster lives in .local/bench-pg (port 25499 unless SWITCHBOARD_BENCH_PG_PORT);
# it is created on first use and stopped at the end. BENCH_* variables reach the benchmark
# (see benches/inbound.rs).
set -euo pipefail

ROOT=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf 'inbound.sh: %s\n' "$*"; }
die() {
    printf 'inbound.sh: error: %s\n' "$*" >&2
    exit 1
}

what=${1:-both}
deploy/services.sh status >/dev/null 2>&1 || deploy/services.sh start || die "deploy/services.sh start failed"
eval "$(deploy/services.sh env)"
zk_pid=$(cat .local/zk/zk.pid 2>/dev/null || true)

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pg_bin/initdb" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql (deploy/services.sh start installs them)"
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

BASE=$ROOT/.local/bench-pg
PORT=${SWITCHBOARD_BENCH_PG_PORT:-25499}
durable_start() {
    mkdir -p "$BASE"
    [ "$(id -u)" = 0 ] && chown postgres: "$BASE"
    if [ ! -f "$BASE/data/PG_VERSION" ]; then
        say "initdb $BASE/data"
        as_pg "$pg_bin/initdb" -D "$BASE/data" -U postgres --auth-local=trust --auth-host=trust -E UTF8 \
            --locale=C.UTF-8 >"$BASE/initdb.log" 2>&1 || die "initdb failed, see $BASE/initdb.log"
    fi
    # the production defaults: fsync, synchronous_commit and full_page_writes on
    local opts="-c port=$PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200"
    opts+=" -c shared_buffers=512MB -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
    opts+=" ${BENCH_PG_SETTINGS:-}"
    say "starting the durable PostgreSQL on 127.0.0.1:$PORT ${BENCH_PG_SETTINGS:+with $BENCH_PG_SETTINGS}"
    as_pg "$pg_bin/pg_ctl" -D "$BASE/data" -l "$BASE/server.log" -w -o "$opts" start >/dev/null ||
        die "the durable PostgreSQL did not start; see $BASE/server.log"
    # every run makes a database of its own (t_<uuid>); earlier runs' are dropped so that each
    # run finds the cluster as the first one did (autovacuum, caches, checkpoints)
    local url="postgres://postgres@127.0.0.1:$PORT/postgres" db dropped=0
    for db in $(psql "$url" -Atc "SELECT datname FROM pg_database WHERE datname ~ '^t_[0-9a-f]{32}$'"); do
        psql -q "$url" -c "DROP DATABASE \"$db\"" >/dev/null && dropped=$((dropped + 1))
    done
    [ "$dropped" -eq 0 ] || say "dropped $dropped database(s) of earlier runs"
}
durable_stop() {
    as_pg "$pg_bin/pg_ctl" -D "$BASE/data" -m fast stop >/dev/null 2>&1 || true
}

run() {
    local label=$1 url=$2 pid=$3
    say "==> $label"
    SWITCHBOARD_TEST_DATABASE_URL=$url BENCH_LABEL=$label BENCH_PG_PID=$pid BENCH_ZK_PID=$zk_pid \
        cargo bench --bench inbound
}

if [ "$what" = both ] || [ "$what" = durable ]; then
    trap durable_stop EXIT
    durable_start
    run "durable: fsync on, synchronous_commit on${BENCH_PG_SETTINGS:+, $BENCH_PG_SETTINGS}" \
        "postgres://postgres@127.0.0.1:$PORT/postgres" "$(head -n 1 "$BASE/data/postmaster.pid")"
    durable_stop
    trap - EXIT
fi
if [ "$what" = both ] || [ "$what" = fast ]; then
    run "fast: the test cluster, fsync off, synchronous_commit off" "$SWITCHBOARD_TEST_DATABASE_URL" \
        "$(head -n 1 .local/pg/data/postmaster.pid)"
fi
