//! Runs `tests/tui_tmux.sh`: the real binary's terminal UI in tmux rescues a loop device into a
//! file, the image equals the source, and quitting leaves a sane terminal. Never skips.

#[test]
fn tui_rescues_a_loop_device_in_tmux() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(repo.join("tests/tui_tmux.sh"))
        .env("SALVOR_BIN", env!("CARGO_BIN_EXE_salvor"))
        .current_dir(repo)
        .output()
        .expect("run tests/tui_tmux.sh");
    assert!(
        out.status.success(),
        "tui_tmux.sh failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
