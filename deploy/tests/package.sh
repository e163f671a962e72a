#!/usr/bin/env bash
# A step of deploy/test.sh: the Debian package (item 1 of docs/operations.md's checklist).
#
#   1. builds it with cargo-deb from this checkout (installs cargo-deb, pinned, when missing);
#      the test package carries the debug binary the suite built already (--profile dev), the
#      release package is `cargo deb` (docs/operations.md, "The Debian package");
#   2. checks its contents and control data (binary, commented config as a conffile, units,
#      maintainer scripts);
#   3. installs it with dpkg (root): the system user, the owners and modes of /etc/switchboard
#      and /var/lib/switchboard, the secrets generated once;
#   4. verifies every unit with `systemd-analyze verify` (any message fails the step) and checks
#      the sandboxing with `systemd-analyze security --offline` (exposure at most 2.0);
#   5. runs the units' own ExecStart lines (%i substituted) as the service user on a throwaway
#      database: switchboard-migrate twice (applies, then "up to date"), switchboard@all until
#      /readyz says ready, SIGTERM and a clean exit within TimeoutStopSec, then
#      switchboard-connector@<account> of the account `all` created;
#   6. purges the package (unless it was installed before this step).
# No systemd runs as PID 1 in CI, so the units are verified, not started by systemd.
set -uo pipefail
# shellcheck source=deploy/tests/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

CARGO_DEB_VERSION=3.8.0
WORK="$ROOT/.local/deploy-tests/package"
UNITS=/usr/lib/systemd/system
installed_before=no
installed_here=no

cleanup() {
    stop_tracked
    drop_databases
    if [ "$installed_here" = yes ] && [ "$installed_before" = no ]; then
        dpkg --purge switchboard >/dev/null 2>&1 || say "warning: dpkg --purge switchboard failed"
    fi
}
trap cleanup EXIT

need_services
rm -rf "$WORK" && mkdir -p "$WORK"

# ------------------------------------------------------------------ build --

if ! command -v cargo-deb >/dev/null 2>&1; then
    say "installing cargo-deb $CARGO_DEB_VERSION from crates.io (once per machine, about 3 min)"
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION" || die "cargo install cargo-deb failed"
fi
switchboard_bin >/dev/null
t0=$(now)
(cd "$ROOT" && cargo deb --no-build --profile dev --fast -q -o "$WORK/switchboard.deb") >"$WORK/cargo-deb.log" 2>&1 ||
    die "cargo deb failed: $(tail -n 20 "$WORK/cargo-deb.log")"
deb="$WORK/switchboard.deb"
say "built $(basename -- "$deb"): $(du -k "$deb" | cut -f1) KiB (debug binary, stripped; gzip) in $(since "$t0")s"

# --------------------------------------------------------------- contents --

contents=$(dpkg-deb -c "$deb") || die "dpkg-deb -c failed"
for path in ./usr/bin/switchboard ./etc/switchboard/switchboard.toml \
    ./usr/lib/systemd/system/switchboard@.service ./usr/lib/systemd/system/switchboard-connector@.service \
    ./usr/lib/systemd/system/switchboard-migrate.service ./usr/lib/systemd/system/switchboard.target \
    ./usr/share/doc/switchboard/operations.md ./usr/share/doc/switchboard/examples/nginx/switchboard.conf \
    ./usr/share/doc/switchboard/examples/switchboard.example.toml; do
    grep -qF -- " $path" <<<"$contents" || die "the package lacks $path"
done
[ "$(dpkg-deb -f "$deb" Package)" = switchboard ] || die "package name"
dpkg-deb -f "$deb" Depends | grep -q adduser || die "Depends lacks adduser (the postinst creates a user)"
dpkg-deb -f "$deb" Depends | grep -q libopus0 || die "Depends lacks libopus0 (the video recorder links it)"
dpkg-deb -e "$deb" "$WORK/control"
grep -qx /etc/switchboard/switchboard.toml "$WORK/control/conffiles" || die "/etc/switchboard/switchboard.toml is not a conffile"
for script in postinst prerm postrm; do
    [ -x "$WORK/control/$script" ] || die "no $script"
    sh -n "$WORK/control/$script" || die "$script is not valid sh"
done
grep -c '^#' "$ROOT/debian/switchboard.toml" | awk '$1 < 30 { exit 1 }' || die "the packaged config is not commented"
say "contents: binary, conffile, 4 units, maintainer scripts, docs and examples"

is_root || die "installing the package needs root (dpkg -i); run the suite as root as CI does"

# ---------------------------------------------------------------- install --

if dpkg-query -W -f='${Status}' switchboard 2>/dev/null | grep -q 'install ok installed'; then
    installed_before=yes
fi
dpkg -i "$deb" >"$WORK/dpkg.log" 2>&1 || die "dpkg -i failed: $(tail -n 20 "$WORK/dpkg.log")"
installed_here=yes
getent passwd switchboard | grep -q ':/usr/sbin/nologin$' || die "no system user switchboard with a nologin shell"
[ "$(stat -c '%U:%G %a' /etc/switchboard)" = "root:switchboard 750" ] || die "/etc/switchboard: $(stat -c '%U:%G %a' /etc/switchboard)"
for f in switchboard.toml jwt-secret file-signing-key; do
    [ "$(stat -c '%U:%G %a' "/etc/switchboard/$f")" = "root:switchboard 640" ] ||
        die "/etc/switchboard/$f: $(stat -c '%U:%G %a' "/etc/switchboard/$f")"
done
[ "$(wc -c </etc/switchboard/jwt-secret)" -ge 32 ] || die "the generated JWT secret is shorter than 32 bytes"
[ "$(stat -c '%U:%G' /var/lib/switchboard/files)" = "switchboard:switchboard" ] || die "/var/lib/switchboard/files owner"
secret=$(cat /etc/switchboard/jwt-secret)
dpkg -i "$deb" >>"$WORK/dpkg.log" 2>&1 || die "reinstalling (an upgrade) failed"
[ "$(cat /etc/switchboard/jwt-secret)" = "$secret" ] || die "an upgrade replaced the generated secret"
say "installed: user switchboard, /etc/switchboard root:switchboard 750, secrets 640, kept on upgrade"

# ------------------------------------------------------------------ units --

apt_need systemd
account_example=0190f5c4-8f53-7c1a-9b1e-5d2f0c3a4b6e
units=(switchboard@all.service switchboard@chatserver.service switchboard@fileserver.service
    switchboard@loader.service switchboard@video.service "switchboard-connector@$account_example.service"
    switchboard-migrate.service switchboard.target)
verify=$(cd / && systemd-analyze verify --man=no "${units[@]}" 2>&1)
rc=$?
if [ "$rc" -ne 0 ] || [ -n "$verify" ]; then
    die "systemd-analyze verify (exit $rc): $verify"
fi
for unit in switchboard@chatserver.service "switchboard-connector@$account_example.service" switchboard-migrate.service; do
    exposure=$(cd / && systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1)
    rc=$?
    level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$exposure")
    [ "$rc" -eq 0 ] || die "systemd-analyze security $unit: exposure ${level:-?} above 2.0"
    say "  $unit: exposure $level (systemd-analyze security --offline)"
done
grep -q '^LimitNOFILE=65536$' "$UNITS/switchboard@.service" || die "LimitNOFILE"
say "units verify: ${units[*]}"

# ------------------------------------------------- run the units' commands --

# exec_start UNIT INSTANCE: the unit's ExecStart command line with %i substituted, as words.
exec_start() {
    sed -n 's/^ExecStart=//p' "$UNITS/$1" | sed "s/%i/$2/g"
}
# as_service LOG ARGS...: run ARGS as the unit's User/Group with the test environment, in the
# background, stdout to LOG (stderr to LOG.err); its pid in $pid.
new_database
root="/test-package-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
as_service() {
    local log=$1
    shift
    setpriv --reuid=switchboard --regid=switchboard --init-groups \
        env SWITCHBOARD_DATABASE__URL="$db_url" SWITCHBOARD_COORD__ZOOKEEPER="$SWITCHBOARD_TEST_ZK" \
        SWITCHBOARD_COORD__ROOT="$root" SWITCHBOARD_HTTP__BIND=127.0.0.1:0 SWITCHBOARD_LOG__FORMAT=text \
        SWITCHBOARD_LOG__FILTER=warn "$@" >"$log" 2>"$log.err" </dev/null &
    pid=$!
}

read -r -a migrate <<<"$(exec_start switchboard-migrate.service '')"
as_service "$WORK/migrate1.out" "${migrate[@]}"
wait "$pid" || die "switchboard-migrate's command failed: $(cat "$WORK/migrate1.out.err")"
grep -q '^applied [0-9]* migration(s)$' "$WORK/migrate1.out" || die "the first migrate applied nothing: $(cat "$WORK/migrate1.out")"
as_service "$WORK/migrate2.out" "${migrate[@]}"
wait "$pid" || die "the second migrate failed"
grep -q '^database is up to date' "$WORK/migrate2.out" || die "the second migrate was not a no-op: $(cat "$WORK/migrate2.out")"
say "switchboard-migrate: $(tail -n 1 "$WORK/migrate1.out"), then: $(cat "$WORK/migrate2.out")"

read -r -a all <<<"$(exec_start switchboard@.service all)"
[ "${all[*]}" = "/usr/bin/switchboard --config /etc/switchboard/switchboard.toml all" ] ||
    die "unexpected ExecStart for switchboard@all: ${all[*]}"
t0=$(now)
as_service "$WORK/all.out" "${all[@]}"
track "$pid"
addr=$(wait_banner "$WORK/all.out" "$pid") || exit 1
wait_until 30 "switchboard@all ready" curl -fsS "http://$addr/readyz"
say "switchboard@all (pid $pid, user $(ps -o user= -p "$pid")) ready on $addr in $(since "$t0")s"
t0=$(now)
kill -TERM "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 0 ] || die "switchboard@all exited $rc after SIGTERM: $(tail -n 5 "$WORK/all.out.err")"
say "SIGTERM: exited 0 in $(since "$t0")s (TimeoutStopSec=30s)"

account=$(psql -qAt "$db_url" -c "SELECT id FROM accounts ORDER BY created_at LIMIT 1")
[ -n "$account" ] || die "switchboard@all created no account"
read -r -a connector <<<"$(exec_start switchboard-connector@.service "$account")"
as_service "$WORK/connector.out" "${connector[@]}"
track "$pid"
addr=$(wait_banner "$WORK/connector.out" "$pid") || exit 1
wait_until 30 "the connector of $account leads" \
    bash -c "curl -fsS 'http://$addr/metrics' | grep -qx 'switchboard_connector_leader{account=\"$account\"} 1'"
kill -TERM "$pid"
wait "$pid" || die "switchboard-connector@$account did not exit cleanly"
say "switchboard-connector@$account: served and led its account, stopped cleanly"
say "ok"
