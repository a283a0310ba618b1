#!/usr/bin/env bash
# The slow cases of the fault suite (the fast ones run in `swift test`: FaultTests, DeployTests):
#   1. a 10 s request in flight during an upgrade completes, with 200, on the old generation;
#   2. an idle master uses no CPU over 30 s (utime+stime from /proc, in clock ticks).
# Release build; exits non-zero when a case fails.
set -euo pipefail
PORT=${PORT:-18600}
repo=$(cd "$(dirname "$0")/.." && pwd)
(cd "$repo" && swift build -c release --product hello >/dev/null 2>&1)
work=$(mktemp -d /tmp/baton-faults.XXXXXX)
cp "$repo/.build/release/hello" "$work/hello"
cd "$work"
./hello --port "$PORT" 2>"$work/master.log" &
master=$!
trap 'kill -TERM $master 2>/dev/null || true; wait $master 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/hello" >/dev/null && break; sleep 0.1; done
pid_of() { sed -n 's/.*"pid":\([0-9]*\).*/\1/p'; }
failed=0

old=$(curl -s "http://127.0.0.1:$PORT/hello" | pid_of)
curl -s -o "$work/long.json" -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$PORT/sleep?ms=10000" > "$work/long.status" &
long=$!
sleep 0.5
kill -HUP "$master"
sleep 1
new=$(curl -s "http://127.0.0.1:$PORT/hello" | pid_of)
wait "$long"
read -r code seconds < "$work/long.status"
served_by=$(pid_of < "$work/long.json")
echo "long request: HTTP $code after ${seconds}s, served by pid $served_by (old generation $old, new $new)"
if [ "$code" != 200 ] || [ "$served_by" != "$old" ] || [ "$new" = "$old" ]; then failed=1; echo "  FAILED"; fi

sleep 2  # let the old generation exit
ticks() { awk '{print $14 + $15}' "/proc/$master/stat"; }
before=$(ticks); sleep 30; after=$(ticks)
echo "idle master over 30 s: $((after - before)) clock ticks of CPU (1 tick = 10 ms)"
if (( after - before > 2 )); then failed=1; echo "  FAILED"; fi
exit $failed
