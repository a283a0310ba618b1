#!/usr/bin/env bash
# What HTTP/2 and HTTPS clients see while `hello` is upgraded every 2 s: 9 upgrades (SIGHUP to the
# master) under closed-loop load, the server pinned to one core, the clients to another. Each old
# generation drains by protocol: HTTP/2 connections get GOAWAY(max id) + PING, then GOAWAY(last stream
# id), their streams in flight finish, then the connection closes (close_notify under TLS); HTTP/1.1
# over TLS gets `Connection: close` on its next response, or close_notify when idle.
#
#   Benchmarks/protocols/h2-tls.sh BIN_DIR [ROUNDS]
#
# BIN_DIR holds a release build of `hello`. The Go client (Benchmarks/protocols/h2client) is built
# into the work folder, offline, from Debian's golang-go and golang-golang-x-net-dev; h2load comes
# from nghttp2-client, wrk from wrk (missing packages are installed with apt-get). A throwaway EC
# certificate is made with openssl. ROUNDS (default 3) rounds of five runs, each a fresh server in a
# fresh folder with its listeners: HTTP/1.1 (only to see it answer), h2c and TLS (ALPN h2 or http/1.1).
# Environment: SERVER_CPU (0), CLIENT_CPU (1), UPGRADES (9), INTERVAL_S (2), LOAD_S (20), and RUNS,
# the runs of a round in order (default "h2c:go h2:go h2c:h2load h2:h2load https:wrk").
# Standard error: progress and the work folder, which keeps every run's raw logs (server.log, the
# clients' output, the Go client's failures and connections, h2load's --log-file).
#
# One line per run on standard output, `key=value` pairs. Every run has:
#   protocol       h2c (HTTP/2 prior knowledge, plain TCP), h2 (HTTP/2 over TLS by ALPN), https
#                  (HTTP/1.1 over TLS by ALPN)
#   client         go (h2client: reconnects after GOAWAY), h2load (reference; never reconnects), wrk
#   round
#   upgrades       SIGHUPs sent (one every INTERVAL_S, the first INTERVAL_S after the load ramped up)
#   gens_started   generations the master started ("starting (" in its log; 1 + one per upgrade)
#   gens_ready     generations that became ready ("ready in")
#   gens_drained   old generations that exited after draining ("drained in"), counted once the load
#                  is over and every old generation is gone (or 40 s passed); drained_max_ms: the
#                  longest of those drains (the master's "drained in"), drained_exit: their exit
#                  statuses (e.g. "exit_status_0:9")
#   old_alive      old-generation pids still alive at that point (must be 0); exit_ok: yes when
#                  gens_drained = gens_started - 1, old_alive = 0, and the master and its last
#                  generation exited on SIGTERM within 40 s
#   work           this run's folder
#
# client=go (the Go client, 256 connections x 10 concurrent streams, one golang.org/x/net/http2
# Transport per connection, GET /hello in closed loops for LOAD_S s after the ramp):
#   ok             2xx answers read completely (the ramp's 256 included)
#   failed         requests that failed: any transport error, a timeout (10 s), a body cut short or a
#                  non-2xx status; kinds: those by kind (KIND:N,…; "-": none), each one in
#                  go-failures.txt with the time, connection and error text
#   retries        attempts x/net made again on its own (one request, GotConn more than once). These
#                  are not failures: x/net retries a request without a body when a GOAWAY's last-
#                  stream-id says its stream was not processed, when the stream was refused
#                  (REFUSED_STREAM), or when the connection it picked could no longer take new
#                  streams. RFC 9113 §6.8: streams above the last-stream-id were not processed by the
#                  server and are safe to retry, so doing so is correct client behaviour and is what
#                  a real client does; the request counts as ok if the retry got its 2xx. The two-step
#                  GOAWAY aims at 0 retries (the first GOAWAY stops new streams before the server
#                  fixes the last id).
#   conns          connections opened: 256 at the ramp plus one per GOAWAY-driven reconnect
#   conns_goaway   connections that received at least one GOAWAY
#   two_step_goaway  connections that received GOAWAY(2^31-1) and then GOAWAY(last id) before they
#                  ended. x/net closes a connection itself once its streams are done after the
#                  first GOAWAY, often before the second arrives, so this is less than conns_goaway
#   goaway_errors  GOAWAY frames with an error code other than NO_ERROR
#   rst_stream     RST_STREAM frames received; rst_codes: by error code (CODE:N,…). A stream the
#                  server refuses (REFUSED_STREAM) is retried by x/net, so it shows in retries too
#   server_closed_without_goaway  connections the server closed (EOF) without any GOAWAY first
#   ends           how connections ended (END:N,…): client_close (x/net closed it after a GOAWAY),
#                  server_eof (the server closed it), error:KIND (a read error), open (still open
#                  when the load stopped)
#   pids           distinct worker pids that answered
#   rps, p50_ms, p99_ms, max_ms, ramp_ms   rate over the measured period; latency of the ok answers
#
# client=h2load (h2load -c 256 -m 10 -D LOAD_S --log-file; for reference):
#   h2_total, h2_succeeded, h2_failed, h2_errored, h2_timeout   h2load's own totals ("requests:" line)
#   log_streams    streams h2load actually sent: the lines of its --log-file with a start time; of those
#   log_2xx        answered 2xx, log_failed: status -1 (the stream failed), log_other: another status
#   log_unsent     lines with start time 0 (and status -1): requests h2load submitted to nghttp2
#                  whose HEADERS never went out (closed unsent, e.g. once a GOAWAY had arrived)
#   log_last_ms    when the last logged stream ended, ms after h2load's first one started
#   alpn           the protocol h2load negotiated ("Application protocol:")
#   h2load never reconnects an HTTP/2 connection (only its HTTP/1 sessions do; nghttp2/nghttp2#1197):
#   after the first GOAWAY a connection submits nothing more, so after the first upgrade h2load
#   sends nothing at all (log_last_ms shows when it stopped). With a request count (-n), h2load adds
#   every request such a client had left to "failed" and "errored" without ever sending them
#   (process_request_failure, src/h2load.cc; design note F7), so its totals cannot show 0 failed
#   across a GOAWAY however correct the server is. With -D, as here, h2load 1.52 totals the requests
#   it submitted, one log line each, which may include a few never sent (log_unsent); both are
#   printed so that they can be compared. log_failed, sent streams that ended with -1, is the figure
#   that shows a stream the server lost or refused (h2load does not retry a REFUSED_STREAM).
#
# client=wrk (wrk -t1 -c1024 -dLOAD_S https://…/hello, HTTP/1.1 by ALPN; compare/compare.lua with CMP_TRACK=1 counts statuses and pids):
#   requests       responses (wrk's count); non2xx: responses with a status outside 200-299
#   connect, read, write, timeout   wrk's socket errors (timeout: no answer within wrk's 2 s)
#   pids           distinct worker pids that answered; rps, p99_ms, max_ms: wrk's figures
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:?usage: h2-tls.sh BIN_DIR [ROUNDS]}
bin=$(cd "$bin" && pwd)
rounds=${2:-3}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
UPGRADES=${UPGRADES:-9}
INTERVAL_S=${INTERVAL_S:-2}
LOAD_S=${LOAD_S:-20}
RUNS=${RUNS:-h2c:go h2:go h2c:h2load h2:h2load https:wrk}
WORK=$(mktemp -d /tmp/baton-h2-tls.XXXXXX)
HELPERS=() GROUPS_STARTED=()
# shellcheck source=../lib.sh
source "$here/lib.sh"
trap cleanup_all EXIT
[[ -x $bin/hello ]] || die "no $bin/hello (a release build of the hello product)"

need=()
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
command -v go >/dev/null || need+=(golang-go)
[[ -d /usr/share/gocode/src/golang.org/x/net/http2 ]] || need+=(golang-golang-x-net-dev)
((${#need[@]} == 0)) || install_debian_packages "${need[@]}"
say "work folder: $WORK"
go_build "$here/protocols/h2client" "$WORK/h2client" "$WORK/h2client-build.log"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >"$WORK/openssl.log" 2>&1 ||
    die "openssl could not make a certificate (see $WORK/openssl.log)"

three_ports() {   # three distinct free ports
    local a b c
    a=$(free_port) && b=$(free_port) && c=$(free_port) || return 1
    [[ $a != "$b" && $a != "$c" && $b != "$c" ]] || { three_ports; return; }
    echo "$a $b $c"
}

# The server's generations from its log: "N PID" per generation that became ready.
generation_pids() {
    sed -n 's/.*role=master.* generation \([0-9]*\) (pid \([0-9]*\),.*) ready in .*/\1 \2/p' "$1"
}

# run_one PROTOCOL CLIENT ROUND: one server, one client, UPGRADES upgrades; prints the run's line.
run_one() {
    local proto=$1 client=$2 round=$3
    local dir="$WORK/$proto-$client-r$round" ports p1 p2 p3 master load url t upgrades=0
    mkdir -p "$dir"
    ports=$(three_ports) || die "no free ports"
    read -r p1 p2 p3 <<<"$ports"
    (cd "$dir" && exec setsid taskset -c "$SERVER_CPU" "$bin/hello" --port "$p1" --h2c-port "$p2" --tls-port "$p3" \
        --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" --drain-timeout 30 >>"$dir/server.log" 2>&1 </dev/null) &
    master=$!
    track_group "$master"
    wait_answer "$p1" 60 || die "hello did not answer (see $dir/server.log)"
    case $proto in
        h2c) url="http://127.0.0.1:$p2/hello" ;;
        *) url="https://127.0.0.1:$p3/hello" ;;
    esac

    case $client in
        go)
            taskset -c "$CLIENT_CPU" "$WORK/h2client" -url "$url" -c 256 -m 10 -d "${LOAD_S}s" -ready-file "$dir/go.ready" \
                -fail-log "$dir/go-failures.txt" -conn-log "$dir/go-conns.txt" >"$dir/go.out" 2>"$dir/go.log" &
            load=$!
            track_helper "$load"
            for ((t = 0; t < 600; t++)); do [[ -s $dir/go.ready ]] && break; alive "$load" || break; sleep 0.1; done
            [[ -s $dir/go.ready ]] || die "the Go client did not open its connections (see $dir/go.log)"
            ;;
        h2load)
            taskset -c "$CLIENT_CPU" h2load -c 256 -m 10 -D "$LOAD_S" --log-file "$dir/h2load-streams.tsv" "$url" \
                >"$dir/h2load.out" 2>&1 &
            load=$!
            track_helper "$load"
            sleep 1
            ;;
        wrk)
            CMP_TRACK=1 taskset -c "$CLIENT_CPU" wrk -t1 -c1024 -d"${LOAD_S}s" -s "$here/compare/compare.lua" "$url" \
                >"$dir/wrk.out" 2>&1 &
            load=$!
            track_helper "$load"
            sleep 1
            ;;
    esac

    # The upgrades, from the end of the ramp: one every INTERVAL_S.
    local begin
    begin=$(now_ms)
    for ((t = 1; t <= UPGRADES; t++)); do
        sleep_until_ms $((begin + t * INTERVAL_S * 1000))
        alive "$master" || die "the master died (see $dir/server.log)"
        kill -HUP "$master"
        upgrades=$((upgrades + 1))
    done
    wait "$load" || say "warning: $client exited with $? (see $dir)"
    forget_helper "$load"

    # Every old generation must exit by itself (drained); the last one goes on serving.
    local started ready drained gens last_pid old_alive p n
    started=$(grep -c 'role=master.*) starting (' "$dir/server.log" || true)
    for ((t = 0; t < 400; t++)); do
        drained=$(grep -c 'role=master.*) drained in ' "$dir/server.log" || true)
        ((drained >= started - 1)) && break
        sleep 0.1
    done
    started=$(grep -c 'role=master.*) starting (' "$dir/server.log" || true)
    ready=$(grep -c 'role=master.*) ready in ' "$dir/server.log" || true)
    drained=$(grep -c 'role=master.*) drained in ' "$dir/server.log" || true)
    gens=$(generation_pids "$dir/server.log")
    last_pid=$(tail -n 1 <<<"$gens" | cut -d' ' -f2)
    old_alive=0
    while read -r n p; do
        [[ -n $p && $p != "$last_pid" ]] && alive "$p" && old_alive=$((old_alive + 1))
    done <<<"$gens"

    cp "$dir/server.log" "$dir/server-before-stop.log"

    # Stop: SIGTERM to the master, then wait for it and its workers.
    local stopped=yes
    kill -TERM "$master" 2>/dev/null || true
    for ((t = 0; t < 400; t++)); do
        [[ -z $(group_members "$master") ]] && break
        sleep 0.1
    done
    [[ -z $(group_members "$master") ]] || { stopped=no; say "warning: the server of $dir did not stop on SIGTERM in 40 s"; }
    wait "$master" 2>/dev/null || true
    kill_group "$master" 5

    local drain_info exit_ok=no
    drain_info=$(python3 - "$dir/server-before-stop.log" <<'EOF'
import re, sys
took, statuses = [], {}
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"role=master .*generation \d+ \(pid \d+.*\) drained in ([\d.]+) ?(ms|s|µs|us|min) \((.*)\)\s*$", line)
    if not m:
        continue
    v = float(m.group(1)) * {"ms": 1, "s": 1000, "µs": 0.001, "us": 0.001, "min": 60000}[m.group(2)]
    took.append(v)
    statuses[m.group(3)] = statuses.get(m.group(3), 0) + 1
exits = ",".join("%s:%d" % (k.replace(" ", "_"), n) for k, n in sorted(statuses.items())) or "-"
print(f"drained_max_ms={round(max(took)) if took else -1} drained_exit={exits}")
EOF
    )
    ((drained == started - 1 && old_alive == 0)) && [[ $stopped == yes ]] && exit_ok=yes
    local gen_info="upgrades=$upgrades gens_started=$started gens_ready=$ready gens_drained=$drained $drain_info old_alive=$old_alive exit_ok=$exit_ok"

    local counts
    case $client in
        go)
            counts=$(cat "$dir/go.out")
            [[ -n $counts ]] || die "the Go client printed nothing (see $dir/go.log)"
            ;;
        h2load)
            counts=$(python3 - "$dir/h2load.out" "$dir/h2load-streams.tsv" <<'EOF'
import re, sys
out = open(sys.argv[1], errors="replace").read()
m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
tot = dict(zip(("total", "started", "done", "succeeded", "failed", "errored", "timeout"), m.groups())) if m else {}
alpn = re.search(r"Application protocol: (\S+)", out)
n = ok = failed = other = unsent = 0
first = last = None
try:
    for line in open(sys.argv[2]):
        f = line.split()
        if len(f) < 3:
            continue
        status, start, took = int(f[1]), int(f[0]), int(f[2])
        if start == 0:   # submitted, never sent: no start time (always status -1)
            unsent += 1
            continue
        n += 1
        if 200 <= status < 300: ok += 1
        elif status == -1: failed += 1
        else: other += 1
        first = start if first is None else min(first, start)
        last = start + took if last is None else max(last, start + took)
except FileNotFoundError:
    pass
print(" ".join(f"h2_{k}={tot.get(k, -1)}" for k in ("total", "succeeded", "failed", "errored", "timeout")),
      f"log_streams={n} log_2xx={ok} log_failed={failed} log_other={other} log_unsent={unsent}",
      f"log_last_ms={(last - first) // 1000 if first is not None else -1} alpn={alpn.group(1) if alpn else '-'}")
EOF
            )
            ;;
        wrk)
            counts=$(sed -n 's/^CMP_RESULT //p' "$dir/wrk.out")
            [[ -n $counts ]] || die "wrk printed no result (see $dir/wrk.out)"
            ;;
    esac
    echo "protocol=$proto client=$client round=$round $counts $gen_info work=$dir"
}

for round in $(seq 1 "$rounds"); do
    for run in $RUNS; do
        proto=${run%%:*} client=${run#*:}
        say "round $round: $proto with $client"
        run_one "$proto" "$client" "$round"
    done
done
say "done; raw logs in $WORK"
