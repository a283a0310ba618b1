#!/usr/bin/env bash
# Runs `hello` behind a real nginx (deploy/nginx/baton-upstream.conf) on loopback, loads it through
# nginx with wrk and upgrades hello every INTERVAL seconds meanwhile. Exits non-zero if the client
# saw any socket error or any non-2xx answer, or if an upgrade failed.
#
# Nothing of the system's nginx is touched: nginx runs from a temporary prefix with its own
# config, logs, pid file and temp paths, on unprivileged loopback ports, and is stopped at the end.
#
#   bash deploy/nginx/behind-nginx.sh
#   UPGRADE=sighup CLIENT_CLOSE=1 DURATION=30 bash deploy/nginx/behind-nginx.sh
#
# Settings (environment):
#   CONFIG=release       swift build configuration of hello and baton (debug serves ~5x fewer requests)
#   SKIP_BUILD=0         1: use the binaries already built
#   DURATION=15          seconds of load
#   INTERVAL=2           seconds between upgrades
#   CONNECTIONS=64       wrk connections (kept alive to nginx unless CLIENT_CLOSE=1)
#   THREADS=2            wrk threads
#   TIMEOUT=5            wrk per-request timeout, seconds (a timeout counts as a socket error)
#   UPGRADE=reload       reload: `baton reload` (synchronous, its exit status is checked); sighup: kill -HUP
#   CLIENT_CLOSE=0       1: wrk sends `Connection: close` (nginx still keeps its upstream connections)
#   HELLO_PORT, NGINX_PORT  default: free ports
#   KEEP=0               1: keep the temporary folder (logs, configs) for a post-mortem
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONFIG=${CONFIG:-release}
SKIP_BUILD=${SKIP_BUILD:-0}
DURATION=${DURATION:-15}
INTERVAL=${INTERVAL:-2}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
TIMEOUT=${TIMEOUT:-5}
UPGRADE=${UPGRADE:-reload}
CLIENT_CLOSE=${CLIENT_CLOSE:-0}
KEEP=${KEEP:-0}

say() { printf '%s behind-nginx: %s\n' "$(date +%T)" "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

case "$UPGRADE" in reload|sighup) ;; *) die "UPGRADE must be reload or sighup, not '$UPGRADE'" ;; esac

# --- tools: nginx and wrk from Debian, installed only when missing -------------------------------
NGINX=$(command -v nginx || true)
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
missing=()
[ -z "$NGINX" ] && missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
    say "installing ${missing[*]} (Debian packages)"
    # Keep the package from starting the system's nginx on port 80: policy-rc.d says "no" to every
    # service start while we install (only when no policy is in place already).
    policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && policy_added=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi

# --- binaries ------------------------------------------------------------------------------------
cd "$ROOT"
if [ "$SKIP_BUILD" != 1 ]; then
    say "swift build -c $CONFIG (hello, baton)"
    swift build -c "$CONFIG" --product hello >&2
    swift build -c "$CONFIG" --product baton >&2
fi
BIN=$(swift build -c "$CONFIG" --show-bin-path)
[ -x "$BIN/hello" ] || die "$BIN/hello not built"
[ -x "$BIN/baton" ] || die "$BIN/baton not built"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HELLO_PORT=${HELLO_PORT:-$(free_port)}
NGINX_PORT=${NGINX_PORT:-$(free_port)}
[ "$HELLO_PORT" != "$NGINX_PORT" ] || NGINX_PORT=$(free_port)

# --- a private folder for everything -------------------------------------------------------------
TMP=$(mktemp -d /tmp/baton-behind-nginx.XXXXXX)
chmod 0755 "$TMP"   # nginx's workers (nobody) reach their temp paths in it
mkdir -p "$TMP/app" "$TMP/nginx/logs"
MASTER=""
NGINX_PID=""
cleanup() {
    local status=$?
    if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$NGINX_PID" 2>/dev/null || true
    fi
    if [ -n "$MASTER" ] && kill -0 "$MASTER" 2>/dev/null; then
        kill -TERM "$MASTER" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$MASTER" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MASTER" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    if [ "$KEEP" = 1 ] || [ "$status" != 0 ]; then say "logs kept in $TMP"; else rm -rf "$TMP"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

http_get() {  # URL -> status code (000 when no answer)
    curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" 2>/dev/null && return
    python3 - "$1" <<'EOF' 2>/dev/null || echo 000
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except Exception as e:
    print(getattr(e, "code", "000"))
EOF
}
wait_for_200() {  # URL WHAT
    for _ in $(seq 300); do
        [ "$(http_get "$1")" = 200 ] && return 0
        sleep 0.1
    done
    die "$2 did not answer 200 at $1 within 30 s"
}

# --- hello: its own copy of the binary, its control socket in $TMP/app/.baton --------------------
cp "$BIN/hello" "$TMP/app/hello"
chmod 0755 "$TMP/app/hello"
(cd "$TMP/app" && exec ./hello --port "$HELLO_PORT" --drain-timeout 30) >"$TMP/hello.log" 2>&1 &
MASTER=$!
wait_for_200 "http://127.0.0.1:$HELLO_PORT/hello" "hello (master pid $MASTER)"
say "hello master pid $MASTER on 127.0.0.1:$HELLO_PORT"

# --- nginx: the example upstream config, pointed at these ports ----------------------------------
sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$HELLO_PORT/" -e "s/^\([[:space:]]*\)listen 80;/\1listen 127.0.0.1:$NGINX_PORT;/" \
    "$ROOT/deploy/nginx/baton-upstream.conf" > "$TMP/nginx/baton-upstream.conf"
grep -q "server 127.0.0.1:$HELLO_PORT;" "$TMP/nginx/baton-upstream.conf" || die "could not set the upstream port in baton-upstream.conf"
grep -q "listen 127.0.0.1:$NGINX_PORT;" "$TMP/nginx/baton-upstream.conf" || die "could not set the listen port in baton-upstream.conf"
user_line=""
if [ "$(id -u)" = 0 ]; then
    if getent group nogroup >/dev/null; then user_line="user nobody nogroup;"; else user_line="user nobody nobody;"; fi
fi
cat > "$TMP/nginx/nginx.conf" <<EOF
# Generated by deploy/nginx/behind-nginx.sh for one run.
$user_line
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    # \$upstream_status lists every upstream attempt ("502, 200" = retried once).
    log_format upstreams '\$status "\$upstream_status" "\$upstream_addr"';
    access_log $TMP/nginx/logs/access.log upstreams buffer=256k flush=1s;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    include $TMP/nginx/baton-upstream.conf;
}
EOF
"$NGINX" -t -q -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" \
    || die "nginx -t rejected the config: $(cat "$TMP/nginx/logs/error.log")"
"$NGINX" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" -g 'daemon off;' &
NGINX_PID=$!
wait_for_200 "http://127.0.0.1:$NGINX_PORT/hello" "nginx (pid $NGINX_PID)"
say "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///') pid $NGINX_PID on 127.0.0.1:$NGINX_PORT -> hello"

# --- load through nginx, upgrades meanwhile ------------------------------------------------------
cat > "$TMP/count.lua" <<'EOF'
-- Counts statuses and the pid of each JSON answer across all wrk threads.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {}; pids = {} end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local pid = body and string.match(body, '"pid"%s*:%s*(%d+)')
  if pid then pids[pid] = (pids[pid] or 0) + 1 end
end
function done(summary, latency, requests)
  local total, ok, counts, seen, distinct = 0, 0, {}, {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
      total = total + n
      if status >= 200 and status < 300 then ok = ok + n end
    end
    for pid, n in pairs(thread:get("pids")) do
      if not seen[pid] then distinct = distinct + 1 end
      seen[pid] = (seen[pid] or 0) + n
    end
  end
  local e = summary.errors
  local list = {}
  for status, n in pairs(counts) do table.insert(list, status .. "=" .. n) end
  local pidlist = {}
  for pid, n in pairs(seen) do table.insert(pidlist, pid .. ":" .. n) end
  io.write(string.format("RESULT requests=%d ok=%d non2xx=%d connect=%d read=%d write=%d timeout=%d pids=%d seconds=%.1f rps=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    total, ok, total - ok, e.connect, e.read, e.write, e.timeout, distinct,
    summary.duration / 1e6, total / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write("STATUSES " .. table.concat(list, " ") .. "\n")
  io.write("PIDS " .. table.concat(pidlist, " ") .. "\n")
end
EOF

headers=()
[ "$CLIENT_CLOSE" = 1 ] && headers=(-H "Connection: close")
say "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s through nginx; upgrade ($UPGRADE) every ${INTERVAL}s"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout "${TIMEOUT}s" "${headers[@]}" -s "$TMP/count.lua" \
    "http://127.0.0.1:$NGINX_PORT/hello" >"$TMP/wrk.out" 2>&1 &
WRK_PID=$!

started=$SECONDS
upgrades=0
failed_upgrades=0
: > "$TMP/upgrades.log"
while kill -0 "$WRK_PID" 2>/dev/null; do
    sleep "$INTERVAL"
    # No upgrade in the last INTERVAL: its drain should finish under load too.
    [ $((SECONDS - started + INTERVAL)) -lt "$DURATION" ] || continue
    kill -0 "$WRK_PID" 2>/dev/null || break
    upgrades=$((upgrades + 1))
    if [ "$UPGRADE" = reload ]; then
        if out=$(cd "$TMP/app" && "$BIN/baton" reload --timeout 30 2>&1); then
            echo "$(date +%T) upgrade $upgrades: $out" >> "$TMP/upgrades.log"
        else
            failed_upgrades=$((failed_upgrades + 1))
            echo "$(date +%T) upgrade $upgrades FAILED: $out" >> "$TMP/upgrades.log"
        fi
    else
        kill -HUP "$MASTER"
        echo "$(date +%T) upgrade $upgrades: SIGHUP" >> "$TMP/upgrades.log"
    fi
done
wait "$WRK_PID" || die "wrk failed: $(cat "$TMP/wrk.out")"
sleep 1.5   # let the access log flush

cat "$TMP/wrk.out" >&2
cat "$TMP/upgrades.log" >&2
result=$(grep '^RESULT ' "$TMP/wrk.out") || die "no RESULT line from wrk's script"
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$result"; }
requests=$(field requests); non2xx=$(field non2xx); pids=$(field pids)
socket_errors=$(( $(field connect) + $(field read) + $(field write) + $(field timeout) ))
retried=$(grep -c ', ' "$TMP/nginx/logs/access.log" || true)
upstream_errors=$(grep -c 'upstream' "$TMP/nginx/logs/error.log" || true)
generations=$(grep -c 'ready in' "$TMP/hello.log" || true)
echo "behind-nginx: $requests requests through nginx ($(field rps) req/s, p50 $(field p50_ms) ms, p99 $(field p99_ms) ms, max $(field max_ms) ms), $non2xx non-2xx, $socket_errors socket errors; $upgrades upgrades ($UPGRADE, $failed_upgrades failed), $pids worker pids answered, $generations generations became ready; nginx retried $retried requests upstream, logged $upstream_errors upstream errors; CONFIG=$CONFIG CLIENT_CLOSE=$CLIENT_CLOSE"
[ "$upstream_errors" = 0 ] || grep 'upstream' "$TMP/nginx/logs/error.log" | head -5 >&2

kill -0 "$MASTER" 2>/dev/null || die "the hello master died"
[ "$socket_errors" = 0 ] || die "$socket_errors socket errors"
[ "$non2xx" = 0 ] || die "$non2xx non-2xx answers: $(grep '^STATUSES' "$TMP/wrk.out")"
[ "$failed_upgrades" = 0 ] || die "$failed_upgrades upgrades failed"
[ "$upgrades" -ge 1 ] || die "no upgrade happened during the load (DURATION too short for INTERVAL?)"
[ "$pids" -ge 2 ] || die "only $pids worker pid answered: the upgrades were not seen through nginx"
echo "behind-nginx: OK"
