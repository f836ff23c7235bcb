# shellcheck shell=bash
# Shared helpers for the ISO boot tests (tests/boot/*.sh). Source after setting nothing;
# it sets `work` (a temp dir) and installs an EXIT trap that kills every QEMU started with
# qemu_bg and removes the temp dir (KEEP=1 keeps it).

# What the salvor UI's first screen shows on the serial console, as an extended regex, once
# the attached virtio disk (serial salvor-disk0) is listed. Until the TUI is merged the UI
# wrapper shows `salvor list`; with the TUI this becomes its first screen's text.
BOOT_FIRST_SCREEN_RE='vda .*virtio.*salvor-disk0'

boot_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../scripts/lib/common.sh
source "$boot_here/../../scripts/lib/common.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/salvor-boot.XXXXXX")
QEMU_PIDS=()
boot_cleanup() {
    local rc=$? p
    for p in "${QEMU_PIDS[@]}"; do
        stop_pid "$p" 5
    done
    if [[ ${KEEP:-0} == 1 ]]; then log "work directory kept: $work"; else rm -rf "$work"; fi
    exit "$rc"
}
trap boot_cleanup EXIT
trap 'exit 130' INT TERM

fails=()
fail() { fails+=("$*"); echo "FAIL: $*"; }
finish_tests() {
    local what=$1
    if [[ ${#fails[@]} -eq 0 ]]; then echo "PASS: $what"; exit 0; fi
    echo "FAIL: $what:"; printf '  %s\n' "${fails[@]}"; exit 1
}

# build_iso: build (or reuse) work/salvor.iso; sets ISO, VMLINUZ, INITRD.
build_iso() {
    ISO=$(bash "$boot_here/../../scripts/build-iso.sh" | tail -n 1)
    [[ -s $ISO ]] || die "build-iso.sh produced no ISO"
    VMLINUZ="$SALVOR_REPO/work/iso-build/vmlinuz"
    INITRD="$SALVOR_REPO/work/iso-build/initrd.img"
    export ISO VMLINUZ INITRD
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# console_text FILE: the console log without CRs and terminal escape sequences.
console_text() {
    tr -d '\r' <"$1" | sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b[()][0-9A-Za-z]//g' -e 's/\x1b[=>78]//g'
}

# qemu_bg NAME ARGS...: start QEMU in the background, serial console on stdio: stdin is the
# FIFO $work/NAME.in (write to fd SERIAL_FD to type), stdout $work/NAME.console. Sets QPID.
qemu_bg() {
    local name=$1; shift
    mkfifo "$work/$name.in"
    qemu-system-x86_64 -accel tcg -nodefaults -display none -no-reboot -serial stdio "$@" \
        <"$work/$name.in" >"$work/$name.console" 2>"$work/$name.err" &
    QPID=$!
    QEMU_PIDS+=("$QPID")
    exec {SERIAL_FD}>"$work/$name.in"
}

# wait_console NAME REGEX TIMEOUT: wait until the console matches; 0 matched, 1 timed out,
# 2 QEMU exited first.
wait_console() {
    local name=$1 re=$2 timeout=$3 end
    end=$(( $(date +%s) + timeout ))
    while (( $(date +%s) < end )); do
        console_text "$work/$name.console" | grep -Eq -- "$re" && return 0
        kill -0 "$QPID" 2>/dev/null || { console_text "$work/$name.console" | grep -Eq -- "$re" && return 0; return 2; }
        sleep 0.2
    done
    return 1
}

# qemu_stop: stop the QEMU started last.
qemu_stop() {
    stop_pid "$QPID" 10
    exec {SERIAL_FD}>&- 2>/dev/null || true
}

# show_console NAME [LINES]: print the tail of a console log (for failures).
show_console() {
    echo "----- $1 console (last ${2:-40} lines) -----"
    console_text "$work/$1.console" | tail -n "${2:-40}"
    [[ -s $work/$1.err ]] && { echo "----- $1 qemu stderr -----"; tail -n 10 "$work/$1.err"; }
    echo "-----"
}

# ovmf_vars NAME SOURCE: a writable copy of an OVMF variable store; prints its path.
ovmf_vars() {
    cp "$2" "$work/$1.vars.fd"
    printf '%s\n' "$work/$1.vars.fd"
}
