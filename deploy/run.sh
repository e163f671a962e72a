#!/usr/bin/env bash
# Run Switchboard on this machine: start the local PostgreSQL and ZooKeeper
# (deploy/services.sh, installing them as root if missing), build the binary, apply the
# migrations, then run every component in this process (`switchboard all`) until Ctrl-C or
# SIGTERM. It prints the URLs it serves.
#
#   deploy/run.sh [--config FILE]      extra arguments go to `switchboard`
#   SWITCHBOARD_RELEASE=1 deploy/run.sh   optimised build (about 10 min from clean, vs ~6)
#
# The services keep running after switchboard stops: `deploy/services.sh stop` stops them.
# Configuration: the environment from `deploy/services.sh env` (database URL, ZooKeeper
# address) overrides the config file; any other SWITCHBOARD_* variable you set applies too.
set -euo pipefail

ROOT=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

say() { printf 'run.sh: %s\n' "$*"; }
die() {
    printf 'run.sh: error: %s\n' "$*" >&2
    exit 1
}

command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust 1.95 with rustup (https://rustup.rs): curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain 1.95 && . \"\$HOME/.cargo/env\""

# libopus (Debian's libopus-dev, found by pkg-config): the video recorder links it. Installed
# when missing and this runs as root.
if ! pkg-config --exists opus 2>/dev/null; then
    [ "$(id -u)" = 0 ] || die "libopus is missing: apt-get install --no-install-recommends libopus-dev pkg-config"
    say "installing libopus-dev pkg-config"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libopus-dev pkg-config >/dev/null ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libopus-dev pkg-config >/dev/null; } ||
        die "apt-get install libopus-dev pkg-config failed"
fi

deploy/services.sh start
eval "$(deploy/services.sh env)"

if [ "${SWITCHBOARD_RELEASE:-0}" = 1 ]; then
    profile=release
    say "building (release; SWITCHBOARD_RELEASE=1)"
    cargo build --release --bin switchboard
else
    profile=debug
    say "building (debug; SWITCHBOARD_RELEASE=1 for an optimised build)"
    cargo build --bin switchboard
fi

target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target="$ROOT/$target"
bin="$target/$profile/switchboard"
[ -x "$bin" ] || die "built, but $bin is missing"

# Bearer tokens: unless a key is configured (environment or config file), sign them with a
# secret generated once for this checkout, kept in the git-ignored .local/ folder.
if [ -z "${SWITCHBOARD_JWT__HS256_SECRET:-}${SWITCHBOARD_JWT__HS256_SECRET__FILE:-}${SWITCHBOARD_JWT__PUBLIC_KEY_FILE:-}" ] &&
    ! "$bin" "$@" config 2>/dev/null | grep -qE '^(hs256_secret|public_key_file) = '; then
    secret_file="$ROOT/.local/jwt-secret"
    if [ ! -s "$secret_file" ]; then
        mkdir -p "$ROOT/.local"
        (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n/+=' >"$secret_file")
        say "generated a token signing secret in $secret_file"
    fi
    export SWITCHBOARD_JWT__HS256_SECRET__FILE="$secret_file"
fi

"$bin" "$@" migrate
say "an agent token for trying the API (valid 12 h): $("$bin" "$@" token --sub demo-agent --name 'Demo Agent' --roles agent,supervisor --ttl 43200 2>/dev/null || echo 'unavailable: jwt.hs256_secret is not set')"
say "starting: $bin ${*:+$* }all (Ctrl-C to stop; logs on stderr)"
exec "$bin" "$@" all
