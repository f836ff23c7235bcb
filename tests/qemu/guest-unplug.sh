#!/bin/sh
# Guest side of unplug.sh (busybox ash, in the test initramfs).
#
# Disks by virtio serial: salvor-src (the source; the host unplugs and replugs it),
# salvor-dst-a, salvor-dst-b (destinations), salvor-out (results, a tar written raw).
# salvor.cmd_b64 holds the rescue options common to every run. Phases, each announced on the
# console for the host:
#   A  UNPLUG-A-START: salvor rescue --wait-device=120 onto dst-a; the host unplugs and
#      replugs the source mid-run; UNPLUG-A-END rc=N.
#   B  UNPLUG-B-START: the same without --wait-device onto dst-b; the host unplugs the source,
#      salvor stops (UNPLUG-B-STOPPED rc=N); once the source is back (any name) the same
#      command runs again on it and resumes: UNPLUG-B-END rc=N.
# Results: a.map a.log a.rc, b1.map (the map as the stopped run left it) b1.log b1.rc,
# b.map b2.log b2.rc.
. /usr/local/bin/guest-lib.sh
SRC=$(guest_disk salvor-src) DSTA=$(guest_disk salvor-dst-a) DSTB=$(guest_disk salvor-dst-b)
OUT=$(guest_disk salvor-out)
if [ -z "$SRC" ] || [ -z "$DSTA" ] || [ -z "$DSTB" ] || [ -z "$OUT" ]; then
    echo "guest: disks not found (src=$SRC dst-a=$DSTA dst-b=$DSTB out=$OUT)"
    exit 99
fi
opts=$(guest_cmd) || { echo "guest: no salvor.cmd_b64"; exit 96; }
R=/tmp/out
mkdir -p "$R"

# run NAME SRC DST MAP [OPTION]: one rescue, its output on the console and in $R/NAME.log.
run() {
    { eval "salvor rescue $opts $5 \"\$2\" \"\$3\" \"\$4\""; echo $? >"$R/$1.rc"; } 2>&1 | tee "$R/$1.log"
}

# gone_then_back OLD: wait until the unplugged disk OLD left sysfs, then for the source to
# come back; prints its (maybe new) /dev name.
gone_then_back() {
    n=0
    while [ -e "/sys/block/${1##*/}" ] && [ "$(cat "/sys/block/${1##*/}/serial" 2>/dev/null)" = salvor-src ]; do
        [ $n -lt 600 ] || return 1
        sleep 0.1
        n=$((n + 1))
    done
    guest_wait_disk salvor-src 120
}

echo "UNPLUG-A-START SRC=$SRC"
run a "$SRC" "$DSTA" "$R/a.map" --wait-device=120
echo "UNPLUG-A-END rc=$(cat "$R/a.rc")"

SRC=$(guest_wait_disk salvor-src 60) || { echo "guest: source not back after phase A"; exit 95; }
echo "UNPLUG-B-START SRC=$SRC"
run b1 "$SRC" "$DSTB" "$R/b.map"
cp "$R/b.map" "$R/b1.map" 2>/dev/null
echo "UNPLUG-B-STOPPED rc=$(cat "$R/b1.rc")"
NEW=$(gone_then_back "$SRC") || { echo "guest: source did not come back"; exit 94; }
echo "guest: source back as $NEW (was $SRC)"
run b2 "$NEW" "$DSTB" "$R/b.map"
echo "UNPLUG-B-END rc=$(cat "$R/b2.rc")"
sync
(cd "$R" && tar -cf "$OUT" .) || { echo "guest: writing results failed"; exit 98; }
sync
