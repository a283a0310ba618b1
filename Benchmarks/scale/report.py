#!/usr/bin/env python3
"""Turns the raw output of Benchmarks/scale.sh into results.tsv/json and a BENCHMARKS.md section.

usage: report.py WORKDIR OUT.md PNG_PATH_RELATIVE_TO_OUT

Reads WORKDIR/meta.txt (key=value machine facts), WORKDIR/results.txt (one line of key=value per
run, with the fields of upgrade-under-load.lua's BATON_RESULT line) and each run's server log
(WORKDIR/runs/ID/server-before-stop.log). Writes WORKDIR/results.tsv (one row per run),
WORKDIR/results.json (runs, medians per configuration, the verdict) and replaces the section
between <!-- scale:begin --> and <!-- scale:end --> in OUT.md (or inserts it before "## Soak",
or at the end), leaving the rest of the file as it was.

Exit status: 0 if Baton failed no request in any run, 1 if it did (or a Baton run gave no
result), 3 if this script itself failed.
"""
import json
import re
import statistics
import sys
import traceback

BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
NAMES = {"baton": "Baton `hello`", "tableflip": "gin + tableflip"}
MODE_NAMES = {"keep-alive": "keep-alive", "close": "`Connection: close`"}
FAIL_KEYS = ["connect", "read", "write", "timeout", "non2xx"]
# Sources/Baton/Master/MasterLoop.swift: "\(generation.label) drained in \(took) (\(status))", with
# label "generation N (pid P, version V)" and took a Duration.shortDescription: "250 ms" or "3 s".
DRAINED = re.compile(r"generation (\d+) \(pid (\d+)[^)]*\) drained in (\d+) (ms|s)\b")
# An upgrade's success: "generation N (pid P, version V) ready in M ms, generation K draining".
UPGRADED = re.compile(r"generation \d+ \(pid \d+[^)]*\) ready in \d+ ms, generation")
LEVEL = re.compile(r"^\S+ (warning|error|critical) ")


def num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in str(v) else f


def parse_meta(workdir):
    meta = {}
    with open(f"{workdir}/meta.txt") as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    return meta


def read_log(workdir, rundir):
    try:
        with open(f"{workdir}/{rundir}/server-before-stop.log", "rb") as f:
            return f.read()
    except OSError:
        return b""


def parse_runs(workdir):
    runs = []
    with open(f"{workdir}/results.txt") as f:
        for line in f:
            d = {}
            for tok in line.split():
                k, sep, v = tok.partition("=")
                if sep:
                    d[k] = num(v)
            if not d:
                continue
            d["connections"] = int(d["connections"])
            d["run"] = int(d["run"])
            ok = "error" not in d and all(k in d for k in FAIL_KEYS + ["requests", "pids"])
            d["ok"] = ok
            log = read_log(workdir, d["dir"])
            cut = int(d.get("load_end_bytes", len(log)) or 0)
            during = log[:cut].decode("utf-8", "replace")
            after = log[cut:].decode("utf-8", "replace")
            text = during + after
            d["drains_during_load_ms"] = [int(n) * (1000 if u == "s" else 1) for _, _, n, u in DRAINED.findall(during)]
            d["drains_after_load_ms"] = [int(n) * (1000 if u == "s" else 1) for _, _, n, u in DRAINED.findall(after)]
            d["drain_timeouts"] = text.count("did not drain within")
            d["upgrade_failures"] = text.count("upgrade failed")
            d["log_warnings"] = sum(1 for l in text.splitlines() if LEVEL.match(l)) if d["system"] == "baton" else None
            if ok:
                d["failed"] = sum(int(d[k]) for k in FAIL_KEYS)
                if d["system"] == "baton":
                    d["upgrades"] = len(UPGRADED.findall(text))
                else:   # tableflip: each upgrade is a new process; count the pids that answered
                    d["upgrades"] = max(int(d["pids"]) - 1, 0)
                divisor = d["upgrades"] or d.get("sighups", 0)
                d["failed_per_upgrade"] = d["failed"] / divisor if divisor else None
            else:
                d["failed"] = d["upgrades"] = d["failed_per_upgrade"] = None
            runs.append(d)
    return runs


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def configurations(runs, meta):
    systems = meta.get("systems", "").split()
    confs = []
    keys = []
    for pin in meta.get("pinning", "").split():
        for mode in meta.get("modes", "").split():
            conns = meta.get("close_connections" if mode == "close" else "keepalive_connections", "").split()
            for c in conns:
                keys.append((pin, mode, int(c)))
    for pin, mode, c in keys:
        for s in systems:
            rs = sorted((r for r in runs if (r["system"], r["pinning"], r["mode"], r["connections"]) == (s, pin, mode, c)),
                        key=lambda r: r["run"])
            if not rs:
                continue
            good = [r for r in rs if r["ok"]]
            during = [x for r in rs for x in r["drains_during_load_ms"]]
            after = [x for r in rs for x in r["drains_after_load_ms"]]
            every = during + after
            confs.append({
                "system": s, "pinning": pin, "mode": mode, "connections": c,
                "runs": len(rs), "runs_with_result": len(good),
                "failed_per_upgrade_median": median(r["failed_per_upgrade"] for r in good),
                "failed_median": median(r["failed"] for r in good),
                "failed_total": sum(r["failed"] for r in good),
                "failed_per_run": [r["failed"] for r in rs],
                "upgrades_per_run": [r["upgrades"] for r in rs],
                "upgrades_median": median(r["upgrades"] for r in good),
                "p99_ms_median": median(r.get("p99_ms") for r in good),
                "rps_median": median(r.get("rps") for r in good),
                "old_generation_lifetime_ms_median": median(every) if every else None,
                "old_generation_lifetime_ms_max": max(every) if every else None,
                "old_generations": len(every),
                "old_generations_ended_after_load": len(after),
                "drain_timeouts": sum(r["drain_timeouts"] for r in rs),
                "upgrade_failures": sum(r["upgrade_failures"] for r in rs),
            })
    return confs


# ------------------------------------------------------------------ formatting
def fint(x):
    return "—" if x is None else f"{int(round(x)):,}"


def fper(x):
    if x is None:
        return "—"
    if x == 0:
        return "0"
    return f"{x:,.1f}" if x >= 10 else f"{x:.2f}"


def fms(x):
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def fsec(ms):
    return "—" if ms is None else f"{ms / 1000:.2f}"


def lifetime(c):
    if c["system"] != "baton":
        return "n/a"
    if not c["old_generations"]:
        return "—"
    s = f"{fsec(c['old_generation_lifetime_ms_median'])} / {fsec(c['old_generation_lifetime_ms_max'])} ({c['old_generations']}"
    s += f", {c['old_generations_ended_after_load']} after the load)" if c["old_generations_ended_after_load"] else ")"
    if c["drain_timeouts"]:
        s += f", **{c['drain_timeouts']} hit the drain deadline**"
    return s


def per_run_list(c):
    return ", ".join("—" if f is None else f"{f:,}/{u}" for f, u in zip(c["failed_per_run"], c["upgrades_per_run"]))


def markdown(meta, runs, confs, png, gate):
    systems = meta.get("systems", "").split()
    knobs = dict(kv.split("=", 1) for kv in meta.get("knobs", "").split() if "=" in kv)
    L = [BEGIN, "## Scale: failed requests per upgrade from 64 to 10,000 connections", ""]
    L.append("Generated by `Benchmarks/scale.sh` (this section only, between the `scale` marker comments; "
             "do not edit by hand: run it again). For each system, pinning, mode and number of connections: "
             f"a fresh server, one {knobs.get('DURATION', '?')} s wrk run (`wrk -t{knobs.get('THREADS', '?')} "
             f"--timeout {knobs.get('TIMEOUT', '?')}s`) with a SIGHUP every {knobs.get('INTERVAL', '?')} s, "
             f"repeated in RUNS={knobs.get('RUNS', '?')} passes over the whole matrix (the system order rotates every pass). "
             "Issue 8's acceptance needs ≥ 5 runs per configuration.")
    L.append("")
    L.append(f"![failed requests per upgrade against connections]({png})")
    L.append("")
    baton_runs = [r for r in runs if r["system"] == "baton"]
    if baton_runs:
        bad = [r for r in baton_runs if not r["ok"] or r["failed"]]
        fewest = min(c["runs"] for c in confs if c["system"] == "baton")
        short = (f" Only {fewest} run(s) per configuration: the acceptance check needs ≥ 5."
                 if fewest < 5 else "")
        if gate == 0:
            L.append(f"**Acceptance (issue 8): pass** — Baton failed 0 requests in all {len(baton_runs)} runs "
                     f"({sum(r['upgrades'] for r in baton_runs):,} upgrades, "
                     f"{sum(int(r['requests']) for r in baton_runs):,} requests).{short}")
        else:
            failed = sum(r["failed"] or 0 for r in baton_runs)
            noresult = sum(1 for r in baton_runs if not r["ok"])
            L.append(f"**Acceptance (issue 8): FAIL** — Baton failed {failed:,} requests in {len(bad) - noresult} of "
                     f"{len(baton_runs)} runs" + (f"; {noresult} runs gave no result" if noresult else "") + "." + short)
        L.append("")

    L += ["### Run", ""]
    L.append(f"- date: {meta.get('date', '?')}; elapsed: {meta.get('elapsed_s', '?')} s")
    L.append(f"- machine: {meta.get('nproc', '?')} CPUs (`nproc`), {meta.get('cpu', '?')}; {meta.get('kernel', '?')}; "
             f"{meta.get('os', '?')}")
    L.append(f"- limits: `ulimit -n` {meta.get('nofile', '?')} (server and wrk); {meta.get('sysctl', '?')}")
    L.append(f"- load average at start / end (the machine is shared; every run held `flock /tmp/baton-bench.lock`): "
             f"{meta.get('loadavg_start', '?')} / {meta.get('loadavg_end', '?')}")
    if "hello_binary" in meta:
        L.append(f"- {meta.get('swift', '?')}; hello: {meta['hello_binary']}, "
                 f"`--drain-timeout {knobs.get('DRAIN_TIMEOUT', '?')}`")
    if "go" in meta:
        L.append(f"- {meta['go']}; Debian packages: tableflip {meta.get('tableflip', '?').replace(' gin ', ', gin ')} "
                 "(Benchmarks/compare/tableflip, GOPATH mode)")
    L.append(f"- {meta.get('wrk', '?')}; {meta.get('python', '?')}")
    L.append(f"- settings: {meta.get('knobs', '?')}; pinned: server `taskset -c {knobs.get('SERVER_CPU', '?')}` "
             f"(all its processes), wrk `taskset -c {knobs.get('CLIENT_CPU', '?')}`; unpinned: both free on all cores")
    L.append("- command (from the repository root):")
    L += ["", "  ```sh", f"  {meta.get('command', '?')}", "  ```", ""]

    L += ["### Medians", ""]
    L.append("Failed requests per upgrade: median over runs (per run, failed requests / upgrades, in brackets). "
             "p99 latency and req/s: median over runs, during the upgrades. Baton's old generations: "
             "how long each lived after its successor was ready (from its SIGTERM to its exit, the master's "
             "`drained in` log line), median / max in seconds over all runs (number of generations; how many of them ended only after wrk "
             "stopped: the end of the load cut those short, their lifetimes are lower bounds).")
    L.append("")
    head = ["pinning", "mode", "connections"]
    for s in systems:
        head.append(f"{NAMES.get(s, s)} failed / upgrade")
    for s in systems:
        head.append(f"{NAMES.get(s, s)} p99 ms")
    for s in systems:
        head.append(f"{NAMES.get(s, s)} req/s")
    if "baton" in systems:
        head.append("Baton old generations live, s: median / max (n)")
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    by = {(c["system"], c["pinning"], c["mode"], c["connections"]): c for c in confs}
    seen = []
    for c in confs:
        k = (c["pinning"], c["mode"], c["connections"])
        if k in seen:
            continue
        seen.append(k)
        row = [k[0], MODE_NAMES.get(k[1], k[1]), f"{k[2]:,}"]
        cs = [by.get((s,) + k) for s in systems]
        for x in cs:
            if x is None:
                row.append("—")
            else:
                v = fper(x["failed_per_upgrade_median"])
                if x["system"] == "baton" and (x["failed_total"] or x["runs_with_result"] < x["runs"]):
                    v = f"**{v}**"
                row.append(f"{v} [{per_run_list(x)}]")
        row += [fms(x["p99_ms_median"]) if x else "—" for x in cs]
        row += [fint(x["rps_median"]) if x else "—" for x in cs]
        if "baton" in systems:
            b = by.get(("baton",) + k)
            row.append(lifetime(b) if b else "—")
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    L += ["### Per run", ""]
    L.append("Failed: wrk socket errors (connect, read, write, timeout) plus non-2xx answers. Upgrades: for Baton "
             "the master's `ready in … ms, generation … draining` lines; for tableflip the pids that answered, "
             "minus one (tableflip refuses an upgrade while the previous process is still alive: its "
             "`upgrade failed` lines are counted in the notes). Failed / upgrade divides by the upgrades done "
             "(by the SIGHUPs if none was). Old generations: lifetime after the successor was ready, ms. Load: the "
             "1-minute load average when the run started (this benchmark alone keeps it around 2 to 3 on 2 cores; more "
             "means other work ran on the machine).")
    L.append("")
    L.append("| system | pinning | mode | connections | run | requests | req/s | SIGHUPs | upgrades | failed | "
             "connect / read / write / timeout / non-2xx | failed / upgrade | p99 ms | old generations: median / max ms (n) | load | notes |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    order = {(c["pinning"], c["mode"], c["connections"], c["system"]): i for i, c in enumerate(confs)}
    for r in sorted(runs, key=lambda r: (order.get((r["pinning"], r["mode"], r["connections"], r["system"]), 1e9), r["run"])):
        notes = []
        if not r["ok"]:
            notes.append(f"no result ({r.get('error', 'wrk exit ' + str(r.get('wrk_rc', '?')))})")
        if r.get("settled") == 0:
            notes.append("old generations still alive after the drain deadline + 10 s")
        if r["drain_timeouts"]:
            notes.append(f"{r['drain_timeouts']} drain deadline(s) hit")
        if r["upgrade_failures"]:
            notes.append(f"{r['upgrade_failures']} `upgrade failed`")
        if r.get("nopid"):
            notes.append(f"{r['nopid']} 2xx without pid")
        if r["drains_after_load_ms"]:
            notes.append(f"{len(r['drains_after_load_ms'])} old generation(s) ended after the load")
        if r.get("log_warnings"):
            notes.append(f"{r['log_warnings']} log lines at warning or above")
        d = r["drains_during_load_ms"] + r["drains_after_load_ms"]
        life = (f"{fint(statistics.median(d))} / {fint(max(d))} ({len(d)})" if d else "—") if r["system"] == "baton" else "n/a"
        failed = fint(r["failed"])
        if r["system"] == "baton" and r["failed"]:
            failed = f"**{failed}**"
        L.append("| " + " | ".join([
            NAMES.get(r["system"], r["system"]), r["pinning"], MODE_NAMES.get(r["mode"], r["mode"]), f"{r['connections']:,}",
            str(r["run"]), fint(r.get("requests")), fint(r.get("rps")), str(r.get("sighups", "—")), fint(r["upgrades"]),
            failed, " / ".join(fint(r.get(k)) for k in FAIL_KEYS) if r["ok"] else "—",
            fper(r["failed_per_upgrade"]), fms(r.get("p99_ms")) if r["ok"] else "—", life, str(r.get("load1", "—")),
            "; ".join(notes),
        ]) + " |")
    L.append("")

    L += ["### Method and caveats", ""]
    L.append("- Every server answers `GET /hello` with JSON carrying the pid of the process that served it; the wrk "
             "script (`Benchmarks/upgrade-under-load.lua`) counts statuses and pids. Baton: `hello` started by hand "
             "(embedded master), SIGHUP to the master, the new generation re-executes a private copy of the binary. "
             "tableflip: gin on cloudflare/tableflip (`Benchmarks/compare/tableflip`), SIGHUP to the current "
             "process (its pid file), which starts its successor and exits once that one is ready "
             "(`http.Server.Shutdown`).")
    L.append("- SIGHUPs at fixed times from the start of wrk, none in the last half interval. After the load, the "
             "script waits (bounded by the drain deadline + 10 s) for the old generations to exit, then stops the "
             "server; every run has a new server on a new port below the ephemeral range.")
    L.append("- A wrk socket error is counted per failed attempt; `read` errors are connections closed or reset "
             "with a request on them. Requests and failures are wrk's own counts (its Lua script counts statuses; "
             "non-2xx is that count).")
    L.append("- The machine has 2 cores and is shared: absolute req/s and p99 are noisy, the failed-request "
             "counts are what this benchmark is for. Failures are races: compare runs, not a single one.")
    L.append(END)
    return "\n".join(L) + "\n"


def write_section(out, section):
    try:
        with open(out) as f:
            text = f.read()
    except OSError:
        text = ""
    if BEGIN in text and END in text:
        a = text.index(BEGIN)
        b = text.index(END) + len(END)
        new = text[:a] + section.rstrip("\n") + text[b:]
    elif "\n## Soak" in text:
        # Before the soak section: Benchmarks/soak.sh keeps what precedes "## Soak", and
        # Benchmarks/compare/report.py keeps what follows this section's first marker.
        a = text.index("\n## Soak") + 1
        new = text[:a] + section + "\n" + text[a:]
    else:
        new = text.rstrip("\n") + ("\n\n" if text else "") + section
    with open(out, "w") as f:
        f.write(new)


TSV_COLUMNS = ["system", "pinning", "mode", "connections", "run", "port", "requests", "rps", "sighups", "pids",
               "upgrades", "failed", "connect", "read", "write", "timeout", "non2xx", "nopid", "failed_per_upgrade",
               "p50_ms", "p99_ms", "max_ms", "drains_during_load_ms", "drains_after_load_ms", "drain_timeouts",
               "upgrade_failures", "log_warnings", "load1", "settled", "settle_ms", "wrk_rc", "error", "dir"]


def main():
    workdir, out, png = sys.argv[1], sys.argv[2], sys.argv[3]
    meta = parse_meta(workdir)
    runs = parse_runs(workdir)
    confs = configurations(runs, meta)
    baton = [r for r in runs if r["system"] == "baton"]
    gate = 1 if any(not r["ok"] or r["failed"] for r in baton) else 0
    with open(f"{workdir}/results.tsv", "w") as f:
        f.write("\t".join(TSV_COLUMNS) + "\n")
        for r in runs:
            vals = []
            for k in TSV_COLUMNS:
                v = r.get(k)
                if isinstance(v, list):
                    v = ",".join(map(str, v))
                elif isinstance(v, float):
                    v = f"{v:.10g}"
                vals.append("" if v is None else str(v))
            f.write("\t".join(vals) + "\n")
    with open(f"{workdir}/results.json", "w") as f:
        json.dump({"meta": meta, "runs": runs, "configurations": confs,
                   "acceptance": {"baton_runs": len(baton), "baton_failed_requests": sum(r["failed"] or 0 for r in baton),
                                  "baton_runs_without_result": sum(1 for r in baton if not r["ok"]),
                                  "pass": gate == 0}}, f, indent=1)
    write_section(out, markdown(meta, runs, confs, png, gate))
    return gate


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        sys.exit(3)
