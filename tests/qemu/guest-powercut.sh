#!/bin/sh
# Guest side of power-cut.sh (busybox ash, in the test initramfs).
#
# Disks by virtio serial: salvor-src (the faulty source), salvor-dst (the destination),
# salvor-map (an ext4 filesystem made on the host, holding the mapfile). Mounts the map
# filesystem (replaying its journal after a cut), prints POWERCUT-START, runs the command from
# salvor.cmd_b64 (SRC, DST, MAP set; its output goes to the console) and prints
# POWERCUT-END rc=N. The host kills QEMU at random moments in between.
. /usr/local/bin/guest-lib.sh
SRC=$(guest_disk salvor-src) DST=$(guest_disk salvor-dst) MAPDEV=$(guest_disk salvor-map)
if [ -z "$SRC" ] || [ -z "$DST" ] || [ -z "$MAPDEV" ]; then
    echo "guest: disks not found (src=$SRC dst=$DST map=$MAPDEV)"
    exit 99
fi
guest_hold_dirty
mkdir -p /mnt/map
# noauto_da_alloc: ext4 would otherwise flush a file replaced by rename on its own and hide a
# missing fsync of the new mapfile; commit=300: no journal commit the rescuer did not ask for.
mount -t ext4 -o noauto_da_alloc,commit=300 "$MAPDEV" /mnt/map || { echo "guest: mount failed"; exit 97; }
MAP=/mnt/map/rescue.map
export SRC DST MAP
cmd=$(guest_cmd) || { echo "guest: no salvor.cmd_b64"; exit 96; }
echo "guest: SRC=$SRC DST=$DST MAP=$MAP; running: $cmd"
echo "POWERCUT-START"
sh -c "$cmd" 2>&1
rc=$?
echo "POWERCUT-END rc=$rc"
umount /mnt/map
exit "$rc"
