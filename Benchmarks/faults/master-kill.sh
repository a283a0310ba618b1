#!/usr/bin/env bash
# The master is killed outright (SIGKILL) every INTERVAL seconds, KILLS times, and a supervisor
# loop starts the same command again in the same folder each time, as an operator's restart
# loop would: each new master adopts the running worker from the dead one's keeper. Under 1,024
# keep-alive connections plus 256 connection-per-request clients, the server pinned to one core.
# After the last adoption, one upgrade (SIGHUP) shows the adopted worker can still be replaced.
# RESPAWN=1: no supervisor; the master runs with --respawn-master and its keeper starts it again.
#
#   Benchmarks/faults/master-kill.sh BIN_DIR [KILLS] [INTERVAL]
#   RESPAWN=1 Benchmarks/faults/master-kill.sh BIN_DIR [KILLS] [INTERVAL]
#
# BIN_DIR holds release builds of `hello` and the load client (`loadclient`, built from
# Benchmarks/handoff/loadclient). One line on standard output:
#   mode=supervisor|respawn kills=12 adoptions=12 adopt_ms_median=… adopt_ms_max=… ka_failed=0 ka_reconnects=0 close_failed=0
#   close_connect_failed=0 served_before_upgrade=PID upgraded_to=PID
# `adopt_ms`: from the kill to the new master's "adopted" line being written; `ka_reconnects`:
# keep-alive connections replaced for any reason (0: every one was kept); `served_before_upgrade`:
# every pid that answered until the upgrade (one: the same worker throughout).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:?usage: master-kill.sh BIN_DIR [KILLS] [INTERVAL]}
kills=${2:-12}
interval=${3:-10}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
WORK=$(mktemp -d /tmp/baton-master-kill.XXXXXX)
HELPERS=() GROUPS_STARTED=()
# shellcheck source=../lib.sh
source "$here/lib.sh"
trap cleanup_all EXIT

dir="$WORK/run"
mkdir -p "$dir"
port=$(free_port) || die "no free port"
respawn=${RESPAWN:-0}
if [[ $respawn == 1 ]]; then
    # One process group for the master, its keeper, the workers and every master the keeper starts.
    (cd "$dir" && exec setsid taskset -c "$SERVER_CPU" "$bin/hello" --port "$port" --respawn-master >>server.log 2>&1 </dev/null) &
    supervisor=$!
    echo "$supervisor" >"$dir/master.pid"
else
    # The supervisor: one process group for it, every master it starts, the keeper and the workers.
    (cd "$dir" && exec setsid bash -c '
        while [[ ! -e stop ]]; do
            taskset -c "$1" "$2/hello" --port "$3" >>server.log 2>&1 </dev/null &
            echo $! > master.pid
            wait $! || true
        done' supervisor "$SERVER_CPU" "$bin" "$port") &
    supervisor=$!
fi
track_group "$supervisor"
wait_answer "$port" 60 || die "hello did not answer (see $dir)"
seconds=$((kills * interval + 20))
taskset -c "$CLIENT_CPU" "$bin/loadclient" -addr "127.0.0.1:$port" -c 1024 -d "${seconds}s" -timeline "$dir/ka.txt" \
    -ready-file "$dir/ka.ready" -summary >"$dir/ka.json" 2>"$dir/ka.log" &
ka=$!
track_helper "$ka"
taskset -c "$CLIENT_CPU" "$bin/loadclient" -addr "127.0.0.1:$port" -c 256 -close -d "${seconds}s" -timeline "$dir/close.txt" \
    -summary >"$dir/close.json" 2>"$dir/close.log" &
cl=$!
track_helper "$cl"
for ((t = 0; t < 700; t++)); do [[ -s $dir/ka.ready ]] && break; sleep 0.1; done
[[ -s $dir/ka.ready ]] || die "the load client did not open its connections (see $dir/ka.log)"
sleep 2

latencies=()
for k in $(seq 1 "$kills"); do
    sleep "$interval"
    master=$(cat "$dir/master.pid")
    start=$(now_ms)
    kill -KILL "$master"
    adopted=""
    for ((t = 0; t < 1000; t++)); do
        if grep -q "adoption $k of this service" "$dir/server.log"; then adopted=$(now_ms); break; fi
        sleep 0.01
    done
    [[ -n $adopted ]] || die "kill $k: no adoption within 10 s (see $dir/server.log)"
    if [[ $respawn == 1 ]]; then
        sed -n "s/.*started the master's command again: pid \([0-9]*\).*/\1/p" "$dir/server.log" | tail -1 >"$dir/master.pid"
    fi
    latencies+=($((adopted - start)))
    say "kill $k: master $master killed, adopted by $(cat "$dir/master.pid") after $((adopted - start)) ms"
done
before_upgrade_ms=$(now_ms)
sleep 2
kill -HUP "$(cat "$dir/master.pid")"
upgraded=""
for ((t = 0; t < 3000; t++)); do
    upgraded=$(sed -n 's/.*generation 2 (pid \([0-9]*\),.*) ready in .*/\1/p' "$dir/server.log" | head -1)
    [[ -n $upgraded ]] && break
    sleep 0.01
done
[[ -n $upgraded ]] || die "the upgrade after the last adoption did not become ready (see $dir/server.log)"
wait "$ka" || true
wait "$cl" || true
forget_helper "$ka"
forget_helper "$cl"
touch "$dir/stop"
kill -TERM "$(cat "$dir/master.pid")"
kill_group "$supervisor" 40
adoptions=$(grep -c "adopted 1 generation(s) from master pid" "$dir/server.log" || true)
python3 - "$dir" "$before_upgrade_ms" "$kills" "$adoptions" "$upgraded" "$interval" "$([[ $respawn == 1 ]] && echo respawn || echo supervisor)" "${latencies[@]}" <<'PY'
import json, statistics, sys
d, before, kills, adoptions, upgraded, interval, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
latencies = [int(x) for x in sys.argv[8:]]
ka, close = json.load(open(f"{d}/ka.json")), json.load(open(f"{d}/close.json"))
pids = set()
for name in ("ka.txt", "close.txt"):
    for line in open(f"{d}/{name}"):
        if line.startswith("#"):
            continue
        f = line.split()
        if int(f[0]) < before:
            pids |= {p.split(":")[0] for p in f[7][len("pids="):].split(",") if p}
print(f"mode={mode} kills={kills} interval_s={interval} adoptions={adoptions} adopt_ms_median={statistics.median(latencies):.0f} adopt_ms_max={max(latencies)}"
      f" ka_ok={ka['requests_ok']} ka_failed={ka['failures']} ka_reconnects={ka['reconnects']}"
      f" close_ok={close['requests_ok']} close_failed={close['failures']} close_connect_failed={close['failure_kinds'].get('connect', 0)}"
      f" served_before_upgrade={'+'.join(sorted(pids))} upgraded_to={upgraded}")
PY
