#!/usr/bin/env bash
# The whole check, as CI runs it: start the local services (fast, test-only settings), the
# 3-node ZooKeeper ensemble and coturn (TURN, for the video tests), then rustfmt, the check
# that nothing refers outside the repository (deploy/check-standalone.sh), clippy (warnings
# are errors), every test of the workspace, the browser tests and the deployment steps
# (deploy/tests/*.sh: the Debian package, the nginx entry point, PostgreSQL failover under
# Patroni, monitoring, several video nodes). Extra arguments go to `cargo test` (e.g.
# deploy/test.sh -p ops, or -- --nocapture) and skip the browser and deployment steps.
#
# Services this script starts it also stops at the end; services that were already running
# (a developer's) are left running. It honours CARGO_TARGET_DIR. Exit status: 0 when every step
# passed, 1 otherwise.
set -uo pipefail

ROOT=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
SERVICES="$ROOT/deploy/services.sh"

say() { printf 'test.sh: %s\n' "$*"; }
die() {
    printf 'test.sh: error: %s\n' "$*" >&2
    exit 1
}

command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust 1.95 with rustup (https://rustup.rs): curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain 1.95 --component rustfmt,clippy"

# ------------------------------------------------------------------ services --

started_services=no
started_ensemble=no
started_coturn=no
# shellcheck disable=SC2317 # called from the EXIT trap
stop_started() {
    if [ "$started_coturn" = yes ]; then
        "$SERVICES" coturn stop >/dev/null 2>&1 || true
    fi
    if [ "$started_ensemble" = yes ]; then
        "$SERVICES" ensemble stop >/dev/null 2>&1 || true
    fi
    if [ "$started_services" = yes ]; then
        "$SERVICES" stop >/dev/null 2>&1 || true
    fi
}
trap stop_started EXIT
trap 'exit 130' INT TERM

# `status` exits 0 only when PostgreSQL and ZooKeeper both run; `ensemble status` only when
# all three nodes run; `coturn status` when coturn runs. Whatever is not running now is ours to
# stop afterwards.
"$SERVICES" status >/dev/null 2>&1 || started_services=yes
"$SERVICES" ensemble status >/dev/null 2>&1 || started_ensemble=yes
"$SERVICES" coturn status >/dev/null 2>&1 || started_coturn=yes

# When none of this checkout's services run but the default ports are taken (typically by the
# services of another checkout on the same machine, e.g. CI's fresh clone next to a developer's
# tree), this run uses the first free set of ports 10, 20, ... above the defaults. Ports set
# explicitly (SWITCHBOARD_PG_PORT, SWITCHBOARD_ZK_PORT, SWITCHBOARD_ZK_ENSEMBLE_BASE) are kept.
port_busy() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}
ports_free() {
    local o=$1 n
    port_busy $((25432 + o)) && return 1
    port_busy $((22181 + o)) && return 1
    port_busy $((23478 + o)) && return 1
    # the Patroni test cluster of deploy/services.sh: PostgreSQL, REST, HAProxy
    port_busy $((26401 + o * 10)) && return 1
    port_busy $((26411 + o * 10)) && return 1
    port_busy $((26420 + o * 10)) && return 1
    for n in 0 1 2; do
        port_busy $((22281 + o + n)) && return 1
        port_busy $((22381 + o + n)) && return 1
        port_busy $((22481 + o + n)) && return 1
    done
    return 0
}
ours=$("$SERVICES" status 2>/dev/null; "$SERVICES" coturn status 2>/dev/null || true)
if [ -z "${SWITCHBOARD_PG_PORT:-}${SWITCHBOARD_ZK_PORT:-}${SWITCHBOARD_ZK_ENSEMBLE_BASE:-}" ] &&
    [[ $ours != *": running"* ]]; then
    for offset in 0 10 20 30 40 50 60 70 80 90; do
        if ports_free "$offset"; then
            if [ "$offset" -ne 0 ]; then
                export SWITCHBOARD_PG_PORT=$((25432 + offset))
                export SWITCHBOARD_ZK_PORT=$((22181 + offset))
                export SWITCHBOARD_ZK_ENSEMBLE_BASE=$((22281 + offset))
                export SWITCHBOARD_TURN_PORT=$((23478 + offset))
                export SWITCHBOARD_TURN_RELAY_MIN=$((23600 + offset * 10))
                export SWITCHBOARD_PATRONI_BASE=$((26400 + offset * 10))
                say "default ports are taken (another checkout's services?): using PostgreSQL $SWITCHBOARD_PG_PORT, ZooKeeper $SWITCHBOARD_ZK_PORT, ensemble from $SWITCHBOARD_ZK_ENSEMBLE_BASE, coturn $SWITCHBOARD_TURN_PORT (relays from $SWITCHBOARD_TURN_RELAY_MIN)"
            fi
            break
        fi
    done
fi

SWITCHBOARD_PG_FAST=1 SWITCHBOARD_ZK_FAST=1 "$SERVICES" start || die "deploy/services.sh start failed"
"$SERVICES" ensemble start || die "deploy/services.sh ensemble start failed"
"$SERVICES" coturn start || die "deploy/services.sh coturn start failed"
eval "$("$SERVICES" env)"

# Every test makes a throwaway database (t_<uuid>); hundreds left by earlier runs slow the
# cluster down (autovacuum visits each). Drop them; one still in use by a running test is kept.
stale=$(psql "$SWITCHBOARD_TEST_DATABASE_URL" -Atc "SELECT datname FROM pg_database WHERE datname ~ '^t_[0-9a-f]{32}$'" 2>/dev/null || true)
if [ -n "$stale" ]; then
    dropped=0
    for db in $stale; do
        psql -q "$SWITCHBOARD_TEST_DATABASE_URL" -c "DROP DATABASE \"$db\"" >/dev/null 2>&1 && dropped=$((dropped + 1))
    done
    say "dropped $dropped throwaway test database(s) of earlier runs"
fi

# Debian packages the build and the tests need: libopus-dev (the video recorder links libopus;
# libopus0 alone runs it) and ffmpeg (the recording tests read the files back with ffprobe and
# ffmpeg; never used by the hub). Installed when missing and this runs as root.
build_packages=()
pkg-config --exists opus 2>/dev/null || build_packages+=(libopus-dev pkg-config)
command -v ffprobe >/dev/null 2>&1 || build_packages+=(ffmpeg)
if [ "${#build_packages[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing Debian packages: apt-get install --no-install-recommends ${build_packages[*]}"
    say "installing ${build_packages[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${build_packages[@]}" >/dev/null ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${build_packages[@]}" >/dev/null; } ||
        die "apt-get install ${build_packages[*]} failed"
fi

# On CI every run starts from nothing, so incremental compilation only costs disk (3.7 of the
# 9 GB a full run leaves in the target directory). A developer's setting is kept.
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
say "target directory: ${CARGO_TARGET_DIR:-$ROOT/target}"

# --------------------------------------------------------------------- steps --

declare -a names=() results=()
failed=0
step() {
    local name=$1 t0 rc
    shift
    say "==> $name: $*"
    t0=$SECONDS
    "$@"
    rc=$?
    names+=("$name")
    if [ "$rc" -eq 0 ]; then
        results+=("ok ($((SECONDS - t0))s)")
    else
        results+=("FAILED, exit $rc ($((SECONDS - t0))s)")
        failed=1
    fi
}

test_log=$(mktemp)
trap 'rm -f "$test_log"; stop_started' EXIT
# shellcheck disable=SC2317 # called through step
run_tests() {
    # every test binary runs even after one fails, so one failure never hides another
    cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$test_log"
}

step fmt cargo fmt --all -- --check
step standalone deploy/check-standalone.sh
step clippy cargo clippy --workspace --all-targets -- -D warnings
step test run_tests "$@"

# Browser tests (tests/browser/run.sh: the web chat widget and the agent console in headless
# Chromium through playwright-core), when no cargo test arguments narrow the run. Debian's
# chromium (and node/npm) are installed when missing and this runs as root; playwright-core
# comes from the npm registry and never downloads a browser.
browser_log=$(mktemp)
trap 'rm -f "$test_log" "$browser_log"; stop_started' EXIT
# shellcheck disable=SC2317 # called through step
browser_tests() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium chromium-driver)
    command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
    if [ "${#missing[@]}" -gt 0 ]; then
        [ "$(id -u)" = 0 ] ||
            { say "browser tests need: apt-get install --no-install-recommends ${missing[*]}"; return 1; }
        say "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
            { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } ||
            return 1
    fi
    # `cargo test --no-run` rather than `cargo build`: it resolves features as the test step did,
    # so the binary and the examples already built are reused, not built a second time (a second
    # copy of every dependency filled CI's disk once)
    cargo test --workspace --no-run -q && tests/browser/run.sh 2>&1 | tee "$browser_log"
}
if [ "$#" -eq 0 ]; then
    step browser browser_tests
fi

# Deployment (docs/operations.md), when no cargo test arguments narrow the run: each step is a
# script under deploy/tests/ that installs the Debian packages it needs (as root) and says what
# it shows. The nginx and patroni steps leave their processes' /metrics for the monitoring step.
# Only the package step runs cargo-deb (installed once per machine); none builds in release.
# shellcheck disable=SC2317 # called through step
deploy_step() {
    "$ROOT/deploy/tests/$1.sh" 2>&1 | tee -a "$test_log"
    return "${PIPESTATUS[0]}"
}
if [ "$#" -eq 0 ]; then
    rm -rf "$ROOT/.local/deploy-tests/metrics"
    step package deploy_step package
    step nginx deploy_step nginx
    step patroni deploy_step patroni
    step monitoring deploy_step monitoring
    step video-nodes deploy_step video-nodes
fi

# ------------------------------------------------------------------- summary --

# Totals over every test binary's "test result:" line.
read -r passed failed_tests ignored < <(awk '
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed;?$/) p += $i
            if ($(i + 1) ~ /^failed;?$/) f += $i
            if ($(i + 1) ~ /^ignored;?$/) g += $i
        }
    }
    END { printf "%d %d %d\n", p, f, g }' "$test_log")
# plus the browser tests' "N passed, M failed" lines, one per test file
if read -r bp bf < <(awk '/^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3; n++ }
        END { if (n) printf "%d %d\n", p, f }' "$browser_log") && [ -n "$bp" ]; then
    passed=$((passed + bp))
    failed_tests=$((failed_tests + bf))
fi

echo
say "summary"
for i in "${!names[@]}"; do
    printf '  %-11s %s\n' "${names[$i]}" "${results[$i]}"
done
say "$passed tests passed, $failed_tests failed, $ignored ignored"
if [ "$failed" -ne 0 ]; then
    say "FAILED"
else
    say "all green"
fi
printf 'tests: %d passed, %d failed\n' "$passed" "$failed_tests"
exit "$failed"
