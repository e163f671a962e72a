#!/usr/bin/env bash
# Switchboard local services: a private PostgreSQL cluster and ZooKeeper
# (standalone, plus an optional 3-node ensemble) on 127.0.0.1, for development
# and tests. See deploy/README.md.
#
#   deploy/services.sh start | stop | status | env
#   deploy/services.sh ensemble start | stop | status
#   deploy/services.sh ensemble stop-node N | start-node N      (N = 1..3)
#   deploy/services.sh coturn start | stop | status              (TURN, for the video tests)
#
# These are DEV/TEST services: PostgreSQL trusts every loopback connection
# (no password), ZooKeeper has no auth, ZooKeeper runs as the invoking user,
# coturn relays to loopback peers. Never expose them beyond 127.0.0.1.
set -euo pipefail

# ---------------------------------------------------------------- settings --

SCRIPT_DIR=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
SCRIPT_PATH="$SCRIPT_DIR/$(basename -- "${BASH_SOURCE[0]}")"
ROOT=$(cd -P -- "$SCRIPT_DIR/.." && pwd)

STATE_DIR=${SWITCHBOARD_STATE_DIR:-$ROOT/.local}
[[ $STATE_DIR == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
PG_PORT=${SWITCHBOARD_PG_PORT:-25432}
ZK_PORT=${SWITCHBOARD_ZK_PORT:-22181}
ZK_ENSEMBLE_BASE=${SWITCHBOARD_ZK_ENSEMBLE_BASE:-22281}
# coturn: TURN on TURN_PORT (UDP and TCP), relays on TURN_RELAY_MIN..+99. All below 32768, where
# the kernel's ephemeral ports start, so a relay port never collides with an outgoing socket.
TURN_PORT=${SWITCHBOARD_TURN_PORT:-23478}
TURN_RELAY_MIN=${SWITCHBOARD_TURN_RELAY_MIN:-23600}
TURN_RELAY_COUNT=100
TURN_REALM=switchboard.local
# Patroni test cluster (deploy/services.sh patroni ...): ports from this base, see below.
PATRONI_BASE=${SWITCHBOARD_PATRONI_BASE:-26400}
TIMEOUT=${SWITCHBOARD_SERVICES_TIMEOUT:-60}
PG_DB=switchboard

ZK_DIR="$STATE_DIR/zk"
ENSEMBLE_DIR="$STATE_DIR/zk-ensemble"
ENSEMBLE_SIZE=3

TURN_DIR="$STATE_DIR/coturn"

ZK_JAR=/usr/share/java/zookeeper.jar
SLF4J_SIMPLE_JAR=/usr/share/java/slf4j-simple.jar

export DEBIAN_FRONTEND=noninteractive

# ----------------------------------------------------------------- helpers --

say() { printf 'services: %s\n' "$*"; }
warn() { printf 'services: warning: %s\n' "$*" >&2; }
die() {
    printf 'services: error: %s\n' "$*" >&2
    exit 1
}

# Process $1 exists and is not a zombie (a killed daemon stays a zombie until
# PID 1 reaps it, which can take a while in containers).
proc_alive() {
    local st
    [[ ${1:-} =~ ^[0-9]+$ ]] || return 1
    st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

is_root() { [ "$(id -u)" -eq 0 ]; }

is_port() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

check_settings() {
    local p
    for p in "$PG_PORT" "$ZK_PORT" "$ZK_ENSEMBLE_BASE" "$((ZK_ENSEMBLE_BASE + 202))" "$TURN_PORT" \
        "$TURN_RELAY_MIN" "$((TURN_RELAY_MIN + TURN_RELAY_COUNT - 1))" "$((PATRONI_BASE + 1))" \
        "$((PATRONI_BASE + 21))"; do
        is_port "$p" || die "invalid port setting: '$p'"
    done
    [[ $TIMEOUT =~ ^[0-9]+$ ]] || die "SWITCHBOARD_SERVICES_TIMEOUT must be a number of seconds"
}

# Seconds since the epoch with sub-second precision (for timings and deadlines).
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
before_deadline() { awk -v d="$1" -v n="$(now)" 'BEGIN { exit !(n < d) }'; }
deadline_in() { awk -v n="$(now)" -v t="$1" 'BEGIN { printf "%.3f", n + t }'; }

# Something accepts TCP connections on 127.0.0.1:$1 (nc is not installed: /dev/tcp).
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# Send a ZooKeeper four-letter word to 127.0.0.1:$1, print the answer.
zk_4lw() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf %s "$2" >&3 && cat <&3' \
        _ "$1" "$2" 2>/dev/null || true
}

zk_ruok() { [ "$(zk_4lw "$1" ruok)" = imok ]; }

# ruok answers imok before the server serves requests (e.g. while it loads its
# database); srvr prints "Mode: ..." only once it serves.
zk_serving() { zk_ruok "$1" && [ -n "$(zk_mode "$1")" ]; }

# "leader", "follower", "standalone" or "" (not serving / not answering).
zk_mode() { zk_4lw "$1" srvr | sed -n 's/^Mode: *//p' | tr -d '\r'; }

# Only one start/stop at a time per state dir (parallel test runners).
take_lock() {
    mkdir -p -- "$STATE_DIR"
    exec 9>"$STATE_DIR/.services.lock"
    flock -w "$((TIMEOUT * 2))" 9 || die "another services.sh holds $STATE_DIR/.services.lock"
}

# ---------------------------------------------------------------- packages --

apt_install() {
    # DPkg::Lock::Timeout waits for another apt/dpkg (e.g. unattended work) instead of failing.
    local i
    if [ -z "${APT_UPDATED:-}" ]; then
        for i in 1 2 3 4 5 6; do
            if apt-get -o DPkg::Lock::Timeout=300 -qq update; then
                break
            fi
            [ "$i" -eq 6 ] && die "apt-get update failed"
            say "apt-get update failed (lock held?), retrying in 20 s"
            sleep 20
        done
        APT_UPDATED=1
    fi
    say "installing: $*"
    apt-get -o DPkg::Lock::Timeout=300 -y -q install "$@" >/dev/null ||
        die "apt-get install $* failed"
}

newest_pg_bin() {
    local d
    d=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
        sort -V | tail -n 1)
    [ -n "$d" ] && dirname -- "$d"
}

ensure_packages() {
    local want_zk=$1 missing=()
    [ -n "$(newest_pg_bin || true)" ] || missing+=(pg)
    if [ "$want_zk" = yes ]; then
        [ -f "$ZK_JAR" ] || missing+=(zk)
        command -v java >/dev/null 2>&1 || missing+=(java)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        if ! is_root; then
            die "missing: ${missing[*]}. As root run: apt-get update && apt-get install -y postgresql && apt-get install -y --no-install-recommends zookeeper (or run this script as root)"
        fi
        local m
        for m in "${missing[@]}"; do
            case $m in
                pg) apt_install postgresql ;;
                zk) apt_install --no-install-recommends zookeeper ;;
                java) apt_install --no-install-recommends default-jre-headless ;;
            esac
        done
        [ -n "$(newest_pg_bin || true)" ] || die "PostgreSQL binaries still missing after install"
    fi
    if [ "$want_zk" = yes ] && [ ! -f "$SLF4J_SIMPLE_JAR" ]; then
        # Without an slf4j binding ZooKeeper logs nothing at all.
        if is_root; then
            apt_install --no-install-recommends libslf4j-java
        else
            warn "$SLF4J_SIMPLE_JAR missing: ZooKeeper will not log (as root: apt-get install libslf4j-java)"
        fi
    fi
}

# -------------------------------------------------------------- PostgreSQL --

# Where the PostgreSQL cluster lives.
#
# Normally $STATE_DIR/pg (= <repo>/.local/pg). As root, initdb/pg_ctl must run
# as the `postgres` OS user (they refuse to run as root), so that user must be
# able to traverse every parent of the data dir. If it cannot (e.g. the repo is
# under /root, mode 0700), we do NOT loosen permissions of the parents; the
# cluster goes to /var/tmp/switchboard-<first 8 hex of sha1(repo root path)>/pg
# instead (persistent across reboots, unique per checkout). The choice is
# recomputed the same way by every subcommand. Not root: always $STATE_DIR/pg
# and everything runs as the invoking user.
pg_base() {
    if is_root && ! runuser -u postgres -- test -x "$STATE_DIR" 2>/dev/null; then
        printf '/var/tmp/switchboard-%s/pg\n' "$(printf %s "$ROOT" | sha1sum | cut -c1-8)"
    else
        printf '%s/pg\n' "$STATE_DIR"
    fi
}

PG_BASE='' PG_DATA='' PG_LOG='' PG_BIN=''
pg_init_paths() {
    PG_BASE=$(pg_base)
    PG_DATA="$PG_BASE/data"
    PG_LOG="$PG_BASE/server.log"
    # Use the binaries matching an existing cluster; otherwise the newest installed.
    PG_BIN=
    if [ -f "$PG_DATA/PG_VERSION" ]; then
        local v
        v=$(cat "$PG_DATA/PG_VERSION" 2>/dev/null || true)
        if [ -x "/usr/lib/postgresql/$v/bin/initdb" ]; then
            PG_BIN="/usr/lib/postgresql/$v/bin"
        fi
    fi
    [ -n "$PG_BIN" ] || PG_BIN=$(newest_pg_bin || true)
}

# Run a PostgreSQL server tool as the cluster owner, from / (postgres may not
# be able to read the current directory). fd 9 (our lock) is closed so the
# postmaster does not inherit and hold it.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@" 9>&-)
    else
        (cd / && "$@" 9>&-)
    fi
}

pg_running() {
    [ -f "$PG_DATA/PG_VERSION" ] &&
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1 &&
        proc_alive "$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null)"
}

# Port of the running postmaster (line 4 of postmaster.pid).
pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true; }

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -t 2 >/dev/null 2>&1; }

pg_psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }

pg_start() {
    pg_init_paths
    [ -n "$PG_BIN" ] || die "no PostgreSQL binaries in /usr/lib/postgresql/*/bin"
    local port oldpid deadline

    if pg_running; then
        port=$(pg_running_port)
        if [ "$port" != "$PG_PORT" ]; then
            die "PostgreSQL in $PG_DATA already runs on port $port, not $PG_PORT: run '$0 stop' first"
        fi
        # Running: wait until it answers (it may be starting or recovering) or goes away.
        deadline=$(deadline_in "$TIMEOUT")
        while pg_running; do
            if pg_ready "$PG_PORT"; then
                say "PostgreSQL already running on 127.0.0.1:$PG_PORT (data $PG_DATA)"
                pg_create_db
                return 0
            fi
            before_deadline "$deadline" ||
                die "PostgreSQL in $PG_DATA runs but does not answer on 127.0.0.1:$PG_PORT; see $PG_LOG"
            sleep 0.2
        done
    fi

    # A killed postmaster that is still an unreaped zombie makes the new one refuse
    # to start ("lock file postmaster.pid already exists"): wait for it to go.
    oldpid=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)
    if [[ $oldpid =~ ^[0-9]+$ ]] && kill -0 "$oldpid" 2>/dev/null; then
        deadline=$(deadline_in "$TIMEOUT")
        while kill -0 "$oldpid" 2>/dev/null && before_deadline "$deadline"; do sleep 0.1; done
    fi

    if port_open "$PG_PORT"; then
        die "port 127.0.0.1:$PG_PORT is taken by another process; set SWITCHBOARD_PG_PORT"
    fi

    mkdir -p -- "$PG_BASE"
    if [ "$PG_BASE" != "$STATE_DIR/pg" ]; then
        # Fallback dir (see pg_base) in world-writable /var/tmp: refuse one that someone
        # else created; make sure postgres can traverse it whatever the umask.
        local parent
        parent=$(dirname -- "$PG_BASE")
        if [ -L "$parent" ] || [ "$(stat -c %u -- "$parent")" != 0 ]; then
            die "$parent is not a root-owned directory; remove it"
        fi
        chmod 0755 -- "$parent"
        say "PostgreSQL data goes to $PG_BASE (user postgres cannot reach $STATE_DIR)"
    fi
    if is_root; then
        chown -R postgres: -- "$PG_BASE"
    fi

    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        if [ -e "$PG_DATA" ] && [ -n "$(ls -A -- "$PG_DATA" 2>/dev/null)" ]; then
            die "$PG_DATA exists but is not a PostgreSQL cluster; remove it"
        fi
        say "initdb $PG_DATA ($PG_BIN)"
        local sync=()
        [ "${SWITCHBOARD_PG_FAST:-0}" = 1 ] && sync=(--no-sync)
        # Trust auth: dev/test cluster, reachable only on 127.0.0.1 and its own socket dir.
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=trust \
            -E UTF8 --locale=C.UTF-8 "${sync[@]}" >"$PG_BASE/initdb.log" 2>&1 ||
            die "initdb failed, see $PG_BASE/initdb.log"
    fi

    # Settings go on the command line so SWITCHBOARD_PG_PORT / _FAST apply on every start.
    local sockdir=$PG_BASE
    if [ "${#sockdir}" -gt 90 ]; then
        # Unix socket paths are limited to 107 bytes: use TCP only.
        warn "path $PG_BASE too long for a unix socket; TCP 127.0.0.1:$PG_PORT only"
        sockdir=
    fi
    local opts="-c port=$PG_PORT -c listen_addresses=127.0.0.1 -c max_connections=300"
    opts+=" -c unix_socket_directories='$sockdir'"
    if [ "${SWITCHBOARD_PG_FAST:-0}" = 1 ]; then
        # Tests only: a crash can corrupt the cluster.
        opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT (log $PG_LOG)"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" -o "$opts" start >/dev/null 2>&1; then
        tail -n 20 -- "$PG_LOG" >&2 2>/dev/null || true
        die "PostgreSQL did not start within ${TIMEOUT}s; see $PG_LOG"
    fi
    deadline=$(deadline_in "$TIMEOUT")
    until pg_ready "$PG_PORT"; do
        before_deadline "$deadline" || die "PostgreSQL does not answer on 127.0.0.1:$PG_PORT; see $PG_LOG"
        sleep 0.1
    done
    pg_create_db
}

pg_create_db() {
    local exists
    exists=$(pg_psql -d postgres -tAc "select 1 from pg_database where datname = '$PG_DB'") ||
        die "cannot query PostgreSQL on 127.0.0.1:$PG_PORT"
    if [ "$exists" != 1 ]; then
        pg_psql -d postgres -c "create database $PG_DB" || die "create database $PG_DB failed"
        say "created database $PG_DB"
    fi
}

pg_stop() {
    pg_init_paths
    if [ ! -f "$PG_DATA/PG_VERSION" ] || [ -z "$PG_BIN" ]; then
        say "PostgreSQL not initialised ($PG_DATA): nothing to stop"
        return 0
    fi
    if ! pg_running; then
        say "PostgreSQL not running"
        return 0
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$TIMEOUT" stop >/dev/null ||
        die "pg_ctl stop failed; see $PG_LOG"
    say "PostgreSQL stopped"
}

pg_status() {
    pg_init_paths
    if [ -n "$PG_BIN" ] && pg_running; then
        local port
        port=$(pg_running_port)
        if pg_ready "$port"; then
            say "PostgreSQL: running on 127.0.0.1:$port (data $PG_DATA)"
        else
            say "PostgreSQL: running but not answering on 127.0.0.1:$port (log $PG_LOG)"
            return 1
        fi
    else
        say "PostgreSQL: stopped (data $PG_DATA)"
        return 1
    fi
}

# --------------------------------------------------------------- ZooKeeper --

# Is $1 a live ZooKeeper JVM started with config $2? (guards against pid reuse)
zk_pid_alive() {
    local pid=$1 cfg=$2
    proc_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "QuorumPeerMain $cfg"
}

# Print the pid from pid file $1 if that process is alive (config $2); remove a stale file.
zk_live_pid() {
    local pidfile=$1 cfg=$2 pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat -- "$pidfile" 2>/dev/null || true)
    if zk_pid_alive "$pid" "$cfg"; then
        printf '%s\n' "$pid"
        return 0
    fi
    rm -f -- "$pidfile"
    return 1
}

# zk_write_cfg FILE DATADIR CLIENTPORT [server lines...]
zk_write_cfg() {
    local cfg=$1 data=$2 port=$3
    shift 3
    {
        echo "# Generated by deploy/services.sh; rewritten on every start."
        echo "# tickTime=500: session timeouts 1-20 s (min/max below). Dev/test only."
        echo "tickTime=500"
        echo "initLimit=10"
        echo "syncLimit=5"
        echo "minSessionTimeout=1000"
        echo "maxSessionTimeout=20000"
        echo "dataDir=$data"
        echo "clientPort=$port"
        echo "clientPortAddress=127.0.0.1"
        echo "maxClientCnxns=0"
        echo "admin.enableServer=false"
        echo "4lw.commands.whitelist=ruok,srvr,stat,mntr"
        echo "autopurge.snapRetainCount=3"
        echo "autopurge.purgeInterval=1"
        if [ "${SWITCHBOARD_ZK_FAST:-0}" = 1 ]; then
            echo "# SWITCHBOARD_ZK_FAST=1: no fsync of the txn log (tests only)"
            echo "forceSync=no"
        fi
        local s
        for s in "$@"; do echo "$s"; done
    } >"$cfg.tmp"
    mv -f -- "$cfg.tmp" "$cfg"
}

# zk_spawn CFG LOG PIDFILE: start a JVM in its own session, detached.
zk_spawn() {
    local cfg=$1 log=$2 pidfile=$3 cp=$ZK_JAR
    [ -f "$SLF4J_SIMPLE_JAR" ] && cp+=":$SLF4J_SIMPLE_JAR"
    rm -f -- "$pidfile"
    # The inner bash writes its own pid, then execs java: the pid file holds the JVM's pid
    # whether or not setsid had to fork. fd 9 (our lock) must not leak into the JVM.
    # shellcheck disable=SC2016 # expanded by the inner bash
    nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" \
        java -Xmx256m -XX:+UseSerialGC -Djava.net.preferIPv4Stack=true \
        -Dorg.slf4j.simpleLogger.showDateTime=true \
        -Dorg.slf4j.simpleLogger.dateTimeFormat="yyyy-MM-dd HH:mm:ss.SSS" \
        -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain "$cfg" \
        >>"$log" 2>&1 </dev/null 9>&- &
    local i
    for i in $(seq 1 50); do
        [ -s "$pidfile" ] && return 0
        sleep 0.05
    done
    die "ZooKeeper process did not start; see $log"
}

# zk_kill PIDFILE CFG SIGNAL NAME
zk_kill() {
    local pidfile=$1 cfg=$2 sig=$3 name=$4 pid deadline
    if ! pid=$(zk_live_pid "$pidfile" "$cfg"); then
        say "$name not running"
        return 0
    fi
    kill "-$sig" "$pid" 2>/dev/null || true
    deadline=$(deadline_in 15)
    while proc_alive "$pid"; do
        if ! before_deadline "$deadline"; then
            warn "$name (pid $pid) ignores SIG$sig, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$(deadline_in 15)
            sig=KILL
        fi
        sleep 0.05
    done
    rm -f -- "$pidfile"
    say "$name stopped (pid $pid, SIG$sig)"
}

ZK_CFG="$ZK_DIR/zoo.cfg"
ZK_LOG="$ZK_DIR/zk.log"
ZK_PIDFILE="$ZK_DIR/zk.pid"

zk_start() {
    local pid deadline
    if pid=$(zk_live_pid "$ZK_PIDFILE" "$ZK_CFG"); then
        if zk_serving "$ZK_PORT"; then
            say "ZooKeeper already running on 127.0.0.1:$ZK_PORT (pid $pid)"
            return 0
        fi
        # Alive but not serving: maybe still starting, or configured for another port.
        deadline=$(deadline_in "$TIMEOUT")
        until zk_serving "$ZK_PORT"; do
            before_deadline "$deadline" ||
                die "ZooKeeper pid $pid runs but does not answer on 127.0.0.1:$ZK_PORT (other port? run '$0 stop'); see $ZK_LOG"
            sleep 0.1
        done
        say "ZooKeeper already running on 127.0.0.1:$ZK_PORT (pid $pid)"
        return 0
    fi
    if port_open "$ZK_PORT"; then
        die "port 127.0.0.1:$ZK_PORT is taken by another process; set SWITCHBOARD_ZK_PORT"
    fi
    mkdir -p -- "$ZK_DIR/data"
    zk_write_cfg "$ZK_CFG" "$ZK_DIR/data" "$ZK_PORT"
    say "starting ZooKeeper on 127.0.0.1:$ZK_PORT (log $ZK_LOG)"
    printf '\n===== %s services.sh start =====\n' "$(date '+%F %T')" >>"$ZK_LOG"
    zk_spawn "$ZK_CFG" "$ZK_LOG" "$ZK_PIDFILE"
    deadline=$(deadline_in "$TIMEOUT")
    until zk_serving "$ZK_PORT"; do
        if ! zk_live_pid "$ZK_PIDFILE" "$ZK_CFG" >/dev/null; then
            tail -n 20 -- "$ZK_LOG" >&2 || true
            die "ZooKeeper exited during start; see $ZK_LOG"
        fi
        if ! before_deadline "$deadline"; then
            zk_kill "$ZK_PIDFILE" "$ZK_CFG" TERM ZooKeeper >/dev/null
            die "ZooKeeper did not answer on 127.0.0.1:$ZK_PORT within ${TIMEOUT}s; see $ZK_LOG"
        fi
        sleep 0.05
    done
}

zk_stop() { zk_kill "$ZK_PIDFILE" "$ZK_CFG" TERM ZooKeeper; }

zk_status() {
    local pid
    if pid=$(zk_live_pid "$ZK_PIDFILE" "$ZK_CFG"); then
        if zk_ruok "$ZK_PORT"; then
            say "ZooKeeper: running on 127.0.0.1:$ZK_PORT (pid $pid, mode $(zk_mode "$ZK_PORT"))"
        else
            say "ZooKeeper: pid $pid alive but not answering on 127.0.0.1:$ZK_PORT (log $ZK_LOG)"
            return 1
        fi
    else
        say "ZooKeeper: stopped"
        return 1
    fi
}

# ---------------------------------------------------- ZooKeeper ensemble --

# Node n (1..3): client port BASE+n-1, quorum port BASE+100+n-1, election port BASE+200+n-1.
ens_client_port() { echo $((ZK_ENSEMBLE_BASE + $1 - 1)); }
ens_node_dir() { echo "$ENSEMBLE_DIR/node$1"; }
ens_cfg() { echo "$(ens_node_dir "$1")/zoo.cfg"; }
ens_pidfile() { echo "$(ens_node_dir "$1")/zk.pid"; }
ens_log() { echo "$(ens_node_dir "$1")/zk.log"; }

ens_check_node() {
    if ! [[ ${1:-} =~ ^[1-9][0-9]*$ ]] || [ "$1" -gt "$ENSEMBLE_SIZE" ]; then
        die "node must be 1..$ENSEMBLE_SIZE, got '${1:-}'"
    fi
}

ens_connect_string() {
    local n s=
    for n in $(seq 1 "$ENSEMBLE_SIZE"); do
        s+="${s:+,}127.0.0.1:$(ens_client_port "$n")"
    done
    echo "$s"
}

ens_node_alive() { zk_live_pid "$(ens_pidfile "$1")" "$(ens_cfg "$1")" >/dev/null; }

ens_any_alive() {
    local n
    for n in $(seq 1 "$ENSEMBLE_SIZE"); do
        ens_node_alive "$n" && return 0
    done
    return 1
}

# Start node n if not running (no waiting).
ens_spawn_node() {
    local n=$1 dir cfg port pid servers=() i
    dir=$(ens_node_dir "$n")
    cfg=$(ens_cfg "$n")
    port=$(ens_client_port "$n")
    if pid=$(zk_live_pid "$(ens_pidfile "$n")" "$cfg"); then
        say "ensemble node $n already running on 127.0.0.1:$port (pid $pid)"
        return 0
    fi
    if port_open "$port"; then
        die "port 127.0.0.1:$port (ensemble node $n) is taken by another process; set SWITCHBOARD_ZK_ENSEMBLE_BASE"
    fi
    mkdir -p -- "$dir/data"
    echo "$n" >"$dir/data/myid"
    for i in $(seq 1 "$ENSEMBLE_SIZE"); do
        servers+=("server.$i=127.0.0.1:$((ZK_ENSEMBLE_BASE + 100 + i - 1)):$((ZK_ENSEMBLE_BASE + 200 + i - 1))")
    done
    zk_write_cfg "$cfg" "$dir/data" "$port" "${servers[@]}"
    say "starting ensemble node $n on 127.0.0.1:$port (log $(ens_log "$n"))"
    printf '\n===== %s services.sh start =====\n' "$(date '+%F %T')" >>"$(ens_log "$n")"
    zk_spawn "$cfg" "$(ens_log "$n")" "$(ens_pidfile "$n")"
}

# Wait until node n answers ruok and, if $2 = serving, reports Mode leader/follower.
ens_wait_node() {
    local n=$1 want=$2 port deadline mode
    port=$(ens_client_port "$n")
    deadline=$(deadline_in "$TIMEOUT")
    while :; do
        if ! ens_node_alive "$n"; then
            tail -n 20 -- "$(ens_log "$n")" >&2 || true
            die "ensemble node $n exited; see $(ens_log "$n")"
        fi
        if zk_ruok "$port"; then
            [ "$want" = serving ] || return 0
            mode=$(zk_mode "$port")
            case $mode in leader | follower) return 0 ;; esac
        fi
        before_deadline "$deadline" ||
            die "ensemble node $n not ${want} on 127.0.0.1:$port within ${TIMEOUT}s; see $(ens_log "$n")"
        sleep 0.1
    done
}

ens_start() {
    local n t0 leaders=0 followers=0 mode
    t0=$(now)
    for n in $(seq 1 "$ENSEMBLE_SIZE"); do ens_spawn_node "$n"; done
    for n in $(seq 1 "$ENSEMBLE_SIZE"); do ens_wait_node "$n" serving; done
    for n in $(seq 1 "$ENSEMBLE_SIZE"); do
        mode=$(zk_mode "$(ens_client_port "$n")")
        case $mode in
            leader) leaders=$((leaders + 1)) ;;
            follower) followers=$((followers + 1)) ;;
        esac
    done
    if [ "$leaders" -ne 1 ] || [ "$followers" -ne $((ENSEMBLE_SIZE - 1)) ]; then
        die "ensemble has $leaders leader(s) and $followers follower(s); see $ENSEMBLE_DIR/node*/zk.log"
    fi
    say "ensemble ready in $(elapsed "$t0")s: 1 leader, $followers followers"
    say "ZooKeeper ensemble: $(ens_connect_string)"
}

ens_stop() {
    local n
    for n in $(seq 1 "$ENSEMBLE_SIZE"); do
        zk_kill "$(ens_pidfile "$n")" "$(ens_cfg "$n")" TERM "ensemble node $n"
    done
}

ens_status() {
    local n port pid rc=0 mode
    for n in $(seq 1 "$ENSEMBLE_SIZE"); do
        port=$(ens_client_port "$n")
        if pid=$(zk_live_pid "$(ens_pidfile "$n")" "$(ens_cfg "$n")"); then
            mode=$(zk_mode "$port")
            say "ensemble node $n: running on 127.0.0.1:$port (pid $pid, mode ${mode:-not serving})"
            [ -n "$mode" ] || rc=1
        else
            say "ensemble node $n: stopped (127.0.0.1:$port)"
            rc=1
        fi
    done
    return "$rc"
}

ens_start_node() {
    local n=$1 others=0 i
    ens_spawn_node "$n"
    for i in $(seq 1 "$ENSEMBLE_SIZE"); do
        [ "$i" -ne "$n" ] && ens_node_alive "$i" && others=$((others + 1))
    done
    if [ $((others + 1)) -gt $((ENSEMBLE_SIZE / 2)) ]; then
        ens_wait_node "$n" serving
        say "ensemble node $n serving on 127.0.0.1:$(ens_client_port "$n") (mode $(zk_mode "$(ens_client_port "$n")"))"
    else
        ens_wait_node "$n" answering
        say "ensemble node $n answers on 127.0.0.1:$(ens_client_port "$n") but has no quorum yet"
    fi
}

ens_stop_node() {
    zk_kill "$(ens_pidfile "$1")" "$(ens_cfg "$1")" KILL "ensemble node $1"
}

# ------------------------------------------------------------------ coturn --

# A TURN server (Debian's coturn) on 127.0.0.1 with TURN REST credentials (use-auth-secret), for
# the video tests (video/tests/turn.rs). The shared secret is generated once into
# $TURN_DIR/secret; `env` exports it. Production settings: deploy/coturn.conf.example.

TURN_CFG="$TURN_DIR/turnserver.conf"
TURN_LOG="$TURN_DIR/turnserver.log"
TURN_PIDFILE="$TURN_DIR/turnserver.pid"
TURN_SECRET_FILE="$TURN_DIR/secret"

turn_ensure_package() {
    command -v turnserver >/dev/null 2>&1 && return 0
    is_root || die "coturn missing. As root run: apt-get update && apt-get install -y --no-install-recommends coturn (or run this script as root)"
    apt_install --no-install-recommends coturn
    command -v turnserver >/dev/null 2>&1 || die "turnserver still missing after installing coturn"
}

# Is $1 a live turnserver started with our config? (guards against pid reuse)
turn_pid_alive() {
    proc_alive "$1" || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "turnserver -c $TURN_CFG"
}

# Print the pid of our turnserver if it is alive; remove a stale pid file.
turn_live_pid() {
    local pid
    [ -f "$TURN_PIDFILE" ] || return 1
    pid=$(cat -- "$TURN_PIDFILE" 2>/dev/null || true)
    if turn_pid_alive "$pid"; then
        printf '%s\n' "$pid"
        return 0
    fi
    rm -f -- "$TURN_PIDFILE"
    return 1
}

# The listening port of the running turnserver (from its config).
turn_running_port() { sed -n 's/^listening-port=//p' "$TURN_CFG" 2>/dev/null || true; }

turn_secret() {
    if [ ! -s "$TURN_SECRET_FILE" ]; then
        mkdir -p -- "$TURN_DIR"
        (
            umask 077
            od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$TURN_SECRET_FILE.tmp"
        )
        mv -f -- "$TURN_SECRET_FILE.tmp" "$TURN_SECRET_FILE"
    fi
    cat -- "$TURN_SECRET_FILE"
}

turn_write_cfg() {
    local secret
    secret=$(turn_secret)
    (
        umask 077
        {
            echo "# Generated by deploy/services.sh; rewritten on every start. Dev/test only:"
            echo "# loopback, no TLS, relays to loopback peers. Production: deploy/coturn.conf.example."
            echo "listening-ip=127.0.0.1"
            echo "relay-ip=127.0.0.1"
            echo "listening-port=$TURN_PORT"
            echo "min-port=$TURN_RELAY_MIN"
            echo "max-port=$((TURN_RELAY_MIN + TURN_RELAY_COUNT - 1))"
            echo "use-auth-secret"
            echo "static-auth-secret=$secret"
            echo "realm=$TURN_REALM"
            echo "fingerprint"
            echo "no-tls"
            echo "no-dtls"
            echo "no-cli"
            echo "no-rfc5780"
            echo "allow-loopback-peers"
            echo "userdb=$TURN_DIR/turndb"
            echo "pidfile=$TURN_DIR/coturn.pid"
            echo "log-file=stdout"
            echo "simple-log"
        } >"$TURN_CFG.tmp"
    )
    mv -f -- "$TURN_CFG.tmp" "$TURN_CFG"
}

turn_start() {
    local pid port deadline
    if pid=$(turn_live_pid); then
        port=$(turn_running_port)
        [ "$port" = "$TURN_PORT" ] ||
            die "coturn (pid $pid) already runs on port $port, not $TURN_PORT: run '$0 coturn stop' first"
        say "coturn already running on 127.0.0.1:$TURN_PORT (pid $pid)"
        return 0
    fi
    if port_open "$TURN_PORT"; then
        die "port 127.0.0.1:$TURN_PORT is taken by another process; set SWITCHBOARD_TURN_PORT"
    fi
    mkdir -p -- "$TURN_DIR"
    turn_write_cfg
    say "starting coturn on 127.0.0.1:$TURN_PORT, relays $TURN_RELAY_MIN-$((TURN_RELAY_MIN + TURN_RELAY_COUNT - 1)) (log $TURN_LOG)"
    printf '\n===== %s services.sh coturn start =====\n' "$(date '+%F %T')" >>"$TURN_LOG"
    rm -f -- "$TURN_PIDFILE"
    # As zk_spawn: the pid file holds turnserver's pid; fd 9 (our lock) must not leak into it.
    # shellcheck disable=SC2016 # expanded by the inner bash
    nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$TURN_PIDFILE" \
        turnserver -c "$TURN_CFG" >>"$TURN_LOG" 2>&1 </dev/null 9>&- &
    # Serving once it accepts TCP on its port (the UDP listener opens with it).
    deadline=$(deadline_in "$TIMEOUT")
    until [ -s "$TURN_PIDFILE" ] && port_open "$TURN_PORT"; do
        if [ -s "$TURN_PIDFILE" ] && ! turn_live_pid >/dev/null; then
            tail -n 20 -- "$TURN_LOG" >&2 || true
            die "coturn exited during start; see $TURN_LOG"
        fi
        if ! before_deadline "$deadline"; then
            turn_stop >/dev/null
            die "coturn did not listen on 127.0.0.1:$TURN_PORT within ${TIMEOUT}s; see $TURN_LOG"
        fi
        sleep 0.05
    done
    say "coturn: turn:127.0.0.1:$TURN_PORT (realm $TURN_REALM, secret in $TURN_SECRET_FILE)"
}

turn_stop() {
    local pid deadline sig=TERM
    if ! pid=$(turn_live_pid); then
        say "coturn not running"
        return 0
    fi
    kill "-$sig" "$pid" 2>/dev/null || true
    deadline=$(deadline_in 15)
    while proc_alive "$pid"; do
        if ! before_deadline "$deadline"; then
            warn "coturn (pid $pid) ignores SIG$sig, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$(deadline_in 15)
            sig=KILL
        fi
        sleep 0.05
    done
    rm -f -- "$TURN_PIDFILE"
    say "coturn stopped (pid $pid, SIG$sig)"
}

turn_status() {
    local pid port
    if pid=$(turn_live_pid); then
        port=$(turn_running_port)
        if port_open "$port"; then
            say "coturn: running on 127.0.0.1:$port (pid $pid, log $TURN_LOG)"
        else
            say "coturn: pid $pid alive but not listening on 127.0.0.1:$port (log $TURN_LOG)"
            return 1
        fi
    else
        say "coturn: stopped"
        return 1
    fi
}

cmd_coturn() {
    case ${1:-} in
        start)
            take_lock
            turn_ensure_package
            turn_start
            ;;
        stop)
            take_lock
            turn_stop
            ;;
        status) turn_status || return 3 ;;
        *) die "usage: $0 coturn start|stop|status" ;;
    esac
}

# ----------------------------------------------------------------- Patroni --

# A two-node PostgreSQL cluster under Patroni (Debian's `patroni`), with ZooKeeper as its
# consensus store (the ensemble when it runs, else the standalone server) and synchronous
# replication, behind HAProxy (Debian's `haproxy`), which sends connections to the node whose
# Patroni REST API answers 200 on /primary. For the failover test (tests/deploy_patroni.rs);
# production layout: deploy/patroni/. Ports, from SWITCHBOARD_PATRONI_BASE (26400):
#   PostgreSQL BASE+1, BASE+2; Patroni REST BASE+11, BASE+12; HAProxy BASE+20 (the primary),
#   BASE+21 (its statistics page).
# Dev/test settings: trust authentication on 127.0.0.1, short timeouts (ttl 8 s, loop_wait 2 s)
# so a failover takes seconds.

PATRONI_SIZE=2
PATRONI_SCOPE=switchboard-test
# The cluster's ZooKeeper namespace: one per checkout, so two checkouts on one machine never
# share a cluster.
PATRONI_NAMESPACE="/switchboard-patroni-$(printf %s "$ROOT" | sha1sum | cut -c1-8)/"

patroni_base_dir() {
    if is_root && ! runuser -u postgres -- test -x "$STATE_DIR" 2>/dev/null; then
        printf '/var/tmp/switchboard-%s/patroni\n' "$(printf %s "$ROOT" | sha1sum | cut -c1-8)"
    else
        printf '%s/patroni\n' "$STATE_DIR"
    fi
}
# Paths, set by pat_init_paths (the choice needs the postgres user, which may not exist yet).
PATRONI_DIR='' HAPROXY_CFG='' HAPROXY_PIDFILE='' HAPROXY_LOG=''
pat_init_paths() {
    PATRONI_DIR=$(patroni_base_dir)
    HAPROXY_CFG="$PATRONI_DIR/haproxy.cfg"
    HAPROXY_PIDFILE="$PATRONI_DIR/haproxy.pid"
    HAPROXY_LOG="$PATRONI_DIR/haproxy.log"
}
pat_pg_port() { echo $((PATRONI_BASE + $1)); }
pat_rest_port() { echo $((PATRONI_BASE + 10 + $1)); }
PATRONI_HAPROXY_PORT=$((PATRONI_BASE + 20))
PATRONI_STATS_PORT=$((PATRONI_BASE + 21))
pat_dir() { echo "$PATRONI_DIR/node$1"; }
pat_cfg() { echo "$(pat_dir "$1")/patroni.yml"; }
pat_pidfile() { echo "$(pat_dir "$1")/patroni.pid"; }
pat_log() { echo "$(pat_dir "$1")/patroni.log"; }

pat_ensure_packages() {
    local missing=()
    command -v patroni >/dev/null 2>&1 || missing+=(patroni)
    /usr/bin/python3 -c 'import kazoo' 2>/dev/null || missing+=(python3-kazoo)
    command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
    [ -n "$(newest_pg_bin || true)" ] || missing+=(postgresql)
    [ "${#missing[@]}" -eq 0 ] && return 0
    is_root || die "missing: ${missing[*]}. As root run: apt-get install -y --no-install-recommends ${missing[*]}"
    apt_install --no-install-recommends "${missing[@]}"
}

# Run as the cluster owner (postgres when we are root: PostgreSQL refuses to run as root).
as_owner() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@" 9>&-)
    else
        (cd / && "$@" 9>&-)
    fi
}

# The ZooKeeper connect string Patroni uses: the 3-node ensemble while every node of it serves
# (the hub's own ensemble, as in production), else the standalone server.
pat_zk_hosts() {
    local n
    for n in $(seq 1 "$ENSEMBLE_SIZE"); do
        if ! zk_serving "$(ens_client_port "$n")"; then
            echo "127.0.0.1:$ZK_PORT"
            return 0
        fi
    done
    ens_connect_string
}

pat_write_cfg() {
    local n=$1 dir hosts h list=""
    dir=$(pat_dir "$n")
    hosts=$(pat_zk_hosts)
    for h in ${hosts//,/ }; do list+="${list:+, }\"$h\""; done
    cat >"$(pat_cfg "$n").tmp" <<EOF
# Generated by deploy/services.sh; rewritten on every start. Dev/test only (trust auth on
# 127.0.0.1, short timeouts). Production: deploy/patroni/patroni.yml.example.
scope: $PATRONI_SCOPE
namespace: $PATRONI_NAMESPACE
name: node$n
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$(pat_rest_port "$n")
  connect_address: 127.0.0.1:$(pat_rest_port "$n")
zookeeper:
  hosts: [$list]
bootstrap:
  dcs:
    ttl: 8
    loop_wait: 2
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 300
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        synchronous_commit: "on"
        wal_keep_size: 128MB
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - auth: trust
postgresql:
  listen: 127.0.0.1:$(pat_pg_port "$n")
  connect_address: 127.0.0.1:$(pat_pg_port "$n")
  data_dir: $dir/data
  bin_dir: $PG_BIN
  pgpass: $dir/pgpass
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: replicator
      password: replicator
    rewind:
      username: postgres
      password: postgres
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication replicator 127.0.0.1/32 trust
  parameters:
    unix_socket_directories: "$dir"
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
EOF
    mv -f -- "$(pat_cfg "$n").tmp" "$(pat_cfg "$n")"
}

# Is $1 a live Patroni started with node n's config? (guards against pid reuse)
pat_pid_alive() {
    proc_alive "$1" || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$(pat_cfg "$2")"
}

pat_live_pid() {
    local n=$1 pid
    [ -f "$(pat_pidfile "$n")" ] || return 1
    pid=$(cat -- "$(pat_pidfile "$n")" 2>/dev/null || true)
    if pat_pid_alive "$pid" "$n"; then
        printf '%s\n' "$pid"
        return 0
    fi
    return 1
}

# The pid of node n's postmaster, if it runs.
pat_postmaster_pid() {
    local pid
    pid=$(head -n 1 "$(pat_dir "$1")/data/postmaster.pid" 2>/dev/null || true)
    proc_alive "$pid" && printf '%s\n' "$pid"
}

# GET http://127.0.0.1:<node n's REST port>$2 answers 200.
pat_rest_ok() {
    local code
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$(pat_rest_port "$1")$2" 2>/dev/null) || true
    [ "$code" = 200 ]
}

# The node (1..2) that is the primary now, or nothing.
pat_primary() {
    local n
    for n in $(seq 1 "$PATRONI_SIZE"); do
        if pat_rest_ok "$n" /primary; then
            echo "$n"
            return 0
        fi
    done
    return 1
}

pat_spawn() {
    local n=$1 dir pid
    dir=$(pat_dir "$n")
    if pid=$(pat_live_pid "$n"); then
        say "patroni node $n already running (pid $pid)"
        return 0
    fi
    if port_open "$(pat_pg_port "$n")" || port_open "$(pat_rest_port "$n")"; then
        die "port $(pat_pg_port "$n") or $(pat_rest_port "$n") (patroni node $n) is taken; set SWITCHBOARD_PATRONI_BASE"
    fi
    mkdir -p -- "$dir"
    if is_root; then chown postgres: -- "$PATRONI_DIR" "$dir"; fi
    pat_write_cfg "$n"
    if is_root; then chown postgres: -- "$(pat_cfg "$n")"; fi
    say "starting patroni node $n: PostgreSQL 127.0.0.1:$(pat_pg_port "$n"), REST 127.0.0.1:$(pat_rest_port "$n") (log $(pat_log "$n"))"
    printf '\n===== %s services.sh patroni start =====\n' "$(date '+%F %T')" >>"$(pat_log "$n")"
    if is_root; then chown postgres: -- "$(pat_log "$n")"; fi
    rm -f -- "$(pat_pidfile "$n")"
    # As root, setpriv becomes postgres and execs Patroni in place (runuser would stay as its
    # parent), so the pid file holds Patroni's own pid: `kill-primary` kills the real thing.
    local as=()
    is_root && as=(setpriv --reuid=postgres --regid=postgres --init-groups env HOME="$dir")
    # shellcheck disable=SC2016 # expanded by the inner bash
    nohup setsid bash -c 'cd "$2" && echo $$ >"$1" && shift 2 && exec "$@"' _ "$(pat_pidfile "$n")" "$dir" \
        "${as[@]}" patroni "$(pat_cfg "$n")" >>"$(pat_log "$n")" 2>&1 </dev/null 9>&- &
    local i
    for i in $(seq 1 50); do
        [ -s "$(pat_pidfile "$n")" ] && break
        sleep 0.05
    done
}

# wait until $2 holds for node n ($3: what, for the message)
pat_wait() {
    local n=$1 check=$2 what=$3 deadline
    deadline=$(deadline_in "$TIMEOUT")
    until "$check" "$n"; do
        if ! pat_live_pid "$n" >/dev/null; then
            tail -n 30 -- "$(pat_log "$n")" >&2 || true
            die "patroni node $n exited; see $(pat_log "$n")"
        fi
        before_deadline "$deadline" || die "patroni node $n: not $what within ${TIMEOUT}s; see $(pat_log "$n")"
        sleep 0.2
    done
}
pat_is_primary() { pat_rest_ok "$1" /primary; }
pat_is_sync() { pat_rest_ok "$1" /sync; }
pat_is_running() { pat_rest_ok "$1" /health; }

haproxy_live_pid() {
    local pid
    pid=$(cat -- "$HAPROXY_PIDFILE" 2>/dev/null || true)
    proc_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$HAPROXY_CFG" &&
        printf '%s\n' "$pid"
}

haproxy_write_cfg() {
    local n
    {
        echo "# Generated by deploy/services.sh; rewritten on every start. Production:"
        echo "# deploy/patroni/haproxy.cfg.example."
        echo "global"
        echo "    maxconn 1000"
        echo "defaults"
        echo "    mode tcp"
        echo "    timeout connect 2s"
        echo "    timeout client 30m"
        echo "    timeout server 30m"
        echo "    timeout check 1s"
        echo "listen switchboard_primary"
        echo "    bind 127.0.0.1:$PATRONI_HAPROXY_PORT"
        echo "    option httpchk GET /primary"
        echo "    http-check expect status 200"
        echo "    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions"
        for n in $(seq 1 "$PATRONI_SIZE"); do
            echo "    server node$n 127.0.0.1:$(pat_pg_port "$n") maxconn 300 check port $(pat_rest_port "$n")"
        done
        echo "listen stats"
        echo "    mode http"
        echo "    bind 127.0.0.1:$PATRONI_STATS_PORT"
        echo "    stats enable"
        echo "    stats uri /"
    } >"$HAPROXY_CFG.tmp"
    mv -f -- "$HAPROXY_CFG.tmp" "$HAPROXY_CFG"
}

haproxy_start() {
    local pid deadline
    if pid=$(haproxy_live_pid); then
        say "haproxy already running (pid $pid)"
        return 0
    fi
    port_open "$PATRONI_HAPROXY_PORT" && die "port 127.0.0.1:$PATRONI_HAPROXY_PORT (haproxy) is taken; set SWITCHBOARD_PATRONI_BASE"
    haproxy_write_cfg
    haproxy -c -q -f "$HAPROXY_CFG" || die "haproxy -c $HAPROXY_CFG failed"
    rm -f -- "$HAPROXY_PIDFILE"
    # shellcheck disable=SC2016 # expanded by the inner bash
    nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$HAPROXY_PIDFILE" \
        haproxy -db -f "$HAPROXY_CFG" >>"$HAPROXY_LOG" 2>&1 </dev/null 9>&- &
    deadline=$(deadline_in "$TIMEOUT")
    until pg_ready "$PATRONI_HAPROXY_PORT"; do
        before_deadline "$deadline" || die "no PostgreSQL primary through haproxy on 127.0.0.1:$PATRONI_HAPROXY_PORT; see $HAPROXY_LOG"
        sleep 0.2
    done
    say "haproxy: the primary on 127.0.0.1:$PATRONI_HAPROXY_PORT (stats http://127.0.0.1:$PATRONI_STATS_PORT/)"
}

haproxy_stop() {
    local pid
    if pid=$(haproxy_live_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        while proc_alive "$pid"; do sleep 0.05; done
        say "haproxy stopped"
    fi
    rm -f -- "$HAPROXY_PIDFILE"
}

pat_start() {
    local t0 n deadline
    t0=$(now)
    pg_init_paths
    [ -n "$PG_BIN" ] || die "no PostgreSQL binaries in /usr/lib/postgresql/*/bin"
    zk_serving "$ZK_PORT" || ens_status >/dev/null 2>&1 || die "ZooKeeper does not run: $0 start first"
    mkdir -p -- "$PATRONI_DIR"
    if is_root; then chown postgres: -- "$PATRONI_DIR"; fi
    # The first node bootstraps (or, on a restart, whichever held the lock comes back first).
    pat_spawn 1
    deadline=$(deadline_in "$TIMEOUT")
    until pat_primary >/dev/null; do
        pat_live_pid 1 >/dev/null || { tail -n 30 -- "$(pat_log 1)" >&2; die "patroni node 1 exited; see $(pat_log 1)"; }
        before_deadline "$deadline" || die "no primary within ${TIMEOUT}s; see $(pat_log 1)"
        sleep 0.2
    done
    for n in $(seq 2 "$PATRONI_SIZE"); do pat_spawn "$n"; done
    for n in $(seq 1 "$PATRONI_SIZE"); do pat_wait "$n" pat_is_running running; done
    # synchronous: a standby is the sync one before we call the cluster ready
    deadline=$(deadline_in "$TIMEOUT")
    until [ -n "$(pat_sync_node)" ]; do
        before_deadline "$deadline" || die "no synchronous standby within ${TIMEOUT}s; see $PATRONI_DIR/node*/patroni.log"
        sleep 0.2
    done
    haproxy_start
    say "patroni ready in $(elapsed "$t0")s: primary node$(pat_primary), synchronous standby node$(pat_sync_node)"
}

# The node that is the synchronous standby now, or nothing.
pat_sync_node() {
    local n
    for n in $(seq 1 "$PATRONI_SIZE"); do
        if pat_rest_ok "$n" /sync && ! pat_rest_ok "$n" /primary; then
            echo "$n"
            return 0
        fi
    done
}

# Stop node n: Patroni's SIGTERM stops its PostgreSQL too (fast shutdown); a postmaster left
# behind (its Patroni killed) is stopped with pg_ctl.
pat_stop_node() {
    local n=$1 pid pm deadline
    if pid=$(pat_live_pid "$n"); then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$(deadline_in 30)
        while proc_alive "$pid"; do
            before_deadline "$deadline" || { kill -KILL "$pid" 2>/dev/null || true; }
            sleep 0.1
        done
    fi
    if pm=$(pat_postmaster_pid "$n"); then
        as_owner "$PG_BIN/pg_ctl" -D "$(pat_dir "$n")/data" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
            kill -KILL "$pm" 2>/dev/null || true
    fi
    rm -f -- "$(pat_pidfile "$n")"
}

pat_stop() {
    local n
    pg_init_paths
    haproxy_stop
    for n in $(seq "$PATRONI_SIZE" -1 1); do pat_stop_node "$n"; done
    say "patroni stopped"
}

# Drop the cluster: stop it, delete its data and its keys in ZooKeeper (else a new cluster would
# find the old one "initialized" there and wait for a leader that never comes).
pat_destroy() {
    local hosts
    pat_stop
    hosts=$(pat_zk_hosts)
    /usr/bin/python3 - "$hosts" "${PATRONI_NAMESPACE%/}" <<'PY' || warn "cannot delete ${PATRONI_NAMESPACE%/} in ZooKeeper"
import sys
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1], timeout=5)
zk.start(timeout=10)
if zk.exists(sys.argv[2]):
    zk.delete(sys.argv[2], recursive=True)
zk.stop()
PY
    rm -rf -- "$PATRONI_DIR"
    say "patroni: $PATRONI_DIR and ZooKeeper ${PATRONI_NAMESPACE%/} removed"
}

pat_status() {
    local n rc=0 pid role
    for n in $(seq 1 "$PATRONI_SIZE"); do
        if pid=$(pat_live_pid "$n"); then
            role=replica
            pat_rest_ok "$n" /primary && role=primary
            pat_rest_ok "$n" /sync && [ "$role" = replica ] && role="synchronous standby"
            pat_rest_ok "$n" /health || role="not running PostgreSQL"
            say "patroni node $n: $role (pid $pid, PostgreSQL 127.0.0.1:$(pat_pg_port "$n"), REST :$(pat_rest_port "$n"))"
        else
            say "patroni node $n: stopped"
            rc=1
        fi
    done
    if pid=$(haproxy_live_pid); then
        say "haproxy: running (pid $pid), primary on 127.0.0.1:$PATRONI_HAPROXY_PORT"
    else
        say "haproxy: stopped"
        rc=1
    fi
    return "$rc"
}

# kill -9 the primary's Patroni and PostgreSQL (the machine is gone); prints the node and the
# time of the kill (unix seconds with nanoseconds).
pat_kill_primary() {
    local n pid pm at
    n=$(pat_primary) || die "no primary to kill"
    pid=$(pat_live_pid "$n" || true)
    pm=$(pat_postmaster_pid "$n" || true)
    at=$(now)
    [ -n "$pm" ] && kill -KILL "$pm" 2>/dev/null
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -f -- "$(pat_pidfile "$n")"
    printf 'killed node%s (patroni pid %s, postmaster pid %s) at %s\n' "$n" "${pid:-none}" "${pm:-none}" "$at"
}

cmd_patroni() {
    pat_init_paths
    case ${1:-} in
        start)
            take_lock
            pat_ensure_packages
            pat_start
            ;;
        stop)
            take_lock
            pat_stop
            ;;
        destroy)
            take_lock
            pat_destroy
            ;;
        status) pat_status || return 3 ;;
        kill-primary)
            take_lock
            pat_kill_primary
            ;;
        start-node)
            [[ ${2:-} =~ ^[12]$ ]] || die "usage: $0 patroni start-node 1|2"
            take_lock
            pg_init_paths
            pat_spawn "$2"
            pat_wait "$2" pat_is_running running
            say "patroni node $2 runs again"
            ;;
        primary) pat_primary || return 3 ;;
        *) die "usage: $0 patroni start|stop|destroy|status|kill-primary|start-node N|primary" ;;
    esac
}

# ---------------------------------------------------------------- commands --

# export NAME=VALUE, unquoted when VALUE needs no quoting (keeps it grep/sed-friendly).
emit() {
    if [[ $2 =~ ^[A-Za-z0-9_./:@,+=-]+$ ]]; then
        printf 'export %s=%s\n' "$1" "$2"
    else
        printf 'export %s=%q\n' "$1" "$2"
    fi
}

print_env() {
    emit SWITCHBOARD_DATABASE__URL "postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"
    emit SWITCHBOARD_COORD__ZOOKEEPER "127.0.0.1:$ZK_PORT"
    emit SWITCHBOARD_TEST_DATABASE_URL "postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    emit SWITCHBOARD_TEST_ZK "127.0.0.1:$ZK_PORT"
    # Ensemble lines only while at least one ensemble node runs.
    if ens_any_alive; then
        emit SWITCHBOARD_TEST_ZK_ENSEMBLE "$(ens_connect_string)"
        emit SWITCHBOARD_TEST_ZK_ENSEMBLE_SCRIPT "$SCRIPT_PATH"
    fi
    # Patroni lines while its HAProxy runs.
    pat_init_paths
    if haproxy_live_pid >/dev/null; then
        emit SWITCHBOARD_TEST_PATRONI_URL "postgres://postgres@127.0.0.1:$PATRONI_HAPROXY_PORT/postgres"
        emit SWITCHBOARD_TEST_PATRONI_SCRIPT "$SCRIPT_PATH"
    fi
    # TURN lines once `coturn start` has made the secret (whether or not coturn runs now).
    if [ -s "$TURN_SECRET_FILE" ]; then
        emit SWITCHBOARD_TEST_TURN_URL "turn:127.0.0.1:$TURN_PORT"
        emit SWITCHBOARD_TEST_TURN_SECRET "$(cat -- "$TURN_SECRET_FILE")"
    fi
}

cmd_start() {
    local t0
    t0=$(now)
    take_lock
    ensure_packages yes
    pg_start
    zk_start
    say "ready in $(elapsed "$t0")s"
    say "PostgreSQL: postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB (admin: .../postgres)"
    say "ZooKeeper:  127.0.0.1:$ZK_PORT"
    say "for your shell: eval \"\$($SCRIPT_PATH env)\""
}

cmd_stop() {
    take_lock
    if [ -n "$(newest_pg_bin || true)" ]; then
        pg_stop
    else
        say "PostgreSQL not installed: nothing to stop"
    fi
    zk_stop
}

cmd_status() {
    local rc=0
    if [ -n "$(newest_pg_bin || true)" ]; then
        pg_status || rc=3
    else
        say "PostgreSQL: not installed"
        rc=3
    fi
    zk_status || rc=3
    if ens_any_alive; then ens_status || true; fi
    return "$rc"
}

cmd_ensemble() {
    local sub=${1:-}
    case $sub in
        start)
            take_lock
            ensure_packages yes
            ens_start
            ;;
        stop)
            take_lock
            ens_stop
            ;;
        status)
            ens_status || return 3
            ;;
        start-node)
            ens_check_node "${2:-}"
            take_lock
            ensure_packages yes
            ens_start_node "$2"
            ;;
        stop-node)
            ens_check_node "${2:-}"
            take_lock
            ens_stop_node "$2"
            ;;
        *) die "usage: $0 ensemble start|stop|status|start-node N|stop-node N" ;;
    esac
}

# usage [EXIT_CODE]: help on stdout for 0, on stderr otherwise.
usage() {
    local rc=${1:-1} fd=2
    [ "$rc" -eq 0 ] && fd=1
    cat >&"$fd" <<EOF
services: usage: $0 COMMAND
  start                     install missing packages (as root), start PostgreSQL + ZooKeeper
  stop                      stop both
  status                    show what runs (exit 3 if something is stopped)
  env                       print export lines for the connection settings
  ensemble start|stop|status
  ensemble stop-node N      kill -9 ensemble node N (1..3)
  ensemble start-node N     start ensemble node N and wait until it serves
  coturn start|stop|status  TURN server (coturn, use-auth-secret) on 127.0.0.1:$TURN_PORT
  patroni start|stop|status two PostgreSQL nodes under Patroni (ZooKeeper, synchronous
                            replication) behind HAProxy on 127.0.0.1:$((PATRONI_BASE + 20))
  patroni kill-primary      kill -9 the primary's Patroni and PostgreSQL
  patroni start-node N      start node N (1..2) again; it rejoins as a replica
  patroni destroy           stop it and delete its data
EOF
    exit "$rc"
}

main() {
    check_settings
    case ${1:-} in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) print_env ;;
        ensemble)
            shift
            cmd_ensemble "$@"
            ;;
        coturn)
            shift
            cmd_coturn "$@"
            ;;
        patroni)
            shift
            cmd_patroni "$@"
            ;;
        -h | --help | help) usage 0 ;;
        *) usage ;;
    esac
}

main "$@"
