# shellcheck shell=bash
# build_salvor_musl: build the static release binary
#   target/x86_64-unknown-linux-musl/release/salvor
# installing what the build needs (Debian's musl-tools for musl-gcc, which zstd-sys's C
# code uses via CC_x86_64_unknown_linux_musl in .cargo/config.toml; the rustup target).
# Prints the binary's path. Uses $CARGO when set (as under `cargo test`).

if [[ -n "${_SALVOR_BUILD_SH:-}" ]]; then return 0; fi
_SALVOR_BUILD_SH=1
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SALVOR_MUSL_TARGET=x86_64-unknown-linux-musl

build_salvor_musl() {
    local cargo=${CARGO:-cargo} target_dir
    need musl-gcc:musl-tools
    if command -v rustup >/dev/null 2>&1 \
        && ! rustup target list --installed 2>/dev/null | grep -qx "$SALVOR_MUSL_TARGET"; then
        rustup target add "$SALVOR_MUSL_TARGET" >&2 || die "rustup target add $SALVOR_MUSL_TARGET failed"
    fi
    (cd "$SALVOR_REPO" && "$cargo" build --release --locked --target "$SALVOR_MUSL_TARGET" >&2) \
        || die "cargo build --release --target $SALVOR_MUSL_TARGET failed"
    target_dir=${CARGO_TARGET_DIR:-$SALVOR_REPO/target}
    [[ $target_dir == /* ]] || target_dir="$SALVOR_REPO/$target_dir"
    printf '%s\n' "$target_dir/$SALVOR_MUSL_TARGET/release/salvor"
}
