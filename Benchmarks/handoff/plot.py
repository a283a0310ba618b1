#!/usr/bin/env python3
"""Plots one run of the scale section of Benchmarks/run.sh.

usage: plot.py RUNDIR [OUT.png]   (default Benchmarks/handoff.png)

Top: requests/s answered by each pid (worker generation), stacked, per 100 ms, with the p99 latency
of each 100 ms bucket on the right axis. Bottom: reconnects per 100 ms (connections the server
closed, or on which a request failed), failed requests, and the server's ESTABLISHED connections
(`ss`) on the right axis. Vertical lines: the SIGHUPs.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze import load_timeline, read_ss, read_triggers  # noqa: E402


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    rundir = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "handoff.png")
    rows = load_timeline(os.path.join(rundir, "timeline.txt"))
    start, end, hups = read_triggers(os.path.join(rundir, "triggers.txt"))
    ss = read_ss(rundir)
    meta = {}
    if os.path.exists(os.path.join(rundir, "run.json")):
        with open(os.path.join(rundir, "run.json")) as f:
            meta = json.load(f)
    summary = {}
    with open(os.path.join(rundir, "summary.json")) as f:
        summary = json.load(f)
    t0 = start if start is not None else rows[0]["ms"]

    xs = [(r["ms"] - t0) / 1000 for r in rows]
    pids = []
    for r in rows:
        for p in r["pids"]:
            if p not in pids:
                pids.append(p)
    fig, (ax1, ax3) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    stacks = [[r["pids"].get(p, 0) * 10 for r in rows] for p in pids]
    labels = [f"pid {p}" if p > 0 else "no pid" for p in pids]
    ax1.stackplot(xs, stacks, labels=labels, step="post", alpha=0.85)
    ax1.set_ylabel("requests/s per pid (100 ms buckets)")
    ax2 = ax1.twinx()
    ax2.plot(xs, [r["p99"] if r["ok"] else None for r in rows], color="black", lw=0.8, drawstyle="steps-post", label="p99 per 100 ms")
    ax2.set_yscale("log")
    ax2.set_ylabel("p99 latency (ms, log)")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=7, ncol=4)

    ax3.bar(xs, [r["reconnects"] for r in rows], width=0.1, align="edge", color="tab:orange", label="reconnects per 100 ms")
    fails = [r["fail"] for r in rows]
    if any(fails):
        ax3.bar(xs, fails, width=0.1, align="edge", color="tab:red", label="failed requests per 100 ms")
    ax3.set_ylabel("per 100 ms")
    ax3.set_xlabel("seconds since the start of the measured period")
    ax4 = ax3.twinx()
    if ss:
        ax4.plot([(ms - t0) / 1000 for ms, _ in ss], [n for _, n in ss], color="tab:blue", lw=1, label="ESTABLISHED (ss)")
        ax4.set_ylim(bottom=0)
    ax4.set_ylabel("server connections ESTABLISHED")
    h3, l3 = ax3.get_legend_handles_labels()
    h4, l4 = ax4.get_legend_handles_labels()
    ax3.legend(h3 + h4, l3 + l4, loc="upper left", fontsize=7)
    for ax in (ax1, ax3):
        for i, t in enumerate(hups):
            ax.axvline((t - t0) / 1000, color="grey", ls="--", lw=0.8, label="SIGHUP" if i == 0 and ax is ax1 else None)
    if end is not None:
        ax3.set_xlim(min(xs), (end - t0) / 1000 + 1)
    title = (f"{meta.get('system', '?')}: {meta.get('connections', summary.get('connections'))} keep-alive connections, "
             f"{len(hups)} upgrades: {summary.get('failures', '?')} failed requests, {summary.get('reconnects', '?')} reconnects")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
