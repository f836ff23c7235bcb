use super::*;
use crate::mapfile::BlockStatus::*;
use proptest::prelude::*;

fn p(text: &str) -> Result<Mapfile> {
    parse(text, Path::new("map"))
}

fn blocks(m: &Mapfile) -> Vec<(u64, u64, char)> {
    m.blocks()
        .iter()
        .map(|b| (b.pos, b.size, b.status.as_char()))
        .collect()
}

/// The error's "location: reason" part.
fn err(text: &str) -> String {
    let e = p(text).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    e.to_string().trim_start_matches("map: ").to_string()
}

const MANUAL_EXAMPLE: &str = "\
# Mapfile. Created by GNU ddrescue version 1.27
# Command line: ddrescue -d -c18 /dev/fd0 fdimage mapfile
# Start time:   2015-07-21 09:37:44
# Current time: 2015-07-21 09:38:19
# Copying non-tried blocks... Pass 1 (forwards)
# current_pos  current_status  current_pass
0x00120000     ?               1
#      pos        size  status
0x00000000  0x00117000  +
0x00117000  0x00000200  -
0x00117200  0x00001000  /
0x00118200  0x00007E00  *
0x00120000  0x00048000  ?
";

#[test]
fn manual_example() {
    let m = p(MANUAL_EXAMPLE).unwrap();
    assert_eq!(m.current_pos, 0x120000);
    assert_eq!(m.phase, Phase::Copying);
    assert_eq!(m.pass, 1);
    assert_eq!(
        blocks(&m),
        [
            (0, 0x117000, '+'),
            (0x117000, 0x200, '-'),
            (0x117200, 0x1000, '/'),
            (0x118200, 0x7E00, '*'),
            (0x120000, 0x48000, '?'),
        ]
    );
    m.check().unwrap();
    // Re-rendering with the same header gives back the same text plus the end marker.
    let header = Header {
        tool: "GNU ddrescue version 1.27".into(),
        command_line: "ddrescue -d -c18 /dev/fd0 fdimage mapfile".into(),
        start_time: "2015-07-21 09:37:44".into(),
        current_time: "2015-07-21 09:38:19".into(),
        status_message: "Copying non-tried blocks... Pass 1 (forwards)".into(),
        source: String::new(),
    };
    assert_eq!(
        render(&m, &header),
        format!("{MANUAL_EXAMPLE}# end of salvor mapfile: 5 blocks\n")
    );
}

#[test]
fn render_layout() {
    let mut m = Mapfile::new(0x100000);
    m.set(0, 0x100000, Finished);
    m.current_pos = 0x100C00;
    m.phase = Phase::Finished;
    let h = Header {
        tool: "salvor version 0.1.0".into(),
        command_line: "salvor rescue a b map".into(),
        start_time: "2026-11-25 07:56:22".into(),
        current_time: "2026-11-25 07:56:23".into(),
        status_message: "Finished".into(),
        source: String::new(),
    };
    assert_eq!(
        render(&m, &h),
        "# Mapfile. Created by salvor version 0.1.0
# Command line: salvor rescue a b map
# Start time:   2026-11-25 07:56:22
# Current time: 2026-11-25 07:56:23
# Finished
# current_pos  current_status  current_pass
0x00100C00     +               1
#      pos        size  status
0x00000000  0x00100000  +
# end of salvor mapfile: 1 block
"
    );
    // Wide numbers are not cut.
    let mut big = Mapfile::new(0x12_3456_789A);
    big.pass = 12;
    let t = render(&big, &Header::salvor("x"));
    assert!(t.contains("\n0x00000000     ?               12\n"), "{t}");
    assert!(t.contains("\n0x00000000  0x123456789A  ?\n"), "{t}");
    assert_eq!(p(&t).unwrap(), big);
}

#[test]
fn header_fields_cannot_break_lines() {
    let m = Mapfile::new(512);
    let mut h = Header::salvor("salvor rescue 'a\nb' map\r\n0 1 +");
    h.status_message = "two\nlines".into();
    let t = render(&m, &h);
    assert_eq!(p(&t).unwrap(), m);
    assert!(t.contains("# Command line: salvor rescue 'a b' map  0 1 +\n"));
}

#[test]
fn number_forms() {
    let m = p("0x10 ? 3\n0 0x10 +\n16 020 -\n0X20 0x1_0 /\n48 1_000 *\n").unwrap();
    assert_eq!(m.current_pos, 16);
    assert_eq!(m.pass, 3);
    assert_eq!(
        blocks(&m),
        [(0, 16, '+'), (16, 16, '-'), (32, 16, '/'), (48, 1000, '*')]
    );
    // Signs as strtoll reads them.
    let m = p("+5 ? +2\n-0 10 +\n").unwrap();
    assert_eq!((m.current_pos, m.pass), (5, 2));
    // Octal stops at 8 or 9, leaving a field that is no status.
    assert_eq!(
        err("0 ?\n0 09 +\n"),
        "line 2: '9' is not a block status (one of ? * / - +)"
    );
    // glibc reads a bare "0x" as zero.
    assert_eq!(blocks(&p("0 ?\n0x 10 +\n").unwrap()), [(0, 10, '+')]);
    // `_` only between digits.
    assert!(err("0 ?\n0 1__0 +\n").starts_with("line 2:"));
    assert!(err("0 ?\n0 10_ +\n").starts_with("line 2:"));
}

#[test]
fn comments_blank_lines_crlf() {
    let t = "\r\n  # heading\r\n\t\r\n  0x0 ? 1 # trailing comment\r\n# c\r\n0 10 +\t# c\r\n\
             10 10 -# not a comment, but ignored like sscanf does\r\n\r\n";
    let m = p(t).unwrap();
    assert_eq!(blocks(&m), [(0, 10, '+'), (10, 10, '-')]);
    // No trailing newline.
    assert_eq!(blocks(&p("0 ?\n0 10 +").unwrap()), [(0, 10, '+')]);
    // A '#' glued to a number is not a comment, so the line is bad.
    assert_eq!(
        err("0 ?\n0 10 +\n10#c 10 +\n"),
        "line 3: bad block line: expected 'pos size status'"
    );
    // Trailing text after the fields is ignored, as by ddrescue.
    assert_eq!(
        blocks(&p("0 ? 1junk\n0 10+junk\n").unwrap()),
        [(0, 10, '+')]
    );
}

#[test]
fn status_line() {
    let m = p("0x200 /\n").unwrap();
    assert_eq!(
        (m.current_pos, m.phase, m.pass),
        (0x200, Phase::Scraping, 1)
    );
    assert_eq!(m.blocks().len(), 0);
    for (c, ph) in [
        ('?', Phase::Copying),
        ('*', Phase::Trimming),
        ('/', Phase::Scraping),
        ('-', Phase::Retrying),
        ('F', Phase::Filling),
        ('G', Phase::Generating),
        ('+', Phase::Finished),
    ] {
        assert_eq!(p(&format!("0 {c} 4\n")).unwrap().phase, ph);
    }
    // A third field that is no number keeps pass 1, as sscanf does.
    assert_eq!(p("0 ? x\n").unwrap().pass, 1);
    assert_eq!(
        err("# c\n0 ? 0\n"),
        "line 2: status line: current_pass 0 is not a positive integer"
    );
    assert!(err("0 ? -1\n").starts_with("line 1: status line: current_pass -1"));
    assert_eq!(
        err("\n\n0 X 1\n"),
        "line 3: status line: 'X' is not a status (one of ? * / - F G +)"
    );
    assert!(err("0\n").starts_with("line 1: bad or missing status line"));
    assert!(err("+ 0 1\n").starts_with("line 1: bad or missing status line"));
    assert!(err("-5 ? 1\n").contains("negative"));
    // Saturates instead of wrapping, like ddrescue.
    assert_eq!(p("0 ? 99999999999\n").unwrap().pass, i32::MAX as u32);
}

#[test]
fn block_errors_name_the_line() {
    assert_eq!(
        err("0 ?\n0 10 +\n11 10 +\n"),
        "line 3: blocks are not contiguous: block at 0xB should start at 0xA, \
         where the previous one ends"
    );
    assert!(err("0 ?\n0 10 +\n5 10 +\n").starts_with("line 3: blocks are not contiguous"));
    assert_eq!(
        err("0 ?\n0 10 F\n"),
        "line 2: 'F' is not a block status (one of ? * / - +)"
    );
    assert_eq!(
        err("0 ?\n0 10\n"),
        "line 2: bad block line: expected 'pos size status'"
    );
    assert_eq!(err("0 ?\n5 0 ?\n"), "line 2: empty block at position 0x5");
    assert_eq!(err("0 ?\n0 -1 +\n"), "line 2: block size -1 is negative");
    assert_eq!(
        err("0 ?\n-1 1 +\n"),
        "line 2: block position -1 is negative"
    );
    assert!(err("0 ?\n\0 1 +\n").starts_with("line 2: bad block line"));
    assert!(err("0 ?\n0 1 \u{e9}\n").ends_with("is not a block status (one of ? * / - +)"));
}

#[test]
fn special_maps() {
    // No status line: an empty map, as ddrescue treats it.
    for t in ["", "# only a comment\n", "\n \n", "# M\n"] {
        let m = p(t).unwrap();
        assert_eq!(m, Mapfile::new(0), "{t:?}");
    }
    // The empty map ddrescue writes for an empty input.
    let m = p("0 + 1\n0 0 ?\n").unwrap();
    assert_eq!(m.blocks().len(), 0);
    assert_eq!(m.phase, Phase::Finished);
    assert_eq!(
        blocks(&p("0 ?\n0 0 ?\n0 0 ?\n0 5 +\n").unwrap()),
        [(0, 5, '+')]
    );
    // A first block above 0: the gap is non-tried.
    assert_eq!(
        blocks(&p("0 ?\n0x100 0x100 +\n").unwrap()),
        [(0, 0x100, '?'), (0x100, 0x100, '+')]
    );
    // Adjacent blocks of one status are merged.
    assert_eq!(blocks(&p("0 ?\n0 1 +\n1 1 +\n").unwrap()), [(0, 2, '+')]);
    // Sizes are capped at the largest position, as ddrescue does.
    let m = p("0 ?\n1 0x7FFFFFFFFFFFFFFF +\n").unwrap();
    assert_eq!(m.end(), i64::MAX as u64);
    let m = p("0 ?\n0 99999999999999999999999 +\n").unwrap();
    assert_eq!(m.end(), i64::MAX as u64);
    // ddrescue only looks at the first 127 bytes of a line.
    let long = format!("0 ?\n0{}10 +\n", " ".repeat(130));
    assert!(err(&long).starts_with("line 2: bad block line"));
    let ok = format!("0 ?\n0 10 +{}\n", " x".repeat(100));
    assert_eq!(blocks(&p(&ok).unwrap()), [(0, 10, '+')]);
}

#[test]
fn non_utf8_comments() {
    let mut t = b"# Command line: ddrescue /dev/sda \xff\xfe.img map\n0 ?\n0 10 +\n".to_vec();
    assert_eq!(
        blocks(&parse_bytes(&t, Path::new("m")).unwrap()),
        [(0, 10, '+')]
    );
    t.extend_from_slice(b"10 5 \xff\n");
    assert!(parse_bytes(&t, Path::new("m")).is_err());
}

#[test]
fn truncation_detection() {
    let mut m = Mapfile::new(4096);
    m.set(512, 512, BadSector);
    let t = render(&m, &Header::salvor("x"));
    assert_eq!(p(&t).unwrap(), m);
    let lines: Vec<&str> = t.lines().collect();
    // Missing marker.
    let cut = lines[..lines.len() - 1].join("\n");
    let e = err(&cut);
    assert!(
        e.contains("mapfile is truncated (no end marker)") && e.contains("use map.bak"),
        "{e}"
    );
    // Last block line lost but marker present (e.g. edited): count disagrees.
    let mut edited: Vec<&str> = lines.clone();
    edited.remove(edited.len() - 2);
    let e = err(&edited.join("\n"));
    assert!(
        e.contains("end marker says 3 blocks but there are 2 block lines"),
        "{e}"
    );
    // Cut inside the first line.
    assert!(err("# Mapfile. Created by sal").contains("truncated"));
    assert!(err("#").contains("truncated"));
    // The same file without the salvor header is read like ddrescue does.
    let foreign = t.replacen("salvor version", "GNU ddrescue version", 1);
    let cut = foreign
        .lines()
        .take(lines.len() - 2)
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(p(&cut).unwrap().blocks().len(), 2);
    // Trailing blank lines and CRLF after the marker are fine.
    assert_eq!(p(&format!("{t}\n\n")).unwrap(), m);
    assert_eq!(p(&t.replace('\n', "\r\n")).unwrap(), m);
}

#[test]
fn domain_maps() {
    let t = "0 ?\n0x300 0x100 +\n0 0x100 +\n0x80 0x100 +\n0x200 0x10 -\n0x400 0x100 +\n\
             0x1000 0 ?\n";
    // 0x1000 0 ? is a bad line: size 0 away from 0.
    assert!(parse_domain(t, Path::new("d")).is_err());
    let t = "0 ?\n0x300 0x100 +\n0 0x100 +\n0x80 0x100 +\n0x200 0x10 -\n0x400 0x100 +\n0 0 ?\n";
    assert_eq!(
        parse_domain(t, Path::new("d")).unwrap(),
        [(0, 0x180), (0x300, 0x500)]
    );
    let e = parse_domain("0 ?\n0 10 +\n20 5 ?\n5 10 -\n", Path::new("d")).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string()
            .starts_with("d: line 4: blocks of different status overlap"),
        "{e}"
    );
    assert_eq!(parse_domain("", Path::new("d")).unwrap(), []);
    assert!(parse_domain("0 ?\n0 1 x\n", Path::new("d")).is_err());
}

#[test]
fn utc_formatting() {
    assert_eq!(format_utc(0), "1970-01-01 00:00:00");
    assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
    assert_eq!(format_utc(-1), "1969-12-31 23:59:59");
    assert_eq!(format_utc(4_102_444_799), "2099-12-31 23:59:59");
    let now = format_local_time(SystemTime::now());
    assert_eq!(now.len(), 19, "{now}");
    assert_eq!(&now[4..5], "-");
}

fn status() -> impl Strategy<Value = BlockStatus> {
    prop::sample::select(BlockStatus::ALL.to_vec())
}

fn phase() -> impl Strategy<Value = Phase> {
    prop::sample::select(vec![
        Phase::Copying,
        Phase::Trimming,
        Phase::Scraping,
        Phase::Retrying,
        Phase::Filling,
        Phase::Generating,
        Phase::Finished,
    ])
}

/// A random map built by `set` operations, as the rescue does.
fn random_map() -> impl Strategy<Value = Mapfile> {
    (
        0u64..1 << 40,
        prop::collection::vec((0u64..1 << 40, 0u64..1 << 38, status()), 0..40),
        any::<u64>(),
        phase(),
        1u32..1000,
    )
        .prop_map(|(size, ops, cur, phase, pass)| {
            let mut m = Mapfile::new(size);
            for (pos, len, st) in ops {
                m.set(pos % size.max(1), len, st);
            }
            m.current_pos = cur % (i64::MAX as u64);
            m.phase = phase;
            m.pass = pass;
            m
        })
}

proptest! {
    #[test]
    fn render_parse_round_trip(m in random_map(), cmd in ".*") {
        let t = render(&m, &Header::salvor(&cmd));
        prop_assert_eq!(p(&t).unwrap(), m.clone());
        // And as ddrescue would write it (no marker check).
        let foreign = t.replacen("salvor", "GNU ddrescue", 1);
        prop_assert_eq!(p(&foreign).unwrap(), m);
    }

    #[test]
    fn set_keeps_invariants(
        size in 1u64..100_000,
        ops in prop::collection::vec((0u64..110_000, 0u64..50_000, status()), 0..60),
    ) {
        let mut m = Mapfile::new(size);
        let mut model = vec![NonTried; size as usize];
        for (pos, len, st) in ops {
            m.set(pos, len, st);
            let end = pos.saturating_add(len).min(size);
            for s in model.iter_mut().take(end as usize).skip(pos as usize) {
                *s = st;
            }
            prop_assert!(m.check().is_ok(), "{:?}", m.check());
            prop_assert_eq!(m.totals().total(), size);
            prop_assert_eq!(m.end(), size);
        }
        for (i, s) in model.iter().enumerate().step_by(97) {
            prop_assert_eq!(m.status_at(i as u64), Some(*s));
        }
    }

    #[test]
    fn parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_bytes(&bytes, Path::new("m"));
        let _ = parse_domain_bytes(&bytes, Path::new("m"));
    }

    #[test]
    fn parser_never_panics_on_mapfile_like_text(
        t in "([0-9a-fA-FxX_+\\-?*/#FG \t\r]{0,30}\n){0,12}"
    ) {
        if let Ok(m) = p(&t) {
            prop_assert!(m.check().is_ok());
        }
        let _ = parse_domain(&t, Path::new("m"));
        let with_header = format!("# Mapfile. Created by salvor version 1\n{t}");
        let _ = p(&with_header);
    }

    #[test]
    fn domain_matches_strict_parse(m in random_map()) {
        let t = render(&m, &Header::salvor("x"));
        let d = parse_domain(&t, Path::new("m")).unwrap();
        let want: Vec<(u64, u64)> = m
            .blocks()
            .iter()
            .filter(|b| b.status == Finished)
            .map(|b| (b.pos, b.end()))
            .collect();
        prop_assert_eq!(d, want);
    }
}
