#!/usr/bin/env bash
# A step of deploy/test.sh: several video nodes. Builds the switchboard binary and runs
# video/tests/deploy_nodes.rs: two `switchboard video` processes, rooms pinned through ZooKeeper,
# a join redirected to the hosting node, a draining node, and kill -9 of the node hosting a call
# with the participants (webrtc-rs peers) rejoining on the other node; the time it took is in the
# report. Then a recorded call through the same failover (with a file server process): its two
# parts, the dead node's finished once; needs ffmpeg (ffprobe).
set -uo pipefail
# shellcheck source=deploy/tests/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

need_services
# webrtc-rs warns about every peer connection it sets up; the nodes log only real trouble
export NODE_LOG=${NODE_LOG:-warn,rtc=error,rtc_interceptor=error,rtc_dtls=error,video::sfu=error}
SWITCHBOARD_BIN=$(switchboard_bin) || exit 1
export SWITCHBOARD_BIN
cd "$ROOT" && cargo test -q --workspace --test deploy_nodes -- --ignored --nocapture --test-threads=1
