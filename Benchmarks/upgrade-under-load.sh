#!/usr/bin/env bash
# Zero-downtime check under load: a release build of `hello` serves wrk while its master is sent
# SIGHUP (an upgrade) every INTERVAL seconds; once with keep-alive connections, once with
# `Connection: close` on every request. Prints a summary per mode and exits non-zero if any request
# failed (socket error or non-2xx) or if the master's pid changed.
#
# Environment:
#   DURATION=20      seconds of load per mode
#   CONNECTIONS=64   wrk connections
#   INTERVAL=2       seconds between SIGHUPs
#   THREADS=2        wrk threads
#   TIMEOUT=10       wrk per-request timeout, seconds
#   PORT=            port to serve on (default: a free one)
#   MODES="keep-alive close"   which modes to run
#   SKIP_BUILD=1     use the existing .build/release/hello
#   HELLO_BIN=path   serve this binary instead (no build)
#   PYTHON_WORKER=1  serve Examples/python-worker/app.py under `baton run` (release `baton`,
#                    BATON_BIN=path to use another) instead of hello
#   PLAIN_VAPOR=1    the baseline without Baton: stock Vapor (`plain-vapor`, release; PLAIN_BIN=path
#                    to use another) "upgraded" by a plain restart: SIGTERM, wait for exit, start
#                    again, every INTERVAL seconds. (HELLO_BIN=.build/release/vapor-hello measures
#                    the Vapor demo under Baton.)
#   KEEP_TMP=1       keep the temp dir (log, wrk output) even on success
#   PIN=1            server (master and workers) on core 0, wrk on core 1: a saturated server core
#   NOFILE=20000     open-file limit for server and wrk (this machine's hard limit is 20,000)
set -euo pipefail

DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-64}
INTERVAL=${INTERVAL:-2}
THREADS=${THREADS:-2}
TIMEOUT=${TIMEOUT:-10}
MODES=${MODES:-"keep-alive close"}
NOFILE=${NOFILE:-20000}
ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
server_cpu=()
client_cpu=()
if [[ "${PIN:-}" == 1 ]]; then
    server_cpu=(taskset -c 0)
    client_cpu=(taskset -c 1)
fi

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
lua="$here/upgrade-under-load.lua"

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

# ---------------------------------------------------------------- tools and build
if ! command -v wrk >/dev/null 2>&1; then
    say "wrk not found: installing the Debian package"
    apt-get update >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null || die "apt-get install wrk failed"
fi

product=hello
[[ "${PYTHON_WORKER:-}" == 1 ]] && product=baton
plain=""
[[ "${PLAIN_VAPOR:-}" == 1 ]] && { product=plain-vapor; plain=1; }
if [[ "${SKIP_BUILD:-}" != 1 && -z "${HELLO_BIN:-}" && -z "${BATON_BIN:-}" && -z "${PLAIN_BIN:-}" ]]; then
    say "building $product (release)…"
    (cd "$repo" && swift build -c release --product "$product") >&2 || die "release build failed"
fi
bin=${HELLO_BIN:-"$repo/.build/release/hello"}
[[ $product == baton ]] && bin=${BATON_BIN:-"$repo/.build/release/baton"}
[[ $product == plain-vapor ]] && bin=${PLAIN_BIN:-"$repo/.build/release/plain-vapor"}
[[ -x "$bin" ]] || die "$bin not found"

# ---------------------------------------------------------------- server
tmp=$(mktemp -d "${TMPDIR:-/tmp}/baton-bench.XXXXXX")
log="$tmp/hello.log"
master=""
wrk_pid=""
failed=1   # until proven otherwise; read by cleanup

proc_fields() {   # "state ppid pgrp …" of pid $1 from /proc/PID/stat (comm may contain spaces)
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    printf '%s\n' "${stat##*) }"
}

children() {   # live (non-zombie) children of pid $1
    local parent=$1 p stat fields
    for p in /proc/[0-9]*; do
        { read -r stat <"$p/stat"; } 2>/dev/null || continue
        read -r -a fields <<<"${stat##*) }"
        if [[ "${fields[1]:-}" == "$parent" && "${fields[0]:-}" != Z ]]; then echo "${p#/proc/}"; fi
    done
    return 0
}

is_alive() {   # pid exists and is not a zombie
    local fields
    fields=$(proc_fields "$1") || return 1
    [[ -n "$fields" && "${fields%% *}" != Z ]]
}

parent_of() {
    local fields
    fields=$(proc_fields "$1") || return 1
    read -r -a fields <<<"$fields"
    echo "${fields[1]}"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$wrk_pid" ]] && kill -0 "$wrk_pid" 2>/dev/null; then kill "$wrk_pid" 2>/dev/null || true; fi
    if [[ -n "$master" ]] && is_alive "$master"; then
        local kids
        kids=$(children "$master" || true)
        kill -TERM "$master" 2>/dev/null || true
        for _ in $(seq 1 350); do is_alive "$master" || break; sleep 0.1; done
        if is_alive "$master"; then
            say "master $master did not exit 35 s after SIGTERM: killing it"
            kill -KILL "$master" 2>/dev/null || true
        fi
        for k in $kids $(children "$master" || true); do is_alive "$k" && kill -KILL "$k" 2>/dev/null || true; done
        wait "$master" 2>/dev/null || true
    fi
    if [[ $failed != 0 || $rc != 0 ]]; then
        say "--- last lines of $log ---"
        tail -n 40 "$log" >&2 2>/dev/null || true
        say "(kept $tmp)"
    elif [[ "${KEEP_TMP:-}" == 1 ]]; then
        say "(kept $tmp)"
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [[ -z "${PORT:-}" ]]; then
    for _ in $(seq 1 100); do
        PORT=$((20000 + RANDOM % 12000))   # below the ephemeral range (32768+): no clash with client sockets
        port_is_free "$PORT" && break
    done
fi

http_get() {   # prints the body of GET /hello, fails on error or non-2xx
    if command -v curl >/dev/null 2>&1; then
        curl -sf --max-time 5 "http://127.0.0.1:$PORT/hello"
    else
        exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
        printf 'GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
        local response; response=$(timeout 5 cat <&3); exec 3<&-
        [[ "$response" == "HTTP/1."?" 2"* ]] || return 1
        printf '%s' "${response#*$'\r\n\r\n'}"
    fi
}
serving_pid() { http_get | sed -n 's/.*"pid"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p'; }

start_plain() {   # the plain server, in the background; sets master
    (cd "$tmp" && exec "${server_cpu[@]}" "$tmp/plain-vapor" serve --hostname 127.0.0.1 --port "$PORT") >>"$log" 2>&1 &
    master=$!
}
restart_plain() {   # a plain restart: SIGTERM, wait for the exit, start again
    kill -TERM "$master" 2>/dev/null || true
    wait "$master" 2>/dev/null || true
    start_plain
}

if [[ -n $plain ]]; then
    cp "$bin" "$tmp/plain-vapor"
    start_plain
elif [[ $product == baton ]]; then
    cp "$bin" "$tmp/baton"
    (cd "$tmp" && exec "${server_cpu[@]}" "$tmp/baton" run --listen "127.0.0.1:$PORT" -- python3 "$repo/Examples/python-worker/app.py") >"$log" 2>&1 &
else
    cp "$bin" "$tmp/hello"
    cat > "$tmp/watch.conf" <<CONF
{"HttpPort":"$PORT","Ver":"1","DelaySecond":5,"BinName":"hello"}
CONF
    "${server_cpu[@]}" "$tmp/hello" --config "$tmp/watch.conf" >"$log" 2>&1 &
fi
[[ -n $plain ]] || master=$!
say "master $master on port $PORT (dir $tmp)"

for _ in $(seq 1 300); do
    is_alive "$master" || die "hello exited at start"
    http_get >/dev/null 2>&1 && break
    sleep 0.1
done
first_pid=$(serving_pid) || die "hello does not answer on port $PORT"
say "first worker $first_pid serves: $(http_get)"

wait_single_generation() {   # bounded: old generations have drained and exited
    [[ -z $plain ]] || return 0
    local kids
    for _ in $(seq 1 400); do
        kids=$(children "$master" | wc -l)
        [[ $kids == 1 ]] && return 0
        sleep 0.1
    done
    say "warning: master still has $kids children after 40 s"
    return 1
}

# ---------------------------------------------------------------- load runs
declare -A result
status=0
summaries=()

run_mode() {   # $1: mode name; rest: extra wrk arguments
    local mode=$1; shift
    local out="$tmp/wrk-$mode.txt"
    wait_single_generation || true
    say ""
    say "== $mode: $CONNECTIONS connections, ${DURATION} s, SIGHUP every ${INTERVAL} s =="
    "${client_cpu[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout "${TIMEOUT}s" -s "$lua" "$@" \
        "http://127.0.0.1:$PORT/hello" >"$out" 2>&1 &
    wrk_pid=$!
    local hups=0 started=$SECONDS
    while true; do
        sleep "$INTERVAL"
        kill -0 "$wrk_pid" 2>/dev/null || break
        # No upgrade in the last second: it would only land after the measurement.
        (( SECONDS - started <= DURATION - 1 )) || continue
        if [[ -n $plain ]]; then restart_plain; else kill -HUP "$master"; fi
        hups=$((hups + 1))
    done
    local wrk_rc=0
    wait "$wrk_pid" || wrk_rc=$?
    wrk_pid=""
    cat "$out" >&2

    local line
    line=$(grep '^BATON_RESULT ' "$out" || true)
    if [[ $wrk_rc != 0 || -z "$line" ]]; then
        say "wrk failed (exit $wrk_rc)"
        summaries+=("$(printf '%-11s wrk failed (exit %s)' "$mode" "$wrk_rc")")
        status=1
        return
    fi
    result=()
    local kv
    for kv in ${line#BATON_RESULT }; do result[${kv%%=*}]=${kv#*=}; done
    local errors=$(( result[connect] + result[read] + result[write] + result[timeout] ))
    summaries+=("$(printf '%-11s requests %8s  req/s %9s  socket errors %s (connect %s, read %s, write %s, timeout %s)  non-2xx %s  no pid %s  distinct pids %s  SIGHUPs %s  p99 %s ms' \
        "$mode" "${result[requests]}" "${result[rps]}" "$errors" "${result[connect]}" "${result[read]}" \
        "${result[write]}" "${result[timeout]}" "${result[non2xx]}" "${result[nopid]}" "${result[pids]}" "$hups" "${result[p99_ms]}")")
    if (( errors > 0 || result[non2xx] > 0 || result[status] > 0 || result[nopid] > 0 )); then
        status=1
    fi
    if (( hups > 0 && result[pids] < 2 )); then
        say "warning: $hups SIGHUPs but only ${result[pids]} worker pid(s) answered"
        status=1
    fi
}

for mode in $MODES; do
    case $mode in
        keep-alive) run_mode keep-alive ;;
        close) run_mode close -H "Connection: close" ;;
        *) die "unknown mode $mode" ;;
    esac
done

# ---------------------------------------------------------------- master check
wait_single_generation || status=1
master_ok=yes
if [[ -n $plain ]]; then
    master_ok="n/a (plain restarts: a new pid each time)"
elif ! is_alive "$master"; then
    master_ok="no: master $master is gone"
else
    last_pid=$(serving_pid || true)
    ppid=$(parent_of "$last_pid" || true)
    if [[ -z "$last_pid" ]]; then
        master_ok="no: nobody answers any more"
    elif [[ "$ppid" != "$master" ]]; then
        master_ok="no: serving worker $last_pid has parent ${ppid:-?}, not master $master"
    fi
fi
[[ $master_ok == yes ]] || status=1
upgrades=$(grep -c 'ready' "$log" || true)
failed_upgrades=$(grep -c 'upgrade failed' "$log" || true)

echo ""
echo "== summary ($bin, $CONNECTIONS connections, ${DURATION} s per mode, SIGHUP every ${INTERVAL} s, $THREADS wrk threads, ${TIMEOUT} s timeout) =="
for s in "${summaries[@]}"; do echo "$s"; done
echo "master pid $master unchanged and serving: $master_ok"
echo "log lines with 'ready': $upgrades, with 'upgrade failed': $failed_upgrades"
if [[ $status == 0 ]]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
failed=$status
exit "$status"
