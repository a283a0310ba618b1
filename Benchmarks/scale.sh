#!/usr/bin/env bash
# Scale benchmark (issue 8): failed requests during upgrades at 64 to 10,000 connections.
#
# For each system (Baton's `hello`, release build; gin + cloudflare/tableflip built from Debian's
# packages), each pinning (server on SERVER_CPU and wrk on CLIENT_CPU, or both unpinned), each mode
# (keep-alive; `Connection: close`, a new connection per request) and each number of connections:
# a fresh server, one wrk run of DURATION seconds (wrk -tTHREADS --timeout TIMEOUT, the Lua script
# Benchmarks/upgrade-under-load.lua counting statuses and the pid of each answer), a SIGHUP every
# INTERVAL seconds meanwhile, then a bounded wait for the old generations to exit, then the server
# is stopped. RUNS passes over the whole matrix (the order of systems rotates each pass).
#
# Per run: requests, failed requests (wrk socket errors connect + read + write + timeout, plus
# non-2xx answers), SIGHUPs sent, upgrades done, failed requests per upgrade, p99 latency, and for
# Baton how long each old generation lived after its successor was ready (the master's
# "generation N (…) drained in X" lines). Writes WORKDIR/results.tsv and results.json, the section
# between <!-- scale:begin --> and <!-- scale:end --> in BENCHMARKS.md (Benchmarks/scale/report.py)
# and Benchmarks/scale.png (Benchmarks/scale/plot.py).
#
# Exits 1 if Baton failed any request in any run (or a Baton run gave no result): the acceptance
# gate of issue 8 (it wants RUNS>=5). The report is written either way. Exit 2: setup error.
#
# Every load run (server + wrk), and the builds, hold `flock LOCK`: the machine is shared, other
# benchmarks take the same lock.
#
# Environment (defaults in brackets):
#   RUNS [2]                     passes over the matrix (>= 5 for the acceptance check)
#   DURATION [20]                seconds of each wrk run;  INTERVAL [2] seconds between SIGHUPs
#   THREADS [2]  TIMEOUT [10]    wrk threads and per-request timeout (s)
#   SYSTEMS ["baton tableflip"]
#   MODES ["keep-alive close"]
#   KEEPALIVE_CONNECTIONS ["64 1024 4096 10000"]   connections in keep-alive mode
#   CLOSE_CONNECTIONS ["1024 4096"]                connections in `Connection: close` mode
#   CONNECTIONS_LIST             if set: the connections for every mode (overrides both above)
#   PINNING ["pinned unpinned"]  or PIN=1 (pinned only) / PIN=0 (unpinned only)
#   SERVER_CPU [0]  CLIENT_CPU [1]   cores of a pinned run
#   DRAIN_TIMEOUT [30]           hello --drain-timeout (its default)
#   NOFILE [20000]               ulimit -n for server and wrk (this machine's hard limit)
#   LOCK [/tmp/baton-bench.lock]  LOCK_WAIT [3600]   lock file and how long to wait for it (s)
#   SKIP_BUILD=1                 use the existing .build/release/hello (no swift build)
#   HELLO_BIN=path               measure this hello binary instead (no build)
#   WORKDIR                      raw output, results.tsv/json (default: new /tmp/baton-scale.XXXXXX, kept)
#   OUT [BENCHMARKS.md]  PNG [Benchmarks/scale.png]
#
# Smoke run (~1 min):
#   RUNS=1 DURATION=6 PIN=1 CONNECTIONS_LIST=1024 SKIP_BUILD=1 bash Benchmarks/scale.sh
set -uo pipefail

RUNS=${RUNS:-2}
DURATION=${DURATION:-20}
INTERVAL=${INTERVAL:-2}
THREADS=${THREADS:-2}
TIMEOUT=${TIMEOUT:-10}
SYSTEMS=${SYSTEMS:-"baton tableflip"}
MODES=${MODES:-"keep-alive close"}
KEEPALIVE_CONNECTIONS=${CONNECTIONS_LIST:-${KEEPALIVE_CONNECTIONS:-"64 1024 4096 10000"}}
CLOSE_CONNECTIONS=${CONNECTIONS_LIST:-${CLOSE_CONNECTIONS:-"1024 4096"}}
if [[ -z ${PINNING:-} ]]; then
    case ${PIN:-} in
        1) PINNING=pinned ;;
        0) PINNING=unpinned ;;
        *) PINNING="pinned unpinned" ;;
    esac
fi
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-30}
NOFILE=${NOFILE:-20000}
LOCK=${LOCK:-/tmp/baton-bench.lock}
LOCK_WAIT=${LOCK_WAIT:-3600}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
OUT=${OUT:-"$repo/BENCHMARKS.md"}
PNG=${PNG:-"$repo/Benchmarks/scale.png"}
lua="$here/upgrade-under-load.lua"

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 2; }
# shellcheck source=lib.sh
source "$here/lib.sh"

for m in $MODES; do [[ $m == keep-alive || $m == close ]] || die "unknown mode '$m' (keep-alive, close)"; done
for s in $SYSTEMS; do [[ $s == baton || $s == tableflip ]] || die "unknown system '$s' (baton, tableflip)"; done
for p in $PINNING; do [[ $p == pinned || $p == unpinned ]] || die "unknown pinning '$p' (pinned, unpinned)"; done
for n in RUNS DURATION INTERVAL THREADS TIMEOUT NOFILE LOCK_WAIT; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "$n must be a positive integer (is '${!n}')"
done

ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)" || die "cannot raise ulimit -n"

WORK=${WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/baton-scale.XXXXXX")}
mkdir -p "$WORK/bin" "$WORK/logs" "$WORK/runs" || die "cannot create $WORK"
results="$WORK/results.txt"
: >"$results"

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
# Each server runs in its own session (setsid): its process group holds all its generations (Baton's
# workers, tableflip's successive processes). Cleanup signals exactly those processes, and wrk by pid.
server_group=""   # pgid of the running server ("" when none)
wrk_pid=""

alive() {   # process exists and is not a zombie
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

group_members() {   # live server processes (hello, tableflip-gin) of process group $1
    local p
    [[ -n $1 ]] || return 0
    for p in $(pgrep -g "$1" -x 'hello|tableflip-gin' 2>/dev/null); do alive "$p" && echo "$p"; done
    return 0
}


cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $wrk_pid ]] && alive "$wrk_pid"; then kill -TERM "$wrk_pid" 2>/dev/null; sleep 0.5; kill -KILL "$wrk_pid" 2>/dev/null; fi
    [[ -n $server_group ]] && kill_group "$server_group" 5
    ((locked)) && unlock
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ helpers
now_us() { local t=$EPOCHREALTIME; echo $((10#${t/[.,]/})); }

sleep_until_us() {   # sleep_until_us UNIX_MICROSECONDS
    local d=$(($1 - $(now_us)))
    ((d > 0)) && sleep "$(printf '%d.%06d' $((d / 1000000)) $((d % 1000000)))"
    return 0
}

port_unused() { [[ -z $(ss -Htan "( sport = :$1 or dport = :$1 )" 2>/dev/null) ]]; }

free_port() {   # a port below the ephemeral range (32768+, where wrk's own ports come from)
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

# ------------------------------------------------------------------ tools and builds
ensure_tools() {
    local packages=(wrk curl)
    [[ " $SYSTEMS " == *" tableflip "* ]] && packages+=(golang-go golang-github-cloudflare-tableflip-dev golang-github-gin-gonic-gin-dev)
    command -v taskset >/dev/null || packages+=(util-linux)
    install_debian_packages "${packages[@]}"
    ensure_matplotlib
}

build() {
    local src
    if [[ -n ${HELLO_BIN:-} ]]; then
        src=$HELLO_BIN
    else
        src="$repo/.build/release/hello"
        if [[ ${SKIP_BUILD:-} != 1 && " $SYSTEMS " == *" baton "* ]]; then
            say "building hello (release)…"
            (cd "$repo" && swift build -c release --product hello) >"$WORK/logs/swift-build.log" 2>&1 ||
                die "swift build failed: see $WORK/logs/swift-build.log"
        fi
    fi
    if [[ " $SYSTEMS " == *" baton "* ]]; then
        [[ -x $src ]] || die "$src not found (build it, or unset SKIP_BUILD)"
        # A private copy: Baton re-executes this path at every upgrade, so a rebuild in the
        # repository during the benchmark cannot change what is measured.
        cp "$src" "$WORK/bin/hello" || die "cannot copy $src"
        hello_src=$src
    fi
    if [[ " $SYSTEMS " == *" tableflip "* ]]; then
        local gocache=${GOCACHE:-${XDG_CACHE_HOME:-${HOME:-$WORK}/.cache}/go-build}
        build_go_peer tableflip "$WORK/bin/tableflip-gin" "$gocache" "$WORK/logs/go-build-tableflip.log"
    fi
}

# ------------------------------------------------------------------ one run
# run_one SYSTEM PINNING MODE CONNECTIONS RUN: start a server, load it with wrk while sending a
# SIGHUP every INTERVAL s, wait for the old generations to exit, stop it; appends one line to
# $results. Holds the lock throughout.
run_one() {
    local sys=$1 pin=$2 mode=$3 conns=$4 run=$5
    local id="$sys-$pin-$mode-c$conns-r$run"
    local dir="$WORK/runs/$id"
    mkdir -p "$dir"
    local scpu=() wcpu=()
    if [[ $pin == pinned ]]; then
        scpu=(taskset -c "$SERVER_CPU")
        wcpu=(taskset -c "$CLIENT_CPU")
    fi
    local rec="system=$sys pinning=$pin mode=$mode connections=$conns run=$run dir=runs/$id"

    lock
    local port t load1
    load1=$(cut -d' ' -f1 /proc/loadavg)   # other work on the shared machine shows up here
    port=$(free_port) || { unlock; record "$rec error=no_free_port"; return; }
    # The lock's fd is closed in every child ({lockfd}>&-): a process that outlived us must not hold it.
    case $sys in
        baton)
            (cd "$dir" && exec setsid "${scpu[@]}" "$WORK/bin/hello" --port "$port" --drain-timeout "$DRAIN_TIMEOUT" \
                >"$dir/server.log" 2>&1 </dev/null) {lockfd}>&- &
            ;;
        tableflip)
            (cd "$dir" && exec setsid "${scpu[@]}" "$WORK/bin/tableflip-gin" -listen "127.0.0.1:$port" \
                -pid-file "$dir/tableflip.pid" >"$dir/server.log" 2>&1 </dev/null) {lockfd}>&- &
            ;;
    esac
    local first=$!
    server_group=$first
    local expected=1   # processes once upgrades are over: tableflip 1, Baton master + 1 worker
    [[ $sys == baton ]] && expected=2
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
        record "$rec port=$port error=server_did_not_start"
        return
    fi

    local wargs=(-t"$THREADS" -c"$conns" -d"${DURATION}s" --timeout "${TIMEOUT}s" -s "$lua")
    [[ $mode == close ]] && wargs+=(-H "Connection: close")
    "${wcpu[@]}" wrk "${wargs[@]}" "http://127.0.0.1:$port/hello" >"$dir/wrk.txt" 2>&1 {lockfd}>&- &
    wrk_pid=$!
    local t0 k=1 target hups=0 pid
    t0=$(now_us)
    echo "start $t0" >"$dir/triggers.txt"
    while :; do
        target=$((t0 + k * INTERVAL * 1000000))
        # no upgrade in the last INTERVAL/2 s: its outcome would fall outside the measurement
        ((target <= t0 + DURATION * 1000000 - INTERVAL * 500000)) || break
        sleep_until_us "$target"
        alive "$wrk_pid" || break
        if [[ $sys == baton ]]; then pid=$first; else pid=$(cat "$dir/tableflip.pid" 2>/dev/null); fi
        if [[ -n $pid ]] && kill -HUP "$pid" 2>/dev/null; then
            hups=$((hups + 1))
            echo "sighup $(now_us) $pid" >>"$dir/triggers.txt"
        else
            echo "sighup-failed $(now_us) ${pid:-none}" >>"$dir/triggers.txt"
        fi
        k=$((k + 1))
    done
    # wrk stops by itself after DURATION; bounded wait in case it hangs
    local deadline=$((SECONDS + DURATION + TIMEOUT + 30)) wrk_rc=0
    while alive "$wrk_pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if alive "$wrk_pid"; then
        say "  $id: wrk still running ${DURATION}+$((TIMEOUT + 30)) s after its start: killing it"
        kill -KILL "$wrk_pid" 2>/dev/null
    fi
    wait "$wrk_pid" || wrk_rc=$?
    wrk_pid=""
    local load_end_bytes
    load_end_bytes=$(stat -c %s "$dir/server.log" 2>/dev/null || echo 0)

    # The last old generations drain once the load is gone; bounded by the drain deadline.
    local settle_start=$(now_us) settled=0 n
    for ((t = 0; t < (DRAIN_TIMEOUT + 10) * 10; t++)); do
        n=$(group_members "$server_group" | wc -l)
        ((n <= expected)) && { settled=1; break; }
        sleep 0.1
    done
    local settle_ms=$((($(now_us) - settle_start) / 1000))
    ((settled)) || say "  $id: still $n server processes $((DRAIN_TIMEOUT + 10)) s after the load (expected $expected)"
    # What the master logged up to here: a stop would add the last generation's own drain.
    cp "$dir/server.log" "$dir/server-before-stop.log"
    kill_group "$server_group" $((DRAIN_TIMEOUT + 5))
    server_group=""
    for ((t = 0; t < 100; t++)); do [[ -z $(ss -Hltn "sport = :$port" 2>/dev/null) ]] && break; sleep 0.05; done
    unlock

    local fields
    fields=$(sed -n 's/^BATON_RESULT //p' "$dir/wrk.txt")
    [[ -n $fields ]] || fields="error=no_wrk_result"
    record "$rec port=$port load1=$load1 sighups=$hups wrk_rc=$wrk_rc settled=$settled settle_ms=$settle_ms load_end_bytes=$load_end_bytes $fields"
    local r=$fields
    if [[ $r == error=* ]]; then
        say "  $id: no wrk result (exit $wrk_rc; see $dir/wrk.txt)"
    else
        local -A f=()
        local kv
        for kv in $r; do f[${kv%%=*}]=${kv#*=}; done
        say "  $id: ${f[requests]} requests, $((f[connect] + f[read] + f[write] + f[timeout] + f[non2xx])) failed" \
            "(connect ${f[connect]}, read ${f[read]}, write ${f[write]}, timeout ${f[timeout]}, non-2xx ${f[non2xx]})," \
            "$hups SIGHUPs, ${f[pids]} pids, p99 ${f[p99_ms]} ms"
    fi
}

record() { echo "$*" >>"$results"; }

# ------------------------------------------------------------------ main
ensure_tools
hello_src=""
lock
build
unlock
say "work dir: $WORK"

command_line="RUNS=$RUNS DURATION=$DURATION INTERVAL=$INTERVAL THREADS=$THREADS TIMEOUT=$TIMEOUT SYSTEMS=\"$SYSTEMS\" MODES=\"$MODES\" KEEPALIVE_CONNECTIONS=\"$KEEPALIVE_CONNECTIONS\" CLOSE_CONNECTIONS=\"$CLOSE_CONNECTIONS\" PINNING=\"$PINNING\" DRAIN_TIMEOUT=$DRAIN_TIMEOUT${SKIP_BUILD:+ SKIP_BUILD=$SKIP_BUILD} bash Benchmarks/scale.sh"
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$(nproc)"
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "kernel=$(uname -sr)"
    echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "nofile=$(ulimit -n)"
    echo "sysctl=somaxconn $(sysctl -n net.core.somaxconn 2>/dev/null), tcp_max_syn_backlog $(sysctl -n net.ipv4.tcp_max_syn_backlog 2>/dev/null), ip_local_port_range $(sysctl -n net.ipv4.ip_local_port_range 2>/dev/null | tr '\t' '-'), tcp_tw_reuse $(sysctl -n net.ipv4.tcp_tw_reuse 2>/dev/null)"
    echo "wrk=$(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "python=$(python3 --version 2>&1) matplotlib $(python3 -c 'import matplotlib; print(matplotlib.__version__)' 2>/dev/null)"
    if [[ " $SYSTEMS " == *" baton "* ]]; then
        echo "swift=$(swift --version 2>&1 | head -1)"
        echo "hello_binary=${hello_src#"$repo"/} of $(date -u -r "$hello_src" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$WORK/bin/hello" | cut -c1-12); repository HEAD $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null)$(cd "$repo" && git diff --quiet HEAD -- Sources Package.swift 2>/dev/null || echo ' with uncommitted changes in Sources/ or Package.swift')"
    fi
    if [[ " $SYSTEMS " == *" tableflip "* ]]; then
        echo "go=$(go version)"
        echo "tableflip=$(dpkg-query -W -f='${Version}' golang-github-cloudflare-tableflip-dev) gin $(dpkg-query -W -f='${Version}' golang-github-gin-gonic-gin-dev)"
    fi
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "command=$command_line"
    echo "knobs=RUNS=$RUNS DURATION=$DURATION INTERVAL=$INTERVAL THREADS=$THREADS TIMEOUT=$TIMEOUT DRAIN_TIMEOUT=$DRAIN_TIMEOUT SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU NOFILE=$(ulimit -n)"
    echo "systems=$SYSTEMS"
    echo "modes=$MODES"
    echo "pinning=$PINNING"
    echo "keepalive_connections=$KEEPALIVE_CONNECTIONS"
    echo "close_connections=$CLOSE_CONNECTIONS"
} >"$WORK/meta.txt"

read -ra order <<<"$SYSTEMS"
total=0
for pin in $PINNING; do for mode in $MODES; do
    if [[ $mode == close ]]; then list=$CLOSE_CONNECTIONS; else list=$KEEPALIVE_CONNECTIONS; fi
    for c in $list; do total=$((total + ${#order[@]})); done
done; done
total=$((total * RUNS))
say "$total load runs of ${DURATION} s (+ start, drain and stop each)"
started=$SECONDS
done_runs=0
for ((r = 1; r <= RUNS; r++)); do
    n=${#order[@]}
    rot=()   # rotated every pass, so that no system always runs first
    for ((j = 0; j < n; j++)); do rot+=("${order[$(((j + r - 1) % n))]}"); done
    for pin in $PINNING; do
        for mode in $MODES; do
            if [[ $mode == close ]]; then list=$CLOSE_CONNECTIONS; else list=$KEEPALIVE_CONNECTIONS; fi
            for c in $list; do
                for s in "${rot[@]}"; do
                    done_runs=$((done_runs + 1))
                    say "[$done_runs/$total] run $r/$RUNS: $s, $pin, $mode, $c connections"
                    run_one "$s" "$pin" "$mode" "$c" "$r"
                done
            done
        done
    done
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/meta.txt"
echo "elapsed_s=$((SECONDS - started))" >>"$WORK/meta.txt"

say "writing $OUT, $PNG, $WORK/results.tsv and $WORK/results.json"
python3 "$here/scale/report.py" "$WORK" "$OUT" "$(realpath --relative-to="$(dirname "$OUT")" "$PNG")"
gate=$?   # 0: Baton failed nothing; 1: it failed requests; anything else: the report broke
((gate <= 1)) || gate=2
python3 "$here/scale/plot.py" "$WORK" "$PNG" || { say "error: plot failed"; ((gate == 0)) && gate=2; }
say "done in $((SECONDS - started)) s; raw output kept in $WORK"
case $gate in
    0) if [[ " $SYSTEMS " == *" baton "* ]]; then say "acceptance: PASS (Baton failed no request in any run)"
       else say "acceptance: no Baton runs"; fi ;;
    1) say "acceptance: FAIL (Baton failed requests, or a Baton run gave no result: see the report)" ;;
    *) say "error: the report could not be written" ;;
esac
exit "$gate"
