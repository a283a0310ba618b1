#!/usr/bin/env bash
# The new generation dies in the middle of the hand-over: SIGKILL 0.5 s after it became ready,
# under 1,024 keep-alive connections plus 256 connection-per-request clients (closed loops: the
# server's core is saturated), the server pinned to one core. What is lost, and how long nobody
# accepts.
#
#   Benchmarks/faults/successor-kill.sh BIN_DIR [ROUNDS]
#   TRACE=1 Benchmarks/faults/successor-kill.sh BIN_DIR 1   # and where the first answer's time goes
#   KA_RATE=6000 CLOSE_RATE=1200 Benchmarks/faults/successor-kill.sh BIN_DIR   # open loops
#
# The load is the issue's: closed loops (each client sends again as soon as it has its answer),
# which keep 1,280 requests outstanding and the core saturated. KA_RATE and CLOSE_RATE (requests
# per second in all, `loadclient -rate`) make either an open loop instead, for the same fault at a
# load the core can carry.
#
# TRACE=1 also traces the old generation's system calls in each round (perf record -p: accept4,
# read, write(v), epoll_wait, poll, recvmsg, close) and the killed generation's exit and reaping,
# and prints successor-kill-trace.py's reading of it on standard error: where the accept gap
# went, the first accept, read and write on a connection accepted after the kill, and each event
# loop's turns around it. The trace slows the old generation: use such rounds for the timeline,
# not for the loss figures.
#
# BIN_DIR holds release builds of `hello` and the load client (`loadclient`, built from
# Benchmarks/handoff/loadclient). Needs perf (Debian's linux-perf) and root for its tracepoints.
# One line per round on standard output, `key=value` pairs:
#   held             client connections the killed generation had open (ss -p, just before the kill;
#                    snapshot_ms: from the start of that snapshot to the kill)
#   failed_held      failed requests on those connections (what no design can save)
#   failed_new       failed connection-per-request clients whose connection no process had in that
#                    snapshot: opened or accepted after it, when only the killed generation
#                    accepted (old_accepts_before_kill: the old generation's accepts between the
#                    snapshot and the kill, from perf)
#   failed_unowned   failed keep-alive requests on connections no process had open in that
#                    snapshot: on their way into the killed generation's inbox and not taken back
#   failed_other     failed requests on connections only another process had open
#   taken_back, lent_lost   the old generation's count of the connections it had lent the killed
#                    one: taken back (never read there) / read there, so gone with it
#   ka_failed, close_failed, ka_kinds   the load clients' own totals
#   accept_gap_ms    from the SIGKILL to the old generation's first accept (perf: the kill(2) and
#                    accept4(2) tracepoints): the time nobody accepts
#   first_answer_ms  from the kill to the first answer to a connection opened after it
#   gap_ms_before / gap_ms_after   the longest time without an answer to any
#                    connection-per-request client in the second before / after the kill
#   wait_ms_before / wait_ms_after the longest a new connection waited for its answer in the
#                    3 s before / after the kill (what the saturated core costs anyway)
#   first_answer_ms_steady   the same measure as first_answer_ms at moments with no fault: from
#                    each 100 ms mark of the 2 s before the SIGHUP (one generation, the same load)
#                    to the first answer to a connection opened after it; median over the 20
#                    marks (what this load costs a new connection anyway)
#   served_after_kill   pids that answered the connection-per-request clients in the 3 s after
#   started_after_kill  generations the master started in those 3 s
#   round
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
command -v perf >/dev/null || die "no perf (apt-get install linux-perf)"

for round in $(seq 1 "$rounds"); do
    dir="$WORK/round$round"
    mkdir -p "$dir"
    port=$(free_port) || die "no free port"
    (cd "$dir" && exec setsid taskset -c "$SERVER_CPU" "$bin/hello" --port "$port" --drain-timeout 30 >>"$dir/server.log" 2>&1 </dev/null) &
    master=$!
    track_group "$master"
    wait_answer "$port" 60 || die "hello did not answer (see $dir)"
    old=$(answer_pid "$port")
    # -slow-log: the failed requests with their connection's port; -slow-ms 0 for the
    # connection-per-request clients: every request, with its send time and latency.
    taskset -c "$CLIENT_CPU" "$bin/loadclient" -addr "127.0.0.1:$port" -c 1024 -rate "${KA_RATE:-0}" -d 12s -timeline "$dir/ka.txt" \
        -ready-file "$dir/ka.ready" -slow-log "$dir/ka-failed.txt" -summary >"$dir/ka.json" 2>"$dir/ka.log" &
    ka=$!
    track_helper "$ka"
    taskset -c "$CLIENT_CPU" "$bin/loadclient" -addr "127.0.0.1:$port" -c 256 -close -rate "${CLOSE_RATE:-0}" -d 12s -timeline "$dir/close.txt" \
        -ready-file "$dir/close.ready" -slow-log "$dir/close-requests.txt" -slow-ms 0 -summary >"$dir/close.json" 2>"$dir/close.log" &
    cl=$!
    track_helper "$cl"
    for ((t = 0; t < 700; t++)); do [[ -s $dir/ka.ready && -s $dir/close.ready ]] && break; sleep 0.1; done
    [[ -s $dir/ka.ready && -s $dir/close.ready ]] || die "the load clients did not open their connections (see $dir/*.log)"
    sleep 2
    # Traces the kill and every accept for 5 s: from before the upgrade to some 4 s after the kill.
    # With TRACE=1, also the killed generation's exit and its reaping.
    gap_events=()
    [[ ${TRACE:-0} == 1 ]] && gap_events=(-e sched:sched_process_exit -e signal:signal_generate -e syscalls:sys_exit_wait4)
    taskset -c "$CLIENT_CPU" perf record -q -a -e syscalls:sys_enter_kill -e syscalls:sys_exit_accept4 "${gap_events[@]}" \
        -o "$dir/perf.data" -- sleep 5 >"$dir/perf.log" 2>&1 &
    perf_pid=$!
    track_helper "$perf_pid"
    if [[ ${TRACE:-0} == 1 ]]; then
        taskset -c "$CLIENT_CPU" perf record -q -p "$old" -e syscalls:sys_exit_accept4 -e syscalls:sys_enter_read \
            -e syscalls:sys_enter_write -e syscalls:sys_enter_writev -e syscalls:sys_exit_epoll_wait -e syscalls:sys_enter_epoll_wait \
            -e syscalls:sys_enter_recvmsg -e syscalls:sys_enter_close -e syscalls:sys_enter_poll -e syscalls:sys_exit_poll \
            -o "$dir/old.data" -- sleep 5 >"$dir/perf-old.log" 2>&1 &
        trace_pid=$!
        track_helper "$trace_pid"
    fi
    sleep 0.5
    hup_ms=$(now_ms)
    kill -HUP "$master"
    victim=""
    for ((t = 0; t < 2000; t++)); do
        victim=$(sed -n 's/.*generation 2 (pid \([0-9]*\),.*) ready in .*/\1/p;T;q' "$dir/server.log")
        [[ -n $victim ]] && break
        sleep 0.01
    done
    [[ -n $victim ]] || die "generation 2 did not become ready (see $dir/server.log)"
    sleep 0.5
    # Who holds which client connection, just before the kill. (Not `find /proc/PID/fd | wc -l`:
    # a socket closing mid-walk fails find, and with pipefail and -e that ended the script,
    # silently, after its first round.)
    starts_before=$(grep -c 'starting (' "$dir/server.log" || true)
    snapshot_ms=$(now_ms)
    ss -Htnp state established "( sport = :$port )" >"$dir/owners.txt" 2>/dev/null || true
    kill_ms=$(now_ms)
    kill -KILL "$victim"
    sleep 3
    starts_after=$(grep -c 'starting (' "$dir/server.log" || true)
    wait "$perf_pid" || true
    forget_helper "$perf_pid"
    if [[ ${TRACE:-0} == 1 ]]; then
        wait "$trace_pid" || true
        forget_helper "$trace_pid"
    fi
    wait "$ka" || true
    wait "$cl" || true
    forget_helper "$ka"
    forget_helper "$cl"
    kill_group "$master" 15
    perf script -i "$dir/perf.data" -F pid,time,event,trace >"$dir/perf.txt" 2>/dev/null || die "perf script failed (see $dir/perf.log)"
    if [[ ${TRACE:-0} == 1 ]]; then
        perf script -i "$dir/old.data" -F pid,tid,time,event,trace >"$dir/old.txt" 2>/dev/null || die "perf script failed (see $dir/perf-old.log)"
        echo "round $round ($dir):" >&2
        python3 "$here/faults/successor-kill-trace.py" "$dir" "$victim" >&2 || true
    fi
    python3 - "$dir" "$kill_ms" "$victim" "$old" "$((kill_ms - snapshot_ms))" "$hup_ms" <<'EOF'
import json, re, sys
d, kill, victim, old, snapshot_ms, hup = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
ka, close = json.load(open(f"{d}/ka.json")), json.load(open(f"{d}/close.json"))

# The system calls traced (pid, time, event, arguments or return value), read once.
calls = []
for line in open(f"{d}/perf.txt"):
    m = re.match(r"\s*(\d+)\s+([\d.]+):\s+syscalls:(\S+):\s*(.*)", line)
    if m:
        calls.append((m.group(1), float(m.group(2)), m.group(3), m.group(4)))
def old_accepted(pid, event, rest):  # the old generation's accept4(2) returned a connection
    return event == "sys_exit_accept4" and pid == old and int(rest, 16) < 1 << 31

# The accept gap, in the kernel's own clock: the kill(2) of the victim, then the old
# generation's first accept4(2) that returned a connection.
killed_at, first_accept = None, None
for pid, t, event, rest in calls:
    if event == "sys_enter_kill" and killed_at is None and re.search(r"pid: 0x0*%x," % int(victim), rest) and "sig: 0x00000009" in rest:
        killed_at = t
    elif killed_at is not None and old_accepted(pid, event, rest):
        first_accept = t
        break
accept_gap = round((first_accept - killed_at) * 1000) if killed_at and first_accept else -1
# Its accepts in the snapshot's time before the kill.
old_accepts = sum(1 for pid, t, event, rest in calls
                  if killed_at and killed_at - int(snapshot_ms) / 1000 <= t < killed_at and old_accepted(pid, event, rest))
taken_back, lent_lost = 0, 0
for line in open(f"{d}/server.log"):
    m = re.search(r"took back (\d+) connection\(s\) handed to the next generation.*; (\d+) it had read from", line)
    if m:
        taken_back, lent_lost = int(m.group(1)), int(m.group(2))

# Who had each client connection (by the client's port) just before the kill. A connection lent
# by the old generation is in both tables: it counts as the killed generation's.
owner = {}
for line in open(f"{d}/owners.txt"):
    f = line.split()
    peer = f[3].rsplit(":", 1)[1]
    pids = re.findall(r"pid=(\d+),", line)
    owner[peer] = victim if victim in pids else pids[0] if pids else None
held = sum(1 for p in owner.values() if p == victim)
failed = {"held": 0, "new": 0, "unowned": 0, "other": 0}
def count_failure(port, per_request):
    p = owner.get(port)
    failed["held" if p == victim else "other" if p else "new" if per_request else "unowned"] += 1

t0 = int(open(f"{d}/close.ready").read().split()[0])
pids, sent_answered = set(), []   # (sent, answered) in unix ms, every connection-per-request answer
for name in ("ka-failed.txt", "close-requests.txt"):
    for line in open(f"{d}/{name}"):
        if line.startswith("#"):
            continue
        f = line.split()   # SENT_MS TOOK_MS SLOT PREV_PID PID KIND PORT
        if f[5] != "ok":
            count_failure(f[6], name == "close-requests.txt")
        elif name == "close-requests.txt":
            sent, answered = t0 + int(f[0]), t0 + int(f[0]) + int(f[1])
            sent_answered.append((sent, answered))
            if kill <= answered < kill + 3000:
                pids.add(f[4])
def gap(lo, hi):   # the longest time in [lo, hi) without an answer
    ts = sorted(a for _, a in sent_answered if lo <= a < hi)
    return max(b - a for a, b in zip([lo] + ts, ts + [hi]))
def wait(lo, hi):  # the longest a connection opened in [lo, hi) waited for its answer
    return max((a - s for s, a in sent_answered if lo <= s < hi), default=-1)
def first_answer(at):  # from `at` to the first answer to a connection opened at or after it
    return min((a for s, a in sent_answered if s >= at), default=None)
first = first_answer(kill)
marks = {m: first_answer(m) for m in range(hup - 2000, hup, 100)}
steady = sorted(a - m for m, a in marks.items() if a is not None and a < hup)
first_steady = steady[len(steady) // 2] if steady else -1
kinds = ",".join(f"{k}:{n}" for k, n in sorted(ka["failure_kinds"].items()) if n) or "-"
print(f"held={held} snapshot_ms={snapshot_ms} failed_held={failed['held']} failed_new={failed['new']} failed_unowned={failed['unowned']} "
      f"failed_other={failed['other']} old_accepts_before_kill={old_accepts} taken_back={taken_back} lent_lost={lent_lost} "
      f"ka_failed={ka['failures']} close_failed={close['failures']} ka_kinds={kinds} accept_gap_ms={accept_gap} "
      f"first_answer_ms={first - kill if first else -1} first_answer_ms_steady={first_steady} gap_ms_before={gap(kill - 1000, kill)} gap_ms_after={gap(kill, kill + 1000)} "
      f"wait_ms_before={wait(kill - 3000, kill)} wait_ms_after={wait(kill, kill + 3000)} "
      f"served_after_kill={'+'.join(sorted(pids))}", end=" ")
EOF
    echo "started_after_kill=$((starts_after - starts_before)) round=$round"
done
