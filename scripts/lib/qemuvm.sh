# shellcheck shell=bash
# Running the test kernel + initramfs under QEMU (TCG) for the real-kernel tests (tests/qemu/):
# disks, start, readiness on the serial console, power cuts, the monitor.
#
# vm_disk_args NAME IMAGE SERIAL [RULES [DEVICE_OPTS]]   print the QEMU arguments (one per
#     line) of a writable virtio disk: file -> [blkdebug RULES ->] raw, device id NAME-dev. The
#     host file uses QEMU's defaults, cache=writeback without O_DIRECT: the guest sees a
#     volatile write cache and must flush, and a kill -9 of QEMU loses what the guest kernel
#     still held in its page cache, like a power cut loses a machine's RAM.
# vm_start WORKDIR APPEND [QEMU_ARGS...]   boot $KERNEL_VMLINUZ with WORKDIR/initrd.cpio.gz,
#     console in WORKDIR/console.log (truncated), QMP socket WORKDIR/qmp.sock; QEMU runs in
#     the background as VM_PID (QEMU itself, so that kill -9 hits it).
# vm_wait_line ERE TIMEOUT [FROM]   wait until a console line after line FROM (default 0)
#     matches ERE (awk's: mawk has no {m,n} intervals); the line is in VM_LINE, its number
#     in VM_LINENO. Fails when QEMU exits or the timeout passes first.
# vm_wait_exit TIMEOUT   wait for QEMU to end by itself (the guest powers off); VM_RC.
# vm_kill9   kill -9 QEMU (the power cut) and reap it.
# vm_stop    end QEMU if it runs (for traps).
# vm_qmp STEP...   scripts/lib/qmp.py on the running VM's monitor.
# vm_console_lines   number of lines on the console so far.

if [[ -n "${_SALVOR_QEMUVM_SH:-}" ]]; then return 0; fi
_SALVOR_QEMUVM_SH=1
_salvor_qemuvm_lib="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=common.sh
source "$_salvor_qemuvm_lib/common.sh"
# shellcheck source=kernel.sh
source "$_salvor_qemuvm_lib/kernel.sh"

VM_PID=
VM_DIR=

vm_disk_args() {
    local name=$1 image=$2 serial=$3 rules=${4:-} devopts=${5:-} file=$1-file
    printf '%s\n' -blockdev "driver=file,node-name=$name-file,filename=$image,cache.direct=off,cache.no-flush=off"
    if [[ -n $rules ]]; then
        printf '%s\n' -blockdev "driver=blkdebug,node-name=$name-dbg,image=$name-file,config=$rules"
        file=$name-dbg
    fi
    printf '%s\n' -blockdev "driver=raw,node-name=$name,file=$file" \
        -device "virtio-blk-pci,id=$name-dev,drive=$name,serial=$serial${devopts:+,$devopts}"
}

vm_start() {
    local dir=$1 append=$2; shift 2
    need qemu-system-x86_64:qemu-system-x86
    [[ -n ${KERNEL_VMLINUZ:-} ]] || fetch_kernel
    [[ ${#append} -lt 1900 ]] || die "kernel command line too long (${#append} bytes)"
    VM_DIR=$dir
    : >"$dir/console.log"
    rm -f "$dir/qmp.sock"
    qemu-system-x86_64 \
        -accel tcg -m 256 -smp 1 -nodefaults -display none -no-reboot \
        -serial "file:$dir/console.log" \
        -qmp "unix:$dir/qmp.sock,server=on,wait=off" \
        -kernel "$KERNEL_VMLINUZ" -initrd "$dir/initrd.cpio.gz" -append "$append" \
        "$@" </dev/null >>"$dir/qemu.log" 2>&1 &
    VM_PID=$!
}

vm_console_lines() {
    tr -d '\r' <"$VM_DIR/console.log" | wc -l
}

vm_wait_line() {
    local ere=$1 timeout=$2 from=${3:-0} deadline hit
    deadline=$(($(date +%s) + timeout))
    VM_LINE= VM_LINENO=
    while :; do
        # The console file is the guest's serial port: poll it for the line (readiness, not a
        # guess at how long the guest needs).
        hit=$(tr -d '\r' <"$VM_DIR/console.log" \
            | awk -v from="$from" -v re="$ere" 'NR > from && $0 ~ re { print NR "\t" $0; exit }')
        if [[ -n $hit ]]; then
            VM_LINENO=${hit%%$'\t'*}
            VM_LINE=${hit#*$'\t'}
            return 0
        fi
        if ! kill -0 "$VM_PID" 2>/dev/null; then
            # One last look: the line may have come just before QEMU ended.
            hit=$(tr -d '\r' <"$VM_DIR/console.log" \
                | awk -v from="$from" -v re="$ere" 'NR > from && $0 ~ re { print NR "\t" $0; exit }')
            if [[ -n $hit ]]; then
                VM_LINENO=${hit%%$'\t'*}
                VM_LINE=${hit#*$'\t'}
                return 0
            fi
            log "QEMU ended before the console showed /$ere/"
            return 1
        fi
        if (($(date +%s) >= deadline)); then
            log "no console line /$ere/ within ${timeout}s"
            return 1
        fi
        sleep 0.1
    done
}

vm_wait_exit() {
    local timeout=$1 deadline
    deadline=$(($(date +%s) + timeout))
    while kill -0 "$VM_PID" 2>/dev/null; do
        if (($(date +%s) >= deadline)); then
            log "QEMU still running after ${timeout}s; stopping it"
            stop_pid "$VM_PID" 10
            VM_PID=
            VM_RC=124
            return 1
        fi
        sleep 0.2
    done
    VM_RC=0
    wait "$VM_PID" || VM_RC=$?
    VM_PID=
    [[ $VM_RC -eq 0 ]]
}

vm_kill9() {
    [[ -n $VM_PID ]] || return 0
    kill -9 "$VM_PID" 2>/dev/null || true
    wait "$VM_PID" 2>/dev/null || true
    VM_PID=
}

vm_stop() {
    if [[ -n ${VM_PID:-} ]]; then
        stop_pid "$VM_PID" 10
        VM_PID=
    fi
}

vm_qmp() {
    need python3:python3
    python3 "$_salvor_qemuvm_lib/qmp.py" "$VM_DIR/qmp.sock" "$@"
}

# vm_test_setup NAME: the common frame of a QEMU fault test. Makes the work directory $work
# (kept with KEEP=1), stops the VM and cleans up on any exit, and defines the failure list:
# `fail MSG` records a failure (prefixed with $ctx, the test's current phase), `now` and
# `secs A B` time the phases.
vm_test_setup() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/salvor-$1.XXXXXX")
    trap vm_test_cleanup EXIT
    trap 'exit 130' INT TERM
    fails=()
    ctx=
}
vm_test_cleanup() {
    local rc=$?
    vm_stop
    if [[ ${KEEP:-0} == 1 ]]; then log "work directory kept: $work"; else rm -rf "$work"; fi
    exit "$rc"
}
fail() { fails+=("${ctx:+$ctx: }$*"); }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
now() { date +%s.%N; }
