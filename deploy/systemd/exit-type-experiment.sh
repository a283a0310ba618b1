#!/usr/bin/env bash
# What systemd 252 does with a unit whose main process is SIGKILLed while other processes of its
# cgroup live on (issue 24's "the unit stays active"): three units, each a shell that leaves a
# `sleep` behind and then becomes `sleep` itself (the main process), in the Debian root that
# real-systemd.sh caches, booted with systemd-nspawn. For each: `systemctl kill -s KILL
# --kill-whom=main`, then ActiveState/SubState every 50 ms for 2 s, then MainPID and NRestarts.
#   a  ExitType=cgroup, SuccessExitStatus=SIGKILL, KillMode=process
#   b  the same with Restart=always, RestartSec=100ms
#   c  KillMode=process, Restart=always, RestartSec=100ms (what the shipped units do, but always)
#
#   sudo bash deploy/systemd/exit-type-experiment.sh   # after real-systemd.sh has cached its root
set -euo pipefail
cache=${BATON_NSPAWN_CACHE:-/var/tmp/baton-systemd}
base=$cache/root
run=$cache/exit-type-$$
[ -x "$base/lib/systemd/systemd" ] || { echo "no cached root in $base: run deploy/systemd/real-systemd.sh once" >&2; exit 1; }
nspawn_pid=
cleanup() {
    if [ -n "$nspawn_pid" ]; then kill "$nspawn_pid" 2>/dev/null || true; sleep 2; kill -9 "$nspawn_pid" 2>/dev/null || true; fi
    rm -rf "$run"
}
trap cleanup EXIT
cp -a "$base" "$run"
mkdir -p /run/systemd/nspawn
printf '#!/bin/sh\nsleep infinity &\nexec sleep infinity\n' >"$run/root/service.sh"
chmod 0755 "$run/root/service.sh"
unit() { printf '[Service]\nExecStart=/root/service.sh\n%s\n' "$2" >"$run/etc/systemd/system/exit-$1.service"; }
unit a $'ExitType=cgroup\nSuccessExitStatus=SIGKILL\nKillMode=process'
unit b $'ExitType=cgroup\nSuccessExitStatus=SIGKILL\nKillMode=process\nRestart=always\nRestartSec=100ms'
unit c $'KillMode=process\nRestart=always\nRestartSec=100ms'
systemd-nspawn -q -D "$run" --boot --register=no --keep-unit --private-network --machine="exit$$" >"$run.log" 2>&1 &
nspawn_pid=$!
leader=
for _ in $(seq 1 100); do
    leader=$(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null | sed -n 1p | tr -d ' ' || true)
    [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ] && break
    leader=; sleep 0.1
done
[ -n "$leader" ] || { cat "$run.log"; echo "the container's systemd did not start" >&2; exit 1; }
ct() { nsenter -t "$leader" -a "$@"; }
for _ in $(seq 1 300); do ct test -S /run/systemd/private 2>/dev/null && break; sleep 0.1; done
ct timeout 60 systemctl is-system-running --wait >/dev/null || true
ct systemctl --version | sed -n 1p
show() { ct systemctl show -p "$2" --value "exit-$1"; }
for v in a b c; do
    ct systemctl start "exit-$v"
    sleep 0.5
    before=$(show "$v" MainPID)
    ct systemctl kill -s KILL --kill-whom=main "exit-$v"
    states=()
    for _ in $(seq 1 40); do states+=("$(show "$v" ActiveState)/$(show "$v" SubState)"); sleep 0.05; done
    echo "exit-$v: MainPID $before killed; every 50 ms for 2 s: $(printf '%s\n' "${states[@]}" | uniq -c | awk '{printf "%s×%s ", $1, $2}'); then MainPID $(show "$v" MainPID), NRestarts $(show "$v" NRestarts)"
    ct systemctl stop "exit-$v"
done
rm -f "$run.log"
