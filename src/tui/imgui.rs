//! Drawing the image flows' own steps and the image job view. Reads the [`App`] only; the disk
//! table, input box, details and job pieces come from [`super::ui`].

use super::app::{App, Feature, Job, JobState, Screen};
use super::imaging::{phase_text, ImageView};
use super::ui::{
    disk_details, draw_disk_table, draw_from_to, draw_log, input_box, kv, log_height, pct, rate,
    side_panel, state_span, writable_places, DiskTableRow, Side, BOLD, DIM, GOOD, SEL, WARN,
};
use crate::image::OutputKind;
use crate::units::{format_bytes, format_duration};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};
use ratatui::Frame;

pub fn title(app: &App) -> String {
    let step = match (app.flow.feature, app.screen) {
        (Feature::Image, Screen::ImgPath) => "Image 2/4: where does the image go?",
        (Feature::Image, Screen::ImgOptions) => "Image 3/4: options",
        (Feature::Image, _) => "Image 4/4: check and confirm",
        (Feature::Restore, Screen::ImgPath) => "Restore 1/5: which image?",
        (Feature::Restore, Screen::ImgInfo) => "Restore 2/5: what the image holds",
        (Feature::Restore, Screen::ImgTarget) => "Restore 3/5: which disk is overwritten?",
        (Feature::Restore, Screen::ImgOptions) => "Restore 4/5: options",
        (Feature::Restore, _) => "Restore 5/5: check and confirm",
        (Feature::Clone, Screen::ImgTarget) => "Clone 2/4: which disk is overwritten?",
        (Feature::Clone, Screen::ImgOptions) => "Clone 3/4: options",
        (Feature::Clone, _) => "Clone 4/4: check and confirm",
        (Feature::Verify, _) => "Verify 1/2: which image?",
        (Feature::Rescue, _) => "Rescue",
    };
    step.into()
}

pub fn footer(app: &App) -> Vec<(&'static str, &'static str)> {
    match app.screen {
        Screen::ImgPath => vec![
            ("type", "the path"),
            ("Tab", "browse"),
            ("Backspace", "erase"),
            ("Enter", "accept"),
            ("Esc", "back"),
        ],
        Screen::ImgInfo => vec![
            ("Enter", "continue"),
            ("Esc", "back"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Screen::ImgTarget => vec![
            ("↑↓/jk", "move"),
            ("Enter", "choose"),
            ("r", "refresh"),
            ("Esc", "back"),
            ("?", "help"),
        ],
        Screen::ImgOptions if app.img_typing() => vec![
            ("type", "the label"),
            ("↑↓", "move"),
            ("Enter", "continue"),
            ("Esc", "back"),
        ],
        Screen::ImgOptions => vec![
            ("↑↓", "move"),
            ("Space/←→", "change"),
            ("Enter", "continue"),
            ("Esc", "back"),
        ],
        _ if app.img_typing() => vec![
            ("type", "the disk's name"),
            ("Enter", "START"),
            ("Esc", "back"),
        ],
        _ => vec![("Enter/y", "START"), ("Esc", "back"), ("?", "help")],
    }
}

/// "Reading from: ..." for the disk or image being read.
fn reading_line(app: &App) -> Line<'static> {
    let what = match (&app.flow.source, &app.flow.img.info) {
        (Some(d), _) => d.identity_line(),
        (None, Some(i)) => i.identity_line(),
        _ => String::new(),
    };
    Line::from(vec![Span::styled("Reading from: ", GOOD), Span::raw(what)])
}

pub fn draw_path(app: &App, f: &mut Frame, area: Rect) {
    let [top, input, rest] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(area);
    let (intro, title, places): (Vec<Line>, &str, &str) = match app.flow.feature {
        Feature::Image => (
            vec![
                reading_line(app),
                Line::raw("Type the full path of the image file: .img.zst = compressed with"),
                Line::raw("checksums, .img or .raw = plain sparse copy. Put it on another disk."),
            ],
            "Image file to write",
            "Mounted places (not on the source disk):",
        ),
        _ => (
            vec![
                Line::raw(""),
                Line::raw("Type the full path of the image: a salvor image (.img.zst, or the"),
                Line::raw("first part of a split one) or a raw image (.img, .raw)."),
            ],
            "Image file to read",
            "Mounted places:",
        ),
    };
    f.render_widget(Paragraph::new(intro), top);
    f.render_widget(input_box(title, &app.flow.input), input);
    let mut l = vec![Line::styled(places, BOLD)];
    l.extend(writable_places(app));
    f.render_widget(Paragraph::new(l).wrap(Wrap { trim: false }), rest);
}

/// What an image holds, one fact a line, then its partitions.
fn image_lines(i: &ImageView) -> Vec<Line<'static>> {
    let mut l = vec![
        kv(
            "Kind",
            if i.salvor {
                "salvor image (compressed, checksummed)".into()
            } else {
                "raw image".into()
            },
        ),
        kv(
            "Disk size",
            format!("{} ({} bytes)", format_bytes(i.size), i.size),
        ),
    ];
    if let Some(s) = i.stored {
        l.push(kv("Stored", format_bytes(s)));
    }
    if let Some(lab) = &i.label {
        l.push(kv("Label", lab.clone()));
    }
    if let Some(src) = &i.source {
        l.push(kv("Made from", src.clone()));
    }
    if let Some(c) = &i.created {
        l.push(kv("Created", c.clone()));
    }
    if i.holes > 0 {
        l.push(Line::styled(
            format!("{} area(s) were never rescued and hold zeros", i.holes),
            WARN,
        ));
    }
    l.push(kv("Table", i.table_summary()));
    if let Some(t) = &i.table {
        for p in &t.partitions {
            l.push(Line::raw(format!(
                "  {:>2}  {:>10}  {}{}",
                p.number,
                format_bytes(p.size),
                p.type_name.as_deref().unwrap_or(&p.type_id),
                p.name
                    .as_ref()
                    .map(|n| format!("  \"{n}\""))
                    .unwrap_or_default()
            )));
        }
    }
    l
}

pub fn draw_info(app: &App, f: &mut Frame, area: Rect) {
    let Some(i) = &app.flow.img.info else {
        return;
    };
    let mut l = vec![
        Line::styled(i.path.display().to_string(), BOLD),
        Line::raw(""),
    ];
    l.extend(image_lines(i));
    l.push(Line::raw(""));
    l.push(Line::raw(format!(
        "The target disk needs at least {}. Press Enter to choose it.",
        format_bytes(i.size)
    )));
    f.render_widget(
        Paragraph::new(l)
            .block(Block::bordered().title(" The image "))
            .wrap(Wrap { trim: false }),
        area,
    );
}

pub fn draw_target(app: &App, f: &mut Frame, area: Rect) {
    let [top, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    f.render_widget(reading_line(app), top);
    let rows: Vec<DiskTableRow> = app
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| (Some(d), app.flow.img.notes.get(i).cloned().flatten()))
        .collect();
    draw_disk_table(
        app,
        f,
        rest,
        "Choose the target: it will be OVERWRITTEN",
        &rows,
        app.flow.img.target_cursor,
        "Target",
        true,
    );
}

fn option_line(sel: bool, name: &str, value: String) -> Line<'static> {
    let mark = if sel { "> " } else { "  " };
    Line::from(vec![
        Span::styled(format!("{mark}{name:<22}"), if sel { SEL } else { BOLD }),
        Span::styled(format!(" {value}"), if sel { SEL } else { Style::new() }),
    ])
}

pub fn draw_options(app: &App, f: &mut Frame, area: Rect) {
    let c = &app.flow.img;
    let mut l = vec![reading_line(app), Line::raw("")];
    if app.flow.feature == Feature::Image {
        let raw = c
            .path
            .as_deref()
            .is_some_and(|p| OutputKind::for_path(p) == OutputKind::Raw);
        l.push(option_line(
            c.opt_cursor == 0,
            "Compression level",
            if raw {
                "(not used: raw image)".into()
            } else {
                format!("< {} >", c.level)
            },
        ));
        l.push(Line::styled(
            "    1 = fastest, 3 = default, 19 = smallest but slow on a small CPU.",
            DIM,
        ));
        let cursor = if c.opt_cursor == 1 { "_" } else { "" };
        l.push(option_line(
            c.opt_cursor == 1,
            "Label",
            format!("[{}{cursor}]", c.label),
        ));
        l.push(Line::styled(
            "    Free text stored in the image, e.g. whose disk it is. Optional.",
            DIM,
        ));
        l.push(option_line(
            c.opt_cursor == 2,
            "Whole-disk SHA-256",
            format!("< {} >", if c.sha256 { "on" } else { "off" }),
        ));
        l.push(Line::styled(
            "    As sha256sum prints it. Costs a CPU core; chunk SHA-256s are kept anyway.",
            DIM,
        ));
    } else {
        l.push(option_line(
            true,
            "Verify after writing",
            format!("< {} >", if c.verify { "on" } else { "off" }),
        ));
        l.push(Line::styled(
            "    Re-read the whole target and compare SHA-256: takes as long again.",
            DIM,
        ));
    }
    f.render_widget(
        Paragraph::new(l)
            .block(Block::bordered())
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// The right-hand panel for an image being written: the file, and room on its filesystem.
fn output_file_lines(app: &App) -> Vec<Line<'static>> {
    let c = &app.flow.img;
    let Some(p) = &c.path else {
        return Vec::new();
    };
    let need = app.flow.source.as_ref().map_or(0, |s| s.size);
    let raw = OutputKind::for_path(p) == OutputKind::Raw;
    let mut l = vec![Line::styled(format!("Image file {}", p.display()), WARN)];
    l.push(Line::raw(if raw {
        "Raw sparse copy of the whole disk.".to_string()
    } else {
        let label = c.label.trim();
        let label = if label.is_empty() {
            String::new()
        } else {
            format!(", label \"{label}\"")
        };
        format!("salvor image, zstd level {}{label}", c.level)
    }));
    if c.exists {
        l.push(Line::styled("The file exists and is REPLACED.", WARN));
    } else {
        l.push(Line::raw("A new file is created."));
    }
    if let Some(d) = app.disk_holding(p) {
        l.push(Line::raw(format!("On {}", d.identity_line())));
    }
    match c.free {
        Some(free) => {
            l.push(kv(
                "Free",
                format!(
                    "{} there; the disk is {}",
                    format_bytes(free),
                    format_bytes(need)
                ),
            ));
            if free < need {
                l.push(Line::styled(
                    if raw {
                        "TIGHT: a raw image may need up to the disk's size"
                    } else {
                        "TIGHT: fits only if the disk compresses well"
                    },
                    WARN,
                ));
            }
        }
        None => l.push(Line::styled("Free space there: unknown", DIM)),
    }
    l
}

pub fn draw_confirm(app: &App, f: &mut Frame, area: Rect) {
    let fl = &app.flow;
    let c = &fl.img;
    let [sides, below] = Layout::vertical([Constraint::Min(6), Constraint::Length(6)]).areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(sides);
    let src = match (&fl.source, &c.info) {
        (Some(d), _) => {
            let mut l = vec![Line::styled(d.path.display().to_string(), BOLD)];
            l.extend(disk_details(d, true));
            l
        }
        (None, Some(i)) => {
            let mut l = vec![Line::styled(i.path.display().to_string(), BOLD)];
            l.extend(image_lines(i));
            l
        }
        _ => Vec::new(),
    };
    side_panel(f, left, src, Side::Read);
    let dst = match &c.target {
        Some(d) => {
            let mut l = vec![Line::styled(
                format!("{}: EVERYTHING ON IT", d.path.display()),
                WARN,
            )];
            l.extend(disk_details(d, true));
            l
        }
        None => output_file_lines(app),
    };
    side_panel(f, right, dst, Side::Overwritten);
    let [text, input] =
        Layout::vertical([Constraint::Length(3), Constraint::Length(3)]).areas(below);
    let mut l = Vec::new();
    if fl.feature != Feature::Image {
        l.push(Line::from(vec![
            Span::styled("Verify after writing: ", BOLD),
            Span::raw(if c.verify { "yes" } else { "no" }),
        ]));
    }
    match &c.target {
        Some(d) => {
            l.push(Line::styled(
                format!(
                    "Everything on {} will be destroyed. To go on, type its name: {}",
                    d.path.display(),
                    d.name()
                ),
                WARN,
            ));
            f.render_widget(
                input_box("Type the target's name, then Enter", &fl.input),
                input,
            );
        }
        None => l.push(Line::styled(
            "Press Enter (or y) to start imaging, Esc to go back.",
            BOLD,
        )),
    }
    f.render_widget(Paragraph::new(l).wrap(Wrap { trim: false }), text);
}

/// Phase, progress, the three rates, times, then the log.
pub fn draw_job(job: &Job, f: &mut Frame, area: Rect) {
    let [from, to, gauge, stats, result, log] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Length(6),
        Constraint::Min(1),
        Constraint::Length(log_height(area)),
    ])
    .areas(area);
    draw_from_to(job, f, from, to);
    let feature = job.request.feature();
    let snap = job.image.snapshot.as_ref();
    let phase = snap
        .map(|s| s.phase)
        .or(job.image.phase)
        .map_or("starting", phase_text);
    let (done, total) = snap.map_or((0, 0), |s| (s.bytes_in, s.total));
    let p = if matches!(job.state, JobState::Finished { .. }) {
        100.0
    } else {
        pct(done, total)
    };
    f.render_widget(
        Gauge::default()
            .block(Block::bordered().title(format!(" {phase} ")))
            .gauge_style(GOOD)
            .ratio((p / 100.0).clamp(0.0, 1.0))
            .label(format!("{p:.1}%")),
        gauge,
    );
    // The state gets the whole width so that a long one never runs into the right column.
    let [state_row, stats] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(stats);
    f.render_widget(
        Line::from(vec![
            Span::styled(format!("{:<10}", "State"), BOLD),
            state_span(job),
        ]),
        state_row,
    );
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(stats);
    let mut l = Vec::new();
    let mut r = Vec::new();
    match snap {
        Some(s) => {
            l.push(kv(
                "Done",
                format!("{} of {}", format_bytes(s.bytes_in), format_bytes(s.total)),
            ));
            l.push(kv(
                "In / out",
                format!(
                    "{} / {}",
                    format_bytes(s.bytes_read),
                    format_bytes(s.bytes_out)
                ),
            ));
            l.push(kv(
                "Ratio",
                if s.ratio > 0.0 {
                    format!("{:.3}", s.ratio)
                } else {
                    "-".into()
                },
            ));
            // Each stage's own rate: the slowest one is what to fix (disk, CPU or target).
            // Paused, nothing moves: no rate, no time left, the clock stopped.
            let paused = job.is_paused();
            let rate = |r: f64| if paused { "paused".into() } else { rate(r) };
            r.push(kv("Read", rate(s.read_rate)));
            let zstd = if feature == Feature::Image {
                "Compress"
            } else {
                "Decompr."
            };
            r.push(kv(zstd, rate(s.compress_rate)));
            if feature != Feature::Verify {
                r.push(kv("Write", rate(s.write_rate)));
            }
            r.push(kv("Elapsed", format_duration(job.running_time(s.elapsed))));
            r.push(kv(
                "Time left",
                if paused {
                    "paused".into()
                } else {
                    s.remaining
                        .filter(|_| job.state.is_active())
                        .map_or_else(|| "-".into(), format_duration)
                },
            ));
        }
        None => l.push(Line::raw("Opening...")),
    }
    f.render_widget(Paragraph::new(l), left);
    f.render_widget(Paragraph::new(r), right);
    let mut res = Vec::new();
    if let Some((chunk, offset, why)) = &job.image.bad_chunk {
        res.push(Line::styled(
            format!(
                "BAD: chunk {chunk} at disk offset {offset} ({}): {why}",
                format_bytes(*offset)
            ),
            WARN,
        ));
    } else if let Some(s) = &job.image.result {
        res.push(Line::styled(s.clone(), GOOD));
    }
    f.render_widget(Paragraph::new(res).wrap(Wrap { trim: false }), result);
    draw_log(job, f, log);
}
