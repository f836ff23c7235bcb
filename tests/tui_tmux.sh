#!/usr/bin/env bash
# End-to-end test of the terminal UI: the real binary, in a detached tmux session of 80x24, rescues a
# loop device into an image file and shows the result screen; then the image must equal the source
# and, after quitting, the shell prompt must be back on a sane terminal.
#
# Needs root (losetup), tmux, and a built binary (SALVOR_BIN, default target/debug/salvor).
# Usage: bash tests/tui_tmux.sh
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=$(realpath "${SALVOR_BIN:-target/debug/salvor}")
[ -x "$BIN" ] || { echo "tui_tmux: no binary at $BIN (cargo build first)"; exit 1; }
command -v tmux >/dev/null || { echo "tui_tmux: tmux is not installed"; exit 1; }

work=$(mktemp -d /tmp/salvor-tui-e2e.XXXXXX)
session="salvor-e2e-$$"
loopdev=""

cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    # Only the device this script attached; never all of them.
    if [ -n "$loopdev" ]; then losetup -d "$loopdev" 2>/dev/null || true; fi
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

head -c $((64 << 20)) /dev/urandom >"$work/source.bin"
loopdev=$(losetup --find --show --read-only "$work/source.bin")
loopname=$(basename "$loopdev")
echo "tui_tmux: source $loopdev"

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

keys Escape                     # back to the menu
wait_for 'Main menu'
keys q
wait_for 'READY\$ *$' 10
# A sane terminal echoes and runs a command line again.
keys "echo sane-\$((20 + 22))" Enter
wait_for '^sane-42$' 10
echo "tui_tmux: 1 passed, 0 failed"
