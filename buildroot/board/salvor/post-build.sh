#!/bin/sh
# Buildroot post-build script: salvor's inittab replaces busybox's default one (the salvor
# package installs it as /etc/salvor/inittab because the busybox package writes
# /etc/inittab itself), and the initramfs gets an empty module list (drivers are built in).
set -e
TARGET_DIR=$1
cp "$TARGET_DIR/etc/salvor/inittab" "$TARGET_DIR/etc/inittab"
: >"$TARGET_DIR/etc/salvor/modules.boot"
