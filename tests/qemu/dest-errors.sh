#!/usr/bin/env bash
# dest-errors.sh [SALVOR_BINARY]
#
# Destination write and flush errors on a real kernel: boots the test kernel under QEMU (TCG)
# with a blkdebug-faulty source and two destination disks behind blkdebug (see
# guest-desterr.sh):
#   W  writes that touch sector W_SECTOR fail (write_aio, EIO, permanently);
#   F  the second flush that reaches the disk fails, once (flush_to_disk, EIO; later ones
#      succeed, as after a drive's transient error, or as Linux's report-once writeback
#      errors make them look).
# Checks on the host for each: salvor exits 1 and its message names the destination device
# and an offset; the mapfile parses with ddrescuelog and every '+' byte is the source's on
# the destination (W: the failed write's area is never claimed); F: the first good save's data
# is claimed, nothing written after it.
# Prints PASS or FAIL and exits non-zero on failure.
#
# Environment: DISK_MIB (default 32), RATE (salvor -Z, default 8MiB), W_SECTOR (default
# 40000), KEEP=1 keeps the work directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
source "$repo/scripts/lib/build.sh"
source "$repo/scripts/lib/rescuecheck.sh"
source "$repo/scripts/lib/qemuvm.sh"

DISK_MIB=${DISK_MIB:-32}
RATE=${RATE:-8MiB}
W_SECTOR=${W_SECTOR:-40000}
salvor_bin=${1:-$(build_salvor_musl)}
[[ -f $salvor_bin ]] || die "no salvor binary at $salvor_bin"
need qemu-system-x86_64:qemu-system-x86 cmp:diffutils tar:tar awk:mawk base64:coreutils \
    ddrescuelog:gddrescue

vm_test_setup desterr
# Failures (`fail`, scripts/lib/qemuvm.sh) name the destination (w or f) they were found on.

size=$((DISK_MIB * 1048576))
nsect=$((size / 512))
[[ $W_SECTOR -lt $nsect ]] || die "W_SECTOR beyond the disk"
t_start=$(now)
rescue_make_source "$work/src.img" "$nsect"
rescue_make_rules "$work" "$nsect" "2051+1"
truncate -s "$size" "$work/dst-w.img" "$work/dst-f.img"
truncate -s 4M "$work/out.img"
printf '[inject-error]\nevent = "write_aio"\nerrno = "5"\nsector = "%d"\nonce = "off"\n' "$W_SECTOR" \
    >"$work/write.conf"
# blkdebug states: the first flush moves to state 2, where the next flush fails once.
cat >"$work/flush.conf" <<'EOF'
[set-state]
event = "flush_to_disk"
state = "1"
new_state = "2"

[inject-error]
event = "flush_to_disk"
state = "2"
errno = "5"
once = "on"
EOF
fetch_kernel
"$repo/scripts/mkinitramfs-test.sh" "$work/initrd.cpio.gz" "$salvor_bin" \
    "$here/guest-desterr.sh" "$here/guest-lib.sh" >/dev/null
t_prep=$(now)

opts="-d -f --json -Z $RATE --mapfile-interval 1"
mapfile -t disks < <(
    rescue_blkdebug_args src "$work/src.img" "$work/rules.conf" salvor-src
    vm_disk_args dst-w "$work/dst-w.img" salvor-dst-w "$work/write.conf"
    vm_disk_args dst-f "$work/dst-f.img" salvor-dst-f "$work/flush.conf"
    vm_disk_args out "$work/out.img" salvor-out
)
vm_start "$work" "console=ttyS0 panic=-1 quiet loglevel=4 salvor.cmd_b64=$(printf '%s' "$opts" | base64 -w0)" \
    "${disks[@]}"
vm_wait_exit 900 || fail "QEMU exited with $VM_RC"
t_end=$(now)
console=$(tr -d '\r' <"$work/console.log")
grep -q '^SALVOR-RUN-END' <<<"$console" || fail "the guest did not finish"

mkdir -p "$work/res"
tar -xf "$work/out.img" -C "$work/res" 2>"$work/tar.err" \
    || fail "could not read the results from the out disk: $(cat "$work/tar.err")"
res=$work/res
for t in w f; do
    ctx=$t
    dst_img="$work/dst-$t.img"
    dev=$(cat "$res/dst-$t" 2>/dev/null || echo '?')
    rc=$(cat "$res/$t.rc" 2>/dev/null || echo missing)
    msg=$(grep -m1 '^salvor: ' "$res/$t.log" 2>/dev/null || true)
    echo "$t: exit $rc; salvor said: ${msg:-nothing}"
    [[ $rc == 1 ]] || fail "salvor exited $rc, expected 1"
    grep -q -- "$dev" <<<"$msg" || fail "the message does not name the destination $dev"
    grep -q '0x[0-9A-Fa-f]' <<<"$msg" || fail "the message names no offset"
    if ! rescue_parse_map "$work" "$size" "$res/$t.map"; then
        fail "no mapfile"
        continue
    fi
    rescue_ddrescuelog "$res/$t.map"
    rescue_check_claims "$work" "$work/src.img" "$dst_img"
    echo "$t: the mapfile claims $RESCUED bytes"
    if [[ $t == w ]]; then
        # The failed write really failed on the host side: the check above means something.
        if cmp -s -n 512 -i "$((W_SECTOR * 512)):$((W_SECTOR * 512))" "$work/src.img" "$dst_img"; then
            fail "sector $W_SECTOR reached the destination (the write error was not injected)"
        fi
        awk -v p="$((W_SECTOR * 512))" '$3 == "+" && $1 <= p && p < $1 + $2 { exit 1 }' "$work/blocks" \
            || fail "the mapfile claims sector $W_SECTOR, whose write failed"
    else
        # QEMU skips a flush when nothing was written since the last one, so the first flush
        # that reaches blkdebug is the first save with data; the second one fails. Whatever
        # was written after the last good sync must not be claimed, though QEMU did write it:
        # the mapfile claims less than the run had read, and nothing in the range salvor names.
        read_total=$(grep -o '"finished":[0-9]*' "$res/$t.log" | tail -n 1 | cut -d: -f2 || true)
        [[ $RESCUED -gt 0 && $RESCUED -lt ${read_total:-0} ]] \
            || fail "the mapfile claims $RESCUED bytes; the run had read ${read_total:-?} (expected a first good save, then nothing newer)"
        range=$(grep -o '0x[0-9A-Fa-f]*–0x[0-9A-Fa-f]*' <<<"$msg" | head -n 1 || true)
        if [[ -n $range ]]; then
            lo=$((${range%–*})) hi=$((${range#*–}))
            awk -v lo="$lo" -v hi="$hi" '$3 == "+" && $1 < hi && $1 + $2 > lo { exit 1 }' "$work/blocks" \
                || fail "the mapfile claims data in $range, written after the last good sync"
        else
            fail "the message names no unsynced range"
        fi
    fi
done
ctx=
echo "timing: prepare $(secs "$t_start" "$t_prep")s, boot and both runs $(secs "$t_prep" "$t_end")s"
if [[ ${#fails[@]} -eq 0 ]]; then
    echo "PASS: destination write and flush errors stop the rescue with exit 1, naming the device and offset; the mapfile claims only durable source data"
    exit 0
fi
printf '%s\n' "----- guest console (tail) -----"
tail -n 60 <<<"$console"
echo "FAIL:"
printf '  %s\n' "${fails[@]}"
exit 1
