//! Runs `tests/tui_tmux.sh`: the real binary's terminal UI in tmux rescues a loop device into a
//! file, the image equals the source, and quitting leaves a sane terminal. Never skips.

mod common;

#[test]
fn tui_rescues_a_loop_device_in_tmux() {
    common::run_script(
        "tests/tui_tmux.sh",
        &[],
        &[("SALVOR_BIN", env!("CARGO_BIN_EXE_salvor"))],
        false,
    );
}
