//! Drawing the result screen and "Copy my files". Reads the [`App`] only.

use super::app::{App, Screen, TargetKind};
use super::copier::{DamagedChoice, DAMAGED_SUFFIX};
use super::result::{CopyStage, FilesState, RescueResult, Step};
use super::ui::{fit, input_box, kv, BOLD, DIM, GOOD, SEL, WARN};
use crate::units::{format_bytes, format_bytes_like, percent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};
use ratatui::Frame;

pub fn title(app: &App) -> String {
    match app.screen {
        Screen::ResultOpen if app.result_open_map.is_some() => {
            "Rescue result: which rescued copy?".into()
        }
        Screen::ResultOpen => "Rescue result: which mapfile?".into(),
        Screen::BrowsePath => "Browse an image: which image?".into(),
        Screen::CopyPart if app.copy.image.is_some() => "Browse an image: which partition?".into(),
        Screen::CopyPart => "Copy my files 1/4: which part of the copy?".into(),
        Screen::CopyConfirm => match Some(&app.copy.stage) {
            Some(CopyStage::Running(_)) => "Copy my files: copying".into(),
            Some(CopyStage::Done(_)) => "Copy my files: done".into(),
            _ => "Copy my files 4/4: check and start".into(),
        },
        _ => "Rescue result".into(),
    }
}

pub fn footer(app: &App) -> Vec<(&'static str, &'static str)> {
    match app.screen {
        Screen::ResultOpen => vec![
            ("type", "the mapfile's path"),
            ("Enter", "open"),
            ("Esc", "back"),
        ],
        Screen::BrowsePath => vec![
            ("type", "the image's path"),
            ("Tab", "browse"),
            ("Enter", "open"),
            ("Esc", "back"),
        ],
        Screen::CopyPart => vec![
            ("↑↓", "move"),
            ("Enter", "mount read-only and browse"),
            ("Esc", "back"),
        ],
        Screen::CopyConfirm => match Some(&app.copy.stage) {
            Some(CopyStage::Running(_)) => vec![("a/Esc", "stop copying")],
            Some(CopyStage::Done(_)) => vec![("Enter", "unmount the copy and go back")],
            _ => vec![
                ("Space", "skip / mark damaged"),
                ("Enter", "START"),
                ("Esc", "other folder"),
            ],
        },
        _ => vec![
            ("↑↓", "move"),
            ("Enter", "do it"),
            ("PgUp/PgDn", "scroll"),
            ("o", "other mapfile"),
            ("Esc", "menu"),
            ("?", "help"),
        ],
    }
}

pub fn help() -> &'static [&'static str] {
    &[
        "Bad bytes could not be read at all; the copy holds zeros there. Files that",
        "overlap them are damaged: they open, but part of them is missing.",
        "Retry the bad areas reads them again, three times, bypassing the cache.",
        "Copy my files mounts the copy read-only and copies what you mark onto",
        "another disk; damaged files are skipped or kept with a .damaged name.",
    ]
}

fn outcome_lines(r: &RescueResult) -> Vec<Line<'static>> {
    let t = &r.totals;
    let size = r.size.max(1);
    let mut l = vec![kv(
        "Rescued",
        format!(
            "{} of {} ({:.2}%)",
            format_bytes_like(t.finished, r.size),
            format_bytes(r.size),
            // Rounded down: 100% means every byte.
            (percent(t.finished, size) * 100.0).floor() / 100.0
        ),
    )];
    l.push(if t.bad_sector == 0 {
        Line::from(vec![
            Span::styled(format!("{:<10}", "Bad"), BOLD),
            Span::styled("nothing is unreadable", GOOD),
        ])
    } else {
        Line::from(vec![
            Span::styled(format!("{:<10}", "Bad"), BOLD),
            Span::styled(
                format!(
                    "{} could not be read ({} area{})",
                    format_bytes(t.bad_sector),
                    t.bad_areas,
                    if t.bad_areas == 1 { "" } else { "s" }
                ),
                WARN,
            ),
        ])
    });
    let pending = t.pending();
    l.push(kv(
        "Not tried",
        if pending == 0 {
            "nothing: every area was tried".into()
        } else {
            format!(
                "{} not read yet (the rescue stopped early)",
                format_bytes(pending)
            )
        },
    ));
    l
}

fn damage_lines(r: &RescueResult, width: usize, height: usize) -> (String, Vec<Line<'static>>) {
    match &r.files {
        FilesState::Pending => (
            " Damaged files ".into(),
            vec![Line::styled(
                "Reading the copy's filesystems to find the damaged files...",
                DIM,
            )],
        ),
        FilesState::Failed(e) => (
            " Damaged files ".into(),
            vec![Line::styled(
                format!("Could not list the damaged files: {e}"),
                WARN,
            )],
        ),
        FilesState::Ready(d) => {
            let title = format!(
                " Damaged files: {} of {} checked, {} missing ",
                d.files,
                d.checked,
                format_bytes(d.lost)
            );
            let mut l: Vec<Line> = d
                .metadata
                .iter()
                .map(|m| Line::styled(format!("! {m}"), WARN))
                .collect();
            if d.files == 0 && d.metadata.is_empty() {
                l.push(Line::styled("No file is damaged.", GOOD));
            }
            let name_w = width.saturating_sub(22);
            let room = height.saturating_sub(l.len());
            for row in d.tree.iter().skip(r.scroll).take(room) {
                let indent = "  ".repeat(row.depth.min(8));
                let name = fit(&format!("{indent}{}", row.name), name_w);
                let count = if row.is_dir {
                    format!(
                        "{} file{}",
                        row.files,
                        if row.files == 1 { "" } else { "s" }
                    )
                } else {
                    String::new()
                };
                let style = if row.depth == 0 {
                    BOLD
                } else {
                    ratatui::style::Style::new()
                };
                l.push(Line::styled(
                    format!("{name} {count:>10} {:>9}", format_bytes(row.lost)),
                    style,
                ));
            }
            if d.cut > 0 && l.len() < height {
                l.push(Line::styled(
                    format!("  +{} more rows (salvor files lists them all)", d.cut),
                    DIM,
                ));
            }
            (title, l)
        }
    }
}

fn step_text(s: Step, r: &RescueResult) -> (&'static str, String) {
    match s {
        Step::Retry => (
            "Retry the bad areas",
            "again with direct access and 3 retry passes".into(),
        ),
        Step::CopyFiles => (
            "Copy my files",
            match r.copy_kind {
                TargetKind::Disk => "open the rescued disk read-only; copy files out".into(),
                TargetKind::File => "open the rescued image read-only; copy files out".into(),
            },
        ),
        Step::Menu => ("Back to the menu", String::new()),
    }
}

pub fn draw_result(app: &App, f: &mut Frame, area: Rect) {
    let Some(r) = &app.result else {
        return;
    };
    let steps = r.steps();
    let [from, to, outcome, files, next] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(steps.len() as u16 + 2),
    ])
    .areas(area);
    f.render_widget(
        Line::from(vec![
            Span::styled("From: ", GOOD),
            Span::raw(r.source_identity.clone()),
        ]),
        from,
    );
    f.render_widget(
        Line::from(vec![
            Span::styled("Copy: ", BOLD),
            Span::raw(r.copy_identity.clone()),
        ]),
        to,
    );
    f.render_widget(Paragraph::new(outcome_lines(r)), outcome);
    let inner_w = usize::from(files.width.saturating_sub(2));
    let inner_h = usize::from(files.height.saturating_sub(2));
    let (title, lines) = damage_lines(r, inner_w, inner_h);
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        files,
    );
    let w = usize::from(next.width.saturating_sub(2));
    let lines: Vec<Line> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (name, what) = step_text(*s, r);
            let sel = i == r.cursor;
            let text = fit(
                &format!("{}{name:<22} {what}", if sel { "> " } else { "  " }),
                w,
            );
            Line::styled(text, if sel { SEL } else { BOLD })
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Next steps ")),
        next,
    );
}

pub fn draw_result_open(app: &App, f: &mut Frame, area: Rect) {
    if let Some(m) = &app.result_open_map {
        let [text, input] =
            Layout::vertical([Constraint::Length(4), Constraint::Length(3)]).areas(area);
        f.render_widget(
            Paragraph::new(vec![
                Line::from(vec![
                    Span::styled("Mapfile: ", BOLD),
                    Span::raw(m.display().to_string()),
                ]),
                Line::raw("No image file is next to it. Where is the rescued copy? An image file,"),
                Line::raw("or the disk it was rescued onto (like /dev/sdd)."),
            ])
            .wrap(Wrap { trim: false }),
            text,
        );
        f.render_widget(input_box("Rescued copy", &app.flow.input), input);
        return;
    }
    let [text, input] =
        Layout::vertical([Constraint::Length(4), Constraint::Length(3)]).areas(area);
    f.render_widget(
        Paragraph::new(vec![
            Line::raw("The mapfile of an earlier rescue into an image file, like"),
            Line::styled("  /mnt/backup/wd.img.map", BOLD),
            Line::raw("The rescued image is found next to it (the same name without .map)."),
        ])
        .wrap(Wrap { trim: false }),
        text,
    );
    f.render_widget(input_box("Mapfile", &app.flow.input), input);
}

pub fn draw_browse_path(app: &App, f: &mut Frame, area: Rect) {
    let [text, input] =
        Layout::vertical([Constraint::Length(4), Constraint::Length(3)]).areas(area);
    f.render_widget(
        Paragraph::new(vec![
            Line::raw("An image file: a salvor image (.img.zst), a raw image or a rescued copy,"),
            Line::raw("qcow2, VHD or VMDK. It is opened read-only; Tab finds it on a disk."),
        ])
        .wrap(Wrap { trim: false }),
        text,
    );
    f.render_widget(input_box("Image file", &app.flow.input), input);
}

pub fn draw_copy_part(app: &App, f: &mut Frame, area: Rect) {
    let fl = &app.copy;
    let [head, list] = Layout::vertical([Constraint::Length(2), Constraint::Min(3)]).areas(area);
    f.render_widget(
        Paragraph::new(vec![
            Line::raw(fl.what.clone()),
            Line::styled("It is mounted read-only: nothing on it changes.", DIM),
        ]),
        head,
    );
    let w = usize::from(list.width.saturating_sub(2));
    let dmg_w = if fl.parts.iter().any(|p| p.damaged.is_some()) {
        17
    } else {
        0
    };
    // name, size and damage fixed; the filesystem (or type) and the label share the rest.
    let rest = w.saturating_sub(2 + 8 + 1 + 8 + 2 + dmg_w + 2);
    let (type_w, label_w) = (rest * 2 / 5, rest - rest * 2 / 5);
    let mut lines = Vec::new();
    for (i, p) in fl.parts.iter().enumerate() {
        let sel = i == fl.part_cursor;
        let name = p
            .dev
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let damaged = match p.damaged {
            Some(0) => "no damaged file".to_string(),
            Some(n) => format!("{n} damaged file{}", if n == 1 { "" } else { "s" }),
            None => String::new(),
        };
        let text = format!(
            "{}{} {} {} {:>8}  {damaged}",
            if sel { "> " } else { "  " },
            fit(&name, 8),
            fit(p.fstype.as_deref().unwrap_or("?"), type_w),
            fit(
                &p.label
                    .as_deref()
                    .map(|l| format!("\"{l}\""))
                    .unwrap_or_default(),
                label_w
            ),
            format_bytes(p.size),
        );
        lines.push(Line::styled(fit(&text, w), if sel { SEL } else { BOLD }));
    }
    if lines.is_empty() {
        lines.push(Line::styled("No partition found.", WARN));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Partitions ")),
        list,
    );
}

pub fn draw_copy_confirm(app: &App, f: &mut Frame, area: Rect) {
    let fl = &app.copy;
    let damaged = app.copy_damaged();
    let root = fl.mount.clone().unwrap_or_default();
    let marked_damaged = damaged
        .iter()
        .filter(|d| {
            fl.items.iter().any(|it| {
                let rel = format!("/{}", it.strip_prefix(&root).unwrap_or(it).display());
                d.as_str() == rel || d.starts_with(&format!("{rel}/"))
            })
        })
        .count();
    let [info, progress, rest] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Length(3),
        Constraint::Min(1),
    ])
    .areas(area);
    let w = usize::from(info.width.saturating_sub(12));
    let names: Vec<String> = fl
        .items
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    let dest = fl
        .dest
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let free = fl
        .dest
        .as_ref()
        .and_then(|d| app.host.free_space(d))
        .map(|b| format!(" ({} free)", format_bytes(b)))
        .unwrap_or_default();
    let mut l = vec![
        kv(
            "From",
            fit(&root.display().to_string(), w).trim_end().to_string(),
        ),
        kv("Copy", fit(&names.join(", "), w).trim_end().to_string()),
        kv(
            "Into",
            fit(&format!("{dest}{free}"), w).trim_end().to_string(),
        ),
        kv(
            "Damaged",
            format!("{marked_damaged} of the files to copy are damaged"),
        ),
    ];
    let (skip, mark) = match fl.choice {
        DamagedChoice::Skip => ("(x)", "( )"),
        DamagedChoice::Mark => ("( )", "(x)"),
    };
    l.push(Line::raw(format!("  {skip} skip damaged files")));
    l.push(Line::raw(format!(
        "  {mark} copy them too, named NAME{DAMAGED_SUFFIX}"
    )));
    f.render_widget(Paragraph::new(l), info);
    match &fl.stage {
        CopyStage::Running(p) => {
            let ratio = if p.bytes_total == 0 {
                0.0
            } else {
                p.bytes_done as f64 / p.bytes_total as f64
            };
            f.render_widget(
                Gauge::default()
                    .block(Block::bordered().title(format!(
                        " {} of {} files, {} of {} ",
                        p.files_done,
                        p.files_total,
                        format_bytes_like(p.bytes_done, p.bytes_total),
                        format_bytes(p.bytes_total)
                    )))
                    .gauge_style(GOOD)
                    .ratio(ratio.clamp(0.0, 1.0))
                    .label(format!("{:.1}%", ratio * 100.0)),
                progress,
            );
            f.render_widget(
                Paragraph::new(Line::raw(format!("Copying {}", p.current))),
                rest,
            );
        }
        CopyStage::Done(Ok(s)) => {
            let mut l = vec![Line::styled(
                format!(
                    "{}: {} files, {} copied into {dest}",
                    if s.stopped { "Stopped" } else { "Done" },
                    s.files,
                    format_bytes(s.bytes)
                ),
                if s.stopped { BOLD } else { GOOD },
            )];
            if !s.damaged.is_empty() {
                l.push(Line::raw(format!(
                    "{} damaged file{} {}",
                    s.damaged.len(),
                    if s.damaged.len() == 1 { "" } else { "s" },
                    match fl.choice {
                        DamagedChoice::Skip => "left out".to_string(),
                        DamagedChoice::Mark => format!("copied with {DAMAGED_SUFFIX}"),
                    }
                )));
            }
            for (p, why) in s.unreadable.iter().take(3) {
                l.push(Line::styled(format!("! could not read {p}: {why}"), WARN));
            }
            if !s.left_out.is_empty() {
                l.push(Line::raw(format!(
                    "{} left out (already there, links or special files)",
                    s.left_out.len()
                )));
            }
            f.render_widget(Paragraph::new(l).wrap(Wrap { trim: false }), rest);
        }
        CopyStage::Done(Err(e)) => {
            f.render_widget(
                Paragraph::new(Line::styled(format!("! The copy failed: {e}"), WARN))
                    .wrap(Wrap { trim: false }),
                rest,
            );
        }
        _ => {
            f.render_widget(
                Paragraph::new(Line::styled(
                    "Enter starts copying; the copy stays read-only.",
                    DIM,
                )),
                rest,
            );
        }
    }
}
