# Helpers of Benchmarks/run.sh (sourced; the one place they live). The caller defines WORK (its
# work folder), SERVER_CPU and CLIENT_CPU.
#
# Processes: every server is started in a session of its own (setsid; nginx daemonizes into one),
# so that its process group holds all its generations; `track_group` remembers the group and
# `cleanup_all` (run from the caller's EXIT trap) signals exactly those groups and the helper pids
# recorded with `track_helper` — never a process by name.

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 2; }

# ------------------------------------------------------------------ packages
# install_debian_packages PKG…: installs those not installed yet, with one apt-get update; a
# failure names the packages and ends the run.
install_debian_packages() {
    local missing=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null || die "apt-get update failed (needed for: ${missing[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install failed for: ${missing[*]}"
}

# ensure_matplotlib: for the plots (pip first, Debian's package otherwise).
ensure_matplotlib() {
    python3 -c 'import matplotlib' 2>/dev/null && return 0
    say "installing matplotlib (pip)"
    python3 -m pip install -q matplotlib >/dev/null 2>&1 || install_debian_packages python3-matplotlib
    python3 -c 'import matplotlib' 2>/dev/null || die "no matplotlib for $(command -v python3)"
}

# go_build DIR OUT LOG: a Go program of Benchmarks/ (the tableflip and grace peers, the load
# client), offline from Debian's Go packages in GOPATH mode (no module proxy), stripped
# (-s -w: the size section compares stripped with stripped). Go's own build cache is kept across
# runs (GOCACHE, default ~/.cache/go-build): gin alone takes a minute on a busy machine.
go_build() {
    local dir=$1 out=$2 log=$3
    (cd "$dir" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE="${GOCACHE:-${XDG_CACHE_HOME:-${HOME:-$WORK}/.cache}/go-build}" \
        go build -ldflags="-s -w" -o "$out" .) >"$log" 2>&1 || die "go build in $dir failed: see $log"
}

# ------------------------------------------------------------------ numbers
median() {   # the median of the whitespace-separated numbers on standard input
    tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}

now_ms() { local t=$EPOCHREALTIME; t=${t/[.,]/}; echo $((10#$t / 1000)); }

sleep_until_ms() {   # sleep_until_ms UNIX_MS
    local d=$(($1 - $(now_ms)))
    ((d > 0)) && sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
    return 0
}

# ------------------------------------------------------------------ processes
GROUPS_STARTED=()   # process groups of servers we started
HELPERS=()          # pids of load clients, pollers, samplers in the background

alive() {   # process exists and is not a zombie
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

pgid_of() {
    local stat f
    [[ -n $1 ]] || return 1
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    read -ra f <<<"${stat##*) }"
    echo "${f[2]}"
}

group_members() {   # live processes of process group $1 (one pid per line)
    local p stat f
    [[ -n $1 ]] || return 0
    for p in /proc/[0-9]*; do
        { read -r stat <"$p/stat"; } 2>/dev/null || continue
        read -ra f <<<"${stat##*) }"
        [[ ${f[2]:-} == "$1" && ${f[0]:-} != Z ]] && echo "${p#/proc/}"
    done
    return 0
}

track_group() {   # remember process group $1
    [[ -n $1 ]] || return 0
    [[ " ${GROUPS_STARTED[*]} " == *" $1 "* ]] || GROUPS_STARTED+=("$1")
}

forget_group() {   # a group with none of our servers left
    local g keep=()
    [[ -n $(group_members "$1") ]] && return 0
    for g in "${GROUPS_STARTED[@]}"; do [[ $g == "$1" ]] || keep+=("$g"); done
    GROUPS_STARTED=("${keep[@]}")
}

track_helper() { HELPERS+=("$1"); }

forget_helper() {   # a helper that was waited for: its pid may be reused, never signal it again
    local p keep=()
    for p in "${HELPERS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    HELPERS=("${keep[@]}")
}

wait_gone() {   # wait_gone PID SECONDS
    local i
    for ((i = 0; i < $2 * 50; i++)); do alive "$1" || return 0; sleep 0.02; done
    return 1
}

stop_pid() {   # stop_pid PID: SIGTERM, SIGKILL after 2 s, reaped if it is our child
    [[ -n $1 ]] || return 0
    if alive "$1"; then
        kill -TERM "$1" 2>/dev/null
        wait_gone "$1" 2 || kill -KILL "$1" 2>/dev/null
    fi
    wait "$1" 2>/dev/null
    forget_helper "$1"
    return 0
}

kill_group() {   # kill_group PGID SECONDS: SIGTERM to its processes, SIGKILL to what is left after SECONDS
    local g=$1 t pids
    pids=$(group_members "$g")
    [[ -n $pids ]] || { forget_group "$g"; return 0; }
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    for ((t = 0; t < $2 * 10; t++)); do
        [[ -z $(group_members "$g") ]] && { forget_group "$g"; return 0; }
        sleep 0.1
    done
    pids=$(group_members "$g")
    if [[ -n $pids ]]; then
        say "warning: processes $pids of group $g still alive $2 s after SIGTERM: SIGKILL"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null
        sleep 0.2
    fi
    forget_group "$g"
    return 0
}

cleanup_all() {   # from the EXIT trap: every helper and every server group we started
    local p g pids=()
    for p in "${HELPERS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for g in "${GROUPS_STARTED[@]}"; do pids+=($(group_members "$g")); done
    ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null
    sleep 1
    pids=()
    for g in "${GROUPS_STARTED[@]}"; do pids+=($(group_members "$g")); done
    ((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null
    for p in "${HELPERS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    return 0
}

# ------------------------------------------------------------------ ports and answers
port_unused() { [[ -z $(ss -Htan "( sport = :$1 or dport = :$1 )" 2>/dev/null) ]]; }

free_port() {   # below the ephemeral range (32768+), where the clients' own ports come from
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((21000 + RANDOM % 11000))
        port_unused "$p" && { echo "$p"; return 0; }
    done
    return 1
}

wait_port_closed() {   # wait_port_closed PORT SECONDS: until nothing listens on it
    local t
    for ((t = 0; t < $2 * 20; t++)); do [[ -z $(ss -Hltn "sport = :$1" 2>/dev/null) ]] && return 0; sleep 0.05; done
    return 1
}

answer_pid() {   # pid in the /hello answer on port $1 (a new connection)
    curl -s --max-time 2 -H 'Connection: close' "http://127.0.0.1:$1/hello" 2>/dev/null |
        sed -n 's/.*"pid" *: *\([0-9][0-9]*\).*/\1/p'
}

wait_answer() {   # wait_answer PORT SECONDS: until the port answers /hello with a pid
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        [[ -n $(answer_pid "$1") ]] && return 0
        sleep 0.05
    done
    return 1
}

# established PORT: the server side of the ESTABLISHED connections on PORT, one "peer sk:COOKIE"
# line each. The socket cookie tells a connection that lived on (its socket may have moved to
# another process) from a new one that reuses the 4-tuple.
established() {
    ss -Htne state established "( sport = :$1 )" 2>/dev/null |
        awk '{ sk = ""; for (i = 5; i <= NF; i++) if ($i ~ /^sk:/) sk = $i; print $4, sk }'
}

# ------------------------------------------------------------------ /proc readings
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

smaps_kb() {   # smaps_kb PID PREFIX: "PREFIXpss_kb=… PREFIXpriv_dirty_kb=… PREFIXpriv_kb=… PREFIXrss_kb=…"
    awk -v p="$2" '/^Pss:/ {pss = $2} /^Private_Dirty:/ {pd = $2} /^Private_Clean:/ {pc = $2} /^Rss:/ {rss = $2}
        END { if (rss == "") { pss = pd = pc = rss = "nan" }
              printf "%spss_kb=%s %spriv_dirty_kb=%s %spriv_kb=%s %srss_kb=%s", p, pss, p, pd, p, (pd == "nan" ? "nan" : pd + pc), p, rss }' \
        "/proc/$1/smaps_rollup" 2>/dev/null || printf '%spss_kb=nan' "$2"
}

cpu_ticks() {   # user+system clock ticks of every live process in group $1
    local p stat f total=0
    for p in $(group_members "$1"); do
        { read -r stat <"/proc/$p/stat"; } 2>/dev/null || continue
        read -ra f <<<"${stat##*) }"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
