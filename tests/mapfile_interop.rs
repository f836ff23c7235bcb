//! Interoperability of salvor's mapfiles with GNU ddrescue's own tools.
//!
//! Needs `ddrescue` and `ddrescuelog` (Debian/Ubuntu package `gddrescue`); the tests fail, not
//! skip, when they are missing, so that a CI image without them cannot pass silently.

use proptest::prelude::*;
use salvor::mapfile::{self, BlockStatus, Header, Mapfile, Phase};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn run(tool: &str, args: &[&str], dir: &Path) -> Output {
    match Command::new(tool).args(args).current_dir(dir).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{tool}` is not installed: these interop tests need GNU ddrescue \
             (Debian/Ubuntu: apt-get install gddrescue)"
        ),
        Err(e) => panic!("cannot run {tool}: {e}"),
    }
}

fn ddrescuelog(args: &[&str], dir: &Path) -> Output {
    run("ddrescuelog", args, dir)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Areas per status as `ddrescuelog -t` reports them.
fn areas_from_show_status(report: &str, status: BlockStatus) -> u64 {
    let label = format!("{}:", status.name());
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with(&label))
        .unwrap_or_else(|| panic!("no {label} line in\n{report}"));
    let after = line.split(" in ").nth(1).expect("'in N area(s)'");
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad area count in {line:?}"))
}

/// Checks `map` (sector-aligned) against ddrescuelog's view of `file`.
fn check_with_ddrescuelog(map: &Mapfile, file: &str, dir: &Path) {
    let o = ddrescuelog(&["-t", file], dir);
    assert!(
        o.status.success(),
        "ddrescuelog -t rejected our map: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        fs::read_to_string(dir.join(file)).unwrap_or_default()
    );
    let report = stdout(&o);
    let totals = map.totals();
    for st in BlockStatus::ALL {
        assert_eq!(
            areas_from_show_status(&report, st),
            totals.areas(st),
            "areas of {st:?}\n{report}"
        );
        // `-l` lists one sector number per line.
        let o = ddrescuelog(&[&format!("-l{}", st.as_char()), "-b512", file], dir);
        assert!(o.status.success());
        let sectors = stdout(&o).lines().count() as u64;
        assert_eq!(sectors * 512, totals.bytes(st), "bytes of {st:?}");
    }
    let o = ddrescuelog(&["-D", file], dir);
    let all_finished = totals.finished == totals.total() && totals.total() > 0;
    assert_eq!(
        o.status.code(),
        Some(if all_finished { 0 } else { 1 }),
        "ddrescuelog -D, all finished: {all_finished}"
    );
}

fn status() -> impl Strategy<Value = BlockStatus> {
    prop::sample::select(BlockStatus::ALL.to_vec())
}

proptest! {
    // Each case runs ddrescuelog a dozen times.
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn ddrescuelog_accepts_our_maps(
        sectors in 1u64..4096,
        ops in prop::collection::vec((0u64..4096, 0u64..2048, status()), 0..24),
        finish_all in any::<bool>(),
    ) {
        let mut map = Mapfile::new(sectors * 512);
        for (pos, len, st) in ops {
            map.set(pos * 512, len * 512, st);
        }
        if finish_all {
            map.set(0, sectors * 512, BlockStatus::Finished);
            map.phase = Phase::Finished;
        }
        map.current_pos = map.end() / 2;
        let dir = tempfile::tempdir().unwrap();
        let text = mapfile::render(&map, &Header::salvor("salvor rescue in out map"));
        fs::write(dir.path().join("map"), &text).unwrap();
        check_with_ddrescuelog(&map, "map", dir.path());
    }
}

/// A ddrescue test-mode map (`-H`): finished areas read fine, everything else fails.
const TEST_MODE_MAP: &str = "0 +\n\
    0x00000 0x40000 +\n\
    0x40000 0x01000 -\n\
    0x41000 0x20000 +\n\
    0x61000 0x00200 -\n\
    0x61200 0x30000 +\n\
    0x91200 0x10000 -\n\
    0xA1200 0x5EE00 +\n";

/// The header lines of a ddrescue-written map, to re-render it identically.
fn header_of(text: &str) -> Header {
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_default()
            .to_string()
    };
    let comments: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
    Header {
        tool: field("# Mapfile. Created by "),
        command_line: field("# Command line: "),
        start_time: field("# Start time:   "),
        current_time: field("# Current time: "),
        // The line before "# current_pos ...".
        status_message: comments[comments.len() - 2]
            .trim_start_matches("# ")
            .to_string(),
        source: String::new(),
    }
}

#[test]
fn maps_written_by_ddrescue_parse_and_rerender_identically() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Not random: reproducible, and compresses nothing away.
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(d.join("in.img"), &data).unwrap();
    fs::write(d.join("testmap"), TEST_MODE_MAP).unwrap();
    // -n: stop after copying (leaves non-trimmed areas); a full run trims, scrapes and finishes;
    // -X0: stop at the first read error, with exit status 1 (leaves non-tried space).
    let runs: [(&str, &[&str], i32); 4] = [
        ("copy.map", &["-n"], 0),
        ("full.map", &[], 0),
        ("stop.map", &["-X0"], 1),
        ("retry.map", &["-r2"], 0),
    ];
    for (name, opts, code) in runs {
        let mut args: Vec<&str> = vec!["-f", "-q", "-H", "testmap"];
        args.extend_from_slice(opts);
        let out = format!("{name}.img");
        args.extend_from_slice(&["in.img", &out, name]);
        let o = run("ddrescue", &args, d);
        assert_eq!(
            o.status.code(),
            Some(code),
            "ddrescue {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = fs::read_to_string(d.join(name)).unwrap();
        let map = mapfile::parse(&text, &d.join(name)).unwrap();
        map.check().unwrap();
        assert!(map.blocks().len() > 1, "{name}: expected bad areas\n{text}");
        assert_eq!(map.end(), 1 << 20);
        // Same layout: our rendering is ddrescue's text plus the end marker.
        let again = mapfile::render(&map, &header_of(&text));
        let body = again
            .rsplit_once("# end of salvor mapfile")
            .map(|(body, _)| body)
            .unwrap();
        assert_eq!(body, text, "{name}");
        check_with_ddrescuelog(&map, name, d);
    }
}

#[test]
fn ddrescue_resumes_from_our_map() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("in.img"), vec![0x5a; 1 << 20]).unwrap();
    fs::write(d.join("testmap"), TEST_MODE_MAP).unwrap();
    let mut map = Mapfile::new(1 << 20);
    map.set(0, 0x40000, BlockStatus::Finished);
    map.set(0x40000, 0x1000, BlockStatus::NonTrimmed);
    map.current_pos = 0x41000;
    let mut saver = mapfile::MapfileSaver::new(&d.join("map"), "salvor rescue in.img out.img map");
    saver
        .save(&map, "Copying non-tried blocks... Pass 1 (forwards)")
        .unwrap();
    let o = run(
        "ddrescue",
        &["-f", "-q", "-H", "testmap", "in.img", "out.img", "map"],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // ddrescue rewrote it in its own name; we read its result.
    let after = mapfile::parse_file(&d.join("map")).unwrap().unwrap();
    assert_eq!(after.phase, Phase::Finished);
    assert_eq!(after.totals().total(), 1 << 20);
    assert_eq!(after.totals().bad_sector, 0x1000 + 0x200 + 0x10000);
}

#[test]
fn ddrescuelog_and_salvor_agree_on_hand_edited_maps() {
    // Odd but valid spellings: both tools must accept them and see the same blocks.
    let text =
        "  # hand-edited\r\n0x1000 ? 2 # pass 2\r\n\r\n0 4096 +\r\n010000 0x1000 -\t# octal\r\n\
                0x2000 8192 ?\r\n";
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("map"), text).unwrap();
    let map = mapfile::parse(text, Path::new("map")).unwrap();
    assert_eq!(map.pass, 2);
    check_with_ddrescuelog(&map, "map", dir.path());
    // And both reject the same broken ones with exit status 2.
    for bad in [
        "0 ? 0\n",
        "0 ?\n0 10 +\n11 10 +\n",
        "0 ?\n5 0 ?\n",
        "0 ?\n0 1 F\n",
    ] {
        fs::write(dir.path().join("bad"), bad).unwrap();
        let o = ddrescuelog(&["-t", "bad"], dir.path());
        assert_eq!(o.status.code(), Some(2), "ddrescuelog on {bad:?}");
        let e = mapfile::parse(bad, Path::new("bad")).unwrap_err();
        assert_eq!(e.exit_code(), 2, "salvor on {bad:?}");
    }
}
