# Shared by the benchmark scripts: `source "$here/lib.sh"` (after defining `say` and `die`).

# install_debian_packages PKG…: installs, with one apt-get update, those not installed yet.
install_debian_packages() {
    local missing=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install failed"
}

# ensure_matplotlib: for the plots (pip first, Debian's package otherwise).
ensure_matplotlib() {
    python3 -c 'import matplotlib' 2>/dev/null && return 0
    say "installing matplotlib (pip)"
    python3 -m pip install -q matplotlib >/dev/null 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-matplotlib >/dev/null || die "no matplotlib"
    }
}

# build_go_peer NAME OUT GOCACHE LOG: builds Benchmarks/compare/NAME (a gin server on tableflip or
# grace) offline from Debian's Go packages, in GOPATH mode: no module proxy is needed.
build_go_peer() {
    local name=$1 out=$2 gocache=$3 log=$4
    say "building the $name peer (go, GOPATH mode, Debian packages)…"
    (cd "$(dirname "${BASH_SOURCE[0]}")/compare/$name" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE="$gocache" \
        go build -o "$out" .) >"$log" 2>&1 || die "go build $name failed: see $log"
}

# median: the median of the whitespace-separated numbers on standard input.
median() {
    tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}

# kill_group PGID SECONDS: SIGTERMs the group's server processes and SIGKILLs what is left after
# SECONDS. Which processes count is the calling script's `group_members PGID` (one pid per line).
kill_group() {
    local g=$1 t pids
    pids=$(group_members "$g")
    [[ -n $pids ]] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    for ((t = 0; t < $2 * 10; t++)); do
        [[ -z $(group_members "$g") ]] && return 0
        sleep 0.1
    done
    pids=$(group_members "$g")
    if [[ -n $pids ]]; then
        say "warning: server processes $pids still alive $2 s after SIGTERM: SIGKILL"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null
        sleep 0.2
    fi
    return 0
}
