#!/usr/bin/env bash
# baton@.service under a real systemd as PID 1: a Debian 12 container booted with
# `systemd-nspawn --boot`, the baton .deb installed with dpkg, the static hello as /srv/myapp/app.
#
#   bash Packaging/build.sh                  # makes dist/baton_<version>_amd64.deb and the static hello
#   sudo bash deploy/systemd/real-systemd.sh # ~1 min (plus ~3 min once for debootstrap)
#
# Scenario: systemctl enable --now baton@myapp; upgrades with `systemctl reload` while wrk loads it
# (inside the container, on its own loopback: --private-network); a broken release, and
# `systemctl reload` failing while the old version keeps serving; MainPID checked after each step;
# then the master killed outright (`systemctl kill -s KILL --kill-whom=main`) every KILL_INTERVAL
# seconds, KILLS times (default 12 every 10 s), under 1,024 keep-alive and 256
# connection-per-request clients, the service on CPU 0 and the clients on CPU 1: each time the
# keeper starts the master again (--respawn-master), the new master adopts the running worker and
# claims the unit (MAINPID=), the unit stays active/running and systemd restarts nothing, nothing
# fails, and an upgrade works after.
# Exit status 0 only if every check held. Not part of `swift test` (it takes minutes and needs
# debootstrap and systemd-nspawn: apt-get install debootstrap systemd-container).
#
# The Debian root is cached in $BATON_NSPAWN_CACHE (default /var/tmp/baton-systemd/root) and
# copied afresh for each run, so every run starts from a clean system.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

cache=${BATON_NSPAWN_CACHE:-/var/tmp/baton-systemd}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
base=$cache/root
run=$cache/run-$$
machine=baton-test-$$
log=$cache/nspawn-$$.log
nspawn_pid=
failures=0
kills=${KILLS:-12}
kill_interval=${KILL_INTERVAL:-10}

say() { printf '\n### %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
check() {  # check DESCRIPTION COMMAND...: runs the command, prints PASS/FAIL
    local what=$1; shift
    if "$@"; then echo "PASS: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, systemd-nspawn)"
for tool in debootstrap systemd-nspawn nsenter; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install debootstrap systemd-container util-linux)"
done
version=$(sed -n 's/^ *public static let string = "\([^"]*\)".*/\1/p' Sources/Baton/Version.swift)
deb=$repo/dist/baton_${version}_amd64.deb
hello=$repo/.build-package/bin/hello
[ -f "$deb" ] && [ -x "$hello" ] || die "run 'bash Packaging/build.sh' first (need $deb and $hello)"
command -v go >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null; } ||
    die "go not found (apt-get install golang-go): the load client is built from Benchmarks/handoff/loadclient"

cleanup() {
    set +e
    [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid" 2>/dev/null      # nspawn asks the container's systemd to power off
        for _ in $(seq 1 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$nspawn_pid" 2>/dev/null
        wait "$nspawn_pid" 2>/dev/null
    fi
    rm -rf "$run"
}
trap cleanup EXIT

# 1. A Debian root with systemd (cached).
if [ ! -x "$base/lib/systemd/systemd" ]; then
    say "debootstrap bookworm into $base (once)"
    rm -rf "$base.partial"
    mkdir -p "$cache"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,curl,wrk,ca-certificates bookworm "$base.partial" "$mirror"
    mv "$base.partial" "$base"
fi
say "fresh copy of the root: $run"
cp -a "$base" "$run"
echo baton-test >"$run/etc/hostname"

# 2. The package, installed with dpkg in the (not yet booted) container; the app in /srv/myapp.
cp "$deb" "$run/root/"   # (not /tmp: nspawn mounts a tmpfs there)
mkdir -p /run/systemd/nspawn  # nspawn keeps its propagation folder there; a host without systemd has none
say "dpkg -i $(basename "$deb") (systemd-nspawn, no boot)"
systemd-nspawn -q -D "$run" --register=no --keep-unit dpkg -i "/root/$(basename "$deb")" | tr '\r' '\n' | grep -v -e '^(Reading database' -e '^$'
systemd-nspawn -q -D "$run" --register=no --keep-unit sh -c 'echo "baton --version: $(baton --version)"; dpkg -L baton | while read -r f; do [ -d "$f" ] || echo "$f"; done'
install -d -m 0755 "$run/srv/myapp"
install -m 0755 "$hello" "$run/srv/myapp/app"
install -m 0755 "$hello" "$run/srv/myapp/app.good"  # for the upgrade after the kills
# DelaySecond is long so that here only `systemctl reload` upgrades (an edit of watch.conf would
# upgrade by itself after DelaySecond).
printf '{"HttpPort": "8080", "Ver": "1", "DelaySecond": 3600, "BinName": "app"}\n' >"$run/srv/myapp/watch.conf"
chmod 0644 "$run/srv/myapp/watch.conf"
# The load client of the benchmarks, static (the container has its own libc).
(cd Benchmarks/handoff/loadclient && CGO_ENABLED=0 GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= \
    GOCACHE="${GOCACHE:-$cache/go-build}" go build -o "$run/root/loadclient" .) || die "go build of the load client failed"
# The service on CPU 0 (the clients go on CPU 1), as in the benchmarks.
mkdir -p "$run/etc/systemd/system/baton@myapp.service.d"
printf '[Service]\nCPUAffinity=0\n' >"$run/etc/systemd/system/baton@myapp.service.d/cpu.conf"
cat >"$run/root/count.lua" <<'EOF'
-- counts answers by status and worker pid
local statuses, pids = {}, {}
function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    local pid = body:match('"pid":(%d+)')
    if pid then pids[pid] = (pids[pid] or 0) + 1 end
end
function done(summary, latency, requests)
    local s = {}
    for k, v in pairs(summary.errors) do s[#s + 1] = k .. "=" .. v end
    io.write("errors: " .. table.concat(s, " ") .. "\n")
end
EOF

# 3. Boot it: systemd as PID 1 of the container, on its own network namespace (only lo).
say "systemd-nspawn --boot (log: $log)"
systemd-nspawn -q -D "$run" --boot --register=no --keep-unit --private-network --machine="$machine" >"$log" 2>&1 &
nspawn_pid=$!
leader=
for _ in $(seq 1 100); do
    leader=$(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null | sed -n 1p | tr -d ' ' || true)  # (ps fails until nspawn has forked)
    [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ] && break
    leader=; sleep 0.1
done
[ -n "$leader" ] || { cat "$log"; die "the container's systemd did not start"; }
ct() { nsenter -t "$leader" -a "$@"; }
# systemctl answers once PID 1 has its private socket up.
for _ in $(seq 1 300); do ct test -S /run/systemd/private 2>/dev/null && break; sleep 0.1; done
state=$(ct timeout 90 systemctl is-system-running --wait || true)
echo "container PID 1: $(ct cat /proc/1/comm) (host pid $leader); systemctl is-system-running: $state"
ct systemctl --version | sed -n 1p
if [ "$state" != running ]; then ct systemctl --failed --no-pager || true; fi

# 4. The template unit.
say "systemd-analyze verify baton@myapp.service"
# (--man=no: minbase has no man; the package ships baton(1) for Documentation=)
check "systemd-analyze verify" ct systemd-analyze verify --man=no /lib/systemd/system/baton@myapp.service
say "systemctl enable --now baton@myapp"
ct systemctl enable --now baton@myapp
ct systemctl status --no-pager --lines=0 baton@myapp | sed 's/^/    /'
main=$(ct systemctl show -p MainPID --value baton@myapp)
echo "MainPID=$main"
answer=$(ct curl -sS --max-time 5 localhost:8080/hello)
echo "curl: $answer"
check "serving version 1" grep -q '"ver":"1"' <<<"$answer"
# The service sees its state folder at /srv/myapp/.baton (BindPaths=, in its own mount namespace only).
ct ls -l /var/lib/baton/myapp/releases
check "release staged into the service's state folder" ct test -n "$(ct ls /var/lib/baton/myapp/releases)"

# 5. Upgrades under load: a new release by rename, then `systemctl reload`, three times.
say "systemctl reload under wrk -c32 (20 s)"
ct wrk -t2 -c32 -d20s -s /root/count.lua http://127.0.0.1:8080/hello >"$cache/wrk-$$.txt" 2>&1 &
wrk_pid=$!
for ver in 2 3 4; do
    sleep 4
    ct sh -c "cp /srv/myapp/app /srv/myapp/app.new && mv -f /srv/myapp/app.new /srv/myapp/app &&
              sed -i 's/\"Ver\": \"[0-9]*\"/\"Ver\": \"$ver\"/' /srv/myapp/watch.conf"
    start=$(date +%s%N)
    if out=$(ct systemctl reload baton@myapp 2>&1); then rc=0; else rc=$?; fi
    printf 'systemctl reload (Ver %s): exit %s after %d ms %s\n' "$ver" "$rc" "$((($(date +%s%N) - start) / 1000000))" "$out"
    check "reload to Ver $ver succeeded" test "$rc" = 0
    answer=$(ct curl -sS --max-time 5 localhost:8080/hello)
    echo "curl: $answer"
    check "serving version $ver" grep -q "\"ver\":\"$ver\"" <<<"$answer"
done
wait "$wrk_pid" || true
sed 's/^/    /' "$cache/wrk-$$.txt"
check "wrk: no socket errors" bash -c "! grep -q 'Socket errors' '$cache/wrk-$$.txt'"
check "wrk: no non-2xx answers" bash -c "! grep -q 'Non-2xx' '$cache/wrk-$$.txt'"
rm -f "$cache/wrk-$$.txt"
now=$(ct systemctl show -p MainPID --value baton@myapp)
echo "MainPID=$now"
check "MainPID unchanged after 3 reloads" test "$now" = "$main"

# 6. A broken release: `systemctl reload` fails, the old version keeps serving.
say "a broken release"
ct sh -c "printf '#!/bin/sh\necho this release is broken >&2\nexit 3\n' >/srv/myapp/app.new && chmod 0755 /srv/myapp/app.new &&
          mv -f /srv/myapp/app.new /srv/myapp/app && sed -i 's/\"Ver\": \"[0-9]*\"/\"Ver\": \"5\"/' /srv/myapp/watch.conf"
if out=$(ct systemctl reload baton@myapp 2>&1); then rc=0; else rc=$?; fi
echo "systemctl reload baton@myapp: exit $rc"
echo "$out" | sed 's/^/    /'
check "systemctl reload failed" test "$rc" != 0
answer=$(ct curl -sS --max-time 5 localhost:8080/hello)
echo "curl: $answer"
check "version 4 still serves" grep -q '"ver":"4"' <<<"$answer"
active=$(ct systemctl is-active baton@myapp || true)
echo "systemctl is-active: $active"
check "unit still active" test "$active" = active
ct systemctl status --no-pager --lines=0 baton@myapp | sed 's/^/    /'
now=$(ct systemctl show -p MainPID --value baton@myapp)
echo "MainPID=$now"
check "MainPID unchanged after the failed reload" test "$now" = "$main"
say "journal of baton@myapp (so far)"
ct journalctl -u baton@myapp --no-pager -o cat | sed 's/^/    /'

# 7. The master killed outright, again and again, under load: KillMode=process leaves its keeper
# and worker alive, ExitType=cgroup keeps the unit active, the keeper starts the master's command
# again (--respawn-master) and that master adopts the worker and says MAINPID=. systemd restarts
# nothing (Restart=always is only the safety net).
say "systemctl kill -s KILL --kill-whom=main, $kills times every $kill_interval s, under 1,024 keep-alive + 256 connection-per-request clients"
seconds=$((kills * kill_interval + 25))
taskset -cp 1 $$ >/dev/null  # this script, its pollers and the clients on CPU 1; the service is on CPU 0
taskset -c 1 nsenter -t "$leader" -a /root/loadclient -addr 127.0.0.1:8080 -c 1024 -d "${seconds}s" -timeline /root/ka.txt \
    -ready-file /root/ka.ready -summary >"$run/root/ka.json" 2>"$run/root/ka.log" &
ka_pid=$!
taskset -c 1 nsenter -t "$leader" -a /root/loadclient -addr 127.0.0.1:8080 -c 256 -close -d "${seconds}s" -timeline /root/close.txt \
    -summary >"$run/root/close.json" 2>"$run/root/close.log" &
close_pid=$!
for _ in $(seq 1 700); do [ -s "$run/root/ka.ready" ] && break; sleep 0.1; done
[ -s "$run/root/ka.ready" ] || die "the load client did not open its connections: $(cat "$run/root/ka.log")"
# Every state the unit passes through, sampled every 50 ms on the clients' CPU.
(while :; do printf '%s %s\n' "$(date +%s%3N)" "$(ct systemctl show -p ActiveState,SubState --value baton@myapp | paste -sd/)"; sleep 0.05; done) \
    >"$cache/states-$$.txt" 2>/dev/null &
sampler=$!
restarts_before=$(ct systemctl show -p NRestarts --value baton@myapp)
worker=$(ct curl -sS --max-time 5 localhost:8080/hello | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
echo "worker pid (in the container): $worker"
sleep 2
latencies=()
for k in $(seq 1 "$kills"); do
    sleep "$kill_interval"
    master=$(ct systemctl show -p MainPID --value baton@myapp)
    start=$(date +%s%3N)
    ct systemctl kill -s KILL --kill-whom=main baton@myapp
    back=
    for _ in $(seq 1 400); do
        now=$(ct systemctl show -p MainPID,ActiveState --value baton@myapp | paste -sd' ')
        if [ "${now#* }" = active ] && [ "${now%% *}" != "$master" ] && [ "${now%% *}" != 0 ]; then back=$(date +%s%3N); break; fi
        sleep 0.025
    done
    [ -n "$back" ] || { ct systemctl status --no-pager baton@myapp; die "kill $k: no new main process within 10 s"; }
    latencies+=($((back - start)))
    echo "kill $k: master $master killed; MainPID ${now%% *} after $((back - start)) ms"
done
sleep 1
kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
echo "states of the unit through the kills (sampled every 50 ms), with how many samples each:"
awk '{print $2}' "$cache/states-$$.txt" | sort | uniq -c | sed 's/^/    /'
check "the unit stayed active/running in every sample through the kills" \
    bash -c "[ -s '$cache/states-$$.txt' ] && ! grep -vq ' active/running\$' '$cache/states-$$.txt'"
check "systemd restarted nothing (NRestarts unchanged: $restarts_before)" \
    test "$(ct systemctl show -p NRestarts --value baton@myapp)" = "$restarts_before"
respawns=$(ct journalctl -u baton@myapp --no-pager -o cat | grep -c "started again by the keeper after master pid" || true)
check "the keeper started every new master ($respawns of $kills)" test "$respawns" = "$kills"
sleep 3
check "the same worker still serves after $kills kills" \
    test "$(ct curl -sS --max-time 5 localhost:8080/hello | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')" = "$worker"
status=$(ct baton status --control /run/baton/myapp/baton.sock 2>&1 || true)
echo "$status" | sed 's/^/    /'
check "baton status counts $kills adoptions" grep -q "adoptions: $kills " <<<"$status"
adoptions=$(ct journalctl -u baton@myapp --no-pager -o cat | grep -c "adopted 1 generation(s) from master pid" || true)
echo "adoption lines in the journal: $adoptions"
check "every kill was an adoption" test "$adoptions" = "$kills"
clean=$(ct journalctl -u baton@myapp --no-pager -o cat | grep -c "cgroup holds only this master, its keeper and the adopted workers" || true)
check "each adopting master checked the unit's cgroup and found no stray ($clean of $kills)" test "$clean" = "$kills"
# After the last adoption an upgrade still works.
ct sh -c "cp /srv/myapp/app.good /srv/myapp/app.new && mv -f /srv/myapp/app.new /srv/myapp/app &&
          sed -i 's/\"Ver\": \"[0-9]*\"/\"Ver\": \"6\"/' /srv/myapp/watch.conf"
if out=$(ct systemctl reload baton@myapp 2>&1); then rc=0; else rc=$?; fi
echo "systemctl reload after the last adoption: exit $rc $out"
check "reload after the adoptions succeeded" test "$rc" = 0
check "serving version 6" bash -c "nsenter -t $leader -a curl -sS --max-time 5 localhost:8080/hello | grep -q '\"ver\":\"6\"'"
wait "$ka_pid" || true
wait "$close_pid" || true
python3 - "$run/root" "$(printf '%s\n' "${latencies[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], a[NR]}')" <<'PY'
import json, sys
d, lat = sys.argv[1], sys.argv[2].split()
ka, close = json.load(open(f"{d}/ka.json")), json.load(open(f"{d}/close.json"))
print(f"kill -> new MainPID: median {lat[0]} ms, max {lat[1]} ms")
print(f"keep-alive: {ka['requests_ok']} ok, {ka['failures']} failed, {ka['reconnects']} connections replaced")
print(f"connection per request: {close['requests_ok']} ok, {close['failures']} failed, {close['failure_kinds'].get('connect', 0)} failed connects")
PY
check "keep-alive: 0 failed" python3 -c "import json,sys; sys.exit(json.load(open('$run/root/ka.json'))['failures'] != 0)"
check "keep-alive: every connection kept (0 replaced, until the upgrade)" python3 - "$run/root/ka.txt" <<'PY'
import sys
# Reconnects before the upgrade only: the upgrade hands connections over or closes idle ones.
lines = [l.split() for l in open(sys.argv[1]) if not l.startswith("#")]
pids_seen = [set(p.split(":")[0] for p in l[7][5:].split(",") if p) for l in lines]
first_upgrade = next((i for i, p in enumerate(pids_seen) if len(p) > 1), len(lines))
sys.exit(sum(int(l[3]) for l in lines[:first_upgrade]) != 0)
PY
check "connection per request: 0 failed, 0 failed connects" python3 -c "import json,sys; c=json.load(open('$run/root/close.json')); sys.exit(c['failures'] != 0)"
rm -f "$cache/states-$$.txt"
say "journal of baton@myapp since the kills (systemd's lines and Baton's adoptions)"
ct journalctl -u baton@myapp --no-pager -o cat | grep -E "adopted|Main process exited|Scheduled restart|cgroup|keeper" | tail -10 | sed 's/^/    /'
ct journalctl -u baton@myapp --no-pager -o cat | grep -E "does not name|cannot check the unit" | sed 's/^/    stray: /' || true

# 8. Stop: the master drains and exits; nothing of the unit is left.
say "systemctl stop baton@myapp"
# (by /proc/PID/cgroup: the cgroup file system's layout differs between v2 and a hybrid host)
unit_pids=$(ct sh -c 'grep -l "baton@myapp.service\$" /proc/[0-9]*/cgroup 2>/dev/null' | cut -d/ -f3 | sort -un | tr '\n' ' ')
echo "the unit's processes: $unit_pids($(for pid in $unit_pids; do ct cat "/proc/$pid/comm"; done | paste -sd' '))"
check "the unit holds a master, its keeper and a worker" test "$(wc -w <<<"$unit_pids")" -ge 3
ct systemctl stop baton@myapp
check "stopped cleanly" test "$(ct systemctl show -p Result --value baton@myapp)" = success
check "unit inactive" test "$(ct systemctl show -p ActiveState --value baton@myapp)" = inactive
check "nothing listens on 8080 any more" bash -c "! nsenter -t $leader -a curl -s --max-time 2 localhost:8080/hello"
left=$(for pid in $unit_pids; do if ct test -d "/proc/$pid"; then echo "$pid"; fi; done)
check "none of the unit's processes is left (KillMode=process leaves them to the master)" test -z "$left"
ct systemctl poweroff || true
for _ in $(seq 1 300); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
wait "$nspawn_pid" 2>/dev/null && echo "container powered off" || echo "container: nspawn exit $?"
nspawn_pid=

say "result: $failures failed check(s)"
[ "$failures" = 0 ]
