#!/usr/bin/env bash
# Runs each fuzz target under libFuzzer for a fixed time: Fuzz/run.sh [SECONDS] [TARGET...]
# (default 60 s each, every target). See Fuzz/README.md.
#
# Builds `baton-fuzz` with coverage instrumentation (`--sanitize=fuzzer`, its own scratch path),
# fuzzes from Fuzz/corpus/<target>/, then rewrites that folder as its named inputs plus the fewest
# others that keep every feature reached (libFuzzer's -merge), so the committed corpus stays small. An input that crashes,
# hangs (-timeout) or breaks a property is left in .build-libfuzzer/fuzz/<target>/ and the
# script exits 1; replay it with the plain build: `swift run baton-fuzz TARGET FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
all=(watch-conf control-request worker-channel notify-message listen-address master-record request-boundary)
targets=("${@:-${all[@]}}")
scratch=.build-libfuzzer
# Longest input per target: past the control socket's 4096-byte line limit; a master record's
# real size (a few KiB); libFuzzer's default for the rest.
declare -A max_len=([control-request]=9000 [master-record]=16384)

echo "building baton-fuzz with libFuzzer ($scratch)…" >&2
nice -n 10 swift build --scratch-path "$scratch" --sanitize=fuzzer -Xswiftc -DBATON_LIBFUZZER --product baton-fuzz >&2
fuzzer="$scratch/debug/baton-fuzz"

failed=()
for target in "${targets[@]}"; do
    corpus="Fuzz/corpus/$target"
    work="$scratch/fuzz/$target"
    [ -d "$corpus" ] || { echo "error: no corpus folder $corpus (is '$target' a target?)" >&2; exit 2; }
    rm -rf "$work"
    mkdir -p "$work/new"
    before=$(ls "$corpus" | wc -l)
    echo "== $target: $seconds s" >&2
    status=0
    # -timeout: an input that takes a second is a hang here (the slowest take milliseconds).
    # SWIFT_BACKTRACE: Swift's own crash handler would take the signal before libFuzzer saves the input.
    SWIFT_BACKTRACE=enable=no BATON_FUZZ_TARGET="$target" nice -n 10 "$fuzzer" "$work/new" "$corpus" \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -max_len="${max_len[$target]:-4096}" \
        -print_final_stats=1 -artifact_prefix="$work/" >"$work/log" 2>&1 || status=$?
    # The corpus anew: the named inputs (seeds, regression-*) and the fewest others that keep
    # every edge covered so far (libFuzzer names those by their SHA-1). Edges, not hit counts
    # (-use_counters=0): with counts, the corpus was four times the size for the same edges.
    mkdir -p "$work/merged"
    find "$corpus" -maxdepth 1 -type f -regextype posix-extended ! -regex '.*/[0-9a-f]{40}' -exec cp {} "$work/merged/" \;
    if BATON_FUZZ_TARGET="$target" "$fuzzer" -merge=1 -use_counters=0 -max_len="${max_len[$target]:-4096}" "$work/merged" "$corpus" "$work/new" \
        >"$work/merge.log" 2>&1; then
        find "$corpus" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' -delete
        cp "$work/merged"/* "$corpus/"
    else
        echo "warning: merging the corpus failed (see $work/merge.log); it is left as it was" >&2
    fi
    after=$(ls "$corpus" | wc -l)
    # The last status line (a run that failed prints no final stats).
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "$work/log" | tail -1 | tr -d '#')
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log")
    [ -n "$speed" ] || speed=$(grep -o 'exec/s: [0-9]*' "$work/log" | tail -1 | cut -d' ' -f2)
    cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1)
    bytes=$(cat "$corpus"/* | wc -c)
    echo "$target: ${runs:-?} runs in $seconds s (${speed:-?}/s), $cov, corpus $before → $after files ($bytes bytes)"
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        echo "$target FAILED (exit $status): $(ls "$work" | grep -E '^(crash|timeout|oom|leak)-' | sed "s|^|$work/|" | tr '\n' ' ')" >&2
        grep -E 'broken|^  - |Fatal error|ERROR: libFuzzer' "$work/log" | head -20 >&2
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
