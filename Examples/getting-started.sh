#!/usr/bin/env bash
# The "Getting started" walkthrough (Sources/Baton/Baton.docc/GettingStarted.md), as a script: it
# runs `hello` from a folder of its own with a watch.conf, upgrades it three ways (a changed
# watch.conf, `baton reload`, a broken release that is refused), then stops it, and prints each
# command with its real output. GettingStartedTests (swift test) runs it and fails when the
# article's output block no longer matches what it prints (pids, times, ports and paths aside).
#
#   swift build --product hello --product baton
#   bash Examples/getting-started.sh            # HELLO, BATON: the binaries (default .build/debug/…)
#                                               # PORT: the port to serve on (default 18200)
#
# Every wait is bounded; every process it starts (the master, its workers, its keeper) is stopped
# when it exits, also on failure or Ctrl-C; the folder it worked in is removed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
hello_binary=$(realpath "${HELLO:-$here/.build/debug/hello}")
baton_binary=$(realpath "${BATON:-$here/.build/debug/baton}")
PORT=${PORT:-18200}
for binary in "$hello_binary" "$baton_binary"; do
    [ -x "$binary" ] || { echo "error: $binary is missing: run swift build --product hello --product baton" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "error: curl is missing (Debian package curl)" >&2; exit 1; }

umask 022   # staging refuses a binary or watch.conf that group or others can write
demo=$(mktemp -d /tmp/baton-getting-started.XXXXXX)
chmod 755 "$demo"
master=""
cleanup() {
    if [ -n "$master" ] && kill -0 "$master" 2>/dev/null; then
        kill -TERM "$master" 2>/dev/null || true       # a graceful stop ends workers and keeper too
        for _ in $(seq 100); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
    fi
    # The master runs in a session of its own (setsid below): whatever of it is left goes.
    [ -n "$master" ] && kill -KILL -- "-$master" 2>/dev/null || true
    rm -rf "$demo"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# `$ command` then its output, as in a terminal: the command is shown as written, then run.
run() { printf '$ %s\n' "$1"; eval "$1"; }
# Waits up to 30 s until `$@` succeeds (quietly).
wait_until() {
    for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "error: gave up after 30 s waiting for: $*" >&2
    [ -f "$demo/master.log" ] && tail -20 "$demo/master.log" >&2
    exit 1
}
serves() { curl -sf "localhost:$PORT/hello" | grep -q "\"ver\":\"$1\""; }
status_says() { baton status | grep -q "$1"; }
# The worker reports its open connections every second (until then `baton status` shows '-'):
# wait until it has reported that the last curl's connection is closed.
reported() { baton status | grep -E '^[0-9]+ ' | grep -q ' 0$'; }

cd "$demo"
export PATH="$(dirname "$baton_binary"):$PATH"   # `baton` as the .deb installs it
cp "$hello_binary" hello
printf '{"HttpPort":"%s","Ver":"1","DelaySecond":1,"BinName":"hello"}\n' "$PORT" > hello.watch.conf

echo '# the app folder: the binary and its watch.conf'
run 'cat hello.watch.conf'
echo '$ ./hello 2> master.log &'
setsid ./hello 2> master.log &
master=$!
wait_until serves 1
wait_until reported
run 'baton status'
run "curl -s localhost:$PORT/hello"; echo

echo
echo '# deploy: upload the new binary beside the old one, rename it over, then bump Ver'
run 'cp hello hello.upload'
run 'mv hello.upload hello'
run "sed -i 's/\"Ver\":\"1\"/\"Ver\":\"2\"/' hello.watch.conf"
wait_until serves 2
run "curl -s localhost:$PORT/hello"; echo

echo
echo '# the same release again, synchronously: the outcome is the exit status'
run 'baton reload'

echo
echo '# a broken release: the serving generation keeps serving, and the log says why'
run "printf '#!/bin/sh\\nexit 3\\n' > broken && chmod 755 broken"
run "sed -i 's/\"BinName\":\"hello\"/\"BinName\":\"broken\"/; s/\"Ver\":\"2\"/\"Ver\":\"3\"/' hello.watch.conf"
wait_until status_says 'upgrade failed'
wait_until reported
run 'baton status'
run 'baton check --config hello.watch.conf'
run "curl -s localhost:$PORT/hello"; echo

echo
run 'baton stop'
wait "$master" || true
master=""

echo
echo '# the master log: what the master decided (worker lines and timestamps left out)'
run "grep 'role=master' master.log | grep -E 'notice|error|ready in' | cut -d' ' -f2-"
