#!/usr/bin/env bash
# Keep-alive connections across upgrades (issue 13): does the server close them at each upgrade?
#
# For each number of connections in CONNECTIONS_LIST and each system in SYSTEMS (Baton's `hello`,
# release build, run as `hello --config watch.conf`; the gin + cloudflare/tableflip peer of
# Benchmarks/compare/tableflip; optionally the gin + facebookgo/grace peer), RUNS times: a fresh
# server on SERVER_CPU, the load client Benchmarks/handoff/loadclient on CLIENT_CPU with that many
# keep-alive connections for DURATION seconds (all connections are opened before the measured
# period starts), a SIGHUP every INTERVAL seconds from WARMUP seconds on (none in the last
# INTERVAL/2 s). Meanwhile `ss` counts the server's ESTABLISHED connections on the port every
# SS_INTERVAL s, and a full `ss` snapshot is taken just before each SIGHUP and at the end, so that
# the connections (4-tuples) that stayed established across each upgrade can be counted.
#
# The load client counts, per 100 ms: requests, failed requests by kind (connect, write, read,
# reset_on_reuse, timeout, status), reconnects (the server closed the connection - `Connection:
# close`, or closed it while idle - or a request on it failed), latency histograms, and the pid of
# each answer. Benchmarks/handoff/analyze.py turns that into per-upgrade numbers: reconnects and
# failures in [SIGHUP, next SIGHUP), connections kept, p99 in the second around the moment the new
# generation first answered against the steady p99 of the 2 s before the SIGHUP (see its header).
#
# Prints a markdown table per number of connections (medians over upgrades) and writes the plot of
# one run (PLOT_RUN, default the first Baton run at the largest connection count) to PNG.
# Exit 1 if a request failed in a run of a system in GATE_SYSTEMS (default: baton); 2: setup error.
#
# Every load run holds `flock LOCK` (shared machine: other benchmarks take the same lock); builds
# do not. Only processes started here are signalled, by pid (each server runs in its own session).
#
# Environment (defaults in brackets):
#   CONNECTIONS_LIST ["1024 4096"]   SYSTEMS ["baton tableflip"] (also: grace, baton-before)   RUNS [1]
#   BEFORE_BIN=path              the `hello` measured as system baton-before (an earlier build, e.g.
#                                one that closes keep-alive connections at an upgrade), same setup
#   DURATION [30]  INTERVAL [5]  WARMUP [=INTERVAL]   seconds
#   SS_INTERVAL [0.15]           seconds between `ss` counts
#   TIMEOUT [10]                 per-request timeout of the client (s)
#   RATE [0]                     total requests/s, open loop (each connection sends every
#                                CONNECTIONS/RATE s; latency counted from when a request was due);
#                                0: closed loop like wrk (saturates the server: latency is queueing,
#                                so a p99 ratio says little; use RATE ≈ half the closed-loop req/s)
#   PIN [1]                      1: server on SERVER_CPU [0], client and sampler on CLIENT_CPU [1]; 0: unpinned
#   DRAIN_TIMEOUT [30]           hello --drain-timeout
#   NOFILE [20000]               ulimit -n (this machine's hard limit)
#   LOCK [/tmp/baton-bench.lock]  LOCK_WAIT [3600]
#   SKIP_BUILD=1                 use the existing .build/release/hello;  HELLO_BIN=path: this binary
#   GATE_SYSTEMS ["baton"]       systems whose failed requests make the exit status 1
#   WORKDIR                      raw output (default: new /tmp/baton-handoff.XXXXXX, kept)
#   PNG [Benchmarks/handoff.png]  PLOT_RUN (a run directory name under WORKDIR/runs, or "none")
#
# Smoke run (~1 min):
#   CONNECTIONS_LIST=1024 SYSTEMS=baton DURATION=12 SKIP_BUILD=1 bash Benchmarks/handoff.sh
set -uo pipefail

CONNECTIONS_LIST=${CONNECTIONS_LIST:-"1024 4096"}
SYSTEMS=${SYSTEMS:-"baton tableflip"}
RUNS=${RUNS:-1}
DURATION=${DURATION:-30}
INTERVAL=${INTERVAL:-5}
WARMUP=${WARMUP:-$INTERVAL}
SS_INTERVAL=${SS_INTERVAL:-0.15}
TIMEOUT=${TIMEOUT:-10}
RATE=${RATE:-0}
PIN=${PIN:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-30}
NOFILE=${NOFILE:-20000}
LOCK=${LOCK:-/tmp/baton-bench.lock}
LOCK_WAIT=${LOCK_WAIT:-3600}
export GATE_SYSTEMS=${GATE_SYSTEMS:-baton}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
PNG=${PNG:-"$repo/Benchmarks/handoff.png"}

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 2; }
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

for s in $SYSTEMS; do [[ $s == baton || $s == baton-before || $s == tableflip || $s == grace ]] || die "unknown system '$s' (baton, baton-before, tableflip, grace)"; done
[[ " $SYSTEMS " != *" baton-before "* || -x ${BEFORE_BIN:-} ]] || die "system baton-before needs BEFORE_BIN=path to a hello binary"
for n in RUNS DURATION INTERVAL WARMUP TIMEOUT NOFILE LOCK_WAIT DRAIN_TIMEOUT; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "$n must be a positive integer (is '${!n}')"
done
for c in $CONNECTIONS_LIST; do [[ $c =~ ^[0-9]+$ && $c -gt 0 ]] || die "bad connection count '$c'"; done
[[ $RATE =~ ^[0-9]+$ ]] || die "RATE must be a whole number of requests/s (is '$RATE')"
((WARMUP < DURATION)) || die "WARMUP ($WARMUP) must be below DURATION ($DURATION)"

ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)" || die "cannot raise ulimit -n"

WORK=${WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/baton-handoff.XXXXXX")}
mkdir -p "$WORK/bin" "$WORK/logs" "$WORK/runs" || die "cannot create $WORK"

scpu=() ccpu=()
if [[ $PIN == 1 ]]; then
    scpu=(taskset -c "$SERVER_CPU")
    ccpu=(taskset -c "$CLIENT_CPU")
fi

# ------------------------------------------------------------------ lock (shared machine)
exec {lockfd}>>"$LOCK" || die "cannot open $LOCK"
locked=0
lock() {
    if ! flock -n "$lockfd"; then
        say "waiting for $LOCK (another benchmark is running; at most ${LOCK_WAIT} s)…"
        flock -w "$LOCK_WAIT" "$lockfd" || die "$LOCK still held after ${LOCK_WAIT} s"
    fi
    locked=1
}
unlock() { flock -u "$lockfd"; locked=0; }

# ------------------------------------------------------------------ process bookkeeping
server_group=""   # session / process group of the running server ("" when none)
client_pid=""
sampler_pid=""

alive() {   # process exists and is not a zombie
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

group_members() {   # live processes of process group $1 (all started by us: setsid below)
    local p stat fields
    [[ -n $1 ]] || return 0
    for p in /proc/[0-9]*; do
        { read -r stat <"$p/stat"; } 2>/dev/null || continue
        read -r -a fields <<<"${stat##*) }"
        [[ ${fields[2]:-} == "$1" && ${fields[0]:-} != Z ]] && echo "${p#/proc/}"
    done
    return 0
}


stop_pid() {   # stop_pid PID: SIGTERM, then SIGKILL after 2 s; reaps it
    [[ -n $1 ]] || return 0
    if alive "$1"; then
        kill -TERM "$1" 2>/dev/null
        for _ in $(seq 1 20); do alive "$1" || break; sleep 0.1; done
        alive "$1" && kill -KILL "$1" 2>/dev/null
    fi
    wait "$1" 2>/dev/null
    return 0
}

# shellcheck disable=SC2317  # invoked by the traps below
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$client_pid"
    stop_pid "$sampler_pid"
    [[ -n $server_group ]] && kill_group "$server_group" 5
    ((locked)) && unlock
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ helpers
now_ms() { local t=$EPOCHREALTIME; t=${t/[.,]/}; echo $((10#$t / 1000)); }

sleep_until_ms() {
    local d=$(($1 - $(now_ms)))
    ((d > 0)) && sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
    return 0
}

port_unused() { [[ -z $(ss -Htan "( sport = :$1 or dport = :$1 )" 2>/dev/null) ]]; }

free_port() {   # below the ephemeral range (32768+), where the client's own ports come from
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((21000 + RANDOM % 11000))
        port_unused "$p" && { echo "$p"; return 0; }
    done
    return 1
}

answer_pid() {   # pid in the /hello answer on port $1 (a new connection)
    curl -s --max-time 2 -H 'Connection: close' "http://127.0.0.1:$1/hello" 2>/dev/null |
        sed -n 's/.*"pid" *: *\([0-9][0-9]*\).*/\1/p'
}

# established PORT: the server side of the ESTABLISHED connections on PORT, one "peer sk:COOKIE" line
# each. The socket cookie tells a connection that lived on (its socket may have moved to another
# process) from a new one that reuses the 4-tuple (tcp_tw_reuse=2 reuses TIME_WAIT ports on loopback).
established() {
    ss -Htne state established "( sport = :$1 )" 2>/dev/null |
        awk '{ sk = ""; for (i = 5; i <= NF; i++) if ($i ~ /^sk:/) sk = $i; print $4, sk }'
}

# ------------------------------------------------------------------ tools and builds
packages=(curl golang-go)
[[ " $SYSTEMS " == *" tableflip "* ]] && packages+=(golang-github-cloudflare-tableflip-dev golang-github-gin-gonic-gin-dev)
[[ " $SYSTEMS " == *" grace "* ]] && packages+=(golang-github-facebookgo-grace-dev golang-github-gin-gonic-gin-dev)
command -v taskset >/dev/null || packages+=(util-linux)
command -v ss >/dev/null || packages+=(iproute2)
install_debian_packages "${packages[@]}"
ensure_matplotlib

gocache=${GOCACHE:-${XDG_CACHE_HOME:-${HOME:-$WORK}/.cache}/go-build}
say "building the load client (go, GOPATH mode)…"
(cd "$here/handoff/loadclient" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS='' GOCACHE="$gocache" \
    go build -o "$WORK/bin/loadclient" .) >"$WORK/logs/go-build-loadclient.log" 2>&1 ||
    die "go build loadclient failed: see $WORK/logs/go-build-loadclient.log"
hello_src=""
if [[ " $SYSTEMS " == *" baton "* ]]; then
    if [[ -n ${HELLO_BIN:-} ]]; then
        hello_src=$HELLO_BIN
    else
        hello_src="$repo/.build/release/hello"
        if [[ ${SKIP_BUILD:-} != 1 ]]; then
            say "building hello (release)…"
            (cd "$repo" && swift build -c release --product hello) >"$WORK/logs/swift-build.log" 2>&1 ||
                die "swift build failed: see $WORK/logs/swift-build.log"
        fi
    fi
    [[ -x $hello_src ]] || die "$hello_src not found (build it, or unset SKIP_BUILD)"
fi
for peer in tableflip grace; do
    [[ " $SYSTEMS " == *" $peer "* ]] && build_go_peer "$peer" "$WORK/bin/$peer-gin" "$gocache" "$WORK/logs/go-build-$peer.log"
done
say "work dir: $WORK"

{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$(nproc) kernel=$(uname -sr) nofile=$(ulimit -n)"
    echo "go=$(go version)"
    [[ -n $hello_src ]] && echo "hello_binary=$hello_src of $(date -u -r "$hello_src" '+%Y-%m-%d %H:%M UTC'); repository HEAD $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null)$(cd "$repo" && git diff --quiet HEAD -- Sources Package.swift 2>/dev/null || echo ' with uncommitted changes in Sources/ or Package.swift')"
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "knobs=CONNECTIONS_LIST=\"$CONNECTIONS_LIST\" SYSTEMS=\"$SYSTEMS\" RUNS=$RUNS DURATION=$DURATION INTERVAL=$INTERVAL WARMUP=$WARMUP SS_INTERVAL=$SS_INTERVAL TIMEOUT=$TIMEOUT RATE=$RATE PIN=$PIN SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU DRAIN_TIMEOUT=$DRAIN_TIMEOUT"
} >"$WORK/meta.txt"

# ------------------------------------------------------------------ one run
# run_one SYSTEM CONNECTIONS RUN
run_one() {
    local sys=$1 conns=$2 run=$3
    local id="$sys-c$conns-r$run"
    local dir="$WORK/runs/$id"
    mkdir -p "$dir"
    lock
    local port load1 t
    load1=$(cut -d' ' -f1-3 /proc/loadavg)
    port=$(free_port) || { unlock; say "  $id: no free port"; return; }
    # The lock's fd is closed in every child ({lockfd}>&-): nothing that outlives us may hold it.
    case $sys in
        baton | baton-before)
            if [[ $sys == baton ]]; then cp "$WORK/bin/hello" "$dir/hello"; else cp "$BEFORE_BIN" "$dir/hello"; fi
            printf '{"HttpPort":"%s","Ver":"1","DelaySecond":5,"BinName":"hello"}\n' "$port" >"$dir/watch.conf"
            (cd "$dir" && exec setsid "${scpu[@]}" "$dir/hello" --config "$dir/watch.conf" --drain-timeout "$DRAIN_TIMEOUT" \
                >"$dir/server.log" 2>&1 </dev/null) {lockfd}>&- &
            ;;
        tableflip | grace)
            (cd "$dir" && exec setsid "${scpu[@]}" "$WORK/bin/$sys-gin" -listen "127.0.0.1:$port" \
                -pid-file "$dir/server.pid" >"$dir/server.log" 2>&1 </dev/null) {lockfd}>&- &
            ;;
    esac
    local first=$!
    server_group=$first
    local expected=1   # processes once the upgrades are over: Baton master + 1 worker, a peer 1
    [[ $sys == baton* ]] && expected=2
    local up=0
    for ((t = 0; t < 300; t++)); do
        alive "$first" || break
        [[ -n $(answer_pid "$port") ]] && { up=1; break; }
        sleep 0.1
    done
    if ((!up)); then
        say "  $id: the server did not answer on port $port within 30 s (see $dir/server.log)"
        kill_group "$server_group" 5
        server_group=""
        unlock
        return
    fi
    printf '{"system":"%s","connections":%d,"run":%d,"port":%d,"loadavg":"%s","duration":%d,"interval":%d,"rate":%d}\n' \
        "$sys" "$conns" "$run" "$port" "$load1" "$DURATION" "$INTERVAL" "$RATE" >"$dir/run.json"

    "${ccpu[@]}" "$WORK/bin/loadclient" -addr "127.0.0.1:$port" -c "$conns" -d "${DURATION}s" -timeout "${TIMEOUT}s" -rate "$RATE" \
        -timeline "$dir/timeline.txt" -ready-file "$dir/ready" -summary >"$dir/summary.json" 2>"$dir/client.log" {lockfd}>&- &
    client_pid=$!
    # ramp: every connection opened (bounded by the client's own -ramp-timeout of 60 s)
    for ((t = 0; t < 700; t++)); do
        [[ -s $dir/ready ]] && break
        alive "$client_pid" || break
        sleep 0.1
    done
    if [[ ! -s $dir/ready ]]; then
        say "  $id: the load client did not finish its ramp (see $dir/client.log)"
        stop_pid "$client_pid"; client_pid=""
        kill_group "$server_group" 5; server_group=""
        unlock
        return
    fi
    local t0
    t0=$(<"$dir/ready")
    (
        exec {lockfd}>&-
        # shellcheck disable=SC2016  # expanded by the inner bash
        exec "${ccpu[@]}" bash -c 'while :; do t=$EPOCHREALTIME; t=${t/[.,]/}; echo "$((10#$t / 1000)) $(ss -Htn state established "( sport = :$1 )" | wc -l)"; sleep "$2"; done' \
            sampler "$port" "$SS_INTERVAL"
    ) >"$dir/ss.txt" 2>/dev/null &
    sampler_pid=$!

    echo "start $t0" >"$dir/triggers.txt"
    local k=0 target hups=0 pid sig=HUP
    [[ $sys == grace ]] && sig=USR2   # gracehttp upgrades on SIGUSR2
    while :; do
        target=$((t0 + WARMUP * 1000 + k * INTERVAL * 1000))
        # no upgrade in the last INTERVAL/2 s: its outcome would fall outside the measurement
        ((target <= t0 + DURATION * 1000 - INTERVAL * 500)) || break
        sleep_until_ms $((target - 150))
        alive "$client_pid" || break
        established "$port" >"$dir/ss-before-$((hups + 1)).txt"
        sleep_until_ms "$target"
        if [[ $sys == baton* ]]; then pid=$first; else pid=$(cat "$dir/server.pid" 2>/dev/null); fi
        if [[ -n $pid ]] && kill -"$sig" "$pid" 2>/dev/null; then
            hups=$((hups + 1))
            echo "sighup $(now_ms) $pid" >>"$dir/triggers.txt"
        else
            echo "sighup-failed $(now_ms) ${pid:-none}" >>"$dir/triggers.txt"
        fi
        k=$((k + 1))
    done
    sleep_until_ms $((t0 + DURATION * 1000 - 150))
    established "$port" >"$dir/ss-end.txt"
    echo "end $((t0 + DURATION * 1000))" >>"$dir/triggers.txt"
    # the client stops by itself after DURATION (+ its last requests, at most TIMEOUT)
    local deadline=$((SECONDS + TIMEOUT + 15)) client_rc=0
    while alive "$client_pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if alive "$client_pid"; then
        say "  $id: the load client still runs $((TIMEOUT + 15)) s after the end: killing it"
        kill -KILL "$client_pid" 2>/dev/null
    fi
    wait "$client_pid" || client_rc=$?
    client_pid=""
    stop_pid "$sampler_pid"
    sampler_pid=""

    # old generations drain once the load is gone (bounded), then the server is stopped
    local n settled=0
    for ((t = 0; t < (DRAIN_TIMEOUT + 10) * 10; t++)); do
        n=$(group_members "$server_group" | wc -l)
        ((n <= expected)) && { settled=1; break; }
        sleep 0.1
    done
    ((settled)) || say "  $id: still $n server processes $((DRAIN_TIMEOUT + 10)) s after the load (expected $expected)"
    cp "$dir/server.log" "$dir/server-before-stop.log"
    kill_group "$server_group" $((DRAIN_TIMEOUT + 5))
    server_group=""
    for ((t = 0; t < 100; t++)); do [[ -z $(ss -Hltn "sport = :$port" 2>/dev/null) ]] && break; sleep 0.05; done
    unlock

    if ((client_rc != 0)) || ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$dir/summary.json" 2>/dev/null; then
        say "  $id: no result from the load client (exit $client_rc; see $dir/client.log)"
        rm -f "$dir/run.json"
        return
    fi
    say "  $id: $hups SIGHUPs; $(cat "$dir/client.log")"
    python3 "$here/handoff/analyze.py" run "$dir" >"$dir/upgrades.txt" 2>&1 || say "  $id: analyze failed (see $dir/upgrades.txt)"
    sed 's/^/    /' "$dir/upgrades.txt" >&2
}

# ------------------------------------------------------------------ main
[[ -n $hello_src ]] && { cp "$hello_src" "$WORK/bin/hello" || die "cannot copy $hello_src"; }
read -ra order <<<"$SYSTEMS"
started=$SECONDS
for ((r = 1; r <= RUNS; r++)); do
    for c in $CONNECTIONS_LIST; do
        for s in "${order[@]}"; do
            say "run $r/$RUNS: $s, $c connections, ${DURATION} s, SIGHUP every ${INTERVAL} s from ${WARMUP} s"
            run_one "$s" "$c" "$r"
        done
    done
    order=("${order[@]:1}" "${order[0]}")   # rotate: no system always runs first
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/meta.txt"
echo "elapsed_s=$((SECONDS - started))" >>"$WORK/meta.txt"

echo "## Keep-alive connections across upgrades ($(sed -n 's/^date=//p' "$WORK/meta.txt"), load average $(sed -n 's/^loadavg_start=//p' "$WORK/meta.txt") at the start, $(sed -n 's/^loadavg_end=//p' "$WORK/meta.txt") at the end)"
echo ""
if ((RATE > 0)); then load="open loop at $RATE requests/s"; else load="closed loop (each connection sends on the previous answer)"; fi
echo "DURATION=$DURATION s, SIGHUP every $INTERVAL s from $WARMUP s, server on one core (PIN=$PIN), $load. Medians over upgrades."
python3 "$here/handoff/analyze.py" table "$WORK"
gate=$?
((gate <= 1)) || gate=2

plot_run=${PLOT_RUN:-}
if [[ -z $plot_run ]]; then
    last_c=${CONNECTIONS_LIST##* }
    for s in baton $SYSTEMS; do [[ -f $WORK/runs/$s-c$last_c-r1/upgrades.json ]] && { plot_run=$s-c$last_c-r1; break; }; done
fi
if [[ -n $plot_run && $plot_run != none ]]; then
    python3 "$here/handoff/plot.py" "$WORK/runs/$plot_run" "$PNG" || { say "error: plot failed"; ((gate == 0)) && gate=2; }
fi
say "raw output kept in $WORK"
exit "$gate"
