#!/usr/bin/env python3
"""Time from an upgrade trigger to the first answer from a new pid.

Used by Benchmarks/run.sh. Polls GET /hello on 127.0.0.1:PORT with a new connection every ~INTERVAL ms
and reads the "pid" of each JSON answer. Once it has an answer it creates READY_FILE (its content:
the pid seen). The caller then writes the trigger time (unix seconds, e.g. bash's $EPOCHREALTIME,
taken just before it sends the signal) to TRIGGER_FILE. The first answer after that from a pid
never seen before the trigger ends the run. Prints one line:

    CMP_TTFA ms=<first new pid time - trigger time> old=<pid> new=<pid> failed=<n> polls=<n>

(failed: refused/reset/timed-out polls after the trigger), or "CMP_TTFA ms=nan …" if no new pid
answered within TIMEOUT seconds after the trigger.
"""
import json
import os
import socket
import sys
import time


def ask(port, timeout=1.0):
    """One request on a new connection; returns the pid, or raises OSError/ValueError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if not 200 <= status < 300:
        raise ValueError(f"status {status}")
    return int(json.loads(body)["pid"])


def main():
    port, ready_file, trigger_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    interval = float(os.environ.get("POLL_INTERVAL_MS", "5")) / 1000
    timeout = float(os.environ.get("POLL_TIMEOUT", "30"))
    start = time.time()
    seen = set()
    trigger = None
    failed = polls = 0
    next_poll = time.monotonic()
    while True:
        if trigger is None and os.path.exists(trigger_file):
            with open(trigger_file) as f:
                text = f.read().strip()
            if text:
                trigger = float(text)
        now = time.time()
        if trigger is None and now - start > timeout + 30:
            print("CMP_TTFA ms=nan old=? new=? failed=0 polls=%d (no trigger)" % polls)
            return 1
        if trigger is not None and now - trigger > timeout:
            print("CMP_TTFA ms=nan old=%s new=? failed=%d polls=%d" % (",".join(map(str, sorted(seen))), failed, polls))
            return 1
        t_sent = time.time()
        try:
            pid = ask(port)
            t_answer = time.time()
        except (OSError, ValueError, IndexError, KeyError):
            pid = None
            if trigger is not None and t_sent >= trigger:
                failed += 1
        polls += 1
        if pid is not None:
            # An answer to a request sent before the trigger cannot come from a new generation
            # (none exists yet): count it as old.
            if trigger is None or t_sent < trigger:
                if not seen:
                    with open(ready_file + ".tmp", "w") as f:
                        f.write(str(pid))
                    os.rename(ready_file + ".tmp", ready_file)
                seen.add(pid)
            elif pid not in seen:
                print("CMP_TTFA ms=%.1f old=%s new=%d failed=%d polls=%d" % (
                    (t_answer - trigger) * 1000, ",".join(map(str, sorted(seen))), pid, failed, polls))
                return 0
        next_poll += interval
        delay = next_poll - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_poll = time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
