#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh Debian machine (as root):
# installs what it needs, builds the static musl release binary, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== formatting"
cargo fmt --check

echo "== static release binary (x86_64-unknown-linux-musl)"
cargo build --release --target x86_64-unknown-linux-musl
bin=target/x86_64-unknown-linux-musl/release/salvor
file "$bin"
file "$bin" | grep -Eq "static(-pie)? linked|statically linked" || { echo "FAIL: $bin is not static"; exit 1; }

echo "== tests"
# Loop-device and QEMU tests need root; they fail loudly (never skip) when something is missing.
cargo test --no-fail-fast -- --test-threads=2
