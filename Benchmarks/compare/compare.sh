#!/usr/bin/env bash
# Side-by-side comparison of zero-downtime upgrade mechanisms, in one run on one machine:
#
#   baton      Baton's `hello` (embedded master; SIGHUP → new generation, old one drains)
#   naive      the same `hello`, "upgraded" by a plain restart (SIGTERM, wait for exit, start again)
#   tableflip  gin on cloudflare/tableflip (SIGHUP → upg.Upgrade())
#   grace      gin on facebookgo/grace gracehttp (SIGUSR2)
#   nginx      nginx's on-the-fly binary upgrade (USR2, then WINCH and QUIT to the old master),
#              answering `return 200 '{…"pid":$pid}'`
#
# Every server answers GET /hello with JSON carrying the pid of the process that served it. For
# each system: steady requests/s and latency with keep-alive and with `Connection: close`; failed
# requests per upgrade under load (wrk socket errors + non-2xx, divided by the upgrades sent);
# time from the trigger to the first answer from a new pid; master and worker RSS; and, since the
# machine may be shared, the server's CPU time in each steady run (requests per CPU-second, and
# how much of its core other programs took). Servers are pinned to SERVER_CPU, wrk and the poller
# to CLIENT_CPU; systems run round-robin, ROUNDS times, each started fresh in its own folder.
# Writes BENCHMARKS.md (medians, ratios against the best peer, per-round numbers; by report.py)
# and Benchmarks/timeline.png (requests/s per Baton generation in round 1; by plot_timeline.py).
# Files: compare.lua (wrk script), poller.py (time to a new pid), tableflip/ and grace/ (Go peers).
#
# STARTUP=1 measures only start-up and footprint (issue 9), for SYSTEMS [baton baton-static
# tableflip grace]: time from the trigger to a new pid's first answer (poll every 5 ms, then every
# 2 ms), PSS / private dirty / RSS of each process (/proc/PID/smaps_rollup; Baton: master and worker
# apart) after a short warm-up and again after the upgrades, and the binaries' sizes (as built and
# stripped with `strip -o`). `baton-static` is `hello` built with --static-swift-stdlib into
# .build-static and stripped (what a deploy ships). Writes its own section of BENCHMARKS.md
# (between "<!-- startup:begin -->" and "<!-- startup:end -->"; by report.py --startup), leaving
# the others alone. TTFA_TRIALS defaults to 7 per poll interval and round there; ROUNDS to 1.
#
# Go peers are built offline from Debian's packages in GOPATH mode (no module proxy needed).
# Needs root for apt-get when something is missing (golang-go, the -dev packages, nginx, wrk).
#
# Environment (defaults in brackets):
#   DURATION [10]        seconds of each steady-state wrk run
#   UPG_DURATION [20]    seconds of each upgrade-under-load wrk run
#   INTERVAL [2]         seconds between upgrades under load
#   ROUNDS [3]           round-robin rounds (the default run takes about 16 min)
#   TTFA_TRIALS          time-to-new-pid trials per system and round [enough for ≥ 5 in all, ≥ 2]
#   CONNECTIONS [64]     wrk connections;  THREADS [2] wrk threads;  TIMEOUT [5] wrk timeout, s
#   SYSTEMS ["baton naive tableflip grace nginx"]
#   SERVER_CPU [0]  CLIENT_CPU [1]   taskset cores
#   BASE_PORT [19100]    system i listens on BASE_PORT+i
#   SKIP_BUILD=1         reuse .build/release/hello (no swift build)
#   WORKDIR              keep raw output there (default: a new /tmp/baton-compare.XXXXXX, kept)
#   OUT [BENCHMARKS.md at the repo root]   PNG [Benchmarks/timeline.png]
set -uo pipefail

DURATION=${DURATION:-10}
UPG_DURATION=${UPG_DURATION:-20}
INTERVAL=${INTERVAL:-2}
STARTUP=${STARTUP:-}
if [[ $STARTUP == 1 ]]; then
    ROUNDS=${ROUNDS:-1}
    TTFA_TRIALS=${TTFA_TRIALS:-7}
    SYSTEMS=${SYSTEMS:-"baton baton-static tableflip grace"}
fi
ROUNDS=${ROUNDS:-3}
TTFA_TRIALS=${TTFA_TRIALS:-$(((5 + ROUNDS - 1) / ROUNDS < 2 ? 2 : (5 + ROUNDS - 1) / ROUNDS))}   # ≥ 5 in all
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
TIMEOUT=${TIMEOUT:-5}
SYSTEMS=${SYSTEMS:-"baton naive tableflip grace nginx"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BASE_PORT=${BASE_PORT:-19100}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
OUT=${OUT:-"$repo/BENCHMARKS.md"}
PNG=${PNG:-"$repo/Benchmarks/timeline.png"}
WORK=${WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/baton-compare.XXXXXX")}
mkdir -p "$WORK/bin" "$WORK/logs" "$WORK/runs"
for s in $SYSTEMS; do mkdir -p "$WORK/cwd-$s"; done
results="$WORK/results.txt"
: >"$results"
lua="$here/compare.lua"
command_line="${STARTUP:+STARTUP=$STARTUP }DURATION=$DURATION UPG_DURATION=$UPG_DURATION INTERVAL=$INTERVAL ROUNDS=$ROUNDS TTFA_TRIALS=$TTFA_TRIALS CONNECTIONS=$CONNECTIONS THREADS=$THREADS SYSTEMS=\"$SYSTEMS\"${SKIP_BUILD:+ SKIP_BUILD=$SKIP_BUILD} bash Benchmarks/compare/compare.sh"

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 2; }
# shellcheck source=../lib.sh
source "$here/../lib.sh"

# ------------------------------------------------------------------ process bookkeeping
# Every server is started in its own session (setsid, or nginx's own daemonizing), so its process
# group holds all its generations; cleanup signals exactly those groups, plus wrk/pollers by pid.
groups=()      # process group ids of servers we started
helpers=()     # pids of wrk / poller runs in the background

our_members() {   # live processes of group $1 that are one of our servers
    pgrep -g "$1" -x 'hello|tableflip-gin|grace-gin|nginx' 2>/dev/null
}

cleanup() {
    local g p pids=()
    for p in "${helpers[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for g in "${groups[@]}"; do pids+=($(our_members "$g")); done
    ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null
    sleep 1
    pids=()
    for g in "${groups[@]}"; do pids+=($(our_members "$g")); done
    ((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null
    for p in "${helpers[@]}"; do kill -KILL "$p" 2>/dev/null; done
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_helper() {   # a helper that was waited for: its pid may be reused, never signal it again
    local p keep=()
    for p in "${helpers[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    helpers=("${keep[@]}")
}

forget_group() {   # a group with none of our servers left
    local g keep=()
    [[ -n $(our_members "$1") ]] && return 0
    for g in "${groups[@]}"; do [[ $g == "$1" ]] || keep+=("$g"); done
    groups=("${keep[@]}")
}

alive() {   # process exists and is not a zombie
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

pgid_of() { local stat; [[ -n $1 ]] || return 1; { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1; stat=${stat##*) }; set -- $stat; echo "$3"; }

track_group() {   # remember process group $1 (a pid started by setsid, or nginx's master: a group leader)
    [[ -n $1 ]] || return 0
    [[ " ${groups[*]} " == *" $1 "* ]] || groups+=("$1")
}

wait_gone() {   # wait_gone PID SECONDS
    local i
    for ((i = 0; i < $2 * 50; i++)); do alive "$1" || return 0; sleep 0.02; done
    return 1
}

group_of() {   # process group of system $1's servers
    case $1 in
        baton | baton-static | naive) echo "${MASTER[$1]}" ;;
        *) pgid_of "$(master_pid "$1")" ;;
    esac
}

cpu_ticks() {   # user+system clock ticks of every live process in group $1
    local p stat f total=0
    for p in $(pgrep -g "$1"); do
        { read -r stat <"/proc/$p/stat"; } 2>/dev/null || continue
        stat=${stat##*) }
        read -ra f <<<"$stat"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

core_ticks() {   # "user+nice+system irq+softirq total" clock ticks of CPU $1 from /proc/stat
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print $2 + $3 + $4, $7 + $8, t }' /proc/stat
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo nan; }

smaps_kb() {   # smaps_kb PID PREFIX: "PREFIXpss_kb=… PREFIXpriv_kb=… PREFIXrss_kb=…" (private = clean + dirty
    # anonymous and file pages no other process maps; dirty: the part never written back)
    awk -v p="$2" '/^Pss:/ {pss = $2} /^Private_Dirty:/ {pd = $2} /^Private_Clean:/ {pc = $2} /^Rss:/ {rss = $2}
        END { if (rss == "") { pss = pd = pc = rss = "nan" }
              printf "%spss_kb=%s %spriv_dirty_kb=%s %spriv_kb=%s %srss_kb=%s", p, pss, p, pd, p, (pd == "nan" ? "nan" : pd + pc), p, rss }' \
        "/proc/$1/smaps_rollup" 2>/dev/null || printf '%spss_kb=nan' "$2"
}

answer_pid() {   # pid in the /hello answer on port $1 (new connection)
    curl -s --max-time 2 -H 'Connection: close' "http://127.0.0.1:$1/hello" | sed -n 's/.*"pid" *: *\([0-9][0-9]*\).*/\1/p'
}

wait_answer() {   # wait_answer PORT SECONDS: until the port answers /hello
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        [[ -n $(answer_pid "$1") ]] && return 0
        sleep 0.05
    done
    return 1
}

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

sleep_until() {   # sleep_until UNIX_SECONDS (fractional)
    local d
    d=$(awk -v t="$1" -v now="$EPOCHREALTIME" 'BEGIN { d = t - now; printf "%.3f", (d > 0 ? d : 0) }')
    [[ $d == 0.000 ]] || sleep "$d"
}

# ------------------------------------------------------------------ tools and builds
ensure_tools() {
    install_debian_packages wrk golang-go golang-github-cloudflare-tableflip-dev golang-github-facebookgo-grace-dev \
        golang-github-gin-gonic-gin-dev curl
    [[ -x /usr/sbin/nginx ]] || install_debian_packages nginx-light
    ensure_matplotlib
}

build() {
    if [[ ${SKIP_BUILD:-} != 1 ]]; then
        say "building hello (release)…"
        (cd "$repo" && swift build -c release --product hello) >"$WORK/logs/swift-build.log" 2>&1 ||
            die "swift build failed: see $WORK/logs/swift-build.log"
    fi
    [[ -x $repo/.build/release/hello ]] || die "$repo/.build/release/hello not found"
    # A private copy: Baton re-executes this path at each upgrade, so a rebuild in the repo during
    # the run cannot change what is measured.
    cp "$repo/.build/release/hello" "$WORK/bin/hello"
    if [[ " $SYSTEMS " == *" baton-static "* ]]; then
        if [[ ${SKIP_BUILD:-} != 1 ]]; then
            say "building hello (release, --static-swift-stdlib, .build-static)…"
            (cd "$repo" && swift build -c release --static-swift-stdlib --scratch-path .build-static --product hello) \
                >"$WORK/logs/swift-build-static.log" 2>&1 || die "static swift build failed: see $WORK/logs/swift-build-static.log"
        fi
        [[ -x $repo/.build-static/release/hello ]] || die "$repo/.build-static/release/hello not found"
        # Its own folder, so that the process is still called `hello`; stripped, as shipped.
        mkdir -p "$WORK/bin/static"
        strip -o "$WORK/bin/static/hello" "$repo/.build-static/release/hello"
    fi
    local p
    for p in tableflip grace; do build_go_peer "$p" "$WORK/bin/$p-gin" "$WORK/gocache" "$WORK/logs/go-build-$p.log"; done
}

# ------------------------------------------------------------------ the systems
declare -A PORT
i=1
for s in $SYSTEMS; do PORT[$s]=$((BASE_PORT + i)); i=$((i + 1)); done
declare -A MASTER   # baton/naive: the hello master's pid

pidfile() { echo "$WORK/run-$1.pid"; }

start_hello() {   # start_hello SYSTEM
    local s=$1 binary=$WORK/bin/hello
    [[ $s == baton-static ]] && binary=$WORK/bin/static/hello
    # Its own working folder: Baton puts its control socket in ./.baton/ (never in the repository,
    # where a test's master could answer on it).
    (cd "$WORK/cwd-$s" && exec setsid taskset -c "$SERVER_CPU" "$binary" --port "${PORT[$s]}" \
        --drain-timeout 10 >>"$WORK/logs/$s.log" 2>&1 </dev/null) &
    MASTER[$s]=$!
    track_group "${MASTER[$s]}"
}

nginx_conf() {   # nginx_conf PORT DIR
    cat <<EOF
# written by Benchmarks/compare/compare.sh
worker_processes 1;
daemon on;                      # the documented binary upgrade needs a daemonized master
pid $2/nginx.pid;
error_log $2/error.log notice;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000; # like the other servers: no cap on requests per connection
    server {
        listen 127.0.0.1:$1;
        location = /hello {
            default_type application/json;
            return 200 '{"message":"Hello from nginx","ver":"1","pid":\$pid}';
        }
    }
}
EOF
}

start_system() {   # start_system SYSTEM
    local s=$1 port=${PORT[$1]} pf
    pf=$(pidfile "$s")
    rm -f "$pf" "$pf.oldbin"
    local t
    for ((t = 0; t < 250; t++)); do port_free "$port" && break; sleep 0.02; done
    port_free "$port" || die "port $port is busy"
    case $s in
        baton | baton-static | naive) start_hello "$s" ;;
        tableflip)
            (cd "$WORK/cwd-$s" && exec setsid taskset -c "$SERVER_CPU" "$WORK/bin/tableflip-gin" -listen "127.0.0.1:$port" \
                -pid-file "$pf" >>"$WORK/logs/$s.log" 2>&1 </dev/null) &
            track_group $!
            ;;
        grace)
            (cd "$WORK/cwd-$s" && exec setsid taskset -c "$SERVER_CPU" "$WORK/bin/grace-gin" -listen "127.0.0.1:$port" \
                -pid-file "$pf" >>"$WORK/logs/$s.log" 2>&1 </dev/null) &
            track_group $!
            ;;
        nginx)
            local dir="$WORK/nginx"
            mkdir -p "$dir"
            nginx_conf "$port" "$dir" >"$dir/nginx.conf"
            rm -f "$dir/nginx.pid" "$dir/nginx.pid.oldbin"
            # Absolute path: USR2 re-executes argv[0].
            (cd "$WORK/cwd-$s" && exec taskset -c "$SERVER_CPU" /usr/sbin/nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" \
                >>"$WORK/logs/$s.log" 2>&1 </dev/null) || die "nginx did not start (see $dir/error.log)"
            for ((t = 0; t < 100; t++)); do [[ -s $dir/nginx.pid ]] && break; sleep 0.02; done
            track_group "$(cat "$dir/nginx.pid")"
            ;;
    esac
    wait_answer "$port" 30 || die "$s did not answer on port $port (see $WORK/logs/$s.log)"
}

master_pid() {   # the pid to signal (the current one: it changes with tableflip, grace, nginx)
    case $1 in
        baton | baton-static | naive) echo "${MASTER[$1]}" ;;
        nginx) cat "$WORK/nginx/nginx.pid" 2>/dev/null ;;
        *) cat "$(pidfile "$1")" 2>/dev/null ;;
    esac
}

stop_system() {
    local s=$1 pid g
    pid=$(master_pid "$s")
    g=$(pgid_of "$pid")
    case $s in
        nginx) kill -QUIT "$pid" 2>/dev/null ;;
        *) kill -TERM "$pid" 2>/dev/null ;;
    esac
    [[ -n $pid ]] && wait_gone "$pid" 15
    local t
    for ((t = 0; t < 250; t++)); do port_free "${PORT[$s]}" && break; sleep 0.02; done
    if ! port_free "${PORT[$s]}"; then
        say "warning: $s still listens on ${PORT[$s]} after stop; killing it"
        [[ -n $g ]] && kill -KILL $(our_members "$g") 2>/dev/null
        sleep 0.5
    fi
    [[ -n $g ]] && forget_group "$g"
    return 0
}

# The documented upgrade trigger of each system. Returns once the trigger is sent (nginx: once the
# whole USR2 → WINCH → QUIT sequence is done; naive: once the new process is started).
trigger_system() {
    local s=$1 pid t
    pid=$(master_pid "$s")
    case $s in
        baton | baton-static) kill -HUP "$pid" ;;
        tableflip) kill -HUP "$pid" ;;
        grace) kill -USR2 "$pid" ;;
        naive)
            local g
            g=$(pgid_of "$pid")
            kill -TERM "$pid"
            wait_gone "$pid" 30 || say "warning: naive: old hello $pid still alive after 30 s"
            [[ -n $g ]] && forget_group "$g"
            for ((t = 0; t < 500; t++)); do port_free "${PORT[$s]}" && break; sleep 0.005; done
            start_hello naive
            ;;
        nginx)
            local dir="$WORK/nginx" new=""
            kill -USR2 "$pid"
            # New master: it renames nginx.pid to nginx.pid.oldbin and writes its own.
            for ((t = 0; t < 300; t++)); do
                new=$(cat "$dir/nginx.pid" 2>/dev/null)
                [[ -n $new && $new != "$pid" ]] && alive "$new" && pgrep -P "$new" >/dev/null && break
                new=""
                sleep 0.01
            done
            if [[ -z $new ]]; then
                say "warning: nginx: no new master after USR2 to $pid"
                return 1
            fi
            kill -WINCH "$pid"   # old workers: finish and exit
            # (the new master is a child of the old one too: wait for the others, the old workers)
            for ((t = 0; t < 300; t++)); do pgrep -P "$pid" | grep -qvx "$new" || break; sleep 0.01; done
            kill -QUIT "$pid"    # old master: exit
            wait_gone "$pid" 5
            ;;
    esac
}

settle() {   # wait until the previous upgrade finished: a single generation serving
    local s=$1 t
    case $s in
        nginx) for ((t = 0; t < 250; t++)); do [[ ! -e $WORK/nginx/nginx.pid.oldbin ]] && break; sleep 0.02; done ;;
        baton | baton-static) for ((t = 0; t < 250; t++)); do (($(pgrep -c -P "${MASTER[$s]}") <= 1)) && break; sleep 0.02; done ;;
    esac
    sleep 0.5
}

# ------------------------------------------------------------------ measurements
record() { echo "$*" >>"$results"; }

wrk_cmd() {   # wrk_cmd DURATION MODE PORT: sets the array WRK to the wrk command line
    local d=$1 mode=$2 port=$3
    WRK=(taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${d}s" --timeout "${TIMEOUT}s")
    [[ $mode == close ]] && WRK+=(-H "Connection: close")
    WRK+=(-s "$lua" "http://127.0.0.1:$port/hello")
}

wrk_run() {   # wrk_run OUTFILE DURATION MODE PORT; MODE keepalive|close
    wrk_cmd "$2" "$3" "$4"
    "${WRK[@]}" >"$1" 2>&1
}

result_fields() { sed -n 's/^CMP_RESULT //p' "$1"; }

steady() {   # steady SYSTEM ROUND
    local s=$1 r=$2 port=${PORT[$1]} mode out
    wrk_run "$WORK/runs/warmup-$s-r$r.txt" 2 keepalive "$port"
    local g c0 c1 k0 k1 hz
    g=$(group_of "$s")
    hz=$(getconf CLK_TCK)
    for mode in keepalive close; do
        out="$WORK/runs/steady-$mode-$s-r$r.txt"
        c0=$(cpu_ticks "$g")
        k0=$(core_ticks "$SERVER_CPU")
        wrk_run "$out" "$DURATION" "$mode" "$port"
        c1=$(cpu_ticks "$g")
        k1=$(core_ticks "$SERVER_CPU")
        # server_cpu_s: CPU time of the server's processes; core_task_s: all processes' time on its
        # core (the machine is shared: the difference is other work there); core_irq_s: that
        # core's interrupt and softirq time (mostly the loopback TCP stack); core_s: wall time
        record "$s $r steady-$mode $(result_fields "$out") $(awk -v c0="$c0" -v c1="$c1" -v k0="$k0" -v k1="$k1" -v hz="$hz" \
            'BEGIN { split(k0, a, " "); split(k1, b, " "); printf "server_cpu_s=%.2f core_task_s=%.2f core_irq_s=%.2f core_s=%.2f", (c1 - c0) / hz, (b[1] - a[1]) / hz, (b[2] - a[2]) / hz, (b[3] - a[3]) / hz }')"
        say "  $s steady $mode: $(result_fields "$out" | cut -d' ' -f3-6)"
    done
}

rss() {   # rss SYSTEM ROUND LABEL
    local s=$1 r=$2 w m
    w=$(answer_pid "${PORT[$s]}")
    case $s in
        baton | baton-static | naive | nginx) m=$(master_pid "$s") ;;
        *) m="" ;;
    esac
    record "$s $r $3 master_kb=${m:+$(rss_kb "$m")} worker_kb=$(rss_kb "$w")"
}

footprint() {   # footprint SYSTEM ROUND LABEL: PSS, private and RSS of the master (if any) and the worker
    local s=$1 r=$2 w m=""
    w=$(answer_pid "${PORT[$s]}")
    case $s in
        baton | baton-static | naive | nginx) m=$(master_pid "$s") ;;
    esac
    record "$s $r $3 ${m:+$(smaps_kb "$m" master_) }$(smaps_kb "$w" worker_) threads_master=${m:+$(ls "/proc/$m/task" 2>/dev/null | wc -l)} threads_worker=$(ls "/proc/$w/task" 2>/dev/null | wc -l)"
}

sizes() {   # the binaries' sizes, as built and stripped
    local f name
    for name in hello static/hello tableflip-gin grace-gin; do
        f=$WORK/bin/$name
        # the static one is run stripped: measure the build's own file (symbols, for nm)
        [[ $name == static/hello ]] && f=$repo/.build-static/release/hello
        [[ -f $f ]] || continue
        strip -o "$WORK/stripped" "$f" 2>/dev/null || cp "$f" "$WORK/stripped"
        record "size 0 ${name//\//-} bytes=$(stat -c %s "$f") stripped=$(stat -c %s "$WORK/stripped") rodata=$(size -A "$f" | awk '$1 == ".rodata" {print $2}') icu=$(nm "$f" 2>/dev/null | grep -c 'icudt\|ucol_open')"
    done
    rm -f "$WORK/stripped"
}

under_load() {   # under_load SYSTEM ROUND MODE
    local s=$1 r=$2 mode=$3 port=${PORT[$1]}
    local out="$WORK/runs/upgrade-$mode-$s-r$r.txt" tl="$WORK/runs/timeline-$mode-$s-r$r.txt"
    local trig="$WORK/runs/triggers-$mode-$s-r$r.txt"
    settle "$s"
    wrk_cmd "$UPG_DURATION" "$mode" "$port"
    env CMP_TRACK=1 CMP_TIMELINE="$tl" "${WRK[@]}" >"$out" 2>&1 &
    local wpid=$! n=0 k=1 t0=$EPOCHREALTIME target
    helpers+=("$wpid")
    echo "start $t0" >"$trig"
    while :; do
        target=$(awk -v a="$t0" -v k="$k" -v i="$INTERVAL" 'BEGIN { printf "%.6f", a + k * i }')
        # no upgrade in the last INTERVAL/2 seconds: its outcome would fall outside the run
        awk -v t="$target" -v a="$t0" -v d="$UPG_DURATION" -v i="$INTERVAL" 'BEGIN { exit !(t <= a + d - i / 2) }' || break
        sleep_until "$target"
        alive "$wpid" || break
        echo "trigger $EPOCHREALTIME" >>"$trig"
        trigger_system "$s"
        echo "done $EPOCHREALTIME" >>"$trig"
        n=$((n + 1))
        k=$((k + 1))
    done
    wait "$wpid"
    forget_helper "$wpid"
    local f
    f=$(result_fields "$out")
    record "$s $r upgrade-$mode upgrades=$n $f"
    say "  $s upgrades under load ($mode): $n upgrades, $(echo "$f" | grep -o 'connect=.*')"
}

ttfa() {   # ttfa SYSTEM ROUND [KIND]: time from trigger to the first answer of a new pid
    local s=$1 r=$2 kind=${3:-ttfa} i t0 out rf tf ppid t line
    for ((i = 1; i <= TTFA_TRIALS; i++)); do
        settle "$s"
        rf="$WORK/runs/poll-ready-$s" tf="$WORK/runs/poll-trigger-$s" out="$WORK/runs/$kind-$s-r$r-$i.txt"
        rm -f "$rf" "$tf"
        taskset -c "$CLIENT_CPU" env POLL_INTERVAL_MS="${POLL_INTERVAL_MS:-5}" python3 "$here/poller.py" "${PORT[$s]}" "$rf" "$tf" >"$out" 2>&1 &
        ppid=$!
        helpers+=("$ppid")
        for ((t = 0; t < 500; t++)); do [[ -s $rf ]] && break; sleep 0.02; done
        sleep 0.2
        t0=$EPOCHREALTIME
        printf '%s\n' "$t0" >"$tf"
        trigger_system "$s"
        wait "$ppid"
        forget_helper "$ppid"
        line=$(sed -n 's/^CMP_TTFA //p' "$out")
        record "$s $r $kind $line"
        say "  $s time to new pid ($kind) #$i: $line"
    done
}

# ------------------------------------------------------------------ main
ensure_tools
build
say "work dir: $WORK"

# Machine facts for the report.
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$(nproc)"
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "kernel=$(uname -sr)"
    echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "swift=$(swift --version 2>&1 | head -1)"
    echo "go=$(go version)"
    echo "nginx=$(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //') ($(dpkg-query -W -f='${Package} ${Version}' nginx-light 2>/dev/null || dpkg-query -W -f='${Package} ${Version}' nginx-core 2>/dev/null || dpkg-query -W -f='${Package} ${Version}' nginx 2>/dev/null))"
    echo "wrk=$(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "tableflip=$(dpkg-query -W -f='${Version}' golang-github-cloudflare-tableflip-dev)"
    echo "grace=$(dpkg-query -W -f='${Version}' golang-github-facebookgo-grace-dev)"
    echo "gin=$(dpkg-query -W -f='${Version}' golang-github-gin-gonic-gin-dev)"
    echo "python=$(python3 --version 2>&1) matplotlib $(python3 -c 'import matplotlib; print(matplotlib.__version__)')"
    echo "hello_binary=.build/release/hello of $(date -u -r "$repo/.build/release/hello" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$WORK/bin/hello" | cut -c1-12); repository HEAD $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null)$(cd "$repo" && git diff --quiet HEAD -- Sources Package.swift 2>/dev/null || echo ' with uncommitted changes in Sources/ or Package.swift')"
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "command=$command_line"
    echo "knobs=DURATION=$DURATION UPG_DURATION=$UPG_DURATION INTERVAL=$INTERVAL ROUNDS=$ROUNDS TTFA_TRIALS=$TTFA_TRIALS CONNECTIONS=$CONNECTIONS THREADS=$THREADS TIMEOUT=$TIMEOUT SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU"
    echo "systems=$SYSTEMS"
} >"$WORK/meta.txt"

read -ra order <<<"$SYSTEMS"
started=$SECONDS
if [[ $STARTUP == 1 ]]; then
    sizes
    for ((r = 1; r <= ROUNDS; r++)); do
        n=${#order[@]}
        rot=()
        for ((j = 0; j < n; j++)); do rot+=("${order[$(((j + r - 1) % n))]}"); done
        for s in "${rot[@]}"; do
            say "round $r/$ROUNDS: $s (port ${PORT[$s]}), start-up and footprint"
            start_system "$s"
            wrk_run "$WORK/runs/warmup-$s-r$r.txt" 2 keepalive "${PORT[$s]}"
            sleep 0.5
            footprint "$s" "$r" footprint
            ttfa "$s" "$r" ttfa
            POLL_INTERVAL_MS=2 ttfa "$s" "$r" ttfa2
            settle "$s"
            wrk_run "$WORK/runs/warmup2-$s-r$r.txt" 2 keepalive "${PORT[$s]}"
            sleep 0.5
            footprint "$s" "$r" footprint-after-upgrades
            stop_system "$s"
        done
    done
    echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/meta.txt"
    echo "elapsed_s=$((SECONDS - started))" >>"$WORK/meta.txt"
    say "writing the start-up section of $OUT"
    python3 "$here/report.py" --startup "$WORK" "$OUT" || die "report failed"
    say "done in $((SECONDS - started)) s; raw output kept in $WORK"
    exit 0
fi
for ((r = 1; r <= ROUNDS; r++)); do
    # round-robin, rotated each round so that no system always runs first or last
    n=${#order[@]}
    rot=()
    for ((j = 0; j < n; j++)); do rot+=("${order[$(((j + r - 1) % n))]}"); done
    for s in "${rot[@]}"; do
        say "round $r/$ROUNDS: $s (port ${PORT[$s]})"
        start_system "$s"
        if [[ $s != naive ]]; then   # naive runs the very same binary as baton when not restarting
            steady "$s" "$r"
        fi
        rss "$s" "$r" rss
        under_load "$s" "$r" keepalive
        under_load "$s" "$r" close
        ttfa "$s" "$r"
        settle "$s"
        rss "$s" "$r" rss-after-upgrades
        stop_system "$s"
    done
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/meta.txt"
echo "elapsed_s=$((SECONDS - started))" >>"$WORK/meta.txt"

say "writing $OUT and $PNG"
python3 "$here/report.py" "$WORK" "$OUT" "$(realpath --relative-to="$(dirname "$OUT")" "$PNG")" || die "report failed"
if [[ " $SYSTEMS " == *" baton "* ]]; then
    python3 "$here/plot_timeline.py" "$WORK" "$PNG" || die "plot failed"
fi
say "done in $((SECONDS - started)) s; raw output kept in $WORK"
