#!/usr/bin/env bash
# The new generation dies in the middle of the hand-over: SIGKILL 0.5 s after it became ready,
# under 1,024 keep-alive connections plus 256 connection-per-request clients, the server pinned
# to one core. What is lost, and how long new connections wait for someone to accept them.
#
#   Benchmarks/faults/successor-kill.sh BIN_DIR [ROUNDS]
#
# BIN_DIR holds release builds of `hello` and the load client (`loadclient`, built from
# Benchmarks/handoff/loadclient). One line per round on standard output:
#   round=1 held=592 ka_failed=… ka_kinds=… close_failed=… close_max_ms_after_kill=… served_after_kill=PIDS started_after_kill=N
# `held`: sockets the killed generation had open (its clients' connections, which no design can
# save); `served_after_kill`: the pids that answered the connection-per-request clients in the
# 3 s after the kill; `started_after_kill`: generations the master started in those 3 s.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:?usage: successor-kill.sh BIN_DIR [ROUNDS]}
rounds=${2:-3}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
WORK=$(mktemp -d /tmp/baton-successor-kill.XXXXXX)
HELPERS=() GROUPS_STARTED=()
# shellcheck source=../lib.sh
source "$here/lib.sh"
trap cleanup_all EXIT

for round in $(seq 1 "$rounds"); do
    dir="$WORK/round$round"
    mkdir -p "$dir"
    port=$(free_port) || die "no free port"
    (cd "$dir" && exec setsid taskset -c "$SERVER_CPU" "$bin/hello" --port "$port" --drain-timeout 30 >>"$dir/server.log" 2>&1 </dev/null) &
    master=$!
    track_group "$master"
    wait_answer "$port" 60 || die "hello did not answer (see $dir)"
    taskset -c "$CLIENT_CPU" "$bin/loadclient" -addr "127.0.0.1:$port" -c 1024 -d 12s -timeline "$dir/ka.txt" \
        -ready-file "$dir/ka.ready" -summary >"$dir/ka.json" 2>"$dir/ka.log" &
    ka=$!
    track_helper "$ka"
    taskset -c "$CLIENT_CPU" "$bin/loadclient" -addr "127.0.0.1:$port" -c 256 -close -d 12s -timeline "$dir/close.txt" \
        -summary >"$dir/close.json" 2>"$dir/close.log" &
    cl=$!
    track_helper "$cl"
    for ((t = 0; t < 700; t++)); do [[ -s $dir/ka.ready ]] && break; sleep 0.1; done
    [[ -s $dir/ka.ready ]] || die "the load client did not open its connections (see $dir/ka.log)"
    sleep 2
    kill -HUP "$master"
    victim=""
    for ((t = 0; t < 2000; t++)); do
        victim=$(sed -n 's/.*generation 2 (pid \([0-9]*\),.*) ready in .*/\1/p' "$dir/server.log" | head -1)
        [[ -n $victim ]] && break
        sleep 0.01
    done
    [[ -n $victim ]] || die "generation 2 did not become ready (see $dir/server.log)"
    sleep 0.5
    held=$(find "/proc/$victim/fd" -lname 'socket:*' 2>/dev/null | wc -l)
    starts_before=$(grep -c 'starting (' "$dir/server.log" || true)
    kill_ms=$(now_ms)
    kill -KILL "$victim"
    sleep 3
    starts_after=$(grep -c 'starting (' "$dir/server.log" || true)
    wait "$ka" || true
    wait "$cl" || true
    forget_helper "$ka"
    forget_helper "$cl"
    kill_group "$master" 15
    python3 - "$dir" "$kill_ms" <<'EOF'
import json, sys
d, kill = sys.argv[1], int(sys.argv[2])
ka, close = json.load(open(f"{d}/ka.json")), json.load(open(f"{d}/close.json"))
worst, pids = 0.0, set()
for line in open(f"{d}/close.txt"):
    if line.startswith("#"):
        continue
    f = line.split()
    ms = int(f[0])
    if kill <= ms < kill + 3000:
        worst = max(worst, float(f[6]))
        pids |= {p.split(":")[0] for p in f[7][len("pids="):].split(",") if p}
kinds = ",".join(f"{k}:{n}" for k, n in sorted(ka["failure_kinds"].items()) if n) or "-"
print(f"ka_failed={ka['failures']} ka_kinds={kinds} close_failed={close['failures']} close_max_ms_after_kill={worst:.0f} served_after_kill={'+'.join(sorted(pids))}", end=" ")
EOF
    echo "started_after_kill=$((starts_after - starts_before)) held=$held round=$round"
done
