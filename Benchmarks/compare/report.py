#!/usr/bin/env python3
"""Turns the raw output of compare.sh into BENCHMARKS.md.

usage: report.py WORKDIR OUT.md PNG_PATH_RELATIVE_TO_OUT
       report.py --startup WORKDIR OUT.md   (compare.sh STARTUP=1: only its own section of OUT.md)

WORKDIR/results.txt has one line per measurement: "<system> <round> <kind> key=value …";
WORKDIR/meta.txt has key=value machine facts. Medians are taken over rounds (and over trials for
the time to a new pid); each value is shown with its ratio to the best *peer* (tableflip, grace,
nginx) for that metric.
"""
import collections
import statistics
import sys

NAMES = {
    "baton": "**Baton** `hello` (embedded master)",
    "naive": "naive restart of `hello` (SIGTERM, start again)",
    "tableflip": "gin + cloudflare/tableflip",
    "grace": "gin + facebookgo/grace",
    "nginx": "nginx binary upgrade",
}
TRIGGERS = {
    "baton": "SIGHUP to the master",
    "naive": "SIGTERM, wait for exit, start a new `hello`",
    "tableflip": "SIGHUP → `upg.Upgrade()`",
    "grace": "SIGUSR2",
    "nginx": "USR2, then WINCH + QUIT to the old master",
}
PEERS = ["tableflip", "grace", "nginx"]
FAIL_KEYS = ["connect", "read", "write", "timeout", "non2xx"]


def parse(workdir):
    meta = {}
    with open(f"{workdir}/meta.txt") as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    rows = collections.defaultdict(list)  # (system, kind) -> [dict]
    order = []
    with open(f"{workdir}/results.txt") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            system, rnd, kind = parts[0], parts[1], parts[2]
            d = {"round": int(rnd)}
            for tok in parts[3:]:
                if "=" in tok:
                    k, _, v = tok.partition("=")
                    try:
                        d[k] = float(v)
                    except ValueError:
                        d[k] = v
            rows[(system, kind)].append(d)
            if system not in order:
                order.append(system)
    systems = [s for s in meta.get("systems", "").split() if s in order] or order
    return meta, rows, systems


def med(values):
    values = [v for v in values if isinstance(v, float) and v == v]
    return statistics.median(values) if values else None


def fmt(v, kind):
    if v is None:
        return "—"
    if kind == "rps":
        return f"{v:,.0f}"
    if kind == "ms":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"
    if kind == "pct":
        return f"{v:.0f}"
    if kind == "mib":
        return f"{v:.1f}"
    if kind == "fail":
        return f"{v:.1f}" if v < 100 else f"{v:,.0f}"
    return str(v)


def cell(v, best, kind):
    """value (ratio to the best peer)."""
    text = fmt(v, kind)
    if v is None or best is None:
        return text
    if best == 0:
        return text if v == 0 else f"{text} (best peer: 0)"
    return f"{text} ({v / best:.2f}×)"


def timeline_dips(workdir, system="baton", rnd=1):
    """Time ranges of the plotted runs where the rate fell under a quarter of the median."""
    out = []
    for mode, label in (("keepalive", "keep-alive"), ("close", "Connection: close")):
        try:
            counts = collections.Counter()
            with open(f"{workdir}/runs/timeline-{mode}-{system}-r{rnd}.txt") as f:
                for line in f:
                    ms, who, n = line.split()
                    if not who.startswith("status"):
                        counts[int(ms)] += int(n)
            start, triggers = None, []
            with open(f"{workdir}/runs/triggers-{mode}-{system}-r{rnd}.txt") as f:
                for line in f:
                    kind, t = line.split()
                    if kind == "start":
                        start = float(t)
                    elif kind == "trigger":
                        triggers.append(float(t) - start)
        except (OSError, ValueError):
            continue
        if not counts or start is None:
            continue
        first, last = min(counts), max(counts)
        buckets = list(range(first + 100, last, 100))  # whole buckets only
        median = statistics.median([counts.get(b, 0) for b in buckets]) if buckets else 0
        low = [b for b in buckets if counts.get(b, 0) < median / 4]
        ranges = []
        for b in low:
            if ranges and b - ranges[-1][1] <= 100:
                ranges[-1][1] = b
            else:
                ranges.append([b, b])
        for a, b in ranges:
            t0, t1 = a / 1000 - start, (b + 100) / 1000 - start
            near = min(triggers, key=lambda t: abs(t - t0)) if triggers else None
            where = f"{t0 - near:+.2f} s from the SIGHUP at {near:.1f} s" if near is not None else "no SIGHUP"
            out.append(f"{label}: {t0:.1f}–{t1:.1f} s, {where}")
    return out


def main():
    workdir, out, png = sys.argv[1], sys.argv[2], sys.argv[3]
    meta, rows, systems = parse(workdir)
    peers = [s for s in PEERS if s in systems]
    knobs = dict(kv.split("=", 1) for kv in meta.get("knobs", "").split() if "=" in kv)

    m = collections.defaultdict(dict)  # system -> metric -> median
    extra = collections.defaultdict(dict)
    for s in systems:
        for mode in ("keepalive", "close"):
            steady_rows = rows[(s, f"steady-{mode}")]
            for key in ("rps", "p50_ms", "p99_ms", "max_ms"):
                m[s][f"{mode}_{key}"] = med([d.get(key) for d in steady_rows])
            m[s][f"{mode}_per_cpu"] = med([d["requests"] / (d["server_cpu_s"] + d.get("core_irq_s", 0)) for d in steady_rows
                                           if d.get("server_cpu_s") and d.get("requests")])
            m[s][f"{mode}_share"] = med([100 * d["server_cpu_s"] / d["core_s"] for d in steady_rows
                                         if d.get("core_s") and "server_cpu_s" in d])
            m[s][f"{mode}_irq"] = med([100 * d["core_irq_s"] / d["core_s"] for d in steady_rows
                                       if d.get("core_s") and "core_irq_s" in d])
            m[s][f"{mode}_others"] = med([100 * max(0.0, d["core_task_s"] - d["server_cpu_s"]) / d["core_s"]
                                          for d in steady_rows if d.get("core_s") and "core_task_s" in d])
            runs = rows[(s, f"upgrade-{mode}")]
            per = []
            tot = collections.Counter()
            ups = 0
            for d in runs:
                failed = sum(d.get(k, 0) for k in FAIL_KEYS)
                for k in FAIL_KEYS:
                    tot[k] += int(d.get(k, 0))
                ups += int(d.get("upgrades", 0))
                if d.get("upgrades"):
                    per.append(failed / d["upgrades"])
            m[s][f"{mode}_fail"] = med(per)
            m[s][f"{mode}_under_load_rps"] = med([d.get("rps") for d in runs])
            extra[s][f"{mode}_fail_totals"] = tot
            extra[s][f"{mode}_upgrades"] = ups
            extra[s][f"{mode}_gens"] = [int(d.get("pids", 0)) for d in runs]
        t = [d.get("ms") for d in rows[(s, "ttfa")]]
        good = [v for v in t if isinstance(v, float) and v == v]
        m[s]["ttfa"] = med(good)
        extra[s]["ttfa_all"] = good
        extra[s]["ttfa_missing"] = len(t) - len(good)
        extra[s]["ttfa_failed_polls"] = [int(d.get("failed", 0)) for d in rows[(s, "ttfa")]]
        for label, prefix in (("rss", ""), ("rss-after-upgrades", "after_")):
            mk = [d.get("master_kb") for d in rows[(s, label)]]
            wk = [d.get("worker_kb") for d in rows[(s, label)]]
            m[s][prefix + "master_mib"] = med([v / 1024 for v in mk if isinstance(v, float)])
            m[s][prefix + "worker_mib"] = med([v / 1024 for v in wk if isinstance(v, float)])
            tot = [(a if isinstance(a, float) else 0.0) + b for a, b in zip(mk, wk) if isinstance(b, float)]
            m[s][prefix + "total_mib"] = med([v / 1024 for v in tot])
    if "naive" in systems and "baton" in systems:
        for k in list(m["baton"]):
            if k.startswith(("keepalive_", "close_")) and not k.endswith(("_fail", "_under_load_rps")):
                m["naive"][k] = m["baton"][k]

    higher_better = {"keepalive_rps", "close_rps", "keepalive_under_load_rps", "keepalive_per_cpu", "close_per_cpu"}

    def best(metric):
        vals = [m[p].get(metric) for p in peers if m[p].get(metric) is not None]
        if not vals:
            return None
        return max(vals) if metric in higher_better else min(vals)

    def best_name(metric):
        b = best(metric)
        for p in peers:
            if b is not None and m[p].get(metric) == b:
                return p
        return None

    L = []
    L.append("# Benchmarks: Baton against other zero-downtime upgrade mechanisms\n")
    L.append(
        "Generated by `Benchmarks/compare/compare.sh` (do not edit by hand: run it again). One run, one "
        "machine, all systems interleaved round-robin; each number is the median over rounds (time to "
        "a new pid: over all trials), followed in brackets by its ratio to the **best peer** for that "
        "column (peers: tableflip, grace, nginx; for req/s higher is better, for everything else lower "
        "is better). The naive restart is a baseline, not a peer.\n")
    L.append("## Run\n")
    L.append(f"- date: {meta.get('date')}; elapsed: {meta.get('elapsed_s', '?')} s")
    L.append(f"- machine: {meta.get('nproc')} CPUs (`nproc`), {meta.get('cpu')}; {meta.get('kernel')}; {meta.get('os')}")
    L.append(f"- load average at start / end (the machine is shared with other work): "
             f"{meta.get('loadavg_start')} / {meta.get('loadavg_end')}")
    L.append(f"- {meta.get('swift')}; hello: {meta.get('hello_binary')}")
    L.append(f"- {meta.get('go')}; Debian packages: tableflip {meta.get('tableflip')}, grace {meta.get('grace')}, gin {meta.get('gin')}")
    L.append(f"- nginx {meta.get('nginx')}; {meta.get('wrk')}; {meta.get('python')}")
    L.append(f"- settings: {meta.get('knobs')}")
    L.append(f"- command (from the repository root):\n\n  ```sh\n  {meta.get('command')}\n  ```\n")

    L.append("## Steady state\n")
    L.append(f"{knobs.get('CONNECTIONS', '?')} connections, {knobs.get('DURATION', '?')} s per run, "
             "no upgrades. Server pinned to one core, wrk to the other. Latency in ms.\n")
    hdr = ("| system | keep-alive req/s | p50 | p99 | max | `Connection: close` req/s | p50 | p99 | max |\n"
           "|---|---|---|---|---|---|---|---|---|")
    L.append(hdr)
    for s in systems:
        cells = []
        for mode in ("keepalive", "close"):
            cells.append(cell(m[s][f"{mode}_rps"], best(f"{mode}_rps"), "rps"))
            for key in ("p50_ms", "p99_ms", "max_ms"):
                cells.append(cell(m[s][f"{mode}_{key}"], best(f"{mode}_{key}"), "ms"))
        name = NAMES.get(s, s) + (" ¹" if s == "naive" else "")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    if "naive" in systems:
        L.append("\n¹ the same binary as Baton's row: not measured again.")
    L.append("")
    L.append("Efficiency in the same runs, less sensitive than req/s to other work on the shared machine: "
             "requests per CPU-second, counting the CPU time of all the server's processes (master and "
             "workers) plus the interrupt/softirq time of its core (mostly the loopback TCP stack). "
             "Then, as % of the run's wall time on the server's core: the server's processes ('server'), "
             "interrupts and softirq ('irq'), other programs ('others': the noise).\n")
    L.append("| system | keep-alive req per CPU-s | server | irq | others | `Connection: close` req per CPU-s | server | irq | others |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for s in systems:
        if s == "naive":
            continue
        cells = []
        for mode in ("keepalive", "close"):
            cells.append(cell(m[s][f"{mode}_per_cpu"], best(f"{mode}_per_cpu"), "rps"))
            cells.append(fmt(m[s][f"{mode}_share"], "pct"))
            cells.append(fmt(m[s][f"{mode}_irq"], "pct"))
            cells.append(fmt(m[s][f"{mode}_others"], "pct"))
        L.append(f"| {NAMES.get(s, s)} | " + " | ".join(cells) + " |")
    L.append("")

    L.append("## Upgrades\n")
    L.append("Failed requests per upgrade: wrk socket errors (connect, read, write, timeout) plus non-2xx "
             "answers during a run with an upgrade every "
             f"{knobs.get('INTERVAL', '?')} s ({knobs.get('UPG_DURATION', '?')} s runs, "
             f"{knobs.get('CONNECTIONS', '?')} connections), divided by "
             "the upgrades sent (median over rounds; totals in brackets). Time to new pid: from the trigger "
             "to the first answer from a pid not seen before it, polled with a new connection every ~5 ms "
             "(no other load), in ms.\n")
    L.append("| system | trigger | failed / upgrade, keep-alive | failed / upgrade, `Connection: close` | "
             "time to new pid, median [min–max] (n) | req/s under upgrades, keep-alive |")
    L.append("|---|---|---|---|---|---|")
    for s in systems:
        cells = [NAMES.get(s, s), TRIGGERS.get(s, "")]
        for mode in ("keepalive", "close"):
            tot = sum(extra[s][f"{mode}_fail_totals"].values())
            ups = extra[s][f"{mode}_upgrades"]
            c = cell(m[s][f"{mode}_fail"], best(f"{mode}_fail"), "fail")
            cells.append(f"{c} [{tot:,} in {ups}]")
        allt = extra[s]["ttfa_all"]
        t = cell(m[s]["ttfa"], best("ttfa"), "ms")
        if allt:
            t += f" [{fmt(min(allt), 'ms')}–{fmt(max(allt), 'ms')}] ({len(allt)})"
        if extra[s]["ttfa_missing"]:
            t += f", {extra[s]['ttfa_missing']} without a new pid"
        cells.append(t)
        cells.append(cell(m[s]["keepalive_under_load_rps"], best("keepalive_under_load_rps"), "rps"))
        L.append("| " + " | ".join(cells) + " |")
    L.append("")

    L.append("### Where the failures came from (totals over all rounds)\n")
    L.append("| system | mode | upgrades | connect | read | write | timeout | non-2xx | generations seen per run |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for s in systems:
        for mode, label in (("keepalive", "keep-alive"), ("close", "`Connection: close`")):
            tot = extra[s][f"{mode}_fail_totals"]
            L.append(f"| {NAMES.get(s, s)} | {label} | {extra[s][f'{mode}_upgrades']} | "
                     + " | ".join(f"{tot[k]:,}" for k in FAIL_KEYS)
                     + f" | {', '.join(map(str, extra[s][f'{mode}_gens']))} |")
    L.append("")

    L.append("## Memory\n")
    L.append("VmRSS from /proc right after the steady-state runs, in MiB (for the single-process Go peers "
             "the one process is the worker, there is no master; nginx: master + its one worker). "
             "'after upgrades': the same once the upgrade runs and trials are over.\n")
    L.append("| system | master | worker | total | master after upgrades | worker after upgrades |")
    L.append("|---|---|---|---|---|---|")
    for s in systems:
        L.append(f"| {NAMES.get(s, s)} | {fmt(m[s]['master_mib'], 'mib') if s not in ('tableflip', 'grace') else '— (none)'} | "
                 f"{cell(m[s]['worker_mib'], best('worker_mib'), 'mib')} | {cell(m[s]['total_mib'], best('total_mib'), 'mib')} | "
                 f"{fmt(m[s]['after_master_mib'], 'mib') if s not in ('tableflip', 'grace') else '—'} | "
                 f"{fmt(m[s]['after_worker_mib'], 'mib')} |")
    L.append("")

    # Automatic summary of Baton against the best peer.
    if "baton" in systems and peers:
        L.append("## Baton against the best peer\n")
        for metric, label, kind in (
            ("keepalive_rps", "keep-alive req/s", "rps"), ("close_rps", "`Connection: close` req/s", "rps"),
            ("keepalive_per_cpu", "keep-alive requests per server CPU-second", "rps"),
            ("close_per_cpu", "`Connection: close` requests per server CPU-second", "rps"),
            ("keepalive_p99_ms", "keep-alive p99 latency", "ms"), ("close_p99_ms", "`Connection: close` p99 latency", "ms"),
            ("keepalive_fail", "failed requests per upgrade, keep-alive", "fail"),
            ("close_fail", "failed requests per upgrade, `Connection: close`", "fail"),
            ("ttfa", "time from trigger to a new pid's first answer (ms)", "ms"),
            ("total_mib", "RSS, all processes (MiB)", "mib"),
        ):
            b, bn, v = best(metric), best_name(metric), m["baton"].get(metric)
            if v is None or b is None:
                continue
            ratio = f"{v / b:.2f}×" if b else ("equal" if v == 0 else "—")
            L.append(f"- {label}: Baton {fmt(v, kind)}, best peer {bn} {fmt(b, kind)} → {ratio}")
        L.append("")

    # What Baton's own log said (warnings and errors), so that failures can be traced.
    for s_ in ("baton", "naive"):
        if s_ not in systems:
            continue
        try:
            with open(f"{workdir}/logs/{s_}.log", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        bad = [l for l in lines if len(l.split()) > 1 and l.split()[1] in ("warning", "error", "critical")]
        label = "Baton's log" if s_ == "baton" else "the naive restart's log (same binary)"
        L.append(f"{label}: {len(lines)} lines, {len(bad)} at level warning or above"
                 + (":\n\n```\n" + "\n".join(bad[:15]) + ("\n…" if len(bad) > 15 else "") + "\n```\n" if bad else ".\n"))

    L.append("## Timeline of Baton upgrades\n")
    L.append(f"![requests/s per worker generation during Baton upgrades]({png})\n")
    L.append("Requests/s per generation (pid) in 100 ms buckets during the first round's upgrade runs "
             "(top: keep-alive, bottom: `Connection: close`); dashed lines mark each SIGHUP.\n")

    dips = timeline_dips(workdir)
    if dips:
        L.append("Stalls in these runs (100 ms buckets under a quarter of the run's median rate), with "
                 "where they began relative to the nearest SIGHUP (negative: before it):\n")
        for line in dips:
            L.append(f"- {line}")
        L.append("")

    L.append("## Per round\n")
    L.append("The rounds behind the medians. 'others': % of the server core's time used by other "
             "programs during the steady runs (keep-alive / close).\n")
    L.append("| system | round | keep-alive req/s | req per CPU-s | p99 ms | close req/s | req per CPU-s | p99 ms "
             "| others % | failed, keep-alive upgrades | failed, close upgrades |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in systems:
        rounds = sorted({d["round"] for k, v in rows.items() if k[0] == s for d in v})
        for r in rounds:
            def one(kind):
                for d in rows[(s, kind)]:
                    if d["round"] == r:
                        return d
                return {}
            ka, cl = one("steady-keepalive"), one("steady-close")
            uk, uc = one("upgrade-keepalive"), one("upgrade-close")

            def per_cpu(d):
                if d.get("server_cpu_s") and d.get("requests"):
                    return fmt(d["requests"] / (d["server_cpu_s"] + d.get("core_irq_s", 0)), "rps")
                return "—"

            def others(d):
                if d.get("core_s") and "core_task_s" in d:
                    return fmt(100 * max(0.0, d["core_task_s"] - d["server_cpu_s"]) / d["core_s"], "pct")
                return "—"

            def failed(d):
                if not d:
                    return "—"
                return f"{int(sum(d.get(k, 0) for k in FAIL_KEYS)):,} in {int(d.get('upgrades', 0))}"

            L.append(f"| {s} | {r} | {fmt(ka.get('rps'), 'rps')} | {per_cpu(ka)} | {fmt(ka.get('p99_ms'), 'ms')} | "
                     f"{fmt(cl.get('rps'), 'rps')} | {per_cpu(cl)} | {fmt(cl.get('p99_ms'), 'ms')} | "
                     f"{others(ka)} / {others(cl)} | {failed(uk)} | {failed(uc)} |")
    L.append("")

    steady_failures = sum(int(sum(d.get(k, 0) for k in FAIL_KEYS))
                          for (sys_, kind), v in rows.items() if kind.startswith("steady-") for d in v)
    L.append("## Method and caveats\n")
    L.append(
        f"- Load: wrk, {knobs.get('THREADS', '?')} threads, {knobs.get('CONNECTIONS', '?')} connections, "
        f"on 127.0.0.1, {knobs.get('TIMEOUT', '?')} s timeout. `Connection: close` mode sends that header, so "
        "every request opens a new connection. A wrk *socket error* is counted per failed attempt: a "
        "refused connect makes wrk reconnect at once, so during downtime (the naive restart) one "
        "connection can rack up many errors — those columns count failed attempts, not users. wrk connects "
        "without blocking, so a refused connection shows up as a *write* error (or a read error), "
        "rarely in the connect column.\n"
        "- Steady-state runs use a wrk script without `response()` (wrk then does not parse bodies); the "
        "upgrade runs use one that reads every answer's pid and status (`compare.lua`), which costs the "
        "client some throughput, equally for every system.\n"
        "- Every server answers `GET /hello` with `{\"message\":…,\"ver\":\"1\",\"pid\":…}`: Baton's `hello` "
        "(Hummingbird), gin's `c.JSON` (no logger middleware, release mode) for the Go peers, nginx's "
        "`return 200` with `$pid`. nginx runs 1 worker process with `keepalive_requests 1000000`, "
        "access log off, daemonized (the documented binary upgrade needs it).\n"
        "- The Go peers and nginx replace their whole process at an upgrade, so their pid changes; "
        "the script follows it through pid files. Baton's master keeps its pid.\n"
        "- Each system is started fresh for its block in each round; the order of systems rotates "
        "every round. Go and the peers' libraries come from Debian bookworm's packages (Go 1.19, "
        "GOPATH mode, no module proxy).\n"
        "- The machine has 2 cores and was shared with other work during the run (see the load "
        "averages above and 'others' in the per-round table): absolute numbers are noisy, tail "
        "latencies (p99, max) most of all, since a stall of either core shows there; compare the "
        "ratios within this run, and prefer the requests per CPU-second for throughput.\n"
        f"- The steady-state runs (no upgrades) had {steady_failures} failed requests in all.\n")

    # Sections written by other scripts (Benchmarks/scale.sh: between "<!-- scale:begin -->" and
    # "<!-- scale:end -->"; Benchmarks/soak.sh: "## Soak") survive a new report.
    kept = ""
    try:
        with open(out) as f:
            previous = f.read()
        starts = [previous.index(m) for m in ("\n<!-- startup:begin -->", "\n<!-- scale:begin -->", "\n## Soak") if m in previous]
        if starts:
            kept = previous[min(starts):]
    except OSError:
        pass
    with open(out, "w") as f:
        f.write("\n".join(L).rstrip("\n") + "\n" + kept)


STARTUP_NAMES = {
    "baton": "**Baton** `hello`, dynamic (`swift build -c release`)",
    "baton-static": "**Baton** `hello`, static stdlib, stripped",
    "tableflip": "gin + cloudflare/tableflip",
    "grace": "gin + facebookgo/grace",
}


def startup(workdir, out):
    """Writes the section between <!-- startup:begin --> and <!-- startup:end --> of OUT."""
    meta, rows, systems = parse(workdir)
    peers = [s for s in ("tableflip", "grace") if s in systems]
    knobs = dict(kv.split("=", 1) for kv in meta.get("knobs", "").split() if "=" in kv)
    m = collections.defaultdict(dict)
    for s in systems:
        for kind in ("ttfa", "ttfa2"):
            t = [d.get("ms") for d in rows[(s, kind)]]
            m[s][kind] = med(t)
            m[s][kind + "_n"] = len([v for v in t if isinstance(v, float) and v == v])
            m[s][kind + "_all"] = sorted(v for v in t if isinstance(v, float) and v == v)
        for label, prefix in (("footprint", ""), ("footprint-after-upgrades", "after_")):
            for who in ("master", "worker"):
                for key in ("pss", "priv_dirty", "priv", "rss"):
                    m[s][f"{prefix}{who}_{key}"] = med([d.get(f"{who}_{key}_kb") / 1024 for d in rows[(s, label)]
                                                        if isinstance(d.get(f"{who}_{key}_kb"), float)])
            m[s][prefix + "total_pss"] = med([(d.get("master_pss_kb") if isinstance(d.get("master_pss_kb"), float) else 0.0)
                                              + d["worker_pss_kb"] for d in rows[(s, label)]
                                              if isinstance(d.get("worker_pss_kb"), float)]) 
            if m[s][prefix + "total_pss"] is not None:
                m[s][prefix + "total_pss"] /= 1024
            m[s][prefix + "threads"] = [d.get("threads_master") for d in rows[(s, label)]] + [d.get("threads_worker") for d in rows[(s, label)]]

    def best(metric):
        vals = [m[p].get(metric) for p in peers if m[p].get(metric) is not None]
        return min(vals) if vals else None

    tf = lambda metric: m["tableflip"].get(metric) if "tableflip" in systems else None

    def c(v, metric, kind="ms"):
        ref = tf(metric)
        text = fmt(v, kind)
        if v is None or not ref:
            return text
        return f"{text} ({v / ref:.2f}×)"

    L = []
    L.append("<!-- startup:begin -->")
    L.append("## Start-up and footprint (issue 9, item 5)")
    L.append("")
    L.append("Written by `Benchmarks/compare/compare.sh` with `STARTUP=1` (this section only; the others come from a full "
             "run). One run, one machine; each system started fresh, pinned to core "
             f"{knobs.get('SERVER_CPU', '?')}, the poller to core {knobs.get('CLIENT_CPU', '?')}. Ratios in brackets are "
             "against **tableflip**. The machine is shared with other engineers' builds: compare ratios within this run.")
    L.append("")
    L.append(f"- date: {meta.get('date', '?')}; elapsed: {meta.get('elapsed_s', '?')} s; load average at start / end: "
             f"{meta.get('loadavg_start', '?')} / {meta.get('loadavg_end', '?')}")
    L.append(f"- {meta.get('swift', '?')}; {meta.get('go', '?')}; {meta.get('hello_binary', '?')}")
    L.append("- command (from the repository root):")
    L.append("")
    L.append("  ```sh")
    L.append(f"  {meta.get('command', '?')}")
    L.append("  ```")
    L.append("")
    L.append("### Time from the trigger to a new pid's first answer (ms, median)")
    L.append("")
    L.append("A new connection every 5 ms (as in the full run) and every 2 ms; the first answer from a pid not seen "
             "before the trigger ends a trial.")
    L.append("")
    L.append("| system | poll 5 ms | poll 2 ms | all trials, 2 ms |")
    L.append("|---|---|---|---|")
    for s in systems:
        L.append(f"| {STARTUP_NAMES.get(s, s)} | {c(m[s]['ttfa'], 'ttfa')} (n={m[s]['ttfa_n']}) | "
                 f"{c(m[s]['ttfa2'], 'ttfa2')} (n={m[s]['ttfa2_n']}) | {', '.join(f'{v:.1f}' for v in m[s]['ttfa2_all'])} |")
    L.append("")
    L.append("### Memory per process (MiB, from `/proc/PID/smaps_rollup`)")
    L.append("")
    L.append("PSS counts each shared page once in all (split among the processes that map it); private: pages no "
             "other process maps (private dirty: the part written to, i.e. heap, stacks, relocated data). Taken after "
             "a 2 s keep-alive warm-up (first generation) and again after the upgrade trials (a later generation). "
             "The Go peers run one process (tableflip and grace start the new copy and the old one exits): its "
             "numbers are in the worker columns; total = master + worker.")
    L.append("")
    L.append("| system | master PSS | master private (dirty) | worker PSS | worker private (dirty) | total PSS | total PSS after upgrades | RSS master / worker |")
    L.append("|---|---|---|---|---|---|---|---|")
    for s in systems:
        def mp(who, prefix=""):
            a, b = m[s].get(f"{prefix}{who}_priv"), m[s].get(f"{prefix}{who}_priv_dirty")
            return "—" if a is None else f"{a:.1f} ({b:.1f})"
        L.append(f"| {STARTUP_NAMES.get(s, s)} | {fmt(m[s].get('master_pss'), 'mib') if m[s].get('master_pss') is not None else '— (none)'} | "
                 f"{mp('master')} | {c(m[s].get('worker_pss'), 'worker_pss', 'mib')} | {mp('worker')} | "
                 f"{c(m[s].get('total_pss'), 'total_pss', 'mib')} | {c(m[s].get('after_total_pss'), 'after_total_pss', 'mib')} | "
                 f"{fmt(m[s].get('master_rss'), 'mib') if m[s].get('master_rss') is not None else '—'} / {fmt(m[s].get('worker_rss'), 'mib')} |")
    L.append("")
    sizes = {d_kind: d for (sys_, d_kind), ds in rows.items() if sys_ == "size" for d in ds}
    if sizes:
        L.append("### Binary size (what a deploy uploads)")
        L.append("")
        L.append("| binary | as built (MB) | stripped (MB) | `.rodata` (MB) | ICU symbols (`nm`) |")
        L.append("|---|---|---|---|---|")
        labels = {"hello": "`hello`, dynamic (`.build/release`)", "static-hello": "`hello`, `--static-swift-stdlib` (`.build-static/release`)",
                  "tableflip-gin": "gin + tableflip (Go)", "grace-gin": "gin + grace (Go)"}
        go = sizes.get("tableflip-gin", {}).get("bytes")
        for k in ("hello", "static-hello", "tableflip-gin", "grace-gin"):
            d = sizes.get(k)
            if not d:
                continue
            ratio = f" ({d['stripped'] / go:.2f}× tableflip as built)" if go and k != "tableflip-gin" else ""
            rod = d.get("rodata")
            L.append(f"| {labels[k]} | {d['bytes'] / 1e6:.1f} | {d['stripped'] / 1e6:.1f}{ratio} | "
                     f"{rod / 1e6 if isinstance(rod, float) else 0:.1f} | {int(d.get('icu', 0))} |")
        L.append("")
    L.append("<!-- startup:end -->")
    section = "\n".join(L) + "\n"

    try:
        with open(out) as f:
            previous = f.read()
    except OSError:
        previous = ""
    begin, end = "<!-- startup:begin -->", "<!-- startup:end -->\n"
    if begin in previous and end in previous:
        text = previous[:previous.index(begin)] + section + previous[previous.index(end) + len(end):]
    else:  # first time: before the scale section (report.py keeps everything from here on)
        at = min([previous.index(x) + 1 for x in ("\n<!-- scale:begin -->", "\n## Soak") if x in previous] or [len(previous)])
        text = previous[:at] + section + "\n" + previous[at:]
    with open(out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--startup"]:
        startup(sys.argv[2], sys.argv[3])
    else:
        main()
