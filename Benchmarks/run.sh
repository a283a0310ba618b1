#!/usr/bin/env bash
# Every figure of BENCHMARKS.md from one command on one commit:
#
#   Benchmarks/run.sh            # the full run (about 75 min on 2 cores, builds not counted)
#   QUICK=1 Benchmarks/run.sh    # a smoke run (about 8 min + builds): fewer rounds, shorter runs,
#                                # a smaller scale matrix; the report says so at the top
#
# On a clean checkout (it refuses a dirty tree) it builds the release binaries
# (`swift build -c release --scratch-path .build-bench`, every product; the static `hello` and
# `baton` by Packaging/swift-build-static.sh into .build-static), the Go peers
# (Benchmarks/compare/{tableflip,grace}: gin on cloudflare/tableflip and facebookgo/grace) and the
# load client (Benchmarks/handoff/loadclient), then runs the sections below, interleaving the
# systems it compares (round-robin, rotated each round, each started fresh), and writes
# BENCHMARKS.md from scratch (Benchmarks/report.py), Benchmarks/scale.png, Benchmarks/handoff.png
# and Benchmarks/timeline.png. Raw output stays in WORKDIR.
#
# Sections (the system names are those of the report):
#   steady     req/s and p99 at 64 connections, keep-alive and `Connection: close` (wrk):
#              hello, plain-hummingbird (`.http1()`), plain-hummingbird-ws (`.http1WebSocketUpgrade`,
#              hello's builder), vapor-hello, plain-vapor, tableflip, grace, nginx
#   upgrades   an upgrade every INTERVAL s under that load, both modes: failed requests per upgrade
#              for hello, vapor-hello, tableflip, grace, nginx and a naive restart of hello
#   scale      keep-alive at 64/1,024/4,096/10,000 and `Connection: close` at 1,024/4,096
#              connections (the Go load client, which counts reconnects, per-pid answers, every
#              request slower than 10 s and every one left in flight at the end), an upgrade every
#              2 s, pinned and unpinned, hello against tableflip
#   ttfa       trigger → the first answer from a new pid (2 ms poll): hello, static hello,
#              tableflip, grace
#   memory     PSS of master + serving worker after 10 upgrades, the master's private dirty, against
#              tableflip's process; binary sizes, stripped against stripped, and ICU data in them
#   reexec     the master re-executing itself (`baton reload --master`) under load
#   canary     canary upgrades (`baton reload --canary`) under an open-loop load, pinned: a good
#              release at 64/1,024/4,096 keep-alive and 1,024 `Connection: close` connections (its
#              share of the answers, promoted), one answering 500 to 5% and one 50 ms slower
#              (rolled back by themselves; the errors clients saw)
#   soak       SOAK_UPGRADES back-to-back `baton reload` under load: fds and RSS, first and last
#   faults     a slow request across an upgrade; the idle master's CPU; the master SIGKILLed and
#              adopted (faults/master-kill.sh); a new generation SIGKILLed mid-hand-over (successor-kill.sh)
#   protocols  HTTP/2 (h2c, h2 by ALPN) and HTTPS clients across 9 upgrades (protocols/h2-tls.sh), and
#              2,000 reconnecting WebSocket echo clients across 5 upgrades (protocols/ws.sh), pinned
#
# Load only ever targets 127.0.0.1. Every process started here runs in a process group that the
# EXIT trap signals (by group id, never by name). Servers run on SERVER_CPU and clients on
# CLIENT_CPU (the scale section also unpinned).
#
# Environment (full / QUICK=1 defaults):
#   ROUNDS [3 / 1]            rounds of the steady, upgrades and ttfa sections
#   DURATION [10 / 3]         seconds of each steady wrk run
#   UPG_DURATION [20 / 6]     seconds of each upgrades-under-load run;  INTERVAL [2] between upgrades
#   SCALE_RUNS [3 / 1]        runs of each scale cell;  SCALE_DURATION [16 / 8] s each
#   SCALE_CELLS ["keepalive:64 keepalive:1024 keepalive:4096 keepalive:10000 close:1024 close:4096"
#                / "keepalive:64 keepalive:1024 keepalive:10000 close:1024"]
#   PINNINGS ["pinned unpinned" / "pinned"]
#   TTFA_TRIALS [5 / 5] per round (≥ 15 in all for the full run)
#   MEM_UPGRADES [10]         SOAK_UPGRADES [1000 / 50]   REEXEC_DURATION [20 / 10]
#   CANARY_CELLS ["good:keepalive:64 good:keepalive:1024 good:keepalive:4096 good:close:1024
#                 errors:keepalive:1024 latency:keepalive:1024"]  CASE:MODE:CONNECTIONS
#   CANARY_PERCENT [10]  CANARY_SECONDS [10]  CANARY_RATE [10000] requests/s in all
#   SLOW_MS [10000 / 3000]    IDLE_S [30 / 10]
#   SECTIONS ["steady upgrades scale ttfa memory reexec soak faults"]: a subset for development;
#                             the report then lists the missing sections as not run
#   SKIP_BUILD=1              use the existing .build-bench and .build-static binaries (the header says so)
#   ALLOW_DIRTY=1             run on a dirty tree (development only; the header says so)
#   SERVER_CPU [0]  CLIENT_CPU [1]   WORKDIR [new /tmp/baton-bench.XXXXXX]   OUT [BENCHMARKS.md]
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

# The exact command, with the knobs set in the environment.
command_line=""
for v in QUICK ROUNDS DURATION UPG_DURATION INTERVAL SCALE_RUNS SCALE_DURATION SCALE_INTERVAL SCALE_CELLS PINNINGS TTFA_TRIALS \
    MEM_UPGRADES SOAK_UPGRADES REEXEC_DURATION SLOW_MS IDLE_S CANARY_CELLS CANARY_PERCENT CANARY_SECONDS CANARY_RATE \
    SECTIONS SKIP_BUILD ALLOW_DIRTY SERVER_CPU CLIENT_CPU; do
    [[ -n ${!v:-} ]] && command_line+="$v=$(printf '%q' "${!v}") "
done
command_line+="Benchmarks/run.sh"

QUICK=${QUICK:-}
if [[ $QUICK == 1 ]]; then q=1; else q=0; fi
pick() { if ((q)); then echo "$2"; else echo "$1"; fi; }   # pick FULL QUICK
ROUNDS=${ROUNDS:-$(pick 3 1)}
DURATION=${DURATION:-$(pick 10 3)}
UPG_DURATION=${UPG_DURATION:-$(pick 20 6)}
INTERVAL=${INTERVAL:-2}
SCALE_RUNS=${SCALE_RUNS:-$(pick 3 1)}
SCALE_DURATION=${SCALE_DURATION:-$(pick 16 8)}
SCALE_INTERVAL=${SCALE_INTERVAL:-2}
SCALE_CELLS=${SCALE_CELLS:-$(pick "keepalive:64 keepalive:1024 keepalive:4096 keepalive:10000 close:1024 close:4096" \
    "keepalive:64 keepalive:1024 keepalive:10000 close:1024")}
PINNINGS=${PINNINGS:-$(pick "pinned unpinned" "pinned")}
TTFA_TRIALS=${TTFA_TRIALS:-5}
MEM_UPGRADES=${MEM_UPGRADES:-10}
SOAK_UPGRADES=${SOAK_UPGRADES:-$(pick 1000 50)}
REEXEC_DURATION=${REEXEC_DURATION:-$(pick 20 10)}
SOAK_WRK_S=$(pick 20 5)   # length of each wrk run of the soak (wrk reports only at the end of a run)
SLOW_MS=${SLOW_MS:-$(pick 10000 3000)}
IDLE_S=${IDLE_S:-$(pick 30 10)}
MASTER_KILLS=${MASTER_KILLS:-$(pick 12 3)}
MASTER_KILL_INTERVAL=${MASTER_KILL_INTERVAL:-$(pick 10 5)}
SUCCESSOR_KILLS=${SUCCESSOR_KILLS:-$(pick 3 1)}
PROTOCOL_ROUNDS=${PROTOCOL_ROUNDS:-$(pick 3 1)}
CANARY_CELLS=${CANARY_CELLS:-"good:keepalive:64 good:keepalive:1024 good:keepalive:4096 good:close:1024 errors:keepalive:1024 latency:keepalive:1024"}
CANARY_PERCENT=${CANARY_PERCENT:-10}
CANARY_SECONDS=${CANARY_SECONDS:-10}
CANARY_RATE=${CANARY_RATE:-10000}
SECTIONS=${SECTIONS:-"steady upgrades scale ttfa memory reexec canary soak faults protocols"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CONNECTIONS=64
TIMEOUT=10          # every client: a request slower than 10 s is a failed one
DRAIN_TIMEOUT=30    # hello --drain-timeout in the scale section (its default)
OUT=${OUT:-"$repo/BENCHMARKS.md"}

STEADY_SYSTEMS="hello plain-hummingbird plain-hummingbird-ws vapor-hello plain-vapor tableflip grace nginx"
UPG_SYSTEMS="hello vapor-hello tableflip grace nginx naive"
SCALE_SYSTEMS="hello tableflip"
TTFA_SYSTEMS="hello hello-static tableflip grace"
MEM_SYSTEMS="hello hello-static tableflip"


# ------------------------------------------------------------------ work folder, traps
WORK=${WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/baton-bench.XXXXXX")}
mkdir -p "$WORK/bin/static" "$WORK/logs" "$WORK/runs" || die "cannot create $WORK"
results="$WORK/results.txt"
: >"$results"
trap cleanup_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) >= 10100)) || say "warning: ulimit -n is $(ulimit -n): the 10,000-connection cells will fail"

record() { echo "$*" >>"$results"; }
has_section() { [[ " $SECTIONS " == *" $1 "* ]]; }

# ------------------------------------------------------------------ clean tree, tools, builds
cd "$repo" || die "no $repo"
dirty=$(git status --porcelain 2>/dev/null)
if [[ -n $dirty ]]; then
    [[ ${ALLOW_DIRTY:-} == 1 ]] || die "the tree is dirty (commit or stash first; the report names one commit):
$dirty"
    say "warning: dirty tree (ALLOW_DIRTY=1): the report says so"
fi
commit=$(git rev-parse HEAD)

install_debian_packages wrk curl iproute2 util-linux binutils nginx-light golang-go golang-github-gin-gonic-gin-dev \
    golang-github-cloudflare-tableflip-dev golang-github-facebookgo-grace-dev linux-perf \
    golang-github-gorilla-websocket-dev golang-golang-x-net-dev nghttp2-client openssl
ensure_matplotlib

started_all=$SECONDS
if [[ ${SKIP_BUILD:-} != 1 ]]; then
    say "swift build -c release --scratch-path .build-bench (every product)…"
    t=$SECONDS
    swift build -c release --scratch-path .build-bench >"$WORK/logs/swift-build.log" 2>&1 ||
        die "swift build failed: see $WORK/logs/swift-build.log"
    echo "build_release_s=$((SECONDS - t))" >>"$WORK/meta.txt"
    say "static build (Packaging/swift-build-static.sh hello baton)…"
    t=$SECONDS
    bash Packaging/swift-build-static.sh hello baton >"$WORK/logs/swift-build-static.log" 2>&1 ||
        die "static build failed: see $WORK/logs/swift-build-static.log"
    echo "build_static_s=$((SECONDS - t))" >>"$WORK/meta.txt"
fi
rel=.build-bench/release
for p in hello baton vapor-hello plain-hummingbird plain-vapor; do
    [[ -x $rel/$p ]] || die "$rel/$p not found (build it, or unset SKIP_BUILD)"
    # Private copies: Baton re-executes these paths, so a rebuild during the run changes nothing.
    cp "$rel/$p" "$WORK/bin/$p"
done
for p in hello baton; do
    [[ -x .build-static/release/$p ]] || die ".build-static/release/$p not found"
    cp ".build-static/release/$p" "$WORK/bin/static/$p.unstripped"
    # what a deploy ships (Packaging/build.sh strips the same way); its own folder, so it is still called hello
    strip --strip-unneeded -o "$WORK/bin/static/$p" ".build-static/release/$p"
done
say "building the Go peers and the load client (GOPATH mode, Debian's packages, -ldflags='-s -w')…"
go_build "$here/compare/tableflip" "$WORK/bin/tableflip-gin" "$WORK/logs/go-tableflip.log"
go_build "$here/compare/grace" "$WORK/bin/grace-gin" "$WORK/logs/go-grace.log"
go_build "$here/handoff/loadclient" "$WORK/bin/loadclient" "$WORK/logs/go-loadclient.log"
go_build "$here/protocols/wsclient" "$WORK/bin/wsclient" "$WORK/logs/go-wsclient.log"
echo "build_total_s=$((SECONDS - started_all))" >>"$WORK/meta.txt"

{
    echo "commit=$commit"
    # Of the commit taken at the start (HEAD may have moved during the builds).
    echo "commit_short=$(git rev-parse --short=9 "$commit")"
    echo "commit_subject=$(git log -1 --format=%s "$commit")"
    echo "commit_date=$(TZ=UTC git log -1 --format=%cd --date=format-local:'%Y-%m-%d %H:%M UTC' "$commit" 2>/dev/null || git log -1 --format=%ci "$commit")"
    echo "dirty=$([[ -n $dirty ]] && echo yes || echo no)"
    echo "skip_build=${SKIP_BUILD:-0}"
    echo "quick=$q"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$(nproc)"
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "kernel=$(uname -sr)"
    echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "swift=$(swift --version 2>&1 | grep -m1 -i 'swift version')"
    echo "go=$(go version | cut -d' ' -f3)"
    echo "nginx=$(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "wrk=$(dpkg-query -W -f='${Version}' wrk)"
    echo "tableflip=$(dpkg-query -W -f='${Version}' golang-github-cloudflare-tableflip-dev)"
    echo "grace=$(dpkg-query -W -f='${Version}' golang-github-facebookgo-grace-dev)"
    echo "gin=$(dpkg-query -W -f='${Version}' golang-github-gin-gonic-gin-dev)"
    echo "python=$(python3 --version 2>&1 | cut -d' ' -f2)"
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "command=$command_line"
    echo "knobs=SOAK_WRK_S=$SOAK_WRK_S ROUNDS=$ROUNDS DURATION=$DURATION UPG_DURATION=$UPG_DURATION INTERVAL=$INTERVAL SCALE_RUNS=$SCALE_RUNS SCALE_DURATION=$SCALE_DURATION SCALE_INTERVAL=$SCALE_INTERVAL TTFA_TRIALS=$TTFA_TRIALS MEM_UPGRADES=$MEM_UPGRADES SOAK_UPGRADES=$SOAK_UPGRADES REEXEC_DURATION=$REEXEC_DURATION SLOW_MS=$SLOW_MS IDLE_S=$IDLE_S MASTER_KILLS=$MASTER_KILLS MASTER_KILL_INTERVAL=$MASTER_KILL_INTERVAL SUCCESSOR_KILLS=$SUCCESSOR_KILLS CONNECTIONS=$CONNECTIONS TIMEOUT=$TIMEOUT SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU"
    echo "scale_cells=$SCALE_CELLS"
    echo "pinnings=$PINNINGS"
    echo "sections=$SECTIONS"
} >>"$WORK/meta.txt"
say "work dir: $WORK"

# ------------------------------------------------------------------ the systems
# Each started system has a folder (its working directory: Baton's control socket goes to
# ./.baton/ there), a port and a pid to signal.
declare -A PORT DIR MASTER
SPIN=(taskset -c "$SERVER_CPU")   # server pinning of the current section (empty: unpinned)
CPIN=(taskset -c "$CLIENT_CPU")

binary_of() {
    case $1 in
        hello | naive) echo "$WORK/bin/hello" ;;
        hello-static) echo "$WORK/bin/static/hello" ;;
        *) echo "$WORK/bin/$1" ;;
    esac
}

master_pid() {   # the pid to signal (it changes with tableflip, grace, nginx)
    case $1 in
        tableflip | grace) cat "${DIR[$1]}/server.pid" 2>/dev/null ;;
        nginx) cat "${DIR[$1]}/nginx.pid" 2>/dev/null ;;
        *) echo "${MASTER[$1]}" ;;
    esac
}

expected_procs() {   # processes of a settled system: Baton master + keeper + worker, nginx master + worker, else 1
    # (the keeper, baton-keeper, is the master's child in its process group: without it counted,
    # every settle and every scale cell's end waited out its bound, 15 s and DRAIN_TIMEOUT + 10 s)
    case $1 in hello | hello-static | vapor-hello) echo 3 ;; nginx) echo 2 ;; *) echo 1 ;; esac
}

spawn() {   # spawn SYSTEM: starts the server process(es) (no wait)
    local s=$1 port=${PORT[$1]} dir=${DIR[$1]}
    case $s in
        hello | hello-static | naive | vapor-hello)
            (cd "$dir" && exec setsid "${SPIN[@]}" "$(binary_of "$s")" --port "$port" --drain-timeout "${HELLO_DRAIN:-10}" \
                >>"$dir/server.log" 2>&1 </dev/null) &
            MASTER[$s]=$!
            track_group "${MASTER[$s]}"
            ;;
        plain-hummingbird | plain-hummingbird-ws)
            # -ws: `.http1WebSocketUpgrade`, the server builder `hello` serves with
            (cd "$dir" && exec setsid "${SPIN[@]}" "$WORK/bin/plain-hummingbird" "$port" $([[ $s == *-ws ]] && echo --websocket) >>"$dir/server.log" 2>&1 </dev/null) &
            MASTER[$s]=$!
            track_group "${MASTER[$s]}"
            ;;
        plain-vapor)
            (cd "$dir" && exec setsid "${SPIN[@]}" "$WORK/bin/plain-vapor" serve --env production --hostname 127.0.0.1 --port "$port" \
                >>"$dir/server.log" 2>&1 </dev/null) &
            MASTER[$s]=$!
            track_group "${MASTER[$s]}"
            ;;
        tableflip | grace)
            rm -f "$dir/server.pid"
            (cd "$dir" && exec setsid "${SPIN[@]}" "$WORK/bin/$s-gin" -listen "127.0.0.1:$port" -pid-file "$dir/server.pid" \
                >>"$dir/server.log" 2>&1 </dev/null) &
            MASTER[$s]=$!
            track_group "${MASTER[$s]}"
            ;;
        nginx)
            cat >"$dir/nginx.conf" <<EOF
# written by Benchmarks/run.sh
worker_processes 1;
daemon on;                      # the documented binary upgrade needs a daemonized master
pid $dir/nginx.pid;
error_log $dir/error.log notice;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000; # like the other servers: no cap on requests per connection
    server {
        listen 127.0.0.1:$port;
        location = /hello {
            default_type application/json;
            return 200 '{"message":"Hello from nginx","ver":"1","pid":\$pid}';
        }
    }
}
EOF
            rm -f "$dir/nginx.pid" "$dir/nginx.pid.oldbin"
            # Absolute path: USR2 re-executes argv[0]. nginx daemonizes into a session of its own.
            (cd "$dir" && exec "${SPIN[@]}" /usr/sbin/nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" \
                >>"$dir/server.log" 2>&1 </dev/null) || { say "nginx did not start (see $dir/error.log)"; return 1; }
            local t
            for ((t = 0; t < 100; t++)); do [[ -s $dir/nginx.pid ]] && break; sleep 0.02; done
            MASTER[$s]=$(cat "$dir/nginx.pid" 2>/dev/null)
            track_group "$(pgid_of "${MASTER[$s]}")"
            ;;
        *) die "unknown system $s" ;;
    esac
}

start_system() {   # start_system SYSTEM LABEL: a fresh folder and port; returns once it answers
    local s=$1 label=$2
    DIR[$s]="$WORK/runs/$label"
    mkdir -p "${DIR[$s]}"
    PORT[$s]=$(free_port) || die "no free port"
    spawn "$s" || return 1
    wait_answer "${PORT[$s]}" 60 || { say "$s did not answer on port ${PORT[$s]} (see ${DIR[$s]})"; return 1; }
}

group_of() { pgid_of "$(master_pid "$1")" || echo "${MASTER[$1]}"; }

stop_system() {
    local s=$1 pid g
    pid=$(master_pid "$s")
    g=$(pgid_of "$pid")
    [[ -n $g ]] || g=${MASTER[$s]}
    if [[ $s == nginx ]]; then kill -QUIT "$pid" 2>/dev/null; fi
    kill_group "$g" 15
    wait_port_closed "${PORT[$s]}" 5 || say "warning: $s still listens on ${PORT[$s]}"
    return 0
}

settle() {   # settle SYSTEM: until the previous upgrade is over (one generation serving), bounded
    local s=$1 t g n
    g=$(group_of "$s")
    n=$(expected_procs "$s")
    for ((t = 0; t < 300; t++)); do
        (($(group_members "$g" | wc -l) <= n)) && [[ ! -e ${DIR[$s]}/nginx.pid.oldbin ]] && break
        sleep 0.05
    done
    sleep 0.3
}

# The documented upgrade trigger of each system. Returns once the trigger is sent (nginx: once the
# whole USR2 → WINCH → QUIT sequence is done; naive: once the new process is started).
trigger_system() {
    local s=$1 pid t
    pid=$(master_pid "$s")
    case $s in
        hello | hello-static | vapor-hello | tableflip) kill -HUP "$pid" ;;
        grace) kill -USR2 "$pid" ;;
        naive)
            local g
            g=$(pgid_of "$pid")
            kill -TERM "$pid"
            wait_gone "$pid" 30 || say "warning: naive: old hello $pid still alive after 30 s"
            [[ -n $g ]] && forget_group "$g"
            for ((t = 0; t < 500; t++)); do [[ -z $(ss -Hltn "sport = :${PORT[$s]}") ]] && break; sleep 0.005; done
            spawn naive
            ;;
        nginx)
            local dir=${DIR[$s]} new=""
            kill -USR2 "$pid"
            for ((t = 0; t < 300; t++)); do
                new=$(cat "$dir/nginx.pid" 2>/dev/null)
                [[ -n $new && $new != "$pid" ]] && alive "$new" && pgrep -P "$new" >/dev/null && break
                new=""
                sleep 0.01
            done
            [[ -n $new ]] || { say "warning: nginx: no new master after USR2 to $pid"; return 1; }
            kill -WINCH "$pid"
            for ((t = 0; t < 300; t++)); do pgrep -P "$pid" | grep -qvx "$new" || break; sleep 0.01; done
            kill -QUIT "$pid"
            wait_gone "$pid" 5
            ;;
    esac
}

rotation() {   # rotation ROUND SYSTEM…: the systems rotated by ROUND-1
    local r=$1 n j
    shift
    local a=("$@")
    n=${#a[@]}
    for ((j = 0; j < n; j++)); do printf '%s ' "${a[$(((j + r - 1) % n))]}"; done
}

# ------------------------------------------------------------------ wrk
lua="$here/compare/compare.lua"
wrk_cmd() {   # wrk_cmd DURATION MODE PORT [CONNECTIONS]: sets WRK
    WRK=("${CPIN[@]}" wrk -t2 -c"${4:-$CONNECTIONS}" -d"${1}s" --timeout "${TIMEOUT}s")
    [[ $2 == close ]] && WRK+=(-H "Connection: close")
    WRK+=(-s "$lua" "http://127.0.0.1:$3/hello")
}
result_fields() { sed -n 's/^CMP_RESULT //p' "$1"; }

# ------------------------------------------------------------------ section: steady
steady() {
    local r s mode out g c0 c1 hz
    hz=$(getconf CLK_TCK)
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in $(rotation "$r" $STEADY_SYSTEMS); do
            say "steady, round $r/$ROUNDS: $s"
            start_system "$s" "steady-$s-r$r" || { record "$s $r steady-error"; stop_system "$s"; continue; }
            wrk_cmd 2 keepalive "${PORT[$s]}"
            "${WRK[@]}" >"${DIR[$s]}/warmup.txt" 2>&1
            for mode in keepalive close; do
                out="${DIR[$s]}/steady-$mode.txt"
                g=$(group_of "$s")
                c0=$(cpu_ticks "$g")
                wrk_cmd "$DURATION" "$mode" "${PORT[$s]}"
                "${WRK[@]}" >"$out" 2>&1
                c1=$(cpu_ticks "$g")
                record "$s $r steady-$mode $(result_fields "$out") server_cpu_s=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}')"
                say "  $mode: $(result_fields "$out" | cut -d' ' -f3,5)"
            done
            stop_system "$s"
        done
    done
}

# ------------------------------------------------------------------ section: upgrades under load
under_load() {   # under_load SYSTEM ROUND MODE
    local s=$1 r=$2 mode=$3 port=${PORT[$1]} runs="$WORK/runs"
    local out="$runs/upgrade-$mode-$s-r$r.txt" tl="$runs/timeline-$mode-$s-r$r.txt" trig="$runs/triggers-$mode-$s-r$r.txt"
    settle "$s"
    wrk_cmd "$UPG_DURATION" "$mode" "$port"
    env CMP_TRACK=1 CMP_TIMELINE="$tl" "${WRK[@]}" >"$out" 2>&1 &
    local wpid=$! n=0 k=1 t0 target
    track_helper "$wpid"
    t0=$(now_ms)
    echo "start $EPOCHREALTIME" >"$trig"
    while :; do
        target=$((t0 + k * INTERVAL * 1000))
        # no upgrade in the last INTERVAL/2 s: its outcome would fall outside the run
        ((target <= t0 + UPG_DURATION * 1000 - INTERVAL * 500)) || break
        sleep_until_ms "$target"
        alive "$wpid" || break
        echo "trigger $EPOCHREALTIME" >>"$trig"
        trigger_system "$s"
        echo "done $EPOCHREALTIME" >>"$trig"
        n=$((n + 1))
        k=$((k + 1))
    done
    wait "$wpid"
    forget_helper "$wpid"
    record "$s $r upgrade-$mode upgrades=$n $(result_fields "$out")"
    say "  $mode: $n upgrades, $(result_fields "$out" | grep -o 'connect=.*non2xx=[0-9]*')"
}

upgrades() {
    local r s
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in $(rotation "$r" $UPG_SYSTEMS); do
            say "upgrades under load, round $r/$ROUNDS: $s"
            start_system "$s" "upgrades-$s-r$r" || { record "$s $r upgrade-error"; stop_system "$s"; continue; }
            under_load "$s" "$r" keepalive
            under_load "$s" "$r" close
            stop_system "$s"
        done
    done
}

client_ready() {   # client_ready DIR PID: until the load client has opened its connections (DIR/ready), bounded at 70 s
    local t
    for ((t = 0; t < 700; t++)); do
        [[ -s $1/ready ]] && return 0
        alive "$2" || return 1
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------------ section: scale
# scale_run SYSTEM MODE CONNECTIONS PINNING RUN: one server, the load client for SCALE_DURATION s
# (after every connection is open), an upgrade every SCALE_INTERVAL s from 2 s on; `ss` snapshots
# before each upgrade (connections kept); Benchmarks/handoff/analyze.py turns it into per-upgrade
# numbers (RUNDIR/upgrades.json).
scale_run() {
    local s=$1 mode=$2 conns=$3 pin=$4 run=$5
    local id="scale-$s-$mode-c$conns-$pin-r$run"
    local t close_flag=()
    [[ $mode == close ]] && close_flag=(-close)
    if [[ $pin == pinned ]]; then SPIN=(taskset -c "$SERVER_CPU"); CPIN=(taskset -c "$CLIENT_CPU"); else SPIN=(); CPIN=(); fi
    HELLO_DRAIN=$DRAIN_TIMEOUT start_system "$s" "$id" || { record "$s $run scale-error mode=$mode connections=$conns pinning=$pin"; stop_system "$s"; return; }
    local dir=${DIR[$s]} port=${PORT[$s]}
    printf '{"system":"%s","mode":"%s","connections":%d,"pinning":"%s","run":%d,"port":%d,"loadavg":"%s","duration":%d,"interval":%d}\n' \
        "$s" "$mode" "$conns" "$pin" "$run" "$port" "$(cut -d' ' -f1-3 /proc/loadavg)" "$SCALE_DURATION" "$SCALE_INTERVAL" >"$dir/run.json"
    "${CPIN[@]}" "$WORK/bin/loadclient" -addr "127.0.0.1:$port" -c "$conns" -d "${SCALE_DURATION}s" -timeout "${TIMEOUT}s" \
        "${close_flag[@]}" -timeline "$dir/timeline.txt" -slow-log "$dir/slow.txt" -ready-file "$dir/ready" -summary >"$dir/summary.json" 2>"$dir/client.log" &
    local client=$!
    track_helper "$client"
    if ! client_ready "$dir" "$client"; then
        say "  $id: the load client did not open its connections (see $dir/client.log)"
        stop_pid "$client"
        stop_system "$s"
        record "$s $run scale-error mode=$mode connections=$conns pinning=$pin"
        return
    fi
    local t0
    t0=$(<"$dir/ready")
    (exec "${CPIN[@]}" bash -c 'while :; do t=$EPOCHREALTIME; t=${t/[.,]/}; echo "$((10#$t / 1000)) $(ss -Htn state established "( sport = :$1 )" | wc -l)"; sleep 0.15; done' \
        sampler "$port") >"$dir/ss.txt" 2>/dev/null &
    local sampler=$!
    track_helper "$sampler"
    echo "start $t0" >"$dir/triggers.txt"
    local k=0 target pid
    while :; do
        target=$((t0 + 2000 + k * SCALE_INTERVAL * 1000))
        ((target <= t0 + SCALE_DURATION * 1000 - SCALE_INTERVAL * 500)) || break
        sleep_until_ms $((target - 150))
        alive "$client" || break
        established "$port" >"$dir/ss-before-$((k + 1)).txt"
        sleep_until_ms "$target"
        pid=$(master_pid "$s")
        if [[ -n $pid ]] && kill -HUP "$pid" 2>/dev/null; then
            echo "sighup $(now_ms) $pid" >>"$dir/triggers.txt"
        else
            echo "sighup-failed $(now_ms) ${pid:-none}" >>"$dir/triggers.txt"
        fi
        k=$((k + 1))
    done
    sleep_until_ms $((t0 + SCALE_DURATION * 1000 - 150))
    established "$port" >"$dir/ss-end.txt"
    echo "end $((t0 + SCALE_DURATION * 1000))" >>"$dir/triggers.txt"
    # the client stops by itself after SCALE_DURATION (+ its requests in flight, at most TIMEOUT + 1 s)
    local deadline=$((SECONDS + TIMEOUT + 15)) rc=0
    while alive "$client" && ((SECONDS < deadline)); do sleep 0.2; done
    alive "$client" && { say "  $id: the load client still runs: killing it"; kill -KILL "$client" 2>/dev/null; }
    wait "$client" || rc=$?
    forget_helper "$client"
    stop_pid "$sampler"
    # old generations drain once the load is gone (bounded), then the server is stopped
    local g n
    g=$(group_of "$s")
    for ((t = 0; t < (DRAIN_TIMEOUT + 10) * 10; t++)); do
        n=$(group_members "$g" | wc -l)
        ((n <= $(expected_procs "$s"))) && break
        sleep 0.1
    done
    stop_system "$s"
    SPIN=(taskset -c "$SERVER_CPU")
    CPIN=(taskset -c "$CLIENT_CPU")
    if ((rc != 0)) || ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$dir/summary.json" 2>/dev/null; then
        say "  $id: no result from the load client (exit $rc; see $dir/client.log)"
        record "$s $run scale-error mode=$mode connections=$conns pinning=$pin"
        return
    fi
    python3 "$here/handoff/analyze.py" run "$dir" >"$dir/upgrades.txt" 2>&1 || say "  $id: analyze failed (see $dir/upgrades.txt)"
    record "$s $run scale-done mode=$mode connections=$conns pinning=$pin dir=$id"
    say "  $id: $(sed -n 1p "$dir/upgrades.txt" | cut -c1-200)"
}

scale() {
    local r pin cell s
    for ((r = 1; r <= SCALE_RUNS; r++)); do
        for pin in $PINNINGS; do
            for cell in $SCALE_CELLS; do
                for s in $(rotation "$r" $SCALE_SYSTEMS); do
                    say "scale, run $r/$SCALE_RUNS, $pin: $s, ${cell%%:*} at ${cell##*:} connections"
                    scale_run "$s" "${cell%%:*}" "${cell##*:}" "$pin" "$r"
                done
            done
        done
    done
}

# ------------------------------------------------------------------ section: time to a new pid
ttfa() {
    local r s i rf tf out ppid t line
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in $(rotation "$r" $TTFA_SYSTEMS); do
            say "time to a new pid, round $r/$ROUNDS: $s ($TTFA_TRIALS trials)"
            start_system "$s" "ttfa-$s-r$r" || { record "$s $r ttfa-error"; stop_system "$s"; continue; }
            for ((i = 1; i <= TTFA_TRIALS; i++)); do
                settle "$s"
                rf="${DIR[$s]}/ready-$i" tf="${DIR[$s]}/trigger-$i" out="${DIR[$s]}/poll-$i.txt"
                "${CPIN[@]}" env POLL_INTERVAL_MS=2 python3 "$here/compare/poller.py" "${PORT[$s]}" "$rf" "$tf" >"$out" 2>&1 &
                ppid=$!
                track_helper "$ppid"
                for ((t = 0; t < 500; t++)); do [[ -s $rf ]] && break; sleep 0.02; done
                sleep 0.2
                printf '%s\n' "$EPOCHREALTIME" >"$tf"
                trigger_system "$s"
                wait "$ppid"
                forget_helper "$ppid"
                line=$(sed -n 's/^CMP_TTFA //p' "$out")
                record "$s $r ttfa $line"
            done
            say "  $(grep " $r ttfa " "$results" | grep "^$s " | grep -o 'ms=[0-9.na]*' | tr '\n' ' ')"
            stop_system "$s"
        done
    done
}

# ------------------------------------------------------------------ section: memory and sizes
memory() {
    local s i old w m t
    for s in $MEM_SYSTEMS; do
        say "memory: $s after $MEM_UPGRADES upgrades"
        start_system "$s" "memory-$s" || { record "$s 1 memory-error"; stop_system "$s"; continue; }
        wrk_cmd 2 keepalive "${PORT[$s]}"
        "${WRK[@]}" >"${DIR[$s]}/warmup-0.txt" 2>&1
        for ((i = 1; i <= MEM_UPGRADES; i++)); do
            old=$(answer_pid "${PORT[$s]}")
            trigger_system "$s"
            for ((t = 0; t < 200; t++)); do w=$(answer_pid "${PORT[$s]}"); [[ -n $w && $w != "$old" ]] && break; sleep 0.05; done
            settle "$s"
        done
        "${WRK[@]}" >"${DIR[$s]}/warmup-1.txt" 2>&1
        settle "$s"
        sleep 0.5
        w=$(answer_pid "${PORT[$s]}")
        m=""
        [[ $s == hello* ]] && m=$(master_pid "$s")
        record "$s 1 memory upgrades=$MEM_UPGRADES ${m:+$(smaps_kb "$m" master_) }$(smaps_kb "$w" worker_) threads_master=${m:+$(ls "/proc/$m/task" 2>/dev/null | wc -l)} threads_worker=$(ls "/proc/$w/task" 2>/dev/null | wc -l)"
        stop_system "$s"
    done
    local f name
    for name in hello:"$WORK/bin/hello" static-hello:"$WORK/bin/static/hello.unstripped" static-baton:"$WORK/bin/static/baton.unstripped" \
        vapor-hello:"$WORK/bin/vapor-hello" tableflip-gin:"$WORK/bin/tableflip-gin" grace-gin:"$WORK/bin/grace-gin"; do
        f=${name#*:}
        strip --strip-unneeded -o "$WORK/stripped" "$f" 2>/dev/null || cp "$f" "$WORK/stripped"
        record "size 0 ${name%%:*} bytes=$(stat -c %s "$f") stripped=$(stat -c %s "$WORK/stripped") rodata=$(size -A "$f" | awk '$1 == ".rodata" {print $2}') icu=$(grep -c icudt < <(strings -n 6 "$f")) foundation_so=$(ldd "$f" 2>/dev/null | grep -cE 'libFoundation\.so|libFoundationInternationalization|_FoundationICU')"
    done
    rm -f "$WORK/stripped"
}

# ------------------------------------------------------------------ section: master re-execution
reexec() {
    local mode s=hello out n k t0 target pid0 ok
    for mode in keepalive close; do
        say "master re-execution under load ($mode)"
        start_system "$s" "reexec-$mode" || { record "$s 1 reexec-error"; stop_system "$s"; continue; }
        pid0=${MASTER[$s]}
        out="${DIR[$s]}/wrk.txt"
        wrk_cmd "$REEXEC_DURATION" "$mode" "${PORT[$s]}"
        env CMP_TRACK=1 "${WRK[@]}" >"$out" 2>&1 &
        local wpid=$!
        track_helper "$wpid"
        t0=$(now_ms) n=0 ok=0 k=1
        while :; do
            target=$((t0 + k * 4000 - 2000))   # at 2 s, 6 s, 10 s, …
            ((target <= t0 + REEXEC_DURATION * 1000 - 3000)) || break
            sleep_until_ms "$target"
            n=$((n + 1))
            (cd "${DIR[$s]}" && "${CPIN[@]}" "$WORK/bin/baton" reload --master --timeout 60) >>"${DIR[$s]}/reload.txt" 2>&1 && ok=$((ok + 1))
            k=$((k + 1))
        done
        wait "$wpid"
        forget_helper "$wpid"
        local same=no
        alive "$pid0" && [[ $(pgid_of "$pid0") == "$pid0" ]] && same=yes
        record "$s 1 reexec-$mode reexecs=$n reexecs_ok=$ok master_same_pid=$same executions=$(grep -c 'master re-executed in place' "${DIR[$s]}/server.log") $(result_fields "$out")"
        say "  $n re-executions ($ok ok), master pid kept: $same; $(result_fields "$out" | grep -o 'connect=.*non2xx=[0-9]*')"
        stop_system "$s"
    done
}

# ------------------------------------------------------------------ section: canary
# canary_run CASE MODE CONNECTIONS: hello in the seed workflow (watch.conf with DelaySecond 3600,
# so only `baton reload` upgrades it), pinned; the load client in an open loop at CANARY_RATE
# requests/s in all (each connection sends at its own fixed rate: a generation's share of the
# answers is its share of the connections, whatever CPU each process gets); 2 s in, watch.conf's
# Ver becomes 2 and `baton reload --canary` runs. CASE good: release 2 is hello as it is; errors:
# it answers 500 to 5% of its requests; latency: it adds 50 ms to each (hello's test aids, given
# to the master and applied by the generation started as version 2 only).
canary_conf() {   # canary_conf DIR PORT VER
    printf '{"HttpPort":"%s","Ver":"%s","DelaySecond":3600,"BinName":"hello"}\n' "$2" "$3" >"$1/hello.watch.conf.new"
    chmod 0644 "$1/hello.watch.conf.new"
    mv "$1/hello.watch.conf.new" "$1/hello.watch.conf"
}

canary_run() {
    local case=$1 mode=$2 conns=$3
    local id="canary-$case-$mode-c$conns" inject=() close_flag=() t
    local dir="$WORK/runs/$id" port
    mkdir -p "$dir"
    port=$(free_port) || die "no free port"
    case $case in
        errors) inject=(--inject-errors 5 --inject-into-version 2) ;;
        latency) inject=(--inject-latency 50 --inject-into-version 2) ;;
    esac
    [[ $mode == close ]] && close_flag=(-close)
    cp "$WORK/bin/hello" "$dir/hello"
    canary_conf "$dir" "$port" 1
    (cd "$dir" && exec setsid "${SPIN[@]}" "$dir/hello" --config "$dir/hello.watch.conf" "${inject[@]}" \
        >>"$dir/server.log" 2>&1 </dev/null) &
    local master=$!
    track_group "$master"
    if ! wait_answer "$port" 60; then
        say "  $id: hello did not answer (see $dir)"
        record "hello 1 canary-error case=$case mode=$mode connections=$conns"
        kill_group "$master" 5
        return
    fi
    local duration=$((CANARY_SECONDS + 8))
    "${CPIN[@]}" "$WORK/bin/loadclient" -addr "127.0.0.1:$port" -c "$conns" -d "${duration}s" -timeout "${TIMEOUT}s" -rate "$CANARY_RATE" \
        "${close_flag[@]}" -timeline "$dir/timeline.txt" -ready-file "$dir/ready" -summary >"$dir/summary.json" 2>"$dir/client.log" &
    local client=$!
    track_helper "$client"
    if ! client_ready "$dir" "$client"; then
        say "  $id: the load client did not open its connections (see $dir/client.log)"
        stop_pid "$client"
        kill_group "$master" 5
        record "hello 1 canary-error case=$case mode=$mode connections=$conns"
        return
    fi
    local t0 t_reload t_verdict code=0
    t0=$(<"$dir/ready")
    sleep_until_ms $((t0 + 2000))
    canary_conf "$dir" "$port" 2
    t_reload=$(now_ms)
    (cd "$dir" && "${CPIN[@]}" "$WORK/bin/baton" reload --config hello.watch.conf --canary --canary-percent "$CANARY_PERCENT" \
        --canary-seconds "$CANARY_SECONDS" --timeout 60) >"$dir/reload.txt" 2>&1 || code=$?
    t_verdict=$(now_ms)
    local deadline=$((SECONDS + duration + TIMEOUT + 15)) rc=0
    while alive "$client" && ((SECONDS < deadline)); do sleep 0.2; done
    alive "$client" && { say "  $id: the load client still runs: killing it"; kill -KILL "$client" 2>/dev/null; }
    wait "$client" || rc=$?
    forget_helper "$client"
    kill_group "$master" 15
    wait_port_closed "$port" 5 || say "warning: hello still listens on $port"
    if ((rc != 0)); then
        say "  $id: no result from the load client (exit $rc; see $dir/client.log)"
        record "hello 1 canary-error case=$case mode=$mode connections=$conns"
        return
    fi
    # the keep-alive connections move over min(5 s, max(100 ms, 1 ms each)): the share is read after that
    local spread=$((conns < 100 ? 100 : (conns > 5000 ? 5000 : conns)))
    local fields
    fields=$(python3 "$here/canary/analyze.py" "$dir" "$t_reload" "$t_verdict" "$spread") || fields=""
    record "hello 1 canary case=$case mode=$mode connections=$conns percent=$CANARY_PERCENT seconds=$CANARY_SECONDS rate=$CANARY_RATE reload_exit=$code verdict_ms=$((t_verdict - t_reload)) dir=$id $fields"
    say "  $id: reload exit $code after $((t_verdict - t_reload)) ms; $fields"
}

canary() {
    local cell rest
    for cell in $CANARY_CELLS; do
        rest=${cell#*:}
        say "canary: ${cell%%:*} release, ${rest%%:*}, ${rest##*:} connections, $CANARY_PERCENT% for $CANARY_SECONDS s"
        canary_run "${cell%%:*}" "${rest%%:*}" "${rest##*:}"
    done
}

# ------------------------------------------------------------------ section: soak
soak() {
    local s=hello i failed=0 z zmax=0 fds0 rss0 fds1 rss1 t0 m
    say "soak: $SOAK_UPGRADES upgrades by baton reload under load"
    start_system "$s" "soak" || { record "$s 1 soak-error"; stop_system "$s"; return; }
    m=${MASTER[$s]}
    local dir=${DIR[$s]}
    wrk_cmd 2 keepalive "${PORT[$s]}"
    "${WRK[@]}" >"$dir/warmup.txt" 2>&1
    settle "$s"
    fds0=$(fd_count "$m") rss0=$(rss_kb "$m")
    # wrk prints its figures only when a run ends: SOAK_WRK_S-second runs in a loop until the upgrades are done
    (while [[ ! -e $dir/done ]]; do
        wrk_cmd "$SOAK_WRK_S" keepalive "${PORT[$s]}"
        "${WRK[@]}" >>"$dir/wrk.txt" 2>&1
    done) &
    local loop=$!
    track_helper "$loop"
    sleep 1
    t0=$SECONDS
    for ((i = 1; i <= SOAK_UPGRADES; i++)); do
        (cd "$dir" && "$WORK/bin/baton" reload --timeout 60) >/dev/null 2>>"$dir/reload-errors.txt" || failed=$((failed + 1))
        if ((i % 25 == 0)); then
            z=$(ps -o stat= --ppid "$m" | grep -c '^Z')
            ((z > zmax)) && zmax=$z
        fi
        ((i % 250 == 0)) && say "  $i upgrades, master fds $(fd_count "$m"), RSS $(rss_kb "$m") kB"
    done
    local elapsed=$((SECONDS - t0))
    touch "$dir/done"
    wait "$loop"
    forget_helper "$loop"
    settle "$s"
    fds1=$(fd_count "$m") rss1=$(rss_kb "$m")
    local sums
    sums=$(sed -n 's/^CMP_RESULT //p' "$dir/wrk.txt" | awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] ~ /^(requests|connect|read|write|timeout|non2xx)$/) s[kv[1]] += kv[2] } }
        END { printf "requests=%d connect=%d read=%d write=%d timeout=%d non2xx=%d", s["requests"], s["connect"], s["read"], s["write"], s["timeout"], s["non2xx"] }')
    record "$s 1 soak upgrades=$SOAK_UPGRADES failed_reloads=$failed elapsed_s=$elapsed fds_first=$fds0 fds_last=$fds1 rss_first_kb=$rss0 rss_last_kb=$rss1 zombies_max=$zmax master_alive=$(alive "$m" && echo yes || echo no) $sums"
    say "  $SOAK_UPGRADES upgrades in $elapsed s ($failed failed); fds $fds0 → $fds1, RSS $rss0 → $rss1 kB; $sums"
    stop_system "$s"
}

# ------------------------------------------------------------------ section: faults
faults() {
    local s=hello old new code secs by ticks0 ticks1 m
    say "faults: a ${SLOW_MS} ms request across an upgrade; the idle master's CPU over $IDLE_S s"
    # A drain timeout longer than the slow request: the old generation closes what is left at its
    # drain deadline (the timeout less a tenth, at most 1 s), which a request as long as the
    # timeout itself would cross.
    HELLO_DRAIN=$((SLOW_MS / 1000 + 5)) start_system "$s" "faults" || { record "$s 1 faults-error"; stop_system "$s"; return; }
    m=${MASTER[$s]}
    local dir=${DIR[$s]}
    old=$(answer_pid "${PORT[$s]}")
    curl -s -o "$dir/long.json" -w '%{http_code} %{time_total}\n' "http://127.0.0.1:${PORT[$s]}/sleep?ms=$SLOW_MS" >"$dir/long.status" &
    local long=$!
    track_helper "$long"
    sleep 0.5
    kill -HUP "$m"
    sleep 1
    new=$(answer_pid "${PORT[$s]}")
    wait "$long"
    forget_helper "$long"
    read -r code secs <"$dir/long.status"
    by=$(sed -n 's/.*"pid" *: *\([0-9][0-9]*\).*/\1/p' "$dir/long.json")
    settle "$s"
    sleep 1
    ticks0=$(awk '{print $14 + $15}' "/proc/$m/stat")
    sleep "$IDLE_S"
    ticks1=$(awk '{print $14 + $15}' "/proc/$m/stat")
    record "$s 1 faults slow_ms=$SLOW_MS status=$code seconds=$secs served_by_old=$([[ $by == "$old" ]] && echo yes || echo no) new_generation=$([[ -n $new && $new != "$old" ]] && echo yes || echo no) idle_s=$IDLE_S idle_ticks=$((ticks1 - ticks0)) hz=$(getconf CLK_TCK)"
    stop_system "$s"

    # Either side of a hand-over dies (issue 24): the master, SIGKILLed and started again by a
    # supervisor loop, then by its own keeper (--respawn-master); the new generation, SIGKILLed
    # 0.5 s after it became ready.
    local line respawn
    for respawn in 0 1; do
        say "faults: the master SIGKILLed $MASTER_KILLS times, every $MASTER_KILL_INTERVAL s, and adopted by the same command run again ($([[ $respawn == 1 ]] && echo 'by its keeper' || echo 'by a supervisor loop'))"
        if line=$(RESPAWN=$respawn SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU "$here/faults/master-kill.sh" "$WORK/bin" "$MASTER_KILLS" "$MASTER_KILL_INTERVAL" \
            2>>"$WORK/logs/master-kill.log"); then
            record "$s $((respawn + 1)) master-kill $line"
        else
            record "$s $((respawn + 1)) master-kill-error"
        fi
    done
    say "faults: the new generation SIGKILLed 0.5 s after it became ready, $SUCCESSOR_KILLS time(s)"
    SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU "$here/faults/successor-kill.sh" "$WORK/bin" "$SUCCESSOR_KILLS" 2>>"$WORK/logs/successor-kill.log" |
        while read -r line; do record "$s ${line##*round=} successor-kill $line"; done
}

# ------------------------------------------------------------------ protocols
# Issue 21: each protocol's drain under load, in scripts of their own (each starts its servers
# and clients and prints one key=value line per run).
protocols() {
    local line
    say "protocols: HTTP/2 (h2c, h2 by ALPN) and HTTPS across 9 upgrades 2 s apart, $PROTOCOL_ROUNDS round(s)"
    SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU "$here/protocols/h2-tls.sh" "$WORK/bin" "$PROTOCOL_ROUNDS" 2>>"$WORK/logs/h2-tls.log" |
        while read -r line; do record "hello $(sed -n 's/.* round=\([0-9]*\).*/\1/p' <<<"$line") h2tls $line"; done
    say "protocols: WebSockets, 2,000 reconnecting echo clients, 5 upgrades 2 s apart, $PROTOCOL_ROUNDS round(s)"
    SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU "$here/protocols/ws.sh" "$WORK/bin" "$PROTOCOL_ROUNDS" 2>>"$WORK/logs/ws.log" |
        while read -r line; do record "hello ${line##*round=} ws $line"; done
}

# ------------------------------------------------------------------ main
started=$SECONDS
for section in steady upgrades scale ttfa memory reexec canary soak faults protocols; do
    has_section "$section" || continue
    section_started=$SECONDS
    "$section"
    echo "section_${section}_s=$((SECONDS - section_started))" >>"$WORK/meta.txt"
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/meta.txt"
echo "elapsed_s=$((SECONDS - started))" >>"$WORK/meta.txt"

say "writing $OUT and the plots"
python3 "$here/report.py" "$WORK" "$OUT" || die "report failed (raw output in $WORK)"
if has_section scale && [[ -s $WORK/scale-results.json ]]; then
    python3 "$here/scale/plot.py" "$WORK/scale-results.json" "$here/scale.png" || say "warning: scale plot failed"
    # the hand-over plot: the first pinned Baton run at the most keep-alive connections
    for c in 10000 4096 1024 64; do
        last="$WORK/runs/scale-hello-keepalive-c$c-pinned-r1"
        [[ -s $last/upgrades.json ]] || continue
        python3 "$here/handoff/plot.py" "$last" "$here/handoff.png" || say "warning: handoff plot failed"
        break
    done
fi
if has_section upgrades && [[ -s $WORK/runs/timeline-keepalive-hello-r1.txt ]]; then
    python3 "$here/compare/plot_timeline.py" "$WORK" "$here/timeline.png" hello 1 || say "warning: timeline plot failed"
fi
say "done in $((SECONDS - started_all)) s (measurements $((SECONDS - started)) s); raw output kept in $WORK"
