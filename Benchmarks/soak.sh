#!/usr/bin/env bash
# Soak: many upgrades under constant load. Reports failed requests (must be 0), the master's fd
# count and RSS at start and end, and zombies seen.
#
#   Benchmarks/soak.sh                 # 1000 upgrades, release build
#   UPGRADES=200 Benchmarks/soak.sh
#
# Upgrades go through `baton reload`, which returns once the new generation serves, so they run
# back to back as fast as the machine allows, while wrk keeps 64 keep-alive connections busy.
set -euo pipefail
UPGRADES=${UPGRADES:-1000}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18300}
repo=$(cd "$(dirname "$0")/.." && pwd)
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

(cd "$repo" && swift build -c release --product hello --product baton >/dev/null)
work=$(mktemp -d /tmp/baton-soak.XXXXXX)
cp "$repo/.build/release/hello" "$work/hello"
baton="$repo/.build/release/baton"
cd "$work"
./hello --port "$PORT" --drain-timeout 10 2>"$work/master.log" &
master=$!
cleanup() { kill -TERM "$master" 2>/dev/null || true; wait "$master" 2>/dev/null || true; pkill -P "$master" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/hello" >/dev/null && break; sleep 0.1; done

fds() { ls "/proc/$master/fd" | wc -l; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$master/status"; }
zombies() { ps -o stat= --ppid "$master" | grep -c '^Z' || true; }
start_fds=$(fds); start_rss=$(rss)

cat > "$work/count.lua" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init() bad = 0 end
function response(status) if status ~= 200 then bad = bad + 1 end end
function done(summary, latency, requests)
  local total_bad = 0
  for _, t in ipairs(threads) do total_bad = total_bad + t:get("bad") end
  local e = summary.errors
  io.write(string.format("requests %d, non-200 %d, socket errors connect %d read %d write %d timeout %d\n",
    summary.requests, total_bad, e.connect, e.read, e.write, e.timeout))
end
LUA
# wrk prints its figures only when a run ends: run it in 20 s rounds until the upgrades are done.
( while [ ! -e "$work/done" ]; do
    wrk -t2 -c"$CONNECTIONS" -d20s --timeout 10s -s "$work/count.lua" "http://127.0.0.1:$PORT/hello" >> "$work/wrk.out" 2>&1
  done ) &
wrk_loop=$!
sleep 1
max_zombies=0
failed_reloads=0
started=$(date +%s)
for i in $(seq "$UPGRADES"); do
  "$baton" reload --timeout 60 >/dev/null || failed_reloads=$((failed_reloads + 1))
  if (( i % 50 == 0 )); then
    z=$(zombies); (( z > max_zombies )) && max_zombies=$z
    echo "  $i upgrades, master fds $(fds), rss $(rss) kB, zombies $z"
  fi
done
elapsed=$(( $(date +%s) - started ))
touch "$work/done"
wait "$wrk_loop"
for _ in $(seq 100); do [ "$(ps -o pid= --ppid "$master" | wc -l)" -le 1 ] && break; sleep 0.1; done
end_fds=$(fds); end_rss=$(rss)
echo "upgrades: $UPGRADES in ${elapsed}s (failed reloads: $failed_reloads)"
awk '/^requests/ { r += $2; n += $4; c += $8; rd += $10; w += $12; t += $14 }
     END { printf "load: %d requests, %d non-200, socket errors: connect %d, read %d, write %d, timeout %d\n", r, n, c, rd, w, t }' "$work/wrk.out"
echo "master pid $master: fds $start_fds -> $end_fds, RSS ${start_rss} kB -> ${end_rss} kB, most zombies seen at once: $max_zombies"
echo "log: $work/master.log"
