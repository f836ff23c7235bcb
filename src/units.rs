//! Numbers as people and ddrescue write them: `0x1000`, `0777` (octal), `4KiB`, `1M`, `2s` (sectors).

/// Parses a ddrescue-style size or position exactly as GNU ddrescue 1.27 accepts it: optional
/// leading whitespace and `+`, a C integer constant (decimal, `0x` hex, leading-0 octal), then
/// optionally a multiplier (`k`=10^3, `Ki`=2^10, `M`/`Mi`, `G`/`Gi`, `T`/`Ti`, `P`/`Pi`, `E`/`Ei`;
/// `K` only as `Ki`, `k` never with `i`) followed by at most one of `s` (times `sector_size`) and
/// `B` ("byte"). So `4KiB`, `1ks`, `1Kis`, `15kB` are numbers and `1ki`, `1K`, `1sB`, `1Bs`, `1kk`
/// are not. Negative numbers are refused (see [`parse_signed_size`]).
pub fn parse_size(text: &str, sector_size: u64) -> Result<u64, String> {
    match parse_signed_size(text, sector_size)? {
        v if v < 0 => Err(format!("'{text}' is negative")),
        v => u64::try_from(v).map_err(|_| format!("'{text}' is too large")),
    }
}

/// [`parse_size`] allowing a leading `-` (ddrescue's `-s -1`, `-r -1`).
pub fn parse_signed_size(text: &str, sector_size: u64) -> Result<i128, String> {
    let bad = || format!("'{text}' is not a valid number");
    let mut t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let negative = if let Some(r) = t.strip_prefix('-') {
        t = r;
        true
    } else {
        if let Some(r) = t.strip_prefix('+') {
            t = r;
        }
        false
    };
    let (radix, body) = if let Some(r) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (16, r)
    } else if t.len() > 1 && t.starts_with('0') && t.as_bytes()[1].is_ascii_digit() {
        (8, &t[1..])
    } else {
        (10, t)
    };
    let end = body
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(body.len());
    let (digits, mut suffix) = body.split_at(end);
    if digits.is_empty() {
        return Err(bad());
    }
    let value = u64::from_str_radix(digits, radix).map_err(|_| format!("'{text}' is too large"))?;
    let mut mult: u128 = 1;
    let prefixes = ['k', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y'];
    if let Some(c) = suffix.chars().next() {
        let exp = if c == 'K' {
            Some(0)
        } else {
            prefixes.iter().position(|&p| p == c)
        };
        if let Some(exp) = exp {
            suffix = &suffix[1..];
            let binary = if let Some(r) = suffix.strip_prefix('i') {
                suffix = r;
                true
            } else {
                false
            };
            // 'k' is only decimal (there is no "ki"), 'K' only binary ("Ki").
            if (c == 'k' && binary) || (c == 'K' && !binary) {
                return Err(bad());
            }
            let base: u128 = if binary { 1024 } else { 1000 };
            mult = base.pow(exp as u32 + 1);
        }
    }
    match suffix {
        "" => {}
        "s" => mult *= u128::from(sector_size),
        "B" => {}
        _ => return Err(bad()),
    }
    let v = u128::from(value)
        .checked_mul(mult)
        .filter(|&v| v <= i64::MAX as u128)
        .ok_or_else(|| format!("'{text}' is too large"))?;
    let v = v as i128;
    Ok(if negative { -v } else { v })
}

/// A ddrescue time interval: an integer, decimal (`1.5`) or fraction (`1/2`), optionally followed
/// by `s`, `m`, `h` or `d`. With `whole_seconds` (ddrescue's `-T`, `--delay-slow`,
/// `--pause-on-pass`), a result that is not a whole number of seconds is refused, as ddrescue
/// does.
pub fn parse_interval(text: &str, whole_seconds: bool) -> Result<std::time::Duration, String> {
    let bad = || format!("'{text}' is not a valid time interval");
    let t = text.trim();
    let (num, mult) = match t.as_bytes().last() {
        Some(b's') => (&t[..t.len() - 1], 1.0),
        Some(b'm') => (&t[..t.len() - 1], 60.0),
        Some(b'h') => (&t[..t.len() - 1], 3600.0),
        Some(b'd') => (&t[..t.len() - 1], 86400.0),
        _ => (t, 1.0),
    };
    let plain = |s: &str| -> Result<f64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(bad());
        }
        s.parse::<f64>().map_err(|_| bad())
    };
    let v = match num.split_once('/') {
        Some((a, b)) => {
            let (a, b) = (plain(a)?, plain(b)?);
            if b == 0.0 {
                return Err(bad());
            }
            a / b
        }
        None => plain(num)?,
    } * mult;
    if !v.is_finite() || !(0.0..=1e15).contains(&v) {
        return Err(bad());
    }
    if whole_seconds && v.fract() != 0.0 {
        return Err(format!(
            "'{text}' is not a whole number of seconds (the resolution is one second)"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

/// Formats bytes with SI prefixes like ddrescue ("1048 kB", "4096 B").
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 10_000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{:.0} {}", v, UNITS[i])
    }
}

/// Formats `n` with the prefix [`format_bytes`] picks for `like`, so that the numbers of one line
/// ("565 GB of 1000 GB", "0.4 GB left") share a unit; a non-zero `n` that would show as 0 keeps
/// its own prefix instead.
pub fn format_bytes_like(n: u64, like: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = like as f64;
    let mut i = 0;
    while v >= 10_000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    let scaled = n as f64 / 1000f64.powi(i as i32);
    if i == 0 || n == 0 {
        format!("{n} {}", UNITS[i])
    } else if scaled >= 0.5 {
        format!("{:.0} {}", scaled, UNITS[i])
    } else {
        format_bytes(n)
    }
}

/// Formats bytes with binary prefixes (ddrescue's `-B`): "4096 B", "64 KiB", "12 MiB".
pub fn format_bytes_binary(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 10_240.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{:.0} {}", v, UNITS[i])
    }
}

/// Formats a duration as "1h 02m 03s" / "5m 07s" / "12s".
pub fn format_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h >= 24 {
        format!("{}d {:02}h {:02}m", h / 24, h % 24, m)
    } else if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Seconds since the Unix epoch as a UTC civil date and time: (year, month, day, h, m, s).
/// Proleptic Gregorian; the year is shifted to start in March so that leap days come last.
pub fn civil_utc(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A rate in bytes per second, e.g. "81 MB/s".
pub fn format_rate(bytes_per_sec: f64) -> String {
    format!("{}/s", format_bytes(bytes_per_sec.max(0.0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_utc(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil_utc(1_795_607_782), (2026, 11, 25, 11, 56, 22));
        assert_eq!(civil_utc(-1), (1969, 12, 31, 23, 59, 59));
    }

    #[test]
    fn binary_prefixes() {
        assert_eq!(format_bytes_binary(4096), "4096 B");
        assert_eq!(format_bytes_binary(64 << 10), "64 KiB");
        assert_eq!(format_bytes_binary(12 << 20), "12 MiB");
        assert_eq!(format_bytes(64 << 10), "66 kB");
        assert_eq!(format_bytes_like(5_000_000, 1_000_000_000_000), "5000 kB");
        assert_eq!(
            format_bytes_like(430_000_000_000, 1_000_000_000_000),
            "430 GB"
        );
        assert_eq!(format_bytes_like(0, 1_000_000_000_000), "0 GB");
        assert_eq!(format_bytes_like(4096, 100), "4096 B");
    }

    #[test]
    fn intervals() {
        use std::time::Duration;
        assert_eq!(parse_interval("30", true), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("5m", true), Ok(Duration::from_secs(300)));
        assert_eq!(
            parse_interval("1.5d", true),
            Ok(Duration::from_secs(129_600))
        );
        assert_eq!(parse_interval("1/2m", true), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("0.0", true), Ok(Duration::ZERO));
        for bad in ["1.5", "1/2", "3/2", "1x", "-1", "1e2", "", "s"] {
            assert!(parse_interval(bad, true).is_err(), "{bad}");
        }
        assert_eq!(parse_interval("1/2", false), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0x1000", 512), Ok(4096));
        assert_eq!(parse_size("0777", 512), Ok(511));
        assert_eq!(parse_size("0", 512), Ok(0));
        assert_eq!(parse_size("4KiB", 512), Ok(4096));
        assert_eq!(parse_size("1M", 512), Ok(1_000_000));
        assert_eq!(parse_size("32MiB", 512), Ok(32 << 20));
        assert_eq!(parse_size("2s", 512), Ok(1024));
        assert_eq!(parse_size("1Kis", 512), Ok(512 * 1024));
        assert!(parse_size("12q", 512).is_err());
        assert!(parse_size("", 512).is_err());
        // Exactly what ddrescue 1.27 accepts (its check.sh refuses the second list for -a).
        for ok in [
            "1", "1k", "1Ki", "1KiB", "1kB", "1ks", "1Kis", "1s", "1B", "1M", "1MiB", "1Ei",
        ] {
            assert!(parse_size(ok, 512).is_ok(), "{ok}");
        }
        assert_eq!(parse_size(" +010", 512), Ok(8));
        assert_eq!(parse_size("1Mis", 512), Ok(512 << 20));
        for bad in [
            "1ki", "1K", "1BB", "1Bi", "1Bk", "1Bs", "1iB", "1ii", "1ik", "1is", "1kk", "1sB",
            "1si", "1sk", "1ss", "1KisB", "1m", "16Ei", "1Z", "08", "1.5", "1_000", "0x", "1e3",
            "-1",
        ] {
            assert!(parse_size(bad, 512).is_err(), "{bad}");
        }
        assert_eq!(parse_signed_size("-1", 512), Ok(-1));
    }
}
