#!/usr/bin/env bash
# End-to-end test of the terminal UI: the real binary, in a detached tmux session of 80x24, rescues a
# loop device holding an ext4 filesystem into an image file and shows the result screen; the image
# must equal the source. Then "Copy my files" opens the rescued image read-only, copies a folder
# onto a second loop disk (ext4, mounted by salvor), and the copied files must equal the originals
# on the host. After quitting, the shell prompt must be back on a sane terminal.
#
# Needs root (losetup), tmux, and a built binary (SALVOR_BIN, default target/debug/salvor).
# Usage: bash tests/tui_tmux.sh
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=$(realpath "${SALVOR_BIN:-target/debug/salvor}")
[ -x "$BIN" ] || { echo "tui_tmux: no binary at $BIN (cargo build first)"; exit 1; }
command -v tmux >/dev/null || { echo "tui_tmux: tmux is not installed"; exit 1; }

command -v mkfs.ext4 >/dev/null || { echo "tui_tmux: mkfs.ext4 is missing (e2fsprogs)"; exit 1; }

work=$(mktemp -d /tmp/salvor-tui-e2e.XXXXXX)
session="salvor-e2e-$$"
loopdev=""
destdev=""

cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    # Whatever salvor mounted or attached for this run (it does so itself; a failed run may not).
    if [ -n "$destdev" ]; then umount "/mnt/$(basename "$destdev")" 2>/dev/null || true; fi
    for lo in $(losetup -j "$work/out.img" -O NAME -n 2>/dev/null); do
        umount "/mnt/$(basename "$lo")" 2>/dev/null || true
        losetup -d "$lo" 2>/dev/null || true
    done
    # Only the devices this script attached; never all of them.
    if [ -n "$loopdev" ]; then losetup -d "$loopdev" 2>/dev/null || true; fi
    if [ -n "$destdev" ]; then losetup -d "$destdev" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

screen() { tmux capture-pane -p -t "$session"; }

# Waits until the screen shows $1 (a grep -E pattern), for at most $2 seconds.
wait_for() {
    local pattern=$1 limit=${2:-20} i
    for ((i = 0; i < limit * 10; i++)); do
        if screen | grep -qE -- "$pattern"; then return 0; fi
        sleep 0.1
    done
    echo "tui_tmux: timed out waiting for '$pattern'; the screen was:"
    screen
    exit 1
}

keys() { tmux send-keys -t "$session" "$@"; }

# The failing disk: ext4 with a few folders of random files.
mkdir -p "$work/tree/photos/2024" "$work/tree/docs"
for i in 1 2 3; do head -c $((i * 300000 + 17)) /dev/urandom >"$work/tree/photos/2024/img$i.jpg"; done
head -c 1234567 /dev/urandom >"$work/tree/photos/big.raw"
echo "hello" >"$work/tree/docs/readme.txt"
truncate -s 64M "$work/source.bin"
mkfs.ext4 -q -F -E nodiscard -d "$work/tree" "$work/source.bin"
loopdev=$(losetup --find --show --read-only "$work/source.bin")
loopname=$(basename "$loopdev")
# The disk the files are copied onto: an empty ext4.
truncate -s 64M "$work/dest.bin"
mkfs.ext4 -q -F -L restored "$work/dest.bin"
destdev=$(losetup --find --show "$work/dest.bin")
destname=$(basename "$destdev")
echo "tui_tmux: source $loopdev, files go to $destdev"

tmux new-session -d -s "$session" -x 80 -y 24 "bash --norc --noprofile"
keys "PS1='READY\$ '; cd '$work'" Enter
wait_for 'READY\$'
keys "'$BIN'" Enter
wait_for 'Main menu'

# Rescue a failing disk -> source list; move down to our loop device.
keys Enter
wait_for 'which disk is failing'
for ((i = 0; i < 64; i++)); do
    if screen | grep -qE "> $loopname "; then break; fi
    keys Down
    sleep 0.1
done
screen | grep -qE "> $loopname " || { echo "tui_tmux: $loopname not in the list"; screen; exit 1; }
keys Enter
wait_for 'where should the rescued data go'
keys Enter                      # the first row: an image file
wait_for 'Image file path'
keys -l "$work/out.img"
keys Enter
wait_for 'progress record'
keys Enter                      # accept the mapfile beside the image
wait_for 'options'
keys Enter
wait_for 'check and confirm'
screen | grep -q "$loopname" || { echo "tui_tmux: confirmation does not name the source"; exit 1; }
keys Enter
# A finished rescue goes on to its result screen; the report reads the copy's filesystems.
wait_for 'Rescue result' 120
wait_for 'nothing is unreadable' 10
wait_for 'Damaged files:|Could not list the damaged files' 60
screen

cmp "$work/source.bin" "$work/out.img"
[ -s "$work/out.img.map" ] || { echo "tui_tmux: no mapfile"; exit 1; }

# Copy my files (the first step: nothing is left to retry).
screen | grep -qE '> Copy my files' || { echo "tui_tmux: Copy my files is not offered first"; screen; exit 1; }
keys Enter
wait_for 'which part of the copy'
wait_for '> loop[0-9]+ +ext4'
keys Enter
wait_for 'what to copy'
# Mark the photos folder, then choose where it goes.
for ((i = 0; i < 10; i++)); do
    if screen | grep -qE '> photos/'; then break; fi
    keys Down
    sleep 0.1
done
screen | grep -qE '> photos/' || { echo "tui_tmux: photos/ not in the browser"; screen; exit 1; }
keys Space
keys c
wait_for 'into which folder'
for ((i = 0; i < 64; i++)); do
    if screen | grep -qE "> $destname \(not mounted\)"; then break; fi
    keys Down
    sleep 0.1
done
screen | grep -qE "> $destname \(not mounted\)" || { echo "tui_tmux: $destname not offered"; screen; exit 1; }
keys Enter
wait_for "Folder: /mnt/$destname"
keys c
wait_for 'check and start'
keys Enter
wait_for 'Done: ' 60
screen
# The copied files, checked on the host while salvor still has the disk mounted.
diff -r "$work/tree/photos" "/mnt/$destname/photos" || { echo "tui_tmux: the copied files differ"; exit 1; }
keys Enter                      # unmounts the copy, back to the result
wait_for 'Rescue result'
[ -z "$(losetup -j "$work/out.img" -O NAME -n)" ] || { echo "tui_tmux: the copy is still attached"; exit 1; }

keys Escape                     # back to the menu
wait_for 'Main menu'
keys q
wait_for 'READY\$ *$' 10
# Leaving salvor unmounts what it mounted.
if mountpoint -q "/mnt/$destname"; then echo "tui_tmux: /mnt/$destname is still mounted"; exit 1; fi
# A sane terminal echoes and runs a command line again.
keys "echo sane-\$((20 + 22))" Enter
wait_for '^sane-42$' 10
echo "tui_tmux: 1 passed, 0 failed"
