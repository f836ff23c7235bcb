//! GNU ddrescue's command line through `salvor rescue`: the options and modes salvor takes over
//! from ddrescue 1.27 with ddrescue's meaning (see docs/ddrescue-compat.md), end to end through
//! the binary. GNU ddrescue's own suite runs in tests/ddrescue_check.rs.

mod common;

use common::*;
use salvor::mapfile::BlockStatus;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const KIB: usize = 1024;

fn rescue_args(args: &[&str]) -> Output {
    run(salvor().arg("rescue").arg("-q").args(args))
}

fn with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = salvor()
        .arg("rescue")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn salvor");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Alternating finished / non-tried blocks of `block` bytes over `size` bytes (ddrescue's
/// testsuite mapfile1 has this shape).
fn striped_map(size: usize, block: usize, first: char) -> String {
    let other = if first == '+' { '?' } else { '+' };
    let mut t = String::from("0 + 1\n");
    let mut pos = 0;
    let mut c = first;
    while pos < size {
        let len = block.min(size - pos);
        t += &format!("0x{pos:X} 0x{len:X} {c}\n");
        pos += len;
        c = if c == first { other } else { first };
    }
    t
}

/// `data` with only the finished blocks of a striped map kept (zeros elsewhere), truncated after
/// the last finished block, like ddrescue's own partial copies.
fn striped_copy(data: &[u8], block: usize, first_finished: bool) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    let mut last = 0;
    for (i, chunk) in data.chunks(block).enumerate() {
        if (i % 2 == 0) == first_finished {
            let p = i * block;
            out[p..p + chunk.len()].copy_from_slice(chunk);
            last = p + chunk.len();
        }
    }
    out.truncate(last);
    out
}

#[test]
fn the_mapfile_operand_is_optional() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    let data = write_pattern(&p.join("in"), 1, 100 * KIB + 7);
    let o = rescue_args(&[s(&p.join("in")), s(&p.join("out"))]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(p.join("out")).expect("out") == data);
    let names: Vec<_> = std::fs::read_dir(p).expect("dir").flatten().collect();
    assert_eq!(names.len(), 2, "no mapfile, lock or backup may be left");
    // A fourth operand is an error (exit 1), as in ddrescue.
    let o = rescue_args(&["a", "b", "c", "d"]);
    assert_eq!(code(&o), Some(1));
}

#[test]
fn numbers_are_parsed_exactly_like_ddrescue() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 2, 4 * KIB);
    let (i, out) = (p.join("in"), p.join("out"));
    for bad in [
        "1ki", "1K", "1BB", "1sB", "1Bs", "1kk", "08", "1.5", "1_000",
    ] {
        let o = rescue_args(&["-a", bad, s(&i), s(&out)]);
        assert_eq!(code(&o), Some(1), "-a {bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("--min-read-rate"), "{}", stderr(&o));
    }
    for (opts, what) in [
        (vec!["-K0,65535"], "--skip-size"),
        (vec!["-K,"], "--skip-size"),
        (vec!["-K0,65536,"], "--skip-size"),
        (vec!["--cpass=1-6"], "--cpass"),
        (vec!["--cpass=3-2"], "--cpass"),
        (vec!["--mapfile-interval=30,10"], "--mapfile-interval"),
        (vec!["--mapfile-interval=,4s"], "--mapfile-interval"),
        (vec!["-i", "-1"], "--input-position"),
        (vec!["-T", "1.5"], "--timeout"),
        (vec!["-Z", "0"], "--max-read-rate"),
        (vec!["-w"], "--ignore-write-errors"),
        (vec!["--same-file", "-t"], "--truncate"),
        (vec!["--log-events=-"], "--log-events"),
    ] {
        let mut args = opts.clone();
        args.extend([s(&i), s(&out)]);
        let o = rescue_args(&args);
        assert_eq!(code(&o), Some(1), "{opts:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(what), "{opts:?}: {}", stderr(&o));
    }
    assert!(!out.exists(), "a refused command line writes nothing");
    // Valid forms: -s -1 (no limit), 1Kis, 15kB, -K0, -K,64KiB, -T 1/2m.
    let o = rescue_args(&[
        "-s",
        "-1",
        "-i",
        "1s",
        "-K",
        ",64KiB",
        "-T",
        "1/2m",
        "-P5",
        s(&i),
        s(&out),
    ]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
}

#[test]
fn domain_mapfiles_must_be_valid_unless_loose() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    let data = write_pattern(&p.join("in"), 3, 64 * KIB);
    // Finished blocks only, out of order and with gaps: a hand-made domain.
    std::fs::write(p.join("dom"), "0 + 1\n0x8000 0x1000 +\n0x1000 0x1000 +\n").expect("write");
    let (i, out, dom) = (p.join("in"), p.join("out"), p.join("dom"));
    let o = rescue_args(&["-m", s(&dom), s(&i), s(&out)]);
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));
    assert!(!out.exists());
    let o = rescue_args(&["-L", "-m", s(&dom), s(&i), s(&out)]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let got = std::fs::read(&out).expect("out");
    assert_eq!(
        got.len(),
        0x9000,
        "the file ends where the last copied block ends"
    );
    assert!(got[0x1000..0x2000] == data[0x1000..0x2000]);
    assert!(got[0x8000..0x9000] == data[0x8000..0x9000]);
    assert!(got[..0x1000].iter().all(|&b| b == 0));
    // -m - reads the domain from standard input; -H - the test map.
    let striped = striped_map(64 * KIB, 0x800, '+');
    std::fs::remove_file(&out).expect("rm");
    let o = with_stdin(&["-q", "-m", "-", s(&i), s(&out)], striped.as_bytes());
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(&out).expect("out") == striped_copy(&data, 0x800, true));
    std::fs::remove_file(&out).expect("rm");
    let o = with_stdin(&["-q", "-H", "-", s(&i), s(&out)], striped.as_bytes());
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(&out).expect("out") == striped_copy(&data, 0x800, true));
}

#[test]
fn a_failed_single_sector_read_is_a_bad_sector() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 4, 16 * KIB);
    write_test_map(&p.join("test"), 16 * 1024, &[(4096, 4608), (8192, 9216)]);
    let o = rescue_args(&[
        "-c1",
        "-n",
        "-N",
        "-H",
        s(&p.join("test")),
        s(&p.join("in")),
        s(&p.join("out")),
        s(&p.join("map")),
    ]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let map = read_map(&p.join("map"));
    assert_eq!(map.totals().bad_sector, 512 + 1024);
    assert_eq!(map.totals().non_scraped, 0);
    assert_eq!(map.status_at(4096), Some(BlockStatus::BadSector));
}

#[test]
fn subsector_fragments_are_joined_when_a_mapfile_is_loaded() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 5, 8 * KIB);
    std::fs::write(
        p.join("map"),
        "0 + 1\n0 0x800 +\n0x800 0x80 -\n0x880 0x780 ?\n0x1000 0x1000 +\n",
    )
    .expect("write");
    // A domain that reads nothing: only the joining shows.
    let o = rescue_args(&[
        "-s0x800",
        s(&p.join("in")),
        s(&p.join("out")),
        s(&p.join("map")),
    ]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let map = read_map(&p.join("map"));
    assert_eq!(map.status_at(0x800), Some(BlockStatus::NonTried));
    assert_eq!(map.totals().non_tried, 0x800);
    assert_eq!(map.totals().bad_sector, 0);
}

#[test]
fn past_the_end_mapfiles_exit_1_and_complete_only_uses_the_mapfile_extent() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    let data = write_pattern(&p.join("in"), 6, 4 * KIB);
    // The first 4 KiB are missing, the next 8 KiB were rescued from a bigger original.
    std::fs::write(p.join("map"), "0 + 1\n0 0x1000 ?\n0x1000 0x2000 +\n").expect("write");
    let o = rescue_args(&[s(&p.join("in")), s(&p.join("out")), s(&p.join("map"))]);
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("past the end"), "{}", stderr(&o));
    assert!(!p.join("out").exists());
    let o = rescue_args(&["-C", s(&p.join("in")), s(&p.join("out")), s(&p.join("map"))]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert!(
        std::fs::read(p.join("out")).expect("out") == data,
        "out differs"
    );
    let map = read_map(&p.join("map"));
    assert_eq!(
        map.end(),
        0x3000,
        "-C keeps the blocks past the source's end"
    );
    assert_eq!(map.totals().finished, 0x3000);
    // -C without a mapfile: nothing to limit the rescue to.
    let o = rescue_args(&["-C", s(&p.join("in")), s(&p.join("o2")), s(&p.join("none"))]);
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
}

#[test]
fn an_empty_domain_creates_nothing_and_nothing_copied_extends_nothing() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 7, 8 * KIB);
    let o = rescue_args(&[
        "-s0",
        s(&p.join("in")),
        s(&p.join("out")),
        s(&p.join("map")),
    ]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert!(!p.join("out").exists() && !p.join("map").exists());
    // Everything already rescued: the new output is created but not extended with zeros.
    std::fs::write(p.join("map"), "0 + 1\n0 0x2000 +\n").expect("write");
    let o = rescue_args(&[s(&p.join("in")), s(&p.join("out")), s(&p.join("map"))]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(p.join("out")).expect("out").len(), 0);
    // Starting past the end of the input is an error.
    let o = rescue_args(&["-i", "1Mi", s(&p.join("in")), s(&p.join("o2"))]);
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
}

#[test]
fn same_file_truncate_and_extend() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    let data = write_pattern(&p.join("in"), 8, 10 * KIB);
    let (i, out) = (p.join("in"), p.join("out"));
    let o = rescue_args(&[s(&i), s(&out)]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    // Without --same-file, the source is never the destination.
    let o = rescue_args(&["-o", "10Ki", s(&out), s(&out)]);
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    // With it, a copy of the file inside itself (ddrescue's --same-file).
    let o = rescue_args(&["--same-file", "-o", "10Ki", s(&out), s(&out)]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(&out).expect("out") == [&data[..], &data[..]].concat());
    // --same-file still refuses a mapfile that is the file.
    let o = rescue_args(&["--same-file", s(&out), s(&out), s(&out)]);
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    // -t truncates first; -x extends at the end.
    let o = rescue_args(&["-t", "-x", "12Ki", s(&i), s(&out)]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let got = std::fs::read(&out).expect("out");
    assert_eq!(got.len(), 12 * KIB);
    assert!(got[..10 * KIB] == data[..]);
    assert!(got[10 * KIB..].iter().all(|&b| b == 0));
}

#[test]
fn passes_retrim_try_again_and_cpass() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    let data = write_pattern(&p.join("in"), 9, 32 * KIB);
    let map = p.join("map");
    // A map with every failed status: -A -M makes them all non-tried again; --cpass=0 then
    // copies nothing, and a plain run afterwards gets everything.
    std::fs::write(
        &map,
        "0 ? 1\n0 0x2000 +\n0x2000 0x1000 *\n0x3000 0x1000 /\n0x4000 0x1000 -\n0x5000 0x3000 +\n",
    )
    .expect("write");
    let (i, out) = (p.join("in"), p.join("out"));
    let o = rescue_args(&["-A", "-M", "--cpass=0", s(&i), s(&out), s(&map)]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let m = read_map(&map);
    assert_eq!(m.totals().non_tried, 0x3000);
    assert!(!out.exists() || std::fs::metadata(&out).expect("out").len() == 0);
    let o = rescue_args(&["--cpass=1,5", "-u", s(&i), s(&out), s(&map)]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let m = read_map(&map);
    assert_eq!(m.totals().finished, 32 * 1024);
    // Only what was not finished before is copied.
    let got = std::fs::read(&out).expect("out");
    assert!(got.len() == 0x5000 && got[0x2000..] == data[0x2000..0x5000]);
    assert!(got[..0x2000].iter().all(|&b| b == 0));
    // -I: the size recorded in the mapfile must be the input's.
    write_pattern(&p.join("small"), 9, 16 * KIB);
    let o = rescue_args(&["-I", "-C", s(&p.join("small")), s(&out), s(&map)]);
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
}

#[test]
fn fill_and_generate_modes() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    let data = write_pattern(&p.join("in"), 10, 16 * KIB);
    let striped = striped_map(16 * KIB, 0x800, '+');
    std::fs::write(p.join("map"), &striped).expect("write");
    std::fs::write(p.join("fill"), b"BAD-SECTOR ").expect("write");
    std::fs::write(p.join("out"), striped_copy(&data, 0x800, true)).expect("write");
    // -F? fills the non-tried blocks with the repeated string; the blocks are unchanged.
    let o = rescue_args(&[
        "-F?",
        s(&p.join("fill")),
        s(&p.join("out")),
        s(&p.join("map")),
    ]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let got = std::fs::read(p.join("out")).expect("out");
    assert_eq!(&got[0x800..0x80B], b"BAD-SECTOR ");
    assert_eq!(&got[0x80B..0x816], b"BAD-SECTOR ");
    assert!(got[..0x800] == data[..0x800]);
    assert_eq!(read_map(&p.join("map")).totals().finished, 8 * KIB as u64);
    // -F needs a mapfile; l (location data) is refused by name.
    let o = rescue_args(&["-F+", s(&p.join("fill")), s(&p.join("out"))]);
    assert_eq!(code(&o), Some(1));
    // -G: all-zero sectors of the partial copy are non-tried, the rest finished; only the
    // mapfile is written.
    std::fs::write(p.join("copy"), striped_copy(&data, 0x800, false)).expect("write");
    let o = rescue_args(&[
        "-G",
        s(&p.join("in")),
        s(&p.join("copy")),
        s(&p.join("gen")),
    ]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let gen = read_map(&p.join("gen"));
    assert_eq!(gen.totals().finished, 8 * KIB as u64);
    assert_eq!(gen.status_at(0x800), Some(BlockStatus::Finished));
    assert_eq!(gen.status_at(0), Some(BlockStatus::NonTried));
    let o = rescue_args(&[s(&p.join("in")), s(&p.join("copy")), s(&p.join("gen"))]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert!(
        std::fs::read(p.join("copy")).expect("copy") == data,
        "copy differs"
    );
}

#[test]
fn command_mode_copies_on_demand() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    let data = write_pattern(&p.join("in"), 11, 16 * KIB);
    let (i, out, map) = (p.join("in"), p.join("out"), p.join("map"));
    let args = ["--command-mode", s(&i), s(&out), s(&map)];
    // As GNU ddrescue answers (the same commands give the same output): a status clipped to
    // the range asked for; an unknown command is an error and makes the exit status 1.
    let o = with_stdin(&args, b"c 0x800 0x800\ns 0 0x2000\nbogus\nu\nq\n");
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        said,
        "done\n0x00000000  0x00000800  ?\n0x00000800  0x00000800  +\n0x00001000  0x00001000  ?\n\
         done\nerror: unknown command 'bogus'\ndone\n"
    );
    assert_eq!(read_map(&p.join("map")).totals().finished, 0x800);
    // End of input finishes (and saves).
    let o = with_stdin(&args, b"c 0 16Ki\n");
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert_eq!(read_map(&p.join("map")).totals().finished, 16 * 1024);
    assert!(
        std::fs::read(p.join("out")).expect("out") == data,
        "out differs"
    );
}

#[test]
fn event_and_rate_logs() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 12, 16 * KIB);
    let ev = p.join("events");
    std::fs::write(&ev, "# an older run\n").expect("write");
    let o = rescue_args(&[
        &format!("--log-events={}", s(&ev)),
        &format!("--log-rates={}", s(&p.join("rates"))),
        s(&p.join("in")),
        s(&p.join("out")),
    ]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let events = std::fs::read_to_string(&ev).expect("events");
    assert!(events.starts_with("# an older run\n"), "appended: {events}");
    assert!(
        events.contains("Copying non-tried blocks... Pass 1 (forwards)"),
        "{events}"
    );
    assert!(events.contains("100.00%  End of run"), "{events}");
    let rates = std::fs::read_to_string(p.join("rates")).expect("rates");
    assert!(rates.contains("#Time  Ipos  Current_rate"), "{rates}");
}

#[test]
fn ddrescuelog_reads_maps_of_the_new_modes() {
    require_tool("ddrescuelog", "gddrescue");
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 13, 8 * KIB);
    let o = with_stdin(
        &[
            "--command-mode",
            s(&p.join("in")),
            s(&p.join("out")),
            s(&p.join("map")),
        ],
        b"c 0 8Ki\nf\n",
    );
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    let o = run(Command::new("ddrescuelog").arg("-D").arg(p.join("map")));
    assert_eq!(code(&o), Some(0), "ddrescuelog -D: {}", stderr(&o));
}

#[test]
fn compare_before_write_skips_identical_data() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    let data = write_pattern(&p.join("in"), 14, 64 * KIB);
    std::fs::write(p.join("out"), &data).expect("write");
    let old = "200001010000";
    assert!(
        run(Command::new("touch").args(["-t", old]).arg(p.join("out")))
            .status
            .success()
    );
    let mtime = || {
        std::fs::metadata(p.join("out"))
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    let before = mtime();
    let o = rescue_args(&["-W", s(&p.join("in")), s(&p.join("out"))]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert_eq!(
        mtime(),
        before,
        "-W wrote data the destination already held"
    );
    let o = rescue_args(&[s(&p.join("in")), s(&p.join("out"))]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert_ne!(mtime(), before, "without -W the data is written");
}

#[test]
fn verify_on_error_needs_a_good_sector_first() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 15, 16 * KIB);
    // A bad sector after good data (8 KiB reads): the last good sector reads the same again.
    write_test_map(&p.join("late"), 16 * 1024, &[(8192, 8704)]);
    let o = rescue_args(&[
        "-J",
        "-c16",
        "-H",
        s(&p.join("late")),
        s(&p.join("in")),
        s(&p.join("out")),
    ]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    // A read error before any good sector: exit 1, as in ddrescue.
    write_test_map(&p.join("early"), 16 * 1024, &[(0, 512)]);
    let o = rescue_args(&[
        "-J",
        "-H",
        s(&p.join("early")),
        s(&p.join("in")),
        s(&p.join("o2")),
    ]);
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--verify-on-error"), "{}", stderr(&o));
}

/// The largest read of a run, from its --log-reads file: the copying passes' read size (the
/// first reads are shorter: the first sectors, which the filesystem-aware order reads first,
/// then the rest of that cluster).
fn read_size(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).expect("read log");
    text.lines()
        .filter(|l| l.starts_with("0x"))
        .filter_map(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .max()
        .expect("a read line")
}

#[test]
fn default_read_size_is_salvors_and_c_is_ddrescues() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 16, 4 << 20);
    let log = p.join("reads");
    let l = format!("--log-reads={}", s(&log));
    let o = rescue_args(&[&l, s(&p.join("in")), s(&p.join("out"))]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert_eq!(read_size(&log), 1 << 20, "salvor reads 1 MiB at a time");
    std::fs::remove_file(p.join("out")).expect("rm");
    let o = rescue_args(&["-c128", &l, s(&p.join("in")), s(&p.join("out"))]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert_eq!(read_size(&log), 64 << 10, "-c128: ddrescue's 128 sectors");
}

/// A file-like destination in memory: it grows with writes and `extend_to`.
struct GrowDest(Vec<u8>);

impl salvor::device::Dest for GrowDest {
    fn write_at(&mut self, pos: u64, buf: &[u8]) -> salvor::Result<()> {
        let end = pos as usize + buf.len();
        if self.0.len() < end {
            self.0.resize(end, 0);
        }
        self.0[pos as usize..end].copy_from_slice(buf);
        Ok(())
    }
    fn sync(&mut self) -> salvor::Result<()> {
        Ok(())
    }
    fn size(&self) -> salvor::Result<u64> {
        Ok(self.0.len() as u64)
    }
    fn extend_to(&mut self, len: u64) -> salvor::Result<()> {
        if (self.0.len() as u64) < len {
            self.0.resize(len as usize, 0);
        }
        Ok(())
    }
    fn path(&self) -> &Path {
        Path::new("memory")
    }
}

fn engine_run(map: &mut salvor::mapfile::Mapfile, extend: bool) -> u64 {
    use salvor::device::{FaultySource, FaultySpec, SimClock};
    const MIB: u64 = 1 << 20;
    let spec = FaultySpec::new(4 * MIB).with_bad(3 * MIB, 4 * MIB);
    let mut src = FaultySource::new(spec, SimClock::new());
    let clock = src.clock();
    let mut dest = GrowDest(Vec::new());
    let opts = salvor::rescue::RescueOptions {
        extend_new_dest: extend,
        no_scrape: true,
        ..Default::default()
    };
    salvor::rescue::rescue(
        &mut src,
        &mut dest,
        map,
        &mut salvor::rescue::engine::NoStore,
        &opts,
        &clock,
        &salvor::progress::Control::new(),
        &mut salvor::progress::NoProgress,
    )
    .expect("rescue");
    dest.0.len() as u64
}

#[test]
fn a_new_destination_gets_the_full_size_only_on_salvors_plain_runs() {
    const MIB: u64 = 1 << 20;
    // salvor's default: the image has the source's size, the bad end reads as zeros.
    assert_eq!(
        engine_run(&mut salvor::mapfile::Mapfile::new(4 * MIB), true),
        4 * MIB
    );
    // ddrescue's: the file ends where the last rescued data ends.
    assert_eq!(
        engine_run(&mut salvor::mapfile::Mapfile::new(4 * MIB), false),
        3 * MIB
    );
    // Nothing to copy: nothing is extended either way.
    let mut done = salvor::mapfile::Mapfile::new(4 * MIB);
    done.set(0, 4 * MIB, BlockStatus::Finished);
    assert_eq!(engine_run(&mut done, true), 0);
}

#[test]
fn every_option_of_ddrescue_help_is_an_option_of_salvor_rescue() {
    require_tool("ddrescue", "gddrescue");
    let theirs =
        String::from_utf8_lossy(&run(Command::new("ddrescue").arg("--help")).stdout).into_owned();
    let ours =
        String::from_utf8_lossy(&run(salvor().args(["rescue", "--help"])).stdout).into_owned();
    let mut checked = 0;
    for line in theirs.lines().map(str::trim_start) {
        // "-a, --min-read-rate=<bytes>  ..." or "--ask  ..."
        let (short, rest) = match line.strip_prefix('-') {
            Some(r) if !r.starts_with('-') && r.len() > 3 && &r[1..3] == ", " => {
                (Some(&r[..1]), &r[3..])
            }
            _ => (None, line),
        };
        let Some(long) = rest.strip_prefix("--") else {
            continue;
        };
        let name: String = long
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        assert!(
            ours.contains(&format!("--{name}")),
            "salvor rescue has no --{name}"
        );
        // -P[LINES] takes its value attached only, so it is rewritten before clap sees it.
        if let Some(c) = short.filter(|&c| c != "P") {
            assert!(
                ours.contains(&format!("-{c}, --{name}")),
                "salvor rescue has no -{c} for --{name}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 55,
        "only {checked} options found in ddrescue --help"
    );
}

/// Command lines whose exit status GNU ddrescue 1.27 and salvor must agree on, with and without
/// a mapfile operand: invalid numbers and ranges, combinations ddrescue refuses, repeated options.
const EXIT_STATUS_CASES: &[&str] = &[
    "-s -2",
    "-b 0",
    "-c 0",
    "-Z 0",
    "-X -1",
    "-e +-1",
    "-o -1",
    "-P33",
    "-P0",
    "-T 1/2",
    "-T 1.5",
    "--mapfile-interval=,4",
    "--mapfile-interval=5,",
    "--mapfile-interval=1/2",
    "--max-slow-reads=-1",
    "-e -1",
    "-K 0x10000,0x20000",
    "-K 64Ki",
    "-K 0",
    "-K 1Ei",
    "-K 2Ei",
    "-K ,1Ei",
    "-i 0x",
    "-s 0",
    "-i 72776",
    "-i 72775",
    "-x -1",
    "-E -1",
    "-a -1",
    "-r -2",
    "-r x",
    "--cpass=0,1",
    "--cpass=1-1",
    "--cpass=5-5",
    "--cpass=01",
    "-F -",
    "-F ?l",
    "-G -F +",
    "-w -F +",
    "--pause-on-error=x",
    "--pause-on-error=s",
    "--delay-slow=-1",
    "-H /nonexistent",
    "-m /nonexistent",
    "-m /dev/null",
    "-C",
    "-I",
    "-M -A",
    "-u -R",
    "-L",
    "-y -p",
    "-W",
    "-O -J",
    "-vvvv",
    "-q -q",
    "--same-file",
    "-t",
    "-n -n",
    "-c 1 -c 2",
    "-s 1 -s 2",
    "-b 512 -b 1024",
    "-r1 -r2",
    "-T 1 -T 2",
    "-F+ -F?",
    "-G -G",
    "-C -C",
    "-I -I",
    "--ask",
    "--cpass=1 --cpass=2",
    "-P",
    "-P5",
    "-B",
];

/// The same, on a source with read errors (test mode: every other 2 KiB block is bad), for the
/// options that act on errors.
const EXIT_STATUS_CASES_WITH_ERRORS: &[&str] = &[
    "-e 0",
    "-e 1",
    "-e 100",
    "-e +0",
    "-X 0",
    "-X 1",
    "-X 100",
    "-E 1",
    "-E 1M",
    "-T 0",
    "-J",
    "-J -c1",
    "-O",
    "-r 1",
    "-n -N",
    "-M",
    "-A",
    "-K0",
    "-u",
    "-R",
    "-c 1 -e 5",
    "-a 1G --max-slow-reads=0",
    "--cpass=2",
    "--cpass=3-4",
    "--pause-on-error=s1",
];

#[test]
fn exit_statuses_match_gnu_ddrescue() {
    require_tool("ddrescue", "gddrescue");
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 17, 72776);
    std::fs::write(p.join("test"), striped_map(72776, 0x800, '+')).expect("write");
    let status = |program: &mut Command, case: &str, with_map: bool, errors: bool| -> Option<i32> {
        for f in ["out", "map", "map.bak"] {
            let _ = std::fs::remove_file(p.join(f));
        }
        program.arg("-q");
        if errors {
            program.arg("-H").arg(p.join("test"));
        }
        program
            .args(case.split_whitespace())
            .arg(p.join("in"))
            .arg(p.join("out"));
        if with_map {
            program.arg(p.join("map"));
        }
        program
            .current_dir(p)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run")
            .code()
    };
    let mut differ = Vec::new();
    let cases = EXIT_STATUS_CASES
        .iter()
        .map(|c| (c, false))
        .chain(EXIT_STATUS_CASES_WITH_ERRORS.iter().map(|c| (c, true)));
    for (case, errors) in cases {
        for with_map in [false, true] {
            let theirs = status(&mut Command::new("ddrescue"), case, with_map, errors);
            let mut ours_cmd = salvor();
            ours_cmd.arg("rescue");
            let ours = status(&mut ours_cmd, case, with_map, errors);
            if theirs != ours {
                differ.push(format!(
                    "[{case}]{}{}: ddrescue {theirs:?}, salvor {ours:?}",
                    if errors { " with read errors" } else { "" },
                    if with_map { " with a mapfile" } else { "" }
                ));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[test]
fn fill_and_generate_write_what_gnu_ddrescue_writes() {
    require_tool("ddrescue", "gddrescue");
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    let data = write_pattern(&p.join("in"), 18, 24 * KIB);
    std::fs::write(p.join("fill"), b"DEADBEEF").expect("write");
    // Unaligned blocks of every status.
    let map = "0 + 1\n0 0x900 +\n0x900 0x300 ?\n0xC00 0x480 *\n0x1080 0x80 /\n0x1100 0x1700 -\n\
               0x2800 0x3800 +\n";
    let partial = striped_copy(&data, 0x800, true);
    let both = |args: &[&str], input: &str, make_map: bool| {
        for (tool, out, m) in [("ddrescue", "o1", "m1"), ("salvor", "o2", "m2")] {
            std::fs::write(p.join(out), &partial).expect("write");
            let _ = std::fs::remove_file(p.join(m));
            if make_map {
                std::fs::write(p.join(m), map).expect("write");
            }
            let mut cmd = if tool == "salvor" {
                let mut c = salvor();
                c.arg("rescue");
                c
            } else {
                Command::new("ddrescue")
            };
            let o = run(cmd
                .arg("-q")
                .args(args)
                .arg(p.join(input))
                .arg(p.join(out))
                .arg(p.join(m)));
            assert_eq!(code(&o), Some(0), "{tool} {args:?}: {}", stderr(&o));
        }
        assert!(
            std::fs::read(p.join("o1")).expect("o1") == std::fs::read(p.join("o2")).expect("o2"),
            "{args:?}: the outputs differ"
        );
        let blocks = |m: &str| read_map(&p.join(m)).blocks().to_vec();
        assert_eq!(blocks("m1"), blocks("m2"), "{args:?}: the mapfiles differ");
    };
    for types in ["-F?", "-F+", "-Fl-", "-Fl?*/-+", "-F*/"] {
        both(&[types], "fill", true);
        both(&[types, "-c3", "-b128"], "fill", true);
    }
    both(&["-G"], "in", false);
}

#[test]
fn odirect_writes_odd_sized_files() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    let data = write_pattern(&p.join("in"), 19, 72776);
    let o = rescue_args(&["-D", s(&p.join("in")), s(&p.join("out"))]);
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(p.join("out")).expect("out") == data);
}

#[test]
fn with_ddrescues_read_size_and_passes_the_result_is_ddrescues() {
    require_tool("ddrescue", "gddrescue");
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 20, 72776);
    std::fs::write(p.join("test"), striped_map(72776, 0x800, '+')).expect("write");
    for cpass in ["1", "2", "3", "4", "5", "1,2", "2-4", "1-5", "1,2,5", "2,5"] {
        for extra in [&["-n", "-N"][..], &[][..]] {
            let mut results = Vec::new();
            for tool in ["ddrescue", "salvor"] {
                for f in ["out", "map"] {
                    let _ = std::fs::remove_file(p.join(f));
                }
                let mut cmd = if tool == "salvor" {
                    let mut c = salvor();
                    c.arg("rescue");
                    c
                } else {
                    Command::new("ddrescue")
                };
                let o = run(cmd
                    .args(["-q", "-c128", &format!("--cpass={cpass}")])
                    .args(extra)
                    .arg("-H")
                    .arg(p.join("test"))
                    .arg(p.join("in"))
                    .arg(p.join("out"))
                    .arg(p.join("map")));
                assert_eq!(code(&o), Some(0), "{tool}: {}", stderr(&o));
                let out = std::fs::read(p.join("out")).expect("out");
                results.push((read_map(&p.join("map")).blocks().to_vec(), out));
            }
            assert_eq!(
                results[0].0, results[1].0,
                "--cpass={cpass} {extra:?}: the maps differ"
            );
            assert!(
                results[0].1 == results[1].1,
                "--cpass={cpass} {extra:?}: the outputs differ"
            );
        }
    }
}

#[test]
fn command_mode_answers_and_records_what_gnu_ddrescue_does() {
    require_tool("ddrescue", "gddrescue");
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 21, 72776);
    std::fs::write(p.join("test"), striped_map(72776, 0x800, '+')).expect("write");
    let scripts: [&[u8]; 4] = [
        b"c 0 72776\nf\n",
        b"c 0x900 0x1000\ns 0 0x3000\nf\n",
        b"c 0 72776\ns 0x800 0x1000\nu\nq\n",
        b"\nc 1\nbogus\ns 0x100000 5\nc 0 0x10 extra\nf\n",
    ];
    for script in scripts {
        for opts in [&[][..], &["-c1"][..], &["-b", "4096"][..], &["-c", "3"][..]] {
            let mut results = Vec::new();
            for tool in ["ddrescue", "salvor"] {
                for f in ["out", "map"] {
                    let _ = std::fs::remove_file(p.join(f));
                }
                let mut cmd = if tool == "salvor" {
                    let mut c = salvor();
                    c.arg("rescue");
                    c
                } else {
                    Command::new("ddrescue")
                };
                let mut child = cmd
                    .args(opts)
                    .arg("-H")
                    .arg(p.join("test"))
                    .arg("--command-mode")
                    .arg(p.join("in"))
                    .arg(p.join("out"))
                    .arg(p.join("map"))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn");
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(script)
                    .expect("write");
                let o = child.wait_with_output().expect("wait");
                let map = std::fs::read_to_string(p.join("map")).unwrap_or_default();
                let data: String = map.lines().filter(|l| !l.starts_with('#')).collect();
                let out = std::fs::read(p.join("out")).unwrap_or_default();
                results.push((o.status.code(), o.stdout, data, out));
            }
            let what = format!("{opts:?} {:?}", String::from_utf8_lossy(script));
            assert_eq!(results[0].0, results[1].0, "{what}: exit status");
            assert_eq!(
                String::from_utf8_lossy(&results[0].1),
                String::from_utf8_lossy(&results[1].1),
                "{what}: answers"
            );
            assert_eq!(results[0].2, results[1].2, "{what}: mapfile");
            assert!(results[0].3 == results[1].3, "{what}: output");
        }
    }
}

#[test]
fn salvors_own_passes_rescue_exactly_what_gnu_ddrescue_rescues() {
    require_tool("ddrescue", "gddrescue");
    require_tool("ddrescuelog", "gddrescue");
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    // An odd size: the last sector is partial, and the edges of bad areas are off the sectors.
    let size = 72776;
    write_pattern(&p.join("in"), 22, size);
    for (i, (first, block)) in [('+', 0x800), ('?', 0x800), ('+', 0x900)]
        .iter()
        .enumerate()
    {
        let test = p.join(format!("test{i}"));
        std::fs::write(&test, striped_map(size, *block, *first)).expect("write");
        for opts in [
            &[][..],
            &["-R"][..],
            &["-c1"][..],
            &["-b", "4096"][..],
            &["-n"][..],
            &["-N"][..],
            &["-r1"][..],
        ] {
            let mut results = Vec::new();
            for tool in ["ddrescue", "salvor"] {
                for f in ["out", "map"] {
                    let _ = std::fs::remove_file(p.join(f));
                }
                let mut cmd = if tool == "salvor" {
                    let mut c = salvor();
                    c.arg("rescue");
                    c
                } else {
                    Command::new("ddrescue")
                };
                let o = run(cmd
                    .arg("-q")
                    .args(opts)
                    .arg("-H")
                    .arg(&test)
                    .arg(p.join("in"))
                    .arg(p.join("out"))
                    .arg(p.join("map")));
                assert_eq!(code(&o), Some(0), "{tool}: {}", stderr(&o));
                let finished =
                    run(Command::new("ddrescuelog").arg("-l+").arg(p.join("map"))).stdout;
                results.push((finished, std::fs::read(p.join("out")).expect("out")));
            }
            assert!(
                results[0].0 == results[1].0,
                "test{i} {opts:?}: the finished sectors differ"
            );
            assert!(
                results[0].1 == results[1].1,
                "test{i} {opts:?}: the outputs differ"
            );
        }
    }
}

#[test]
fn ask_declined_leaves_nothing_behind() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    write_pattern(&p.join("in"), 23, 4 * KIB);
    let (i, out, map) = (p.join("in"), p.join("out"), p.join("map"));
    let o = with_stdin(&["--ask", s(&i), s(&out), s(&map)], b"n\n");
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("Proceed (y/N)?"), "{}", stderr(&o));
    let names: Vec<_> = std::fs::read_dir(p).expect("dir").flatten().collect();
    assert_eq!(names.len(), 1, "only the input may be left");
    let o = with_stdin(&["-q", "--ask", s(&i), s(&out), s(&map)], b"yes\n");
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
    assert!(out.exists() && map.exists());
}
