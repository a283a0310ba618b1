#!/usr/bin/env bash
# What Baton costs in steady state: `hello` (Baton master + worker, BatonHummingbird) against the
# same route on stock Hummingbird (`plain-hummingbird`), no upgrades. Server pinned to CPU 0,
# wrk to CPU 1, systems interleaved, ROUNDS rounds; prints medians and the ratio Baton / plain.
# ADAPTER=vapor: `vapor-hello` (BatonVapor) against stock Vapor (`plain-vapor`, `app.execute()`).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
PORT=${PORT:-18700}
repo=$(cd "$(dirname "$0")/.." && pwd)
ADAPTER=${ADAPTER:-hummingbird}
case $ADAPTER in
    hummingbird) baton_product=hello; plain_product=plain-hummingbird; plain_name="plain Hummingbird" ;;
    vapor) baton_product=vapor-hello; plain_product=plain-vapor; plain_name="stock Vapor" ;;
    *) echo "ADAPTER must be hummingbird or vapor" >&2; exit 2 ;;
esac
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
# CONFIG=debug measures debug builds (only when no release build can be had: debug serves ~5x
# fewer requests); SKIP_BUILD=1 uses what .build/$CONFIG holds.
CONFIG=${CONFIG:-release}
if [ "${SKIP_BUILD:-}" != 1 ]; then
    (cd "$repo" && swift build -c "$CONFIG" --product "$baton_product" >/dev/null 2>&1 && swift build -c "$CONFIG" --product "$plain_product" >/dev/null 2>&1)
fi
work=$(mktemp -d /tmp/baton-overhead.XXXXXX)
cp "$repo/.build/$CONFIG/$baton_product" "$repo/.build/$CONFIG/$plain_product" "$work/"
cd "$work"
server=
stop() { [ -n "$server" ] && { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }; server=; }
trap stop EXIT

run() {  # run SYSTEM MODE -> req/s
    case $1 in
        baton) taskset -c 0 "./$baton_product" --port "$PORT" 2>>"$work/baton.log" & ;;
        plain)
            if [ "$ADAPTER" = vapor ]; then
                taskset -c 0 ./plain-vapor serve --hostname 127.0.0.1 --port "$PORT" >>"$work/plain.log" 2>&1 &
            else
                taskset -c 0 ./plain-hummingbird "$PORT" 2>>"$work/plain.log" &
            fi ;;
    esac
    server=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/hello" >/dev/null && break; sleep 0.1; done
    local header=()
    [ "$2" = close ] && header=(-H "Connection: close")
    taskset -c 1 wrk -t2 -c64 -d"${DURATION}s" "${header[@]}" "http://127.0.0.1:$PORT/hello" | awk '/Requests\/sec/ {print $2}'
    stop
    sleep 1
}

declare -A results
for round in $(seq "$ROUNDS"); do
    for system in baton plain; do
        for mode in keepalive close; do
            rps=$(run "$system" "$mode")
            echo "round $round: $system $mode $rps req/s"
            results[$system-$mode]+="$rps "
        done
    done
done
echo
echo "| mode | Baton $baton_product req/s | $plain_name req/s | Baton / plain |"
echo "|---|---|---|---|"
for mode in keepalive close; do
    b=$(echo "${results[baton-$mode]}" | median); p=$(echo "${results[plain-$mode]}" | median)
    echo "| $mode | $b | $p | $(awk -v b="$b" -v p="$p" 'BEGIN {printf "%.2f", b / p}') |"
done
