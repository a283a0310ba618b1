#!/usr/bin/env python3
"""One canary run of Benchmarks/run.sh, from its raw output.

    analyze.py RUNDIR T_RELOAD_MS T_VERDICT_MS SPREAD_MS

RUNDIR holds the load client's timeline.txt (per 100 ms: answers per pid, failures by kind) and
summary.json, and the master's server.log. Prints one line of key=value fields for results.txt:

- canary_pid, baseline_pid: from the master's log ("canary: generation 2 (pid …" and the
  generation it takes its share from);
- share_pct: the canary's share of the answers from its first answer + SPREAD + 1 s (the
  keep-alive connections it gets move over SPREAD) to T_VERDICT - 500 ms; with an open-loop
  client each connection sends at its own fixed rate, so this is its share of the traffic (the
  canary starts a while after T_RELOAD: staging the release yields to the requests on a busy core);
- canary_answers, baseline_answers: 200 answers by each between T_RELOAD and T_VERDICT;
- status_failures, other_failures: non-2xx answers and every other kind of failure over the run;
- window_requests: every answer or failure between T_RELOAD and T_VERDICT.
"""
import json
import os
import re
import sys


def main():
    run, t_reload, t_verdict, spread = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    log = open(os.path.join(run, "server.log"), errors="replace").read()
    m = re.search(r"canary: generation \d+ \(pid (\d+), [^)]*\) ready in \S+ \S+; it takes \d+% of the traffic from generation \d+ \(pid (\d+)", log)
    canary, baseline = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    buckets = []
    for line in open(os.path.join(run, "timeline.txt")):
        if not line.startswith("#"):
            buckets.append(line.split())
    first = next((int(parts[0]) for parts in buckets if f"pids=" in " ".join(parts)
                  and any(item.split(":")[0] == str(canary) for item in dict(p.split("=", 1) for p in parts[1:] if "=" in p).get("pids", "").split(",") if item)), None)
    share_from, share_to = (first + spread + 1000 if first else t_verdict), t_verdict - 500
    c_share = b_share = c_all = b_all = window = 0
    for parts in buckets:
        ms = int(parts[0])
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        pids = {}
        for item in filter(None, fields.get("pids", "").split(",")):
            pid, n = item.split(":")
            pids[int(pid)] = int(n)
        fails = sum(int(item.split(":")[1]) for item in filter(None, fields.get("fails", "").split(",")))
        if t_reload <= ms < t_verdict:
            window += sum(pids.values()) + fails
            c_all += pids.get(canary, 0)
            b_all += pids.get(baseline, 0)
        if share_from <= ms < share_to:
            c_share += pids.get(canary, 0)
            b_share += pids.get(baseline, 0)
    summary = json.load(open(os.path.join(run, "summary.json")))
    kinds = summary.get("failure_kinds", {})
    status = int(kinds.get("status", 0))
    other = sum(int(v) for k, v in kinds.items() if k != "status")
    share = f"{100 * c_share / (c_share + b_share):.2f}" if c_share + b_share > 0 and share_to > share_from else "-"
    print(f"canary_pid={canary or 0} baseline_pid={baseline or 0} canary_after_ms={(first - t_reload) if first else -1} share_pct={share} share_answers={c_share + b_share} "
          f"canary_answers={c_all} baseline_answers={b_all} window_requests={window} status_failures={status} "
          f"other_failures={other} requests={int(summary.get('requests_ok', 0))}")


if __name__ == "__main__":
    main()
