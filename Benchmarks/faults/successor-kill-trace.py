"""Reads the trace `TRACE=1 successor-kill.sh` leaves in a round's folder DIR (the kill of
VICTIM_PID in perf.txt, the old generation's system calls in old.txt): times in ms from the
SIGKILL of the new generation (kernel clock). Prints where the accept gap went (the killed
process's last thread starting to exit, its parent told of its death: the SIGCHLD, sent as its
pidfd wakes; the master's wait4 reaping it), the first accept after the kill, the first read and
write on a connection accepted after it, and each event loop thread's turns (from epoll_wait's
return to its next call) from LO to HI ms (default -300 to 200): their length and how many reads
and writes they made, of which on connections accepted after the kill.

    successor-kill-trace.py DIR VICTIM_PID [LO HI]"""
import collections, re, sys

d, victim = sys.argv[1], sys.argv[2]
lo, hi = (float(sys.argv[3]), float(sys.argv[4])) if len(sys.argv) > 4 else (-300.0, 200.0)
# The system-wide trace, read once: (pid, time in s, event, the rest of the line).
system = []
for line in open(f"{d}/perf.txt"):
    m = re.match(r"\s*(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)", line)
    if m:
        system.append((m.group(1), float(m.group(2)), m.group(3), m.group(4)))
kill = next((t for _, t, event, rest in system if event == "syscalls:sys_enter_kill"
             and re.search(r"pid: 0x0*%x," % int(victim), rest) and "sig: 0x00000009" in rest), None)
if kill is None:
    sys.exit("no SIGKILL of the new generation in the trace")
exited, notified, reaped = [], None, None
for pid, at_s, event, rest in system:
    if at_s < kill:
        continue
    t = (at_s - kill) * 1000
    if event == "sched:sched_process_exit" and pid == victim:
        exited.append(t)
    elif event == "signal:signal_generate" and pid == victim and rest.startswith("sig=17 ") and notified is None:
        notified = t
    elif event == "syscalls:sys_exit_wait4" and int(rest.split()[-1], 16) == int(victim) and reaped is None:
        reaped = t
at = lambda t: "-" if t is None else f"{t:.1f}"
print(f"the killed generation: its last thread began to exit at {at(max(exited, default=None))} ms; "
      f"its parent told (SIGCHLD, its pidfd readable) {at(notified)} ms; reaped by the master {at(reaped)} ms")
events = []
for line in open(f"{d}/old.txt"):
    m = re.match(r"\s*\d+/\s*(\d+)\s+([\d.]+):\s+syscalls:(\S+):\s*(.*)", line)
    if m:
        fd = re.search(r"fd: 0x([0-9a-f]+)", m.group(4))
        events.append(((float(m.group(2)) - kill) * 1000, int(m.group(1)), m.group(3), m.group(4), int(fd.group(1), 16) if fd else None))
events.sort()
accepted = {}  # fd -> when it was accepted after the kill
first_read, first_write = {}, {}
for t, _, event, rest, fd in events:
    if t < 0:
        continue
    if event == "sys_exit_accept4" and int(rest, 16) < 1 << 31:
        accepted.setdefault(int(rest, 16), t)
    elif event == "sys_enter_read" and fd in accepted and fd not in first_read:
        first_read[fd] = t
    elif event in ("sys_enter_write", "sys_enter_writev") and fd in accepted and fd in first_read and fd not in first_write:
        first_write[fd] = t
ms = lambda values, n=1: ", ".join(f"{v:.1f}" for v in sorted(values)[:n]) or "-"
print(f"after the kill: {len(accepted)} accepted; first accept {ms(accepted.values())} ms, "
      f"first read on one {ms(first_read.values())} ms, first write to one {ms(first_write.values())} ms")
loops = collections.Counter(tid for t, tid, event, _, _ in events if event == "sys_exit_epoll_wait" and lo <= t <= hi)
for tid, _ in loops.most_common(3):
    print(f"event loop thread {tid}: turns (start ms, length ms, reads/writes, of which on connections accepted after the kill)")
    start = None
    for t, thread, event, rest, fd in events:
        if thread != tid or not lo <= t <= hi:
            continue
        if event == "sys_exit_epoll_wait":
            start, counts = t, [0, 0, 0, 0]
        elif start is not None and event == "sys_enter_epoll_wait":
            if counts[0] or counts[1]:
                print(f"  {start:8.1f} {t - start:6.1f}  {counts[0]}/{counts[1]}, {counts[2]}/{counts[3]}")
            start = None
        elif start is not None and event == "sys_enter_read":
            counts[0] += 1
            counts[2] += fd in accepted and t >= 0
        elif start is not None and event in ("sys_enter_write", "sys_enter_writev"):
            counts[1] += 1
            counts[3] += fd in accepted and t >= 0
