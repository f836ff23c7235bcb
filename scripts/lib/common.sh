# shellcheck shell=bash
# Common helpers for salvor's build/test scripts. Source this file; do not execute it.
#
#   SALVOR_REPO   repository root (derived from this file's location)
#   SALVOR_CACHE  cache root (default: $SALVOR_REPO/work/cache; work/ is gitignored)

if [[ -n "${_SALVOR_COMMON_SH:-}" ]]; then return 0; fi
_SALVOR_COMMON_SH=1

SALVOR_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SALVOR_CACHE="${SALVOR_CACHE:-$SALVOR_REPO/work/cache}"
export SALVOR_REPO SALVOR_CACHE

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${0##*/}" "$*" >&2; exit 1; }

_salvor_apt_updated=0
# apt_install PKG...: install Debian packages, running `apt-get update` once if the
# first attempt fails (fresh machines often have no package lists yet).
apt_install() {
    [[ $# -gt 0 ]] || return 0
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install: $*"
    log "apt-get install $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2; then
        if [[ $_salvor_apt_updated -eq 0 ]]; then
            _salvor_apt_updated=1
            DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 \
                || die "apt-get install $* failed"
        else
            die "apt-get install $* failed"
        fi
    fi
}

# apt_update_once: run `apt-get update` at most once per script run.
apt_update_once() {
    if [[ $_salvor_apt_updated -eq 0 ]]; then
        _salvor_apt_updated=1
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
    fi
}

# need CMD:PKG ...: make sure each command exists, installing its Debian package if not.
need() {
    local spec cmd pkg missing=()
    for spec in "$@"; do
        cmd=${spec%%:*}
        pkg=${spec#*:}
        if [[ $cmd == /* ]]; then
            [[ -e $cmd ]] || missing+=("$pkg")
        else
            command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        # de-duplicate
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        apt_install "${missing[@]}"
    fi
}

# hash_inputs FILE_OR_STRING...: sha256 over files' contents (or literal strings for
# arguments that are not files); prints the hex digest.
hash_inputs() {
    local a
    for a in "$@"; do
        if [[ -f $a ]]; then
            printf 'file:%s\n' "$(sha256sum <"$a" | cut -d' ' -f1)"
        else
            printf 'str:%s\n' "$a"
        fi
    done | sha256sum | cut -d' ' -f1
}

# stop_pid PID [GRACE]: SIGTERM, then SIGKILL if it is still alive after GRACE seconds (default
# 10), and reap it. QEMU under TCG has been seen to print "terminating on signal 15" and then
# hang with its vCPU thread blocked, which made a test wait forever.
stop_pid() {
    local pid=$1 grace=${2:-10} i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "process $pid ignored SIGTERM for ${grace} s; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
