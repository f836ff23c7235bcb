//! GNU ddrescue 1.27's own test suite (`testsuite/check.sh` of Debian's `gddrescue` source
//! package), unmodified, with salvor in ddrescue's place and the real `ddrescuelog`: the standard
//! for "ddrescue-compatible". `scripts/ddrescue-check.sh` fetches the sources on first use (cached
//! under `work/cache/`), runs check.sh with bash and fails with the failed checks' line numbers.

mod common;

#[test]
fn gnu_ddrescue_check_sh_passes_with_salvor() {
    common::require_tool("ddrescuelog", "gddrescue");
    common::run_script(
        "scripts/ddrescue-check.sh",
        &[env!("CARGO_BIN_EXE_salvor")],
        &[],
        true,
    );
}
