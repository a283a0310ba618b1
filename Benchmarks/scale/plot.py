#!/usr/bin/env python3
"""Plots failed requests per upgrade against connections, from Benchmarks/run.sh's scale section.

usage: plot.py RESULTS.json OUT.png

Reads RESULTS.json (WORKDIR/scale-results.json, written by Benchmarks/report.py). One line per system and mode: the median over
runs (markers), each run as a small faint dot; pinned runs solid, unpinned dashed. x: connections
(log scale). y: symlog, linear between 0 and 1 and logarithmic above, so that 0 failed requests
(the goal) is drawn on the axis instead of vanishing from a log scale.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

NAMES = {"baton": "Baton hello", "tableflip": "gin + tableflip"}
MODES = {"keep-alive": "keep-alive", "close": "Connection: close"}
COLORS = {("baton", "keep-alive"): "#1f4e9c", ("baton", "close"): "#6fa8dc",
          ("tableflip", "keep-alive"): "#c55a11", ("tableflip", "close"): "#f4b183"}
MARKERS = {"keep-alive": "o", "close": "s"}
STYLES = {"pinned": "-", "unpinned": "--"}


def main():
    results, out = sys.argv[1], sys.argv[2]
    with open(results) as f:
        data = json.load(f)
    meta, confs, runs = data["meta"], data["configurations"], data["runs"]
    knobs = dict(kv.split("=", 1) for kv in meta.get("knobs", "").split() if "=" in kv)

    fig, ax = plt.subplots(figsize=(10, 6.2))
    lines = {}
    for c in confs:
        lines.setdefault((c["system"], c["mode"], c["pinning"]), []).append(c)
    top = 1.0
    xs_all = set()
    for i, ((system, mode, pin), cs) in enumerate(lines.items()):
        # each line nudged sideways a little, so that lines at 0 do not hide each other
        nudge = 1 + 0.03 * (i - (len(lines) - 1) / 2)
        cs = sorted(cs, key=lambda c: c["connections"])
        color = COLORS.get((system, mode), None)
        pts = [(c["connections"], c["failed_per_upgrade_median"]) for c in cs if c["failed_per_upgrade_median"] is not None]
        if pts:
            xs, ys = zip(*pts)
            xs_all.update(xs)
            xs = [x * nudge for x in xs]
            ax.plot(xs, ys, STYLES.get(pin, ":"), color=color, marker=MARKERS.get(mode, "o"), ms=6, lw=1.8,
                    label=f"{NAMES.get(system, system)}, {MODES.get(mode, mode)}, {pin}")
            top = max(top, *ys)
        for r in runs:
            if (r["system"], r["mode"], r["pinning"]) == (system, mode, pin) and r["failed_per_upgrade"] is not None:
                ax.plot(r["connections"] * nudge, r["failed_per_upgrade"], marker=MARKERS.get(mode, "o"), ms=3.5,
                        color=color, alpha=0.35, ls="none")
                top = max(top, r["failed_per_upgrade"])
                xs_all.add(r["connections"])

    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1, linscale=0.6)
    ax.set_ylim(-0.15, top * 2.5)
    if xs_all:
        xs_sorted = sorted(xs_all)
        ax.xaxis.set_major_locator(FixedLocator(xs_sorted))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{x:,}" for x in xs_sorted])
        ax.set_xlim(xs_sorted[0] / 1.5, xs_sorted[-1] * 1.5)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel("concurrent client connections (log scale)")
    ax.set_ylabel("failed requests per upgrade\n(symlog: linear from 0 to 1, log above; 0 = none failed)")
    ax.grid(alpha=0.3, which="major")
    ax.legend(loc="upper left", fontsize=8.5, framealpha=0.9,
              title="median over runs (faint dots: single runs;\nlines nudged sideways to keep overlaps visible)", title_fontsize=8.5)
    runs_n = knobs.get("RUNS", "?")
    fig.suptitle(f"Failed requests per upgrade: SIGHUP every {knobs.get('INTERVAL', '?')} s during "
                 f"{knobs.get('DURATION', '?')} s of load, {runs_n} run(s) per point", fontsize=12)
    ax.set_title(f"{meta.get('nproc', '?')} cores, {meta.get('kernel', '?')}, {meta.get('date', '?')}; pinned: server on core "
                 f"{knobs.get('SERVER_CPU', '?')}, client on core {knobs.get('CLIENT_CPU', '?')} (solid); "
                 "unpinned: dashed", fontsize=8.5, color="0.3")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
