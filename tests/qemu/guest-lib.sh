# Guest-side helpers for the tests/qemu/ guest scripts (busybox ash). Installed in the test
# initramfs as /usr/local/bin/guest-lib.sh; source it.
#
# guest_disk SERIAL   print /dev/NAME of the virtio disk with that serial (empty if none).
# guest_wait_disk SERIAL TIMEOUT   wait until that disk exists (it may come back under
#     another name after a replug); prints its /dev name, fails after TIMEOUT seconds.
# guest_cmd   print the command from salvor.cmd_b64= on the kernel command line.
# guest_hold_dirty   keep written data in the page cache until someone syncs it, so that a
#     missing fsync loses data at a power cut (kill -9 of QEMU) instead of being hidden by
#     background writeback.

guest_disk() {
    for b in /sys/block/vd*; do
        [ "$(cat "$b/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${b##*/}"; return 0; }
    done
    return 1
}

guest_wait_disk() {
    _n=0
    while [ "$_n" -lt $(($2 * 10)) ]; do
        _d=$(guest_disk "$1") && [ -b "$_d" ] && { echo "$_d"; return 0; }
        # Polls sysfs for the disk's arrival (the hot-plug readiness signal in a bare initramfs).
        sleep 0.1
        _n=$((_n + 1))
    done
    return 1
}

guest_cmd() {
    for arg in $(cat /proc/cmdline); do
        case $arg in
            salvor.cmd_b64=*) echo "${arg#salvor.cmd_b64=}" | base64 -d; return 0 ;;
        esac
    done
    return 1
}

guest_hold_dirty() {
    echo 90 >/proc/sys/vm/dirty_ratio
    echo 80 >/proc/sys/vm/dirty_background_ratio
    echo 0 >/proc/sys/vm/dirty_writeback_centisecs
    echo 360000 >/proc/sys/vm/dirty_expire_centisecs
}
