#!/usr/bin/env bash
# The fleet test: the Ansible role and playbooks of deploy/ansible against real hosts on one machine.
#
#   sudo bash deploy/ansible/fleet-test.sh
#   SKIP_BUILD=1 KEEP=1 HOSTS=4 bash deploy/ansible/fleet-test.sh
#
# Hosts are network namespaces baton-fleet-h1..hN, each with a veth on the bridge baton-fleet-br
# (10.77.0.1/24 in the root namespace; host N is 10.77.0.(10+N)), its own sshd (Debian's
# openssh-server, host keys and a root key made for this run) and a Baton master
# (`hello --config …/hN/srv/app/watch.conf`, release 1 staged as the app's BinName `app`).
# A real nginx in the root namespace balances the hosts (deploy/nginx/baton-upstream.conf, keep-alive
# upstreams), and wrk loads it through nginx during every rollout.
#
# Scenario:
#   1. rollout.yml, release 2 (hello with 16 bytes after the ELF's end: another SHA-256, Ver "2"):
#      every host must serve 2 (its own /hello and `baton status --json`).
#   2. the same rollout again (nothing may change) and a --check run of release 3 (nothing may change).
#   3. rollout.yml, release 3 = a program that exits at start: the canary's upgrade fails, Baton keeps
#      its old generation, max_fail_percentage 0 stops the rollout in batch 1; every host still
#      serves 2 and the canary's files are release 2 again.
#   4. rollout.yml with a canary on each host (baton_release_canary), release 4 = a hello that starts
#      and answers but returns 500 to 20% of its requests (the masters run with hello's test aids
#      --inject-errors 20 --inject-into-version 4): the first host's canary is rolled back by Baton
#      (`baton reload --canary` exits 3), the rollout stops in batch 1, every host still serves 2.
#   5. rollback.yml to release 1.
# The last lines include
#   FLEET hosts=N upgraded=U failed=F broken_stopped_at_batch=B canary_stopped_at_batch=C old_kept=K requests=R
#   CANARY canary_errors=E requests=R (the 500s the canary answered before Baton rolled it back)
# (failed and requests: through nginx, over rollouts 1 and 3). Exits non-zero on any deviation.
# Everything it made (namespaces, veths, the bridge, processes, the temporary folder) is removed
# at the end, also after a failure (KEEP=1 keeps the folder).
#
# Settings (environment):
#   HOSTS=3            number of hosts (2..9)
#   CONFIG=debug       swift build configuration of hello and baton
#   SKIP_BUILD=0       1: use the binaries already built
#   VENV=/var/tmp/baton-ansible-venv   Python venv with ansible-core (made when missing)
#   CONNECTIONS=32     wrk connections through nginx
#   ROLLBACK=1         0: skip the rollback playbook
#   KEEP=0             1: keep the temporary folder
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ANSIBLE_DIR="$ROOT/deploy/ansible"
HOSTS=${HOSTS:-3}
CONFIG=${CONFIG:-debug}
SKIP_BUILD=${SKIP_BUILD:-0}
VENV=${VENV:-/var/tmp/baton-ansible-venv}
CONNECTIONS=${CONNECTIONS:-32}
ROLLBACK=${ROLLBACK:-1}
KEEP=${KEEP:-0}
PREFIX=baton-fleet
BRIDGE=$PREFIX-br
NET=10.77.0
STARTED_AT=$SECONDS

say() { printf '%s fleet-test: %s\n' "$(date +%T)" "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

if [ "$(id -u)" != 0 ]; then
    echo "fleet-test.sh: must run as root: it creates network namespaces, veth interfaces and a bridge, and runs sshd. Run: sudo bash $0" >&2
    exit 1
fi
case "$HOSTS" in [2-9]) ;; *) die "HOSTS must be 2..9, not '$HOSTS'" ;; esac

# --- leftovers of an aborted run: only what carries our prefix ----------------------------------
remove_namespaces_and_links() {
    local ns pid link
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX-" || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
        sleep 0.5
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^$PREFIX-" || true); do
        ip link del "$link" 2>/dev/null || true
    done
}
for stale in /tmp/$PREFIX.*; do
    [ -d "$stale" ] || continue
    # An nginx of ours still running: its pid file, and its command line names our folder.
    if [ -f "$stale/nginx/nginx.pid" ] && pid=$(cat "$stale/nginx/nginx.pid") &&
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$stale/nginx/"; then
        kill -QUIT "$pid" 2>/dev/null || true
    fi
done
if ip netns list 2>/dev/null | grep -q "^$PREFIX-" || ip -o link show | grep -q ": $PREFIX-"; then
    say "removing leftovers of an earlier run: $(ip netns list | grep "^$PREFIX-" | awk '{print $1}' | tr '\n' ' ')"
    remove_namespaces_and_links
fi

# --- tools: Debian packages and the Ansible venv, installed only when missing --------------------
missing=()
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (Debian packages)"
    # Keep the packages from starting the system's nginx and sshd (only when no policy is in place).
    policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && policy_added=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
if [ ! -x "$VENV/bin/ansible-playbook" ]; then
    say "making the Ansible venv $VENV (ansible-core from PyPI)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q ansible-core
fi
PLAYBOOK="$VENV/bin/ansible-playbook"

# --- binaries ------------------------------------------------------------------------------------
cd "$ROOT"
if [ "$SKIP_BUILD" != 1 ]; then
    say "swift build -c $CONFIG (hello, baton)"
    # One product per invocation: with several --product flags swift build builds only the last.
    swift build -c "$CONFIG" --product hello >&2
    swift build -c "$CONFIG" --product baton >&2
fi
BIN=$(swift build -c "$CONFIG" --show-bin-path)
[ -x "$BIN/hello" ] && [ -x "$BIN/baton" ] || die "hello and baton are not built in $BIN"

# --- the temporary root --------------------------------------------------------------------------
TMP=$(mktemp -d "/tmp/$PREFIX.XXXXXX")
chmod 0755 "$TMP"   # nginx's workers (nobody) reach their temp paths in it
mkdir -p "$TMP/bin" "$TMP/releases" "$TMP/ssh" "$TMP/nginx/logs" "$TMP/cp" "$TMP/ansible-home" "$TMP/remote-tmp"
cp "$BIN/hello" "$BIN/baton" "$TMP/bin/"
BATON="$TMP/bin/baton"

declare -a SSHD_PIDS=() MASTER_PIDS=() WRK_PIDS=()
NGINX_PID=""
cleanup() {
    local status=$? pid socket left
    trap - EXIT
    set +e
    for pid in "${WRK_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$NGINX_PID" 2>/dev/null
    fi
    for socket in "$TMP"/cp/*; do [ -S "$socket" ] && ssh -o ControlPath="$socket" -O exit fleet >/dev/null 2>&1; done
    for pid in "${MASTER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done   # workers drain and exit with them
    for pid in "${MASTER_PIDS[@]}"; do
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${SSHD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    wait 2>/dev/null
    remove_namespaces_and_links
    left=$( { ip netns list | grep "$PREFIX"; ip -o link show | grep "$PREFIX"; } 2>/dev/null || true)
    if [ -n "$left" ]; then say "cleanup: LEFT BEHIND: $left"; [ "$status" = 0 ] && status=1
    else say "cleanup: no $PREFIX namespace or interface left"; fi
    if [ "$KEEP" = 1 ] || [ "$status" != 0 ]; then say "files kept in $TMP"; else rm -rf "$TMP"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- releases ------------------------------------------------------------------------------------
cp "$BIN/hello" "$TMP/releases/app-1"
cp "$BIN/hello" "$TMP/releases/app-2"
printf 'baton-fleet-rel2' >> "$TMP/releases/app-2"   # after the ELF's end: another file, same program
printf '#!/bin/sh\necho "release 3 is broken: exiting at start" >&2\nexit 3\n' > "$TMP/releases/app-3"
cp "$BIN/hello" "$TMP/releases/app-4"
printf 'baton-fleet-rel4' >> "$TMP/releases/app-4"   # served as Ver 4: answers 500 to 20% (the masters' test aids)
chmod 0755 "$TMP/releases/"app-*
sha() { sha256sum "$1" | cut -c1-12; }
say "releases: 1 $(sha "$TMP/releases/app-1")…, 2 $(sha "$TMP/releases/app-2")…, 3 (broken) $(sha "$TMP/releases/app-3")…, 4 (5xx) $(sha "$TMP/releases/app-4")…"

# --- network: a bridge in the root namespace, one namespace per host -----------------------------
ip link add "$BRIDGE" type bridge
ip addr add "$NET.1/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
ssh-keygen -q -t ed25519 -N '' -C baton-fleet-test -f "$TMP/ssh/id_ed25519"
cp "$TMP/ssh/id_ed25519.pub" "$TMP/ssh/authorized_keys"
mkdir -p /run/sshd   # sshd's privilege separation folder
host_ip() { echo "$NET.$((10 + $1))"; }
app_dir() { echo "$TMP/h$1/srv/app"; }

http_get() { curl -s -m 5 "$1" 2>/dev/null || true; }
served_ver() { http_get "http://$(host_ip "$1"):8080/hello" | sed -n 's/.*"ver":"\([^"]*\)".*/\1/p'; }
status_ver() {  # the versions Baton reports serving on host N (from `baton status --json`)
    "$BATON" status --json --config "$(app_dir "$1")/watch.conf" 2>/dev/null |
        python3 -c 'import json,sys; print(",".join(g["version"] for g in json.load(sys.stdin)["generations"] if g["state"]=="serving"))' 2>/dev/null || echo "?"
}
conf_ver() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Ver"])' "$(app_dir "$1")/watch.conf"; }
wait_for() {  # URL WHAT
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null)" = 200 ] && return 0
        sleep 0.1
    done
    die "$2 did not answer 200 at $1 within 30 s"
}

for n in $(seq "$HOSTS"); do
    ns=$PREFIX-h$n
    ip netns add "$ns"
    ip link add "$PREFIX-v$n" type veth peer name eth0 netns "$ns"
    ip link set "$PREFIX-v$n" master "$BRIDGE" up
    ip -n "$ns" addr add "$(host_ip "$n")/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    mkdir -p "$TMP/h$n/ssh" "$(app_dir "$n")"
    ssh-keygen -q -t ed25519 -N '' -f "$TMP/h$n/ssh/ssh_host_ed25519_key"
    cat > "$TMP/h$n/ssh/sshd_config" <<EOF
ListenAddress $(host_ip "$n"):22
HostKey $TMP/h$n/ssh/ssh_host_ed25519_key
PidFile $TMP/h$n/ssh/sshd.pid
AuthorizedKeysFile $TMP/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 50
MaxStartups 50:30:100
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel ERROR
EOF
    ip netns exec "$ns" /usr/sbin/sshd -D -e -f "$TMP/h$n/ssh/sshd_config" >"$TMP/h$n/sshd.log" 2>&1 &
    SSHD_PIDS+=($!)
    # The app folder: release 1 as BinName, watch.conf, and the Baton master in the namespace.
    cp "$TMP/releases/app-1" "$(app_dir "$n")/app"
    printf '{"HttpPort":"8080","Ver":"1","DelaySecond":5,"BinName":"app"}\n' > "$(app_dir "$n")/watch.conf"
    chmod 0755 "$(app_dir "$n")/app"; chmod 0644 "$(app_dir "$n")/watch.conf"
    ip netns exec "$ns" "$TMP/bin/hello" --config "$(app_dir "$n")/watch.conf" --inject-errors 20 --inject-into-version 4 \
        >"$TMP/h$n/master.log" 2>&1 &
    MASTER_PIDS+=($!)
done
for n in $(seq "$HOSTS"); do
    wait_for "http://$(host_ip "$n"):8080/hello" "host h$n's Baton master"
    for _ in $(seq 50); do
        ssh -q -i "$TMP/ssh/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
            -o ConnectTimeout=2 "root@$(host_ip "$n")" true 2>/dev/null && break
        sleep 0.2
    done
    ssh -q -i "$TMP/ssh/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        "root@$(host_ip "$n")" true || die "no ssh to h$n ($(host_ip "$n")): $(cat "$TMP/h$n/sshd.log")"
    say "host h$n: namespace $PREFIX-h$n, $(host_ip "$n"), sshd pid ${SSHD_PIDS[$((n - 1))]}, master pid ${MASTER_PIDS[$((n - 1))]}, serving $(served_ver "$n")"
done

# --- nginx in the root namespace, balancing the hosts ---------------------------------------------
NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
servers=""
for n in $(seq "$HOSTS"); do servers="${servers}    server $(host_ip "$n"):8080;\\n"; done
sed -e "s/^\([[:space:]]*\)server 127\.0\.0\.1:8080;/$servers/" -e "s/^\([[:space:]]*\)listen 80;/\1listen 127.0.0.1:$NGINX_PORT;/" \
    "$ROOT/deploy/nginx/baton-upstream.conf" > "$TMP/nginx/baton-upstream.conf"
[ "$(grep -c "server $NET\.[0-9]*:8080;" "$TMP/nginx/baton-upstream.conf")" = "$HOSTS" ] || die "could not set the upstream servers"
grep -q "listen 127.0.0.1:$NGINX_PORT;" "$TMP/nginx/baton-upstream.conf" || die "could not set nginx's port"
cat > "$TMP/nginx/nginx.conf" <<EOF
user nobody nogroup;
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
getent group nogroup >/dev/null || sed -i 's/^user nobody nogroup;/user nobody nobody;/' "$TMP/nginx/nginx.conf"
/usr/sbin/nginx -t -q -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" ||
    die "nginx -t rejected the config: $(cat "$TMP/nginx/logs/error.log")"
/usr/sbin/nginx -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" -g 'daemon off;' &
NGINX_PID=$!
wait_for "http://127.0.0.1:$NGINX_PORT/hello" "nginx"
say "nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///') pid $NGINX_PID on 127.0.0.1:$NGINX_PORT -> $HOSTS hosts (keepalive 64)"

# --- wrk through nginx: statuses and versions, counted by a Lua script ---------------------------
cat > "$TMP/count.lua" <<'EOF'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {}; vers = {} end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local ver = body and string.match(body, '"ver"%s*:%s*"([^"]*)"')
  if ver then vers[ver] = (vers[ver] or 0) + 1 end
end
function done(summary, latency, requests)
  local total, ok, seen = 0, 0, {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total = total + n
      if status >= 200 and status < 300 then ok = ok + n end
    end
    for ver, n in pairs(thread:get("vers")) do seen[ver] = (seen[ver] or 0) + n end
  end
  local e = summary.errors
  local list = {}
  for ver, n in pairs(seen) do table.insert(list, ver .. ":" .. n) end
  table.sort(list)
  io.write(string.format("RESULT requests=%d ok=%d non2xx=%d errors=%d connect=%d read=%d write=%d timeout=%d seconds=%.1f rps=%.0f p99_ms=%.1f versions=%s\n",
    total, ok, total - ok, e.connect + e.read + e.write + e.timeout, e.connect, e.read, e.write, e.timeout,
    summary.duration / 1e6, total / (summary.duration / 1e6), latency:percentile(99) / 1000, table.concat(list, ",")))
end
EOF
start_wrk() {  # NAME: wrk until stop_wrk
    wrk -t2 -c"$CONNECTIONS" -d600s --timeout 5s -s "$TMP/count.lua" "http://127.0.0.1:$NGINX_PORT/hello" >"$TMP/wrk-$1.out" 2>&1 &
    WRK_PIDS+=($!)
    sleep 1
}
WRK_RESULT=""
stop_wrk() {  # NAME: SIGINT makes wrk stop and report; sets WRK_RESULT to its RESULT line
    local pid=${WRK_PIDS[-1]}
    sleep 2   # load after the last switch: a late failure is counted too
    kill -INT "$pid"
    wait "$pid" || true
    WRK_RESULT=$(grep '^RESULT ' "$TMP/wrk-$1.out") || die "no RESULT from wrk ($1): $(cat "$TMP/wrk-$1.out")"
}
field() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }

# --- Ansible: inventory of the namespaced hosts ---------------------------------------------------
{
    echo "[baton_fleet]"
    for n in $(seq "$HOSTS"); do
        echo "h$n ansible_host=$(host_ip "$n") baton_release_app_dir=$(app_dir "$n")"
    done
    echo
    echo "[baton_fleet:vars]"
    echo "ansible_user=root"
    echo "ansible_ssh_private_key_file=$TMP/ssh/id_ed25519"
    echo "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'"
    echo "ansible_python_interpreter=/usr/bin/python3"
    echo "baton_release_cli=$BATON"
} > "$TMP/inventory.ini"
export ANSIBLE_CONFIG="$ANSIBLE_DIR/ansible.cfg" ANSIBLE_HOME="$TMP/ansible-home" ANSIBLE_REMOTE_TMP="$TMP/remote-tmp"
export ANSIBLE_LOCAL_TEMP="$TMP/ansible-home/tmp" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
export ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=30s -o ControlPath=$TMP/cp/%C"
play() {  # NAME PLAYBOOK ARGS...: runs ansible-playbook, output to the terminal and $TMP/NAME.log; returns its status
    local name=$1; shift
    say "ansible-playbook -i inventory.ini $*"
    set +e
    (cd "$ANSIBLE_DIR" && "$PLAYBOOK" -i "$TMP/inventory.ini" "$@") 2>&1 | tee "$TMP/$name.log" | sed 's/^/    /' >&2
    local status=${PIPESTATUS[0]}
    set -e
    return "$status"
}
recap_changed() { grep -E '^h[0-9]+ +:' "$TMP/$1.log" | sed -n 's/.*changed=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}'; }
batches() { grep -c '"msg": "baton batch: ' "$TMP/$1.log" || true; }

# --- 1. release 2 to every host --------------------------------------------------------------------
start_wrk rollout-2
play rollout-2 rollout.yml -e baton_release_version=2 -e baton_release_src="$TMP/releases/app-2" ||
    die "rollout of release 2 failed (see above)"
stop_wrk rollout-2; r1=$WRK_RESULT
say "load during rollout 1: $r1"
upgraded=0
for n in $(seq "$HOSTS"); do
    ver=$(served_ver "$n"); st=$(status_ver "$n")
    say "h$n after rollout 1: /hello ver=$ver, baton status: serving $st, watch.conf Ver $(conf_ver "$n")"
    [ "$ver" = 2 ] && [ "$st" = 2 ] && upgraded=$((upgraded + 1))
done
[ "$upgraded" = "$HOSTS" ] || die "only $upgraded of $HOSTS hosts serve release 2"
[ "$(batches rollout-2)" = 3 ] || die "expected 3 batches in rollout 1, saw $(batches rollout-2)"

# --- 2. idempotency and --check ---------------------------------------------------------------------
play again-2 rollout.yml -e baton_release_version=2 -e baton_release_src="$TMP/releases/app-2" || die "the second run of release 2 failed"
[ "$(recap_changed again-2)" = 0 ] || die "the second run of release 2 changed something: $(grep -E '^h[0-9]+ +:' "$TMP/again-2.log")"
say "idempotent: the same release again changed nothing ($(grep -E '^h1 +:' "$TMP/again-2.log" | tr -s ' '))"
play check-3 rollout.yml --check --diff -e baton_release_version=3 -e baton_release_src="$TMP/releases/app-3" ||
    die "the --check run of release 3 failed"
for n in $(seq "$HOSTS"); do
    [ "$(conf_ver "$n")" = 2 ] && [ "$(served_ver "$n")" = 2 ] && cmp -s "$(app_dir "$n")/app" "$TMP/releases/app-2" ||
        die "--check changed host h$n"
done
say "--check of release 3: would change $(recap_changed check-3) tasks, changed nothing (watch.conf Ver 2 and release 2's binary on every host)"

# --- 3. the broken release: stops at the canary ----------------------------------------------------
start_wrk rollout-3
if play rollout-3 rollout.yml -e baton_release_version=3 -e baton_release_src="$TMP/releases/app-3"; then
    die "the rollout of the broken release 3 succeeded"
fi
stop_wrk rollout-3; r3=$WRK_RESULT
say "load during rollout 3: $r3"
stopped_at=$(batches rollout-3)
old_kept=0
for n in $(seq "$HOSTS"); do
    ver=$(served_ver "$n"); st=$(status_ver "$n")
    say "h$n after rollout 3: /hello ver=$ver, baton status: serving $st, watch.conf Ver $(conf_ver "$n"); last upgrade: $("$BATON" status --json --config "$(app_dir "$n")/watch.conf" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("lastUpgrade"))')"
    [ "$ver" = 2 ] && [ "$st" = 2 ] && [ "$(conf_ver "$n")" = 2 ] && cmp -s "$(app_dir "$n")/app" "$TMP/releases/app-2" &&
        old_kept=$((old_kept + 1))
done
grep -q 'upgrade failed' "$TMP/h1/master.log" || die "the canary's master did not log a failed upgrade"
for n in $(seq 2 "$HOSTS"); do
    ! grep -q 'version 2 → 3' "$TMP/h$n/master.log" || die "host h$n was upgraded to release 3: the rollout did not stop at the canary"
done

requests=$(( $(field "$r1" requests) + $(field "$r3" requests) ))
failed=$(( $(field "$r1" errors) + $(field "$r1" non2xx) + $(field "$r3" errors) + $(field "$r3" non2xx) ))

# --- 4. a release that answers errors: its canary fails on the first host --------------------------
start_wrk rollout-4
if play rollout-4 rollout.yml -e baton_release_version=4 -e baton_release_src="$TMP/releases/app-4" \
        -e baton_release_canary=true -e baton_release_canary_percent=20 -e baton_release_canary_seconds=30; then
    die "the rollout of release 4 (20% 500s) succeeded"
fi
stop_wrk rollout-4; r4=$WRK_RESULT
say "load during rollout 4: $r4"
canary_stopped_at=$(batches rollout-4)
grep -q 'canary rolled back: 5xx rate' "$TMP/rollout-4.log" || die "the playbook did not report the canary's rollback"
grep -q 'upgrade failed: canary rolled back' "$TMP/h1/master.log" || die "the first host's master did not roll its canary back"
for n in $(seq "$HOSTS"); do
    ver=$(served_ver "$n"); st=$(status_ver "$n")
    say "h$n after rollout 4: /hello ver=$ver, baton status: serving $st, watch.conf Ver $(conf_ver "$n")"
    [ "$ver" = 2 ] && [ "$st" = 2 ] && [ "$(conf_ver "$n")" = 2 ] && cmp -s "$(app_dir "$n")/app" "$TMP/releases/app-2" ||
        die "host h$n does not serve release 2 with its files after the canary failed"
done
for n in $(seq 2 "$HOSTS"); do
    ! grep -q 'version 2 → 4' "$TMP/h$n/master.log" || die "host h$n was upgraded to release 4: the rollout did not stop at the first host"
done
[ "$(field "$r4" errors)" = 0 ] || die "socket errors through nginx during the canary: $r4"
echo "CANARY canary_errors=$(field "$r4" non2xx) requests=$(field "$r4" requests) (500s the canary answered before Baton rolled it back)"

# --- 5. rollback to release 1 -----------------------------------------------------------------------
rolled_back=skipped
if [ "$ROLLBACK" = 1 ]; then
    start_wrk rollback-1
    play rollback-1 rollback.yml -e baton_rollback_version=1 -e baton_rollback_src="$TMP/releases/app-1" || die "the rollback to release 1 failed"
    stop_wrk rollback-1; rb=$WRK_RESULT
    rolled_back=0
    for n in $(seq "$HOSTS"); do [ "$(served_ver "$n")" = 1 ] && [ "$(status_ver "$n")" = 1 ] && rolled_back=$((rolled_back + 1)); done
    say "load during the rollback: $rb"
    echo "ROLLBACK hosts_on_release_1=$rolled_back/$HOSTS failed=$(( $(field "$rb" errors) + $(field "$rb" non2xx) )) requests=$(field "$rb" requests)"
    [ "$rolled_back" = "$HOSTS" ] || die "only $rolled_back of $HOSTS hosts serve release 1 after the rollback"
fi

# --- optional: Baton's own counters (`baton metrics`, when this build has it) -----------------------
# (`baton help metrics` exits 0 even without the subcommand: look for it in the SUBCOMMANDS list.)
if "$BATON" --help 2>/dev/null | grep -qE '^[[:space:]]+metrics([[:space:]]|$)'; then
    for n in $(seq "$HOSTS"); do
        "$BATON" metrics --config "$(app_dir "$n")/watch.conf" 2>/dev/null | grep -E '^baton_(upgrades|canaries)_total' | sed "s/^/METRICS h$n /" || true
    done
else
    say "baton metrics is not in this build: no per-host upgrade counters"
fi

sleep 1.5   # nginx's access log flushes every second
retried=$(grep -c ', ' "$TMP/nginx/logs/access.log" || true)   # "502, 200": more than one upstream attempt
upstream_errors=$(grep -c 'upstream' "$TMP/nginx/logs/error.log" || true)
echo "NGINX retried_upstream=$retried upstream_errors=$upstream_errors (requests nginx had to send to another attempt; 0 means it hid nothing)"
[ "$upstream_errors" = 0 ] || grep 'upstream' "$TMP/nginx/logs/error.log" | head -5 >&2
echo "TIME seconds=$((SECONDS - STARTED_AT))"
echo "FLEET hosts=$HOSTS upgraded=$upgraded failed=$failed broken_stopped_at_batch=$stopped_at canary_stopped_at_batch=$canary_stopped_at old_kept=$old_kept requests=$requests"
[ "$failed" = 0 ] || die "$failed requests failed through nginx"
[ "$stopped_at" = 1 ] || die "the broken release was not stopped in batch 1 (batches started: $stopped_at)"
[ "$canary_stopped_at" = 1 ] || die "the release that failed its canary was not stopped in batch 1 (batches started: $canary_stopped_at)"
[ "$old_kept" = "$HOSTS" ] || die "only $old_kept of $HOSTS hosts kept release 2"
say "OK"
