#!/usr/bin/env bash
# Browser tests of the web chat widget, the agent console and the admin panel, in headless
# Chromium driven by playwright-core (Debian's /usr/bin/chromium; no browser is ever downloaded).
#
# Starts the fake Telegram Bot API (examples/fake_telegram.rs), the fake SMSC.ru
# (examples/fake_smsc.rs), the fake Nominatim (examples/fake_nominatim.rs) and `switchboard all` on a free
# port against a fresh database (the demo seeding creates the web chat account, the agents alice
# and bob and an admin token), runs webchat.test.mjs, video.test.mjs (video calls through the
# SFU, with fake camera, microphone and screen) and admin.test.mjs (the admin panel, the live
# view, the Russian UI and the axe-core checks) with the printed URLs, then stops the processes
# and drops the database. Needs: the services of deploy/services.sh (the
# environment of `deploy/services.sh env`), a built debug binary, node and npm, chromium.
# Screenshots go to $target/browser-screenshots/, or with SWITCHBOARD_UPDATE_SCREENSHOTS=1 to
# docs/screenshots/ (the ones the docs show).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
[[ $target == /* ]] || target="$root/$target"
bin=${SWITCHBOARD_BIN:-$target/debug/switchboard}
admin_url=${SWITCHBOARD_TEST_DATABASE_URL:?run eval "\$(deploy/services.sh env)" first}
[ -x "$bin" ] || { echo "browser tests: $bin is missing (cargo build --bin switchboard)" >&2; exit 1; }
fake_telegram=${SWITCHBOARD_FAKE_TELEGRAM:-$target/debug/examples/fake_telegram}
if [ ! -x "$fake_telegram" ] && command -v cargo >/dev/null; then
    (cd "$root" && cargo build --example fake_telegram)
fi
[ -x "$fake_telegram" ] || { echo "browser tests: $fake_telegram is missing (cargo build --example fake_telegram)" >&2; exit 1; }
fake_smsc=${SWITCHBOARD_FAKE_SMSC:-$target/debug/examples/fake_smsc}
if [ ! -x "$fake_smsc" ] && command -v cargo >/dev/null; then
    (cd "$root" && cargo build --example fake_smsc)
fi
[ -x "$fake_smsc" ] || { echo "browser tests: $fake_smsc is missing (cargo build --example fake_smsc)" >&2; exit 1; }
fake_nominatim=${SWITCHBOARD_FAKE_NOMINATIM:-$target/debug/examples/fake_nominatim}
if [ ! -x "$fake_nominatim" ] && command -v cargo >/dev/null; then
    (cd "$root" && cargo build --example fake_nominatim)
fi
[ -x "$fake_nominatim" ] || { echo "browser tests: $fake_nominatim is missing (cargo build --example fake_nominatim)" >&2; exit 1; }
command -v psql >/dev/null || { echo "browser tests: psql is missing (apt-get install postgresql-client)" >&2; exit 1; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "browser tests: no chromium (apt-get install --no-install-recommends chromium)" >&2; exit 1; }

if [ ! -d "$here/node_modules/playwright-core" ] || [ ! -d "$here/node_modules/axe-core" ]; then
    (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

work=$(mktemp -d)
db="browser_$(date +%s)_$$"
db_url="${admin_url%/*}/$db"
pid=
fake_pid=
smsc_pid=
geo_pid=
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [ -n "$fake_pid" ]; then exec 7>&- || true; kill -TERM "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; fi
    if [ -n "$smsc_pid" ]; then exec 8>&- || true; kill -TERM "$smsc_pid" 2>/dev/null || true; wait "$smsc_pid" 2>/dev/null || true; fi
    if [ -n "$geo_pid" ]; then exec 9>&- || true; kill -TERM "$geo_pid" 2>/dev/null || true; wait "$geo_pid" 2>/dev/null || true; fi
    psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
psql "$admin_url" -qc "CREATE DATABASE $db" >/dev/null

# the video calls' TURN server: deploy/services.sh's coturn, when it runs (the relay step needs it)
turn_env=()
if [ -n "${SWITCHBOARD_TEST_TURN_URL:-}" ]; then
    turn_env=(SWITCHBOARD_VIDEO__TURN__URLS="[\"$SWITCHBOARD_TEST_TURN_URL\"]"
              SWITCHBOARD_VIDEO__TURN__SECRET="$SWITCHBOARD_TEST_TURN_SECRET")
fi
# the fake Telegram: it serves until its stdin (our fd 7) closes
mkfifo "$work/fake-in"
"$fake_telegram" <"$work/fake-in" >"$work/fake-out" 2>"$work/fake-err" &
fake_pid=$!
exec 7>"$work/fake-in"
for _ in $(seq 1 40); do grep -q '^control:' "$work/fake-out" 2>/dev/null && break; sleep 0.25; done
TELEGRAM_API=$(sed -n 's/^telegram: *//p' "$work/fake-out")
TELEGRAM_CONTROL=$(sed -n 's/^control: *//p' "$work/fake-out")
[ -n "$TELEGRAM_CONTROL" ] || { cat "$work/fake-err" >&2; echo "browser tests: the fake Telegram did not start" >&2; exit 1; }
export TELEGRAM_API TELEGRAM_CONTROL
# the fake SMSC.ru of the call links by SMS: it serves until its stdin (our fd 8) closes
smsc_password="fake-smsc-$(head -c 12 /dev/urandom | base64 | tr -d '/+=\n')"
mkfifo "$work/smsc-in"
"$fake_smsc" hub "$smsc_password" <"$work/smsc-in" >"$work/smsc-out" 2>"$work/smsc-err" &
smsc_pid=$!
exec 8>"$work/smsc-in"
for _ in $(seq 1 40); do grep -q '^control:' "$work/smsc-out" 2>/dev/null && break; sleep 0.25; done
SMSC_API=$(sed -n 's/^smsc: *//p' "$work/smsc-out")
SMSC_CONTROL=$(sed -n 's/^control: *//p' "$work/smsc-out")
[ -n "$SMSC_CONTROL" ] || { cat "$work/smsc-err" >&2; echo "browser tests: the fake SMSC did not start" >&2; exit 1; }
export SMSC_CONTROL
# the fake Nominatim of the customers' locations: it serves until its stdin (our fd 9) closes
mkfifo "$work/geo-in"
"$fake_nominatim" <"$work/geo-in" >"$work/geo-out" 2>"$work/geo-err" &
geo_pid=$!
exec 9>"$work/geo-in"
for _ in $(seq 1 40); do grep -q '^nominatim:' "$work/geo-out" 2>/dev/null && break; sleep 0.25; done
NOMINATIM_API=$(sed -n 's/^nominatim: *//p' "$work/geo-out")
[ -n "$NOMINATIM_API" ] || { cat "$work/geo-err" >&2; echo "browser tests: the fake Nominatim did not start" >&2; exit 1; }

jwt_secret="browser-tests-$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')"
port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
env "${turn_env[@]}" \
SWITCHBOARD_DATABASE__URL="$db_url" \
SWITCHBOARD_COORD__BACKEND=local \
SWITCHBOARD_HTTP__BIND="127.0.0.1:$port" \
SWITCHBOARD_JWT__HS256_SECRET="$jwt_secret" \
SWITCHBOARD_LOADER__WEBHOOKS__ALLOW_INTERNAL='["127.0.0.1/32"]' \
SWITCHBOARD_LOADER__WEBHOOKS__POLL_INTERVAL_MS=200 \
SWITCHBOARD_FILESERVER__ROOT="$work/files" \
SWITCHBOARD_VIDEO__SMS__PROVIDER=smsc \
SWITCHBOARD_VIDEO__SMS__URL="$SMSC_API" \
SWITCHBOARD_VIDEO__SMS__LOGIN=hub \
SWITCHBOARD_VIDEO__SMS__PASSWORD="$smsc_password" \
SWITCHBOARD_VIDEO__SMS__ALLOW_INTERNAL='["127.0.0.1/32"]' \
SWITCHBOARD_VIDEO__SMS__STATUS_INTERVAL_MS=300 \
SWITCHBOARD_VIDEO__GEOCODER__URL="$NOMINATIM_API" \
SWITCHBOARD_VIDEO__GEOCODER__ALLOW_INTERNAL='["127.0.0.1/32"]' \
SWITCHBOARD_VIDEO__GEOCODER__PREVIEW_URL="$NOMINATIM_API/static?ll={lon},{lat}&z=15&size=320,160&l=map&pt={lon},{lat},pm2rdm" \
SWITCHBOARD_VIDEO__BRANDING__COMPANY_NAME="Acme Support" \
SWITCHBOARD_VIDEO__BRANDING__PRIMARY="#8a1c1c" \
SWITCHBOARD_VIDEO__BRANDING__CONSENT_TEXT="Acme uses your camera and microphone only for this call." \
    "$bin" all >"$work/out" 2>"$work/err" &
pid=$!

for _ in $(seq 1 120); do
    [ "$(grep -c 'console:   http.*#token=' "$work/out" 2>/dev/null)" = 2 ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; echo "browser tests: switchboard all exited" >&2; exit 1; }
    sleep 0.5
done
grep -q 'widget:' "$work/out" || { cat "$work/out" "$work/err" >&2; echo "browser tests: no demo URLs printed" >&2; exit 1; }

export BASE="http://127.0.0.1:$port"
WIDGET_URL=$(grep -o 'http://[^ ]*/webchat/demo?key=[^ ]*' "$work/out" | head -1)
ALICE_URL=$(grep 'Alice' "$work/out" | grep -o 'http://[^ ]*/console#token=[^ ]*')
BOB_URL=$(grep 'Bob' "$work/out" | grep -o 'http://[^ ]*/console#token=[^ ]*')
ADMIN_URL=$(grep -o 'http://[^ ]*/admin#token=[^ ]*' "$work/out" | head -1)
# the admin test signs tokens of its own agents with the hub's secret
JWT_SECRET="$jwt_secret"
export WIDGET_URL ALICE_URL BOB_URL ADMIN_URL JWT_SECRET
if [ "${SWITCHBOARD_UPDATE_SCREENSHOTS:-0}" = 1 ]; then
    export SCREENSHOTS="$root/docs/screenshots"
else
    export SCREENSHOTS="$target/browser-screenshots"
fi
status=0
# SWITCHBOARD_BROWSER_TESTS picks some of them, e.g. "video"
for t in ${SWITCHBOARD_BROWSER_TESTS:-webchat video admin}; do
    node "$here/$t.test.mjs" || status=$?
done
if [ "$status" != 0 ]; then
    echo "--- switchboard stderr (last 60 lines) ---" >&2
    tail -60 "$work/err" >&2
fi
exit "$status"
