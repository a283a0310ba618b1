#!/usr/bin/env python3
"""Per-upgrade numbers of runs of the scale section of Benchmarks/run.sh.

  analyze.py run RUNDIR      reads RUNDIR/{timeline.txt,summary.json,triggers.txt,ss.txt,ss-*.txt},
                             writes RUNDIR/upgrades.json and prints one line per upgrade
  analyze.py table WORKDIR   a markdown table per number of connections over WORKDIR/runs/*
                             (medians over the upgrades of every run of a system); exit 1 if a
                             request failed in a run of a system in GATE_SYSTEMS (env, default
                             "baton"), 0 otherwise

Per upgrade i, with T the time of the SIGHUP and W the next SIGHUP (or the end of the measured
period), from the load client's 100 ms buckets:
  reconnects      connections the client had to replace in [T, W): the server closed them
                  (`Connection: close`, or closed while idle) or a request on them failed
  server_closes   the part of those the server closed without a failed request
  failed          failed requests in [T, W)
  takeover        the first bucket after T in which a pid answers that had not answered before T
  p99_around      p99 of the requests completed in [takeover - 0.5 s, takeover + 0.5 s)
  p99_steady      median of the per-second p99 of the 2 s before T
  ratio           p99_around / p99_steady
  p99_worst_1s    the highest p99 of the 1 s windows (in 100 ms steps) within [T, min(W, T + 4 s)):
                  the dip wherever it falls (at 4096 connections the old generation's connections
                  can move over more than a second after the takeover); ratio_worst against steady
  ss_before       server-side ESTABLISHED connections on the port just before T (ss snapshot)
  ss_min          the lowest ss count sampled in [T, W) (sampled every SS_INTERVAL)
  kept            connections in the snapshot before T still ESTABLISHED in the snapshot before the
                  next SIGHUP (or at the end): those that lived across the upgrade. A connection is
                  its peer address and its socket cookie (`ss -e` sk:), so a new connection that
                  reuses a 4-tuple does not count
"""
import json
import os
import statistics
import sys


def load_timeline(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            parts = line.split()
            row = {
                "ms": int(parts[0]), "ok": int(parts[1]), "fail": int(parts[2]), "reconnects": int(parts[3]),
                "p50": float(parts[4]), "p99": float(parts[5]), "max": float(parts[6]),
                "pids": {}, "fails": {}, "reasons": {}, "hist": {},
            }
            for field in parts[7:]:
                key, _, value = field.partition("=")
                if not value:
                    continue
                for kv in value.split(","):
                    k, _, n = kv.partition(":")
                    if key in ("pids", "hist"):
                        row[key][int(k)] = int(n)
                    else:
                        row[key][k] = int(n)
            rows.append(row)
    return rows


def percentile(hist, p):
    """p-th percentile (ms) of a merged {low_us: count} histogram: the bin's lower bound, like the
    client's own bins (≈3 % wide), so the values are comparable with each other."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, int(p / 100 * total + 0.5))
    acc = 0
    for low in sorted(hist):
        acc += hist[low]
        if acc >= rank:
            return low / 1000
    return max(hist) / 1000


def merged(rows, lo, hi):
    h = {}
    for r in rows:
        if lo <= r["ms"] < hi:
            for k, n in r["hist"].items():
                h[k] = h.get(k, 0) + n
    return h


def read_triggers(path):
    start = end = None
    hups = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p:
                continue
            if p[0] == "start":
                start = int(p[1])
            elif p[0] == "end":
                end = int(p[1])
            elif p[0] == "sighup":
                hups.append(int(p[1]))
    return start, end, hups


def read_ss(rundir):
    samples = []
    path = os.path.join(rundir, "ss.txt")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) == 2:
                    samples.append((int(p[0]), int(p[1])))
    return samples


def snapshot(rundir, name):
    path = os.path.join(rundir, f"ss-{name}.txt")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return {line.strip() for line in f if line.strip()}


def analyze_run(rundir):
    rows = load_timeline(os.path.join(rundir, "timeline.txt"))
    with open(os.path.join(rundir, "summary.json")) as f:
        summary = json.load(f)
    start, end, hups = read_triggers(os.path.join(rundir, "triggers.txt"))
    if end is None:
        end = summary["start_ms"] + int(summary["duration_s"] * 1000)
    ss = read_ss(rundir)
    ups = []
    for i, t in enumerate(hups):
        w = hups[i + 1] if i + 1 < len(hups) else end
        tb = t - t % 100  # the bucket in which the SIGHUP fell
        win = [r for r in rows if tb <= r["ms"] < w]
        before = {p for r in rows if r["ms"] < tb for p in r["pids"]}
        takeover, new_pid = None, None
        for r in win:
            new = [p for p in r["pids"] if p not in before and p > 0]
            if new:
                takeover, new_pid = r["ms"], new[0]
                break
        fails = {}
        reasons = {}
        for r in win:
            for k, n in r["fails"].items():
                fails[k] = fails.get(k, 0) + n
            for k, n in r["reasons"].items():
                reasons[k] = reasons.get(k, 0) + n
        steady = [percentile(merged(rows, t - 2000 + 1000 * s, t - 1000 + 1000 * s), 99) for s in range(2)]
        steady = [x for x in steady if x is not None]
        p99_steady = statistics.median(steady) if steady else None
        p99_around = percentile(merged(rows, takeover - 500, takeover + 500), 99) if takeover is not None else None
        worst = None  # the worst p99 of the 1 s windows (100 ms steps) within [T, min(W, T + 4 s))
        for a in range(tb, min(w, t + 4000) - 999, 100):
            v = percentile(merged(rows, a, a + 1000), 99)
            if v is not None and (worst is None or v > worst):
                worst = v
        ss_before = next((n for ms, n in reversed(ss) if ms < t), None)
        in_win = [n for ms, n in ss if t <= ms < w]
        snap_a = snapshot(rundir, f"before-{i + 1}")
        snap_b = snapshot(rundir, f"before-{i + 2}") if i + 1 < len(hups) else snapshot(rundir, "end")
        ok_steady = [r["ok"] for r in rows if t - 2000 <= r["ms"] < tb]
        ups.append({
            "upgrade": i + 1,
            "sighup_ms": t,
            "window_s": (w - t) / 1000,
            "new_pid": new_pid,
            "takeover_after_ms": (takeover - tb) if takeover is not None else None,
            "requests_ok": sum(r["ok"] for r in win),
            "failed": sum(r["fail"] for r in win),
            "fail_kinds": fails,
            "reconnects": sum(r["reconnects"] for r in win),
            "server_closes": reasons.get("close_header", 0) + reasons.get("closed_idle", 0),
            "reconnect_reasons": reasons,
            "p99_steady_ms": p99_steady,
            "p99_around_ms": p99_around,
            "ratio": (p99_around / p99_steady) if p99_around is not None and p99_steady else None,
            "p99_worst_1s_ms": worst,
            "ratio_worst": (worst / p99_steady) if worst is not None and p99_steady else None,
            "ok_per_100ms_steady": statistics.median(ok_steady) if ok_steady else None,
            "ok_per_100ms_min": min((r["ok"] for r in win), default=None),
            "ss_before": len(snap_a) if snap_a is not None else ss_before,
            "ss_min": min(in_win) if in_win else None,
            "kept": len(snap_a & snap_b) if snap_a is not None and snap_b is not None else None,
        })
    out = {"rundir": rundir, "summary": summary, "upgrades": ups}
    with open(os.path.join(rundir, "upgrades.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def fmt(x, digits=1):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def print_run(out):
    s = out["summary"]
    print(f"{out['rundir']}: {s['requests_ok']} ok, {s['failures']} failed {s['failure_kinds']}, "
          f"{s['reconnects']} reconnects {s['reconnect_reasons']}, p99 {s['p99_ms']:.2f} ms, ramp {s['ramp_ms']} ms, "
          f"client CPU {100 * s.get('client_cpu_s', 0) / s['duration_s']:.0f} %")
    print("  upg  new_pid  takeover  reconnects  closes  failed  ss_before  ss_min  kept   p99_steady  p99_around  ratio  worst_1s  ratio")
    for u in out["upgrades"]:
        print(f"  {u['upgrade']:>3}  {fmt(u['new_pid']):>7}  {fmt(u['takeover_after_ms']):>6}ms  {u['reconnects']:>10}  "
              f"{u['server_closes']:>6}  {u['failed']:>6}  {fmt(u['ss_before']):>9}  {fmt(u['ss_min']):>6}  {fmt(u['kept']):>4}   "
              f"{fmt(u['p99_steady_ms'], 2):>10}  {fmt(u['p99_around_ms'], 2):>10}  {fmt(u['ratio'], 2):>5}"
              f"  {fmt(u['p99_worst_1s_ms'], 2):>8}  {fmt(u['ratio_worst'], 2):>5}")


def med(values, digits=1):
    v = [x for x in values if x is not None]
    return fmt(statistics.median(v), digits) if v else "–"


def table(workdir):
    gate = set(os.environ.get("GATE_SYSTEMS", "baton").split())
    runs = []
    base = os.path.join(workdir, "runs")
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name, "upgrades.json")
        meta = os.path.join(base, name, "run.json")
        if os.path.exists(path) and os.path.exists(meta):
            with open(path) as f:
                out = json.load(f)
            with open(meta) as f:
                out["meta"] = json.load(f)
            runs.append(out)
    failed_gate = False
    by_conns = {}
    for r in runs:
        by_conns.setdefault(r["meta"]["connections"], []).append(r)
    for conns in sorted(by_conns):
        print(f"\n### {conns} keep-alive connections\n")
        print("| system | runs | upgrades | failed requests | reconnects per upgrade | server closes per upgrade "
              "| connections kept across an upgrade | lowest `ss` count in an upgrade | p99 steady (ms) "
              "| p99 ±0.5 s around takeover (ms) | ratio | worst 1 s p99 in 4 s after SIGHUP (ms) | ratio | req/s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        systems = {}
        for r in by_conns[conns]:
            systems.setdefault(r["meta"]["system"], []).append(r)
        for sysname, rs in systems.items():
            ups = [u for r in rs for u in r["upgrades"]]
            failed = sum(r["summary"]["failures"] for r in rs)
            kinds = {}
            for r in rs:
                for k, n in r["summary"]["failure_kinds"].items():
                    if n:
                        kinds[k] = kinds.get(k, 0) + n
            if failed and sysname in gate:
                failed_gate = True
            ftxt = str(failed) + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + ")" if kinds else "")
            rps = statistics.median(r["summary"]["rps"] for r in rs)
            print(f"| {sysname} | {len(rs)} | {len(ups)} | {ftxt} | {med([u['reconnects'] for u in ups], 0)} "
                  f"| {med([u['server_closes'] for u in ups], 0)} | {med([u['kept'] for u in ups], 0)} of {conns} "
                  f"| {med([u['ss_min'] for u in ups], 0)} | {med([u['p99_steady_ms'] for u in ups], 2)} "
                  f"| {med([u['p99_around_ms'] for u in ups], 2)} | {med([u['ratio'] for u in ups], 2)} "
                  f"| {med([u['p99_worst_1s_ms'] for u in ups], 2)} | {med([u['ratio_worst'] for u in ups], 2)} | {rps:.0f} |")
    return 1 if failed_gate else 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        print_run(analyze_run(sys.argv[2]))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "table":
        return table(sys.argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
