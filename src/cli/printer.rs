//! Progress printers: a human display on stderr and a JSON-lines stream on stdout.

use crate::mapfile::BlockStatus;
use crate::progress::{Direction, RescueEvent, RescueObserver, RescueSnapshot};
use crate::units::{format_bytes, format_duration};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// ddrescue-like status block on stderr, redrawn in place on a terminal, a line every few seconds
/// otherwise (logs, serial consoles without cursor control).
pub struct HumanPrinter {
    tty: bool,
    verbose: bool,
    /// ddrescue's `-B`: sizes with binary prefixes.
    binary: bool,
    lines_drawn: usize,
    last_plain: Option<Instant>,
}

impl HumanPrinter {
    pub fn new(verbose: bool) -> HumanPrinter {
        HumanPrinter {
            tty: std::io::stderr().is_terminal(),
            verbose,
            binary: false,
            lines_drawn: 0,
            last_plain: None,
        }
    }

    /// ddrescue's `-B`: show sizes with binary prefixes (KiB, MiB, ...).
    pub fn binary_prefixes(mut self, on: bool) -> HumanPrinter {
        self.binary = on;
        self
    }

    fn clear(&mut self, err: &mut impl Write) {
        if self.tty && self.lines_drawn > 0 {
            let _ = write!(err, "\x1b[{}A\x1b[J", self.lines_drawn);
            self.lines_drawn = 0;
        }
    }
}

use crate::units::percent as pct;

/// The status block shown to a person.
pub fn render_snapshot(s: &RescueSnapshot) -> Vec<String> {
    render_snapshot_with(s, format_bytes)
}

/// [`render_snapshot`] with sizes formatted by `format_bytes` (SI or binary prefixes).
pub fn render_snapshot_with(s: &RescueSnapshot, format_bytes: fn(u64) -> String) -> Vec<String> {
    let rate = |r: f64| format!("{}/s", format_bytes(r.max(0.0) as u64));
    let t = &s.totals;
    let dir = match s.direction {
        Direction::Forwards => "forwards",
        Direction::Backwards => "backwards",
    };
    let remaining = match s.remaining {
        Some((lo, _)) if t.pending() == 0 => format_duration(lo),
        Some((lo, hi)) if hi == Duration::MAX => format!("at least {}", format_duration(lo)),
        Some((lo, hi)) => format!("{} to {}", format_duration(lo), format_duration(hi)),
        None => "unknown".to_string(),
    };
    let phase = match s.phase {
        crate::mapfile::Phase::Finished => "Finished".to_string(),
        p => format!("{}, pass {} ({dir})", p.describe(), s.pass),
    };
    let mut lines = vec![
        format!(
            "    phase: {phase}{}",
            if s.waiting_for_device {
                "  -- WAITING FOR THE SOURCE TO COME BACK"
            } else {
                ""
            }
        ),
        format!(
            "     ipos: {:>10}   rescued: {:>10} ({:6.2}%)   bad-sector: {:>10}",
            format_bytes(s.pos),
            format_bytes(t.finished),
            pct(t.finished, s.domain_size),
            format_bytes(t.bad_sector)
        ),
        format!(
            "non-tried: {:>10}   non-trimmed: {:>8}   non-scraped: {:>10}   bad areas: {}",
            format_bytes(t.non_tried),
            format_bytes(t.non_trimmed),
            format_bytes(t.non_scraped),
            t.bad_areas
        ),
        format!(
            "     rate: {:>10} now, {:>10} average   read errors: {}   last good read: {} ago",
            rate(s.current_rate),
            rate(s.average_rate),
            s.read_errors,
            format_duration(s.since_last_good_read)
        ),
        format!(
            "  elapsed: {:>10}   remaining: {remaining}",
            format_duration(s.elapsed)
        ),
    ];
    if t.pending() == 0 {
        let bad = t.bytes(BlockStatus::BadSector);
        lines.push(if bad == 0 {
            "Finished: everything was rescued.".to_string()
        } else {
            format!(
                "Finished: {} could not be read ({} bad areas); `-r N` retries them.",
                format_bytes(bad),
                t.bad_areas
            )
        });
    }
    lines
}

impl RescueObserver for HumanPrinter {
    fn event(&mut self, event: &RescueEvent) {
        let mut err = std::io::stderr().lock();
        let text = match event {
            RescueEvent::PassStarted {
                phase,
                pass,
                direction,
            } if self.verbose => Some(format!(
                "{}... pass {pass} ({})",
                phase.describe(),
                match direction {
                    Direction::Forwards => "forwards",
                    Direction::Backwards => "backwards",
                }
            )),
            RescueEvent::ReadError { pos, size, message } if self.verbose => Some(format!(
                "read error at 0x{pos:X} (+{size} bytes): {message}"
            )),
            RescueEvent::DeviceGone { message } => Some(format!("salvor: {message}")),
            RescueEvent::DeviceBack => Some("salvor: the source is back; continuing".to_string()),
            RescueEvent::Message { message } => Some(message.clone()),
            _ => None,
        };
        if let Some(text) = text {
            self.clear(&mut err);
            let _ = writeln!(err, "{text}");
        }
    }

    fn progress(&mut self, s: &RescueSnapshot) {
        let mut err = std::io::stderr().lock();
        let lines = if self.binary {
            render_snapshot_with(s, crate::units::format_bytes_binary)
        } else {
            render_snapshot(s)
        };
        if self.tty {
            self.clear(&mut err);
            for l in &lines {
                let _ = writeln!(err, "{l}\x1b[K");
            }
            self.lines_drawn = lines.len();
        } else {
            let due = self
                .last_plain
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
            if due || s.totals.pending() == 0 {
                self.last_plain = Some(Instant::now());
                let _ = writeln!(err, "{}", lines.join("\n"));
                let _ = writeln!(err);
            }
        }
        let _ = err.flush();
    }
}

/// One JSON object per line on stdout: `{"type":"progress",...}` and `{"type":"event",...}`.
pub struct JsonPrinter;

impl RescueObserver for JsonPrinter {
    fn event(&mut self, event: &RescueEvent) {
        if let Ok(mut v) = serde_json::to_value(event) {
            if let Some(o) = v.as_object_mut() {
                o.insert("type".into(), "event".into());
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            let _ = out.flush();
        }
    }

    fn progress(&mut self, s: &RescueSnapshot) {
        if let Ok(mut v) = serde_json::to_value(s) {
            if let Some(o) = v.as_object_mut() {
                o.insert("type".into(), "progress".into());
                o.insert("elapsed".into(), s.elapsed.as_secs_f64().into());
                o.insert(
                    "since_last_good_read".into(),
                    s.since_last_good_read.as_secs_f64().into(),
                );
                o.insert(
                    "remaining".into(),
                    match s.remaining {
                        Some((lo, hi)) => serde_json::json!([
                            lo.as_secs_f64(),
                            if hi == Duration::MAX {
                                None
                            } else {
                                Some(hi.as_secs_f64())
                            }
                        ]),
                        None => serde_json::Value::Null,
                    },
                );
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            let _ = out.flush();
        }
    }
}

/// `--log-reads FILE`: every read attempt in GNU ddrescue's read-log layout
/// (`ipos size copied_size error_size`), so both tools' logs can be compared by one script.
pub struct ReadLog {
    out: std::io::BufWriter<std::fs::File>,
}

impl ReadLog {
    pub fn create(path: &std::path::Path) -> crate::Result<ReadLog> {
        let file = std::fs::File::create(path).map_err(|e| crate::Error::io(path, e))?;
        let mut out = std::io::BufWriter::new(file);
        let _ = writeln!(
            out,
            "# Reads Logfile. Created by salvor version {}",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(out, "#  Ipos       Size  Copied_size  Error_size");
        Ok(ReadLog { out })
    }
}

impl RescueObserver for ReadLog {
    fn event(&mut self, event: &RescueEvent) {
        if let RescueEvent::PassStarted { phase, pass, .. } = event {
            let _ = writeln!(self.out, "# {}... Pass {pass}", phase.describe());
        }
        if let RescueEvent::Finished { .. } = event {
            let _ = self.out.flush();
        }
    }

    fn read_done(&mut self, pos: u64, size: u64, good: u64, failed: bool) {
        let error = if failed { size - good } else { 0 };
        let _ = writeln!(self.out, "0x{pos:08X}\t{size}\t{good}\t{error}");
    }
}

impl Drop for ReadLog {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

fn local_now() -> String {
    crate::mapfile::format_local_time(std::time::SystemTime::now())
}

/// `--log-events=FILE`, ddrescue's events log: appended to; a line with the run time and the
/// percentage rescued at the start of each pass and at the end of the run (with the cause when
/// the run ends early).
pub struct EventLog {
    out: std::io::BufWriter<std::fs::File>,
    start: Instant,
    last: Option<RescueSnapshot>,
    ended: bool,
    /// The run finished; the end line waits for the final snapshot.
    finishing: bool,
}

impl EventLog {
    pub fn create(path: &std::path::Path, command_line: &str) -> crate::Result<EventLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| crate::Error::io(path, e))?;
        let mut out = std::io::BufWriter::new(file);
        let _ = writeln!(
            out,
            "# Events Logfile. Created by salvor version {}",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(out, "# Command line: {}", command_line.replace('\n', " "));
        let _ = writeln!(out, "# Start time:   {}", local_now());
        let _ = writeln!(out, "#         Time  Rescued  Event");
        let _ = out.flush();
        Ok(EventLog {
            out,
            start: Instant::now(),
            last: None,
            ended: false,
            finishing: false,
        })
    }

    fn line(&mut self, message: &str) {
        let rescued = self
            .last
            .as_ref()
            .map_or(0.0, |s| pct(s.totals.finished, s.domain_size));
        let _ = writeln!(
            self.out,
            "{:>14} {:>7.2}%  {message}",
            format_duration(self.start.elapsed()),
            rescued
        );
        let _ = self.out.flush();
    }

    /// Ends the log with the reason the run stopped.
    pub fn end(&mut self, why: &str) {
        if self.ended {
            return;
        }
        self.ended = true;
        let pos = self.last.as_ref().map_or(0, |s| s.pos);
        self.line(&format!("End of run (0x{pos:08X}  {why})"));
        let _ = writeln!(self.out, "# End time:     {}", local_now());
        let _ = self.out.flush();
    }
}

impl RescueObserver for EventLog {
    fn event(&mut self, event: &RescueEvent) {
        match event {
            RescueEvent::PassStarted {
                phase,
                pass,
                direction,
            } => {
                let dir = match direction {
                    Direction::Forwards => "forwards",
                    Direction::Backwards => "backwards",
                };
                self.line(&format!("{}... Pass {pass} ({dir})", phase.describe()));
            }
            RescueEvent::DeviceGone { message } => self.line(message),
            RescueEvent::DeviceBack => self.line("Source device is back"),
            RescueEvent::Finished { .. } => self.finishing = true,
            _ => {}
        }
    }

    fn progress(&mut self, snapshot: &RescueSnapshot) {
        self.last = Some(snapshot.clone());
        if self.finishing {
            self.end("finished");
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.end(if self.finishing {
            "finished"
        } else {
            "interrupted"
        });
    }
}

/// `--log-rates=FILE`, ddrescue's rates log: overwritten; once a second the run time, input
/// position, current and average rates, bad areas and bad-sector bytes.
pub struct RateLog {
    out: std::io::BufWriter<std::fs::File>,
    last_second: Option<u64>,
}

impl RateLog {
    pub fn create(path: &std::path::Path, command_line: &str) -> crate::Result<RateLog> {
        let file = std::fs::File::create(path).map_err(|e| crate::Error::io(path, e))?;
        let mut out = std::io::BufWriter::new(file);
        let _ = writeln!(
            out,
            "# Rates Logfile. Created by salvor version {}",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(out, "# Command line: {}", command_line.replace('\n', " "));
        let _ = writeln!(out, "# Start time:   {}", local_now());
        let _ = writeln!(
            out,
            "#Time  Ipos  Current_rate  Average_rate  Bad_areas  Bad_size"
        );
        Ok(RateLog {
            out,
            last_second: None,
        })
    }
}

impl RescueObserver for RateLog {
    fn progress(&mut self, s: &RescueSnapshot) {
        let second = s.elapsed.as_secs();
        if self.last_second == Some(second) {
            return;
        }
        self.last_second = Some(second);
        let _ = writeln!(
            self.out,
            "{second:>2}  0x{:08X}  {:>8.0}  {:>8.0}  {:>7}  {:>8}",
            s.pos, s.current_rate, s.average_rate, s.totals.bad_areas, s.totals.bad_sector
        );
    }
}

impl Drop for RateLog {
    fn drop(&mut self) {
        let _ = writeln!(self.out, "# End time:     {}", local_now());
        let _ = self.out.flush();
    }
}
