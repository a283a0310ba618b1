#!/usr/bin/env python3
"""Plots requests/s per Baton worker generation (pid) during upgrades under load.

usage: plot_timeline.py WORKDIR OUT.png [SYSTEM] [ROUND]

Reads WORKDIR/runs/timeline-{keepalive,close}-SYSTEM-rROUND.txt (lines "<bucket start, unix ms>
<pid or statusNNN> <count>", 100 ms buckets, written by compare.lua), the trigger times in
triggers-MODE-SYSTEM-rROUND.txt and the wrk summary in upgrade-MODE-SYSTEM-rROUND.txt.
"""
import collections
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BUCKET_S = 0.1


def load(workdir, mode, system, rnd):
    base = f"{workdir}/runs"
    per_pid = collections.defaultdict(dict)  # pid -> {bucket_ms: count}
    bad = collections.Counter()
    with open(f"{base}/timeline-{mode}-{system}-r{rnd}.txt") as f:
        for line in f:
            ms, who, n = line.split()
            if who.startswith("status"):
                bad[int(ms)] += int(n)
            else:
                per_pid[who][int(ms)] = int(n)
    start, triggers = None, []
    with open(f"{base}/triggers-{mode}-{system}-r{rnd}.txt") as f:
        for line in f:
            kind, t = line.split()
            if kind == "start":
                start = float(t)
            elif kind == "trigger":
                triggers.append(float(t))
    summary = {}
    with open(f"{base}/upgrade-{mode}-{system}-r{rnd}.txt") as f:
        for line in f:
            if line.startswith("CMP_RESULT"):
                summary = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
    return per_pid, bad, start, triggers, summary


def panel(ax, workdir, mode, system, rnd, title):
    per_pid, bad, start, triggers, summary = load(workdir, mode, system, rnd)
    # order generations by first appearance
    pids = sorted(per_pid, key=lambda p: min(per_pid[p]))
    all_buckets = sorted({b for d in per_pid.values() for b in d} | set(bad))
    if start is None:
        start = all_buckets[0] / 1000
    lo, hi = all_buckets[0], all_buckets[-1]
    xs = [(b - start * 1000) / 1000 for b in range(lo, hi + 1, 100)]
    cmap = plt.get_cmap("tab10")
    buckets = list(range(lo, hi + 1, 100))
    base = [0.0] * len(xs)
    for i, pid in enumerate(pids):
        ys = [per_pid[pid].get(b, 0) / BUCKET_S for b in buckets]
        top = [a + b for a, b in zip(base, ys)]
        first, last = min(per_pid[pid]), max(per_pid[pid])
        where = [first <= b <= last + 100 for b in buckets]
        ax.fill_between(xs, base, top, step="post", where=where, color=cmap(i % 10), alpha=0.75, lw=0,
                        label=f"generation {i + 1} (pid {pid})")
        base = top
    total = base
    ax.plot(xs, total, drawstyle="steps-post", color="0.2", lw=0.7, label="all generations")
    if bad:
        bx = [(b - start * 1000) / 1000 for b in sorted(bad)]
        by = [bad[b] / BUCKET_S for b in sorted(bad)]
        ax.scatter(bx, by, color="red", marker="x", zorder=5, label="non-2xx answers")
    for j, t in enumerate(triggers):
        ax.axvline(t - start, color="black", ls="--", lw=0.9, alpha=0.7,
                   label="SIGHUP (upgrade)" if j == 0 else None)
    errors = int(sum(summary.get(k, 0) for k in ("connect", "read", "write", "timeout", "non2xx")))
    ax.set_title(f"{title}: {len(triggers)} upgrades, {int(summary.get('requests', 0)):,} requests, "
                 f"{errors} failed", fontsize=11)
    ax.set_ylabel("requests/s (100 ms buckets)")
    ax.set_ylim(bottom=0, top=max(total) * 1.55 if total else 1)
    ax.set_xlim(0, xs[-1] + 0.1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", ncol=4, fontsize=7.5, framealpha=0.9)


def main():
    workdir, out = sys.argv[1], sys.argv[2]
    system = sys.argv[3] if len(sys.argv) > 3 else "baton"
    rnd = sys.argv[4] if len(sys.argv) > 4 else "1"
    knobs = {}
    with open(f"{workdir}/meta.txt") as f:
        for line in f:
            if line.startswith("knobs="):
                knobs = dict(kv.split("=", 1) for kv in line[6:].split())
    conns = knobs.get("CONNECTIONS", "?")
    fig, axes = plt.subplots(2, 1, figsize=(12, 7.5), sharex=True)
    panel(axes[0], workdir, "keepalive", system, rnd, f"keep-alive, {conns} connections")
    panel(axes[1], workdir, "close", system, rnd, f"Connection: close (a new connection per request), {conns} connections")
    axes[1].set_xlabel("seconds since the start of the run")
    fig.suptitle("Baton hello, an upgrade (SIGHUP) every %s s under wrk load: requests/s served by each worker "
                 "generation" % knobs.get("INTERVAL", "?"), fontsize=12)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
