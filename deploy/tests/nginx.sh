#!/usr/bin/env bash
# A step of deploy/test.sh: the entry point. Installs Debian's nginx (and openssl) when missing,
# checks deploy/nginx/switchboard.conf with the example upstreams (`nginx -t`), then runs
# tests/deploy_nginx.rs: nginx with that file in front of two chatservers, a file server, a
# loader, a video node and a connector pair, driven over TLS 1.3.
set -uo pipefail
# shellcheck source=deploy/tests/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

need_services
apt_need nginx openssl
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || die "nginx is not installed"
# Debian's nginx package starts its own server on port 80 when installed; this step never uses it.

# The shipped file with the shipped example upstreams, as an operator would install them.
work="$ROOT/.local/deploy-tests/nginx"
rm -rf "$work" && mkdir -p "$work/tls" "$work/logs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=hub.example.com \
    -keyout "$work/tls/privkey.pem" -out "$work/tls/fullchain.pem" >/dev/null 2>&1 || die "openssl"
cp "$ROOT/deploy/nginx/upstreams.conf.example" "$work/upstreams.conf"
sed -e "s|/etc/nginx/switchboard/|$work/|g" -e "s|/var/log/nginx/|$work/logs/|g" \
    "$ROOT/deploy/nginx/switchboard.conf" >"$work/switchboard.conf"
cat >"$work/nginx.conf" <<CONF
pid $work/nginx.pid;
error_log $work/logs/error.log;
events {}
http {
    include /etc/nginx/mime.types;
    include $work/switchboard.conf;
}
CONF
out=$(/usr/sbin/nginx -t -p "$work" -c "$work/nginx.conf" 2>&1) || die "nginx -t with the example upstreams: $out"
say "nginx -t: deploy/nginx/switchboard.conf with upstreams.conf.example is valid"

# The processes' /metrics go where deploy/tests/monitoring.sh looks for live scrapes.
export SWITCHBOARD_METRICS_DUMP="$ROOT/.local/deploy-tests/metrics"
rm -f "$SWITCHBOARD_METRICS_DUMP"/nginx-*.prom
cd "$ROOT" && cargo test -q --workspace --test deploy_nginx -- --ignored --nocapture
