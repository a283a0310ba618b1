#!/usr/bin/env bash
# Where the time from a successor's SIGKILL to the first answer goes: one round of
# successor-kill.sh's scenario (release hello on CPU 0, 1,024 keep-alive + 256
# connection-per-request clients on CPU 1, generation 2 SIGKILLed 0.5 s after it became ready)
# with a syscall trace of the old generation (perf record -p: accept4, read, write(v),
# epoll_wait, recvmsg, poll, close), then successor-kill-trace.py on it: the first accept after
# the kill, the first read and write on an accepted connection, and each event loop's turns.
#
#   Benchmarks/faults/successor-kill-trace.sh BIN_DIR OUT_DIR   # BIN_DIR as for successor-kill.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:?usage: successor-kill-trace.sh BIN_DIR OUT_DIR} dir=${2:?usage: successor-kill-trace.sh BIN_DIR OUT_DIR}
SERVER_CPU=0 CLIENT_CPU=1
WORK=$(mktemp -d /tmp/skt.XXXXXX)
HELPERS=() GROUPS_STARTED=()
source "$here/lib.sh"
trap cleanup_all EXIT
command -v perf >/dev/null || die "no perf (apt-get install linux-perf)"
mkdir -p "$dir"
port=$(free_port)
(cd "$dir" && exec setsid taskset -c "$SERVER_CPU" "$bin/hello" --port "$port" --drain-timeout 30 >>"$dir/server.log" 2>&1 </dev/null) &
master=$!
track_group "$master"
wait_answer "$port" 60 || die "no answer"
old=$(answer_pid "$port")
taskset -c "$CLIENT_CPU" "$bin/loadclient" -addr "127.0.0.1:$port" -c 1024 -d 12s -timeline "$dir/ka.txt" \
    -ready-file "$dir/ka.ready" -slow-log "$dir/ka-failed.txt" -summary >"$dir/ka.json" 2>"$dir/ka.log" &
ka=$!; track_helper "$ka"
taskset -c "$CLIENT_CPU" "$bin/loadclient" -addr "127.0.0.1:$port" -c 256 -close -d 12s -timeline "$dir/close.txt" \
    -ready-file "$dir/close.ready" -slow-log "$dir/close-requests.txt" -slow-ms 0 -summary >"$dir/close.json" 2>"$dir/close.log" &
cl=$!; track_helper "$cl"
for ((t = 0; t < 700; t++)); do [[ -s $dir/ka.ready && -s $dir/close.ready ]] && break; sleep 0.1; done
sleep 2
taskset -c "$CLIENT_CPU" perf record -q -a -e syscalls:sys_enter_kill -o "$dir/kill.data" -- sleep 5 >"$dir/perf1.log" 2>&1 &
p1=$!; track_helper "$p1"
taskset -c "$CLIENT_CPU" perf record -q -p "$old" -e syscalls:sys_exit_accept4 -e syscalls:sys_enter_read -e syscalls:sys_enter_write \
    -e syscalls:sys_enter_writev -e syscalls:sys_exit_epoll_wait -e syscalls:sys_enter_epoll_wait -e syscalls:sys_enter_recvmsg -e syscalls:sys_enter_close \
    -e syscalls:sys_enter_poll -e syscalls:sys_exit_poll -o "$dir/old.data" -- sleep 5 >"$dir/perf2.log" 2>&1 &
p2=$!; track_helper "$p2"
sleep 0.5
kill -HUP "$master"
victim=""
for ((t = 0; t < 2000; t++)); do
    victim=$(sed -n 's/.*generation 2 (pid \([0-9]*\),.*) ready in .*/\1/p;T;q' "$dir/server.log")
    [[ -n $victim ]] && break
    sleep 0.01
done
sleep 0.5
kill_ms=$(now_ms)
kill -KILL "$victim"
echo "$kill_ms $victim $old" > "$dir/kill.txt"
sleep 3
wait "$p1" || true; wait "$p2" || true
forget_helper "$p1"; forget_helper "$p2"
wait "$ka" || true; wait "$cl" || true
forget_helper "$ka"; forget_helper "$cl"
kill_group "$master" 15
perf script -i "$dir/kill.data" -F pid,tid,time,event,trace > "$dir/kill.txt.perf" 2>/dev/null
perf script -i "$dir/old.data" -F pid,tid,time,event,trace > "$dir/old.txt" 2>/dev/null
python3 "$here/faults/successor-kill-trace.py" "$dir"
