#!/usr/bin/env bash
# A/B of two `hello` binaries in steady state (no upgrades): did a change cost throughput or tail
# latency? Server pinned to CPU 0, wrk to CPU 1, the two binaries interleaved for ROUNDS rounds,
# keep-alive and `Connection: close`; prints medians of req/s and p99 and the ratio B / A.
#
#   bash Benchmarks/ab.sh OLD_HELLO NEW_HELLO
#
# Environment: ROUNDS [5], DURATION [10] seconds per run, CONNECTIONS [64], PORT [18710],
# LOCK [/tmp/baton-bench.lock] (held for the whole comparison: the machine is shared).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
[ $# -eq 2 ] || { echo "usage: $0 OLD_HELLO NEW_HELLO" >&2; exit 2; }
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18710}
LOCK=${LOCK:-/tmp/baton-bench.lock}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
work=$(mktemp -d /tmp/baton-ab.XXXXXX)
cp "$1" "$work/a"
cp "$2" "$work/b"
cd "$work"
exec 9>"$LOCK"
flock 9
server=
stop() { [ -n "$server" ] && { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }; server=; }
trap stop EXIT

run() {  # run a|b keepalive|close -> "req/s p99_ms"
    taskset -c 0 "./$1" --port "$PORT" 2>>"$work/$1.log" 9>&- &
    server=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/hello" >/dev/null && break; sleep 0.1; done
    local header=()
    [ "$2" = close ] && header=(-H "Connection: close")
    taskset -c 1 wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${header[@]}" "http://127.0.0.1:$PORT/hello" 9>&- |
        awk '/Requests\/sec/ {rps = $2}
             $1 == "99%" {v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v)
                          p99 = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v}
             END {print rps, p99}'
    stop
    sleep 1
}

declare -A rps p99
for round in $(seq "$ROUNDS"); do
    order="a b"
    (( round % 2 == 0 )) && order="b a"   # ABBA: neither binary always follows the other's TIME_WAITs
    for mode in keepalive close; do
        for binary in $order; do
            read -r r p < <(run "$binary" "$mode")
            echo "round $round: $binary $mode $r req/s, p99 $p ms"
            rps[$binary-$mode]+="$r "
            p99[$binary-$mode]+="$p "
        done
    done
done
echo
echo "$CONNECTIONS connections, ${DURATION} s per run, $ROUNDS interleaved rounds, medians (A = $1, B = $2)"
echo
echo "| mode | A req/s | B req/s | B / A | A p99 ms | B p99 ms | B / A |"
echo "|---|---|---|---|---|---|---|"
for mode in keepalive close; do
    ar=$(echo "${rps[a-$mode]}" | median); br=$(echo "${rps[b-$mode]}" | median)
    ap=$(echo "${p99[a-$mode]}" | median); bp=$(echo "${p99[b-$mode]}" | median)
    echo "| $mode | $ar | $br | $(awk -v b="$br" -v a="$ar" 'BEGIN {printf "%.2f", b / a}') | $ap | $bp | $(awk -v b="$bp" -v a="$ap" 'BEGIN {printf "%.2f", b / a}') |"
done
