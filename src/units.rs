//! Numbers as people and ddrescue write them: `0x1000`, `0777` (octal), `4KiB`, `1M`, `2s` (sectors).

/// Parses a ddrescue-style size or position: a C integer constant (decimal, `0x` hex, leading-0
/// octal), optionally followed by a multiplier (`k`=10^3, `Ki`=2^10, `M`, `Mi`, `G`, `Gi`, `T`, `Ti`,
/// `P`, `Pi`, `E`, `Ei`), `s` for sectors (times `sector_size`) and an optional `B`.
pub fn parse_size(text: &str, sector_size: u64) -> Result<u64, String> {
    let t = text.trim().replace('_', "");
    if t.is_empty() {
        return Err("empty number".into());
    }
    let (digits_end, radix, start) =
        if let Some(rest) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            (
                2 + rest
                    .find(|c: char| !c.is_ascii_hexdigit())
                    .unwrap_or(rest.len()),
                16,
                2,
            )
        } else if t.starts_with('0') && t.len() > 1 && t.as_bytes()[1].is_ascii_digit() {
            (
                t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()),
                8,
                1,
            )
        } else {
            (
                t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()),
                10,
                0,
            )
        };
    let digits = &t[start..digits_end];
    if digits.is_empty() {
        return Err(format!("'{text}' is not a number"));
    }
    let value = u64::from_str_radix(digits, radix).map_err(|e| format!("'{text}': {e}"))?;
    let mut suffix = &t[digits_end..];
    let mut mult: u64 = 1;
    let prefixes = ['k', 'M', 'G', 'T', 'P', 'E'];
    if let Some(c) = suffix.chars().next() {
        let c_norm = if c == 'K' { 'k' } else { c };
        if let Some(exp) = prefixes.iter().position(|&p| p == c_norm) {
            suffix = &suffix[1..];
            let binary = suffix.starts_with('i');
            if binary {
                suffix = &suffix[1..];
            }
            let base: u64 = if binary { 1024 } else { 1000 };
            mult = base.pow(exp as u32 + 1);
        }
    }
    if let Some(rest) = suffix.strip_prefix('s') {
        mult = mult.checked_mul(sector_size).ok_or("number too large")?;
        suffix = rest;
    }
    if let Some(rest) = suffix.strip_prefix('B') {
        suffix = rest;
    }
    if !suffix.is_empty() {
        return Err(format!("'{text}': unknown suffix '{suffix}'"));
    }
    value
        .checked_mul(mult)
        .ok_or_else(|| format!("'{text}' is too large"))
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
    }
}
