#!/usr/bin/env bash
# WebSockets across upgrades: 2,000 echo clients (Benchmarks/protocols/wsclient), each sending a
# numbered message every 100 ms and reconnecting when the server closes, while `hello` is
# upgraded 5 times, one SIGHUP every 2 s; the server pinned to one core, the clients on another.
#
#   Benchmarks/protocols/ws.sh BIN_DIR [ROUNDS]
#
# BIN_DIR holds a release build of `hello` and `wsclient` (go build of
# Benchmarks/protocols/wsclient). One line per round on standard output, `key=value` pairs:
#   sent, echoed, lost         messages written by the clients, echoes received, and those never
#                              echoed (the drain must lose none); lost_at_close: of those, on a
#                              connection the server closed (a message that crossed the close)
#   echo_p50_ms, echo_p99_ms   the time from sending a message to its echo (every tenth)
#   server_closes, close_1001  closes the server started, and those with code 1001 (going away)
#   after_notice               closes preceded by the app's drain message ("baton: draining …",
#                              hello's BatonDrain handler)
#   moves                      heeding clients: connections left on the drain message (closed by
#                              the client once its echoes were in; no server close)
#   abnormal, dial_errors, read_errors   connections that ended without a close frame, failed
#                              connects, other read errors
#   spread_p10_ms / spread_p50_ms / spread_p90_ms / spread_max_ms   when the closes (and moves)
#                              came after the SIGHUP that started their drain (the window is 5 s; a hurried
#                              drain closes within 1 s of its hurry)
#   hurried                    drains hurried because more than --max-draining (2) generations
#                              were draining
#   max_live_workers           the most worker processes alive at once (sampled every 50 ms):
#                              the serving one, the draining ones, and one starting
#   drain_ms_max               the longest drain (the deadline is 29 s)
#   workers_left               worker processes still alive 15 s after the last upgrade (0)
#   client                     ignore: the clients go on writing until the server closes;
#                              heed: on the drain notice a client writes no more on that
#                              connection and moves to a new one at once (wsclient -heed-notice)
#   round
#
# WS_CLIENTS ["ignore heed"]: the client behaviours to run, each ROUNDS times.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:?usage: ws.sh BIN_DIR [ROUNDS]}
rounds=${2:-3}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CLIENTS=${CLIENTS:-2000}
UPGRADES=${UPGRADES:-5}
WS_CLIENTS=${WS_CLIENTS:-"ignore heed"}
WORK=$(mktemp -d /tmp/baton-ws.XXXXXX)
HELPERS=() GROUPS_STARTED=()
# shellcheck source=../lib.sh
source "$here/lib.sh"
trap cleanup_all EXIT
say "work folder: $WORK"

for round in $(seq 1 "$rounds"); do
  for behaviour in $WS_CLIENTS; do
    dir="$WORK/round$round-$behaviour"
    heed=()
    case $behaviour in
        ignore) ;;
        heed) heed=(-heed-notice) ;;
        *) die "WS_CLIENTS: unknown client behaviour '$behaviour' (ignore or heed)" ;;
    esac
    mkdir -p "$dir"
    port=$(free_port) || die "no free port"
    (cd "$dir" && exec setsid taskset -c "$SERVER_CPU" "$bin/hello" --port "$port" >>"$dir/server.log" 2>&1 </dev/null) &
    master=$!
    track_group "$master"
    wait_answer "$port" 60 || die "hello did not answer (see $dir)"
    run_s=$((2 * UPGRADES + 12))
    taskset -c "$CLIENT_CPU" "$bin/wsclient" -url "ws://127.0.0.1:$port/ws" -c "$CLIENTS" -d "${run_s}s" \
        "${heed[@]}" -ready-file "$dir/ready" -closes "$dir/closes.txt" -summary >"$dir/summary.json" 2>"$dir/client.log" &
    client=$!
    track_helper "$client"
    for ((t = 0; t < 1200; t++)); do [[ -s $dir/ready ]] && break; sleep 0.1; done
    [[ -s $dir/ready ]] || die "the clients did not connect (see $dir/client.log)"
    sleep 2
    # Worker processes: the master's children other than its keeper (named in its log).
    keeper=$(sed -n 's/.*keeper pid \([0-9]*\) .*/\1/p;T;q' "$dir/server.log")
    (
        while alive "$master"; do
            n=0
            for child in $(pgrep -P "$master" || true); do [[ $child == "$keeper" ]] || n=$((n + 1)); done
            echo "$n"
            sleep 0.05
        done
    ) >"$dir/workers.txt" 2>/dev/null &
    sampler=$!
    track_helper "$sampler"
    : >"$dir/upgrades.txt"
    for ((u = 1; u <= UPGRADES; u++)); do
        echo "$(now_ms)" >>"$dir/upgrades.txt"
        kill -HUP "$master"
        sleep 2
    done
    sleep 15
    left=0
    for child in $(pgrep -P "$master" || true); do [[ $child == "$keeper" ]] || left=$((left + 1)); done
    left=$((left - 1))   # the serving one
    wait "$client" || true
    forget_helper "$client"
    kill_group "$master" 15
    wait "$sampler" 2>/dev/null || true
    forget_helper "$sampler"
    python3 - "$dir" "$round" "$left" "$behaviour" <<'PY'
import json, sys
d, rnd, left, behaviour = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = json.load(open(f"{d}/summary.json"))
upgrades = [int(x) for x in open(f"{d}/upgrades.txt").read().split()]
log = open(f"{d}/server.log").read().splitlines()
# Each close belongs to the drain of the upgrade before it (the most recent SIGHUP).
delays = []
for line in open(f"{d}/closes.txt"):
    at = int(line.split()[0])
    before = [u for u in upgrades if u <= at]
    if before:
        delays.append(at - before[-1])
delays.sort()
def pct(p):
    return delays[min(len(delays) - 1, int(p * len(delays)))] if delays else -1
# "drained in 250 ms", or in whole seconds ("drained in 4 s"), as the master writes durations
def ms(text):
    value, unit = text.split()[:2]
    return round(float(value) * (1000 if unit == "s" else 1))
drains = [ms(l.split("drained in ")[1]) for l in log if "role=master" in l and " drained in " in l]
workers = [int(x) for x in open(f"{d}/workers.txt").read().split() if x.strip().isdigit()]
codes = s.get("close_codes", {})
print(" ".join(f"{k}={v}" for k, v in [
    ("sent", s["sent"]), ("echoed", s["echoed"]), ("lost", s["lost"]), ("lost_at_close", s.get("lost_by", {}).get("server_closed", 0)),
    ("echo_p50_ms", s.get("echo_p50_ms", -1)), ("echo_p99_ms", s.get("echo_p99_ms", -1)),
    ("server_closes", s["server_closes"]), ("close_1001", codes.get("1001", 0)), ("after_notice", s["closes_after_notice"]),
    ("moves", s.get("moves", 0)),
    ("abnormal", s["abnormal_closes"]), ("dial_errors", s["dial_errors"]), ("read_errors", s["read_errors"]),
    ("spread_p10_ms", pct(0.1)), ("spread_p50_ms", pct(0.5)), ("spread_p90_ms", pct(0.9)), ("spread_max_ms", delays[-1] if delays else -1),
    ("hurried", sum(1 for l in log if "role=master" in l and " hurried: " in l)),
    ("max_live_workers", max(workers) if workers else -1), ("drain_ms_max", max(drains) if drains else -1),
    ("workers_left", left), ("client", behaviour), ("round", rnd)]))
PY
  done
done
