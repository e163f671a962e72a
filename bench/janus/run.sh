#!/usr/bin/env bash
# Runs Debian's Janus (`apt-get install janus`) in the foreground for the video SFU benchmark
# (`cargo bench -p video --bench sfu`), from a throwaway config directory: the VideoRoom plugin
# and the HTTP transport only, no STUN/TURN, UDP media ports below the ephemeral range. Never
# the system service (/etc/janus is not read).
#
#   bench/janus/run.sh DIR [HTTP_PORT] [RTP_PORTS] [EVENT_LOOPS] [MEDIA_IP] [HTTP_IP]
#
# DIR is created and filled with the configuration; HTTP_PORT defaults to 18088 (the API is at
# http://HTTP_IP:HTTP_PORT/janus), RTP_PORTS to 20000-21999, EVENT_LOOPS to 0 (Janus's
# default: one thread per handle), HTTP_IP to 127.0.0.1. The script execs janus, so its pid is
# Janus's.
#
# ICE: Janus never gathers on loopback interfaces (ice_enforce_list = "lo" gathers nothing and
# falls back to every interface), so its media needs an address of another interface, MEDIA_IP
# (default: the first global IPv4 address of the network namespace it runs in), enforced as
# the only candidate and written to DIR/media_ip. The benchmark runs this script inside a
# network namespace of its own (`ip netns exec`), joined to the host by a veth pair, and passes
# the namespace's end of the pair as MEDIA_IP and HTTP_IP: the load never goes to the host's
# own network address.
set -euo pipefail
dir=${1:?usage: run.sh DIR [HTTP_PORT] [RTP_PORTS] [EVENT_LOOPS] [MEDIA_IP] [HTTP_IP]}
http_port=${2:-18088}
rtp_ports=${3:-20000-21999}
event_loops=${4:-0}
media_ip=${5:-$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1)}
[ -n "$media_ip" ] || { echo "no global IPv4 address for Janus's ICE candidates; pass MEDIA_IP" >&2; exit 1; }
http_ip=${6:-127.0.0.1}
janus=$(command -v janus) || {
  echo "janus is not installed: DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends janus" >&2
  exit 1
}
lib=/usr/lib/x86_64-linux-gnu/janus
[ -d "$lib" ] || lib=$(dirname "$(dpkg -L janus | grep -m1 '/plugins/libjanus_videoroom.so$')")/..
mkdir -p "$dir/plugins" "$dir/transports" "$dir/events" "$dir/loggers"
echo "$media_ip" > "$dir/media_ip"
ln -sf "$lib/plugins/libjanus_videoroom.so" "$dir/plugins/"
ln -sf "$lib/transports/libjanus_http.so" "$dir/transports/"

loops=""
[ "$event_loops" -gt 0 ] && loops="event_loops = $event_loops"
cat > "$dir/janus.jcfg" <<CFG
general: {
	configs_folder = "$dir"
	plugins_folder = "$dir/plugins"
	transports_folder = "$dir/transports"
	events_folder = "$dir/events"
	loggers_folder = "$dir/loggers"
	debug_level = 3
	session_timeout = 0
	server_name = "switchboard-bench"
	$loops
}
certificates: {
}
media: {
	ipv6 = false
	rtp_port_range = "$rtp_ports"
}
nat: {
	ice_lite = false
	ice_tcp = false
	full_trickle = false
	ice_enforce_list = "$media_ip"
}
plugins: {
}
transports: {
}
events: {
	broadcast = false
}
loggers: {
}
CFG
cat > "$dir/janus.transport.http.jcfg" <<CFG
general: {
	json = "compact"
	base_path = "/janus"
	http = true
	port = $http_port
	ip = "$http_ip"
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
cors: {
}
CFG
cat > "$dir/janus.plugin.videoroom.jcfg" <<CFG
general: {
	string_ids = false
}
CFG
exec "$janus" --configs-folder="$dir" --config="$dir/janus.jcfg" --disable-colors
