# shellcheck shell=bash
# What the deploy/tests/*.sh steps of deploy/test.sh share: messages, waits, free ports, a
# throwaway database, the switchboard binary, processes started and stopped by pid.
# Sourced, never run.

ROOT=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
NAME=${NAME:-$(basename -- "$0" .sh)}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET == /* ]] || TARGET="$ROOT/$TARGET"
export DEBIAN_FRONTEND=noninteractive

say() { printf '%s: %s\n' "$NAME" "$*"; }
die() {
    printf '%s: FAILED: %s\n' "$NAME" "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# apt_need PACKAGE... : install the Debian packages that are missing (as root), quietly.
apt_need() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    is_root || die "missing Debian packages: ${missing[*]} (as root: apt-get install -y --no-install-recommends ${missing[*]})"
    say "installing ${missing[*]}"
    if ! apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        apt-get -o DPkg::Lock::Timeout=300 -qq update >/dev/null 2>&1 || true
        apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
            die "apt-get install ${missing[*]} failed"
    fi
}

# A TCP port nobody listens on (127.0.0.1), from the kernel.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# wait_until SECONDS WHAT COMMAND...: run COMMAND every 0.2 s until it succeeds.
wait_until() {
    local limit=$1 what=$2 t0
    shift 2
    t0=$(now)
    until "$@" >/dev/null 2>&1; do
        if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
            die "not within ${limit}s: $what"
        fi
        sleep 0.2
    done
}

# The services of deploy/services.sh must run (deploy/test.sh starts them).
need_services() {
    if [ -z "${SWITCHBOARD_TEST_DATABASE_URL:-}" ] || [ -z "${SWITCHBOARD_TEST_ZK:-}" ]; then
        die "start the services first: deploy/services.sh start && eval \"\$(deploy/services.sh env)\" (or run deploy/test.sh)"
    fi
}

# A fresh database on the local PostgreSQL (named like the cargo tests' throwaway databases, so
# deploy/test.sh drops it if this step dies before it does); its URL in $db_url. Dropped on
# exit by drop_databases.
TEST_DBS=()
db_url=''
new_database() {
    local name
    name="t_$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    psql -q "$SWITCHBOARD_TEST_DATABASE_URL" -c "CREATE DATABASE $name" >/dev/null || die "cannot create database $name"
    TEST_DBS+=("$name")
    # shellcheck disable=SC2034 # read by the scripts that source this file
    db_url="${SWITCHBOARD_TEST_DATABASE_URL%/*}/$name"
}
drop_databases() {
    local db
    for db in "${TEST_DBS[@]}"; do
        psql -q "$SWITCHBOARD_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    TEST_DBS=()
}

# The debug binary, built if needed (the cargo test step has built it already). Built by
# `cargo test --workspace --no-run`, never `cargo build` or `cargo test -p <one crate>`: those
# resolve dependency features differently and compile a second copy of everything, which
# filled CI's disk once.
switchboard_bin() {
    (cd "$ROOT" && cargo test --workspace --no-run -q) >&2 || die "cargo test --workspace --no-run failed"
    printf '%s\n' "$TARGET/debug/switchboard"
}

# Processes this step started: killed (TERM, then KILL) by pid on exit.
PIDS=()
track() { PIDS+=("$1"); }
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}
stop_tracked() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
}

# wait_banner FILE PID: wait until a switchboard process prints its address to FILE (its
# stdout); prints host:port.
wait_banner() {
    local file=$1 pid=$2 addr
    for _ in $(seq 1 300); do
        addr=$(sed -n 's|^switchboard: listening on http://||p' "$file" 2>/dev/null | head -n 1)
        if [ -n "$addr" ]; then
            printf '%s\n' "$addr"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "switchboard (pid $pid) exited before listening; its output: $(tail -n 20 "$file" 2>/dev/null)"
        sleep 0.1
    done
    die "switchboard (pid $pid) did not print its address within 30 s"
}
