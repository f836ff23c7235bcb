//! Drawing: reads the [`App`] and paints one frame. Nothing here changes state.
//!
//! Every screen fits 80×24 (a serial console); bigger terminals give the lists and the block map
//! more room. Colours always come with a symbol or a word so that the screens read in monochrome.

use super::app::{
    App, Choices, Feature, Job, JobRequest, JobState, MapfileView, MenuItem, Screen, Target, MENU,
};
use super::blockmap::{self, BlockMap};
use super::disks::DiskRow;
use super::imgui;
use super::placesui;
use super::resultui;
use crate::progress::Direction;
use crate::units::{format_bytes, format_bytes_like, format_duration};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;
use std::time::Duration;

pub(super) const SEL: Style = Style::new().add_modifier(Modifier::REVERSED);
pub(super) const DIM: Style = Style::new().fg(Color::DarkGray);
pub(super) const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);
pub(super) const WARN: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
pub(super) const GOOD: Style = Style::new().fg(Color::Green).add_modifier(Modifier::BOLD);

/// Cuts or pads `s` to exactly `w` characters, marking a cut with `~`.
pub(super) fn fit(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        format!("{s:<w$}")
    } else if w == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(w - 1).collect();
        t.push('~');
        t
    }
}

pub(super) fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub(super) use crate::units::{format_rate as rate, percent as pct};

/// The first visible row so that `cursor` stays on screen.
fn scroll(cursor: usize, height: usize) -> usize {
    if height == 0 {
        0
    } else {
        cursor.saturating_sub(height - 1)
    }
}

pub fn draw(app: &App, f: &mut Frame) {
    let [title, body, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_title(app, f, title);
    match app.screen {
        Screen::Menu => draw_menu(app, f, body),
        Screen::Disks => draw_disks(app, f, body),
        Screen::Source => draw_source(app, f, body),
        Screen::Dest => draw_dest(app, f, body),
        Screen::ImagePath => draw_image_path(app, f, body),
        Screen::Mapfile => draw_mapfile(app, f, body),
        Screen::MapfilePath => draw_mapfile_path(app, f, body),
        Screen::Options => draw_options(app, f, body),
        Screen::Confirm => draw_confirm(app, f, body),
        Screen::Job => draw_job(app, f, body),
        Screen::SystemInfo => draw_sysinfo(app, f, body),
        Screen::ImgPath => imgui::draw_path(app, f, body),
        Screen::ImgInfo => imgui::draw_info(app, f, body),
        Screen::ImgTarget => imgui::draw_target(app, f, body),
        Screen::ImgOptions => imgui::draw_options(app, f, body),
        Screen::ImgConfirm => imgui::draw_confirm(app, f, body),
        Screen::Places => placesui::draw_places(app, f, body),
        Screen::Browse => placesui::draw_browse(app, f, body),
        Screen::Result => resultui::draw_result(app, f, body),
        Screen::ResultOpen => resultui::draw_result_open(app, f, body),
        Screen::CopyPart => resultui::draw_copy_part(app, f, body),
        Screen::CopyConfirm => resultui::draw_copy_confirm(app, f, body),
        Screen::BrowsePath => resultui::draw_browse_path(app, f, body),
    }
    draw_status(app, f, status);
    draw_footer(app, f, footer);
    if app.help {
        draw_help(app, f);
    }
}

fn screen_title(app: &App) -> String {
    match app.screen {
        Screen::Menu => "Main menu".into(),
        Screen::Disks => "Disks on this machine".into(),
        Screen::Source => match app.flow.feature {
            Feature::Image => "Image 1/4: which disk?".into(),
            Feature::Clone => "Clone 1/4: which disk is copied?".into(),
            _ => "Rescue 1/5: which disk is failing?".into(),
        },
        Screen::Dest => "Rescue 2/5: where should the rescued data go?".into(),
        Screen::ImagePath => "Rescue 2/5: image file".into(),
        Screen::Mapfile | Screen::MapfilePath => "Rescue 3/5: progress record (mapfile)".into(),
        Screen::Options => "Rescue 4/5: options".into(),
        Screen::Confirm => "Rescue 5/5: check and confirm".into(),
        Screen::Job => app
            .job
            .as_ref()
            .map_or(Feature::Rescue, |j| j.request.feature())
            .title()
            .into(),
        Screen::SystemInfo => "System information".into(),
        Screen::ImgPath
        | Screen::ImgInfo
        | Screen::ImgTarget
        | Screen::ImgOptions
        | Screen::ImgConfirm => imgui::title(app),
        Screen::Places | Screen::Browse => placesui::title(app),
        Screen::Result
        | Screen::ResultOpen
        | Screen::CopyPart
        | Screen::CopyConfirm
        | Screen::BrowsePath => resultui::title(app),
    }
}

fn draw_title(app: &App, f: &mut Frame, area: Rect) {
    let mut spans = vec![
        Span::styled(" salvor ", SEL.add_modifier(Modifier::BOLD)),
        Span::raw(" "),
        Span::styled(screen_title(app), BOLD),
    ];
    if let Some(job) = &app.job {
        let what = job_noun(job);
        let s = if job.state.is_active() {
            format!("  [{what} running]")
        } else {
            format!("  [{what} ended]")
        };
        spans.push(Span::styled(s, Style::new().fg(Color::Yellow)));
    }
    f.render_widget(Line::from(spans), area);
}

/// "rescue", "imaging", ...: what the title bar calls a job.
fn job_noun(job: &Job) -> &'static str {
    match job.request.feature() {
        Feature::Rescue => "rescue",
        Feature::Image => "imaging",
        Feature::Restore => "restore",
        Feature::Clone => "clone",
        Feature::Verify => "verify",
    }
}

fn draw_status(app: &App, f: &mut Frame, area: Rect) {
    let abort_job = app
        .job
        .as_ref()
        .filter(|j| app.screen == Screen::Job && j.confirm_abort);
    let line = if let Some(job) = abort_job {
        Line::styled(
            match (&job.request, job.request.feature()) {
                (JobRequest::Rescue(_), _) => {
                    "Stop the rescue? The mapfile is saved, you can resume later. y = stop, n = go on"
                }
                (_, Feature::Verify) => "Stop verifying? y = stop, n = go on",
                _ => "Abort? What was written so far is INCOMPLETE. y = abort, n = go on",
            },
            WARN,
        )
    } else if let Some(s) = &app.status {
        let (mark, st) = if s.is_error {
            ("! ", WARN)
        } else {
            ("i ", BOLD)
        };
        Line::from(vec![
            Span::styled(mark, st),
            Span::styled(s.text.clone(), st),
        ])
    } else {
        Line::raw("")
    };
    f.render_widget(Paragraph::new(line).wrap(Wrap { trim: true }), area);
}

fn footer_keys(app: &App) -> Vec<(&'static str, &'static str)> {
    let typing_disk =
        app.screen == Screen::Confirm && matches!(app.flow.target, Some(Target::Disk(_)));
    match app.screen {
        Screen::Menu => vec![
            ("↑↓/jk", "move"),
            ("Enter", "open"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Screen::Disks => vec![
            ("↑↓/jk", "move"),
            ("r", "refresh"),
            ("Esc", "back"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Screen::Source | Screen::Dest => vec![
            ("↑↓/jk", "move"),
            ("Enter", "choose"),
            ("r", "refresh"),
            ("Esc", "back"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Screen::ImagePath => vec![
            ("type", "the path"),
            ("Tab", "browse"),
            ("Backspace", "erase"),
            ("Enter", "accept"),
            ("Esc", "back"),
        ],
        Screen::MapfilePath => vec![
            ("type", "the path"),
            ("Tab", "browse"),
            ("Backspace", "erase"),
            ("Enter", "accept"),
            ("Esc", "back"),
        ],
        Screen::Mapfile => vec![
            ("Enter", "continue"),
            ("e", "other path"),
            ("Esc", "back"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Screen::Options => vec![
            ("↑↓", "move"),
            ("Space/←→", "change"),
            ("Enter", "continue"),
            ("Esc", "back"),
            ("?", "help"),
        ],
        Screen::Confirm if typing_disk => vec![
            ("type", "the disk's name"),
            ("Enter", "START"),
            ("Esc", "back"),
        ],
        Screen::Confirm => vec![
            ("Enter/y", "START"),
            ("Esc", "back"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Screen::Job => match &app.job {
            Some(j) if j.confirm_abort => vec![("y", "stop"), ("other key", "keep going")],
            Some(j) if j.state == JobState::Paused => {
                vec![
                    ("p/r", "resume"),
                    ("a", "abort"),
                    ("Esc", "menu (keeps running)"),
                    ("?", "help"),
                ]
            }
            Some(j) if j.state.is_active() => {
                vec![
                    ("p", "pause"),
                    ("a", "abort"),
                    ("Esc", "menu (keeps running)"),
                    ("?", "help"),
                ]
            }
            Some(j)
                if matches!(j.request, JobRequest::Rescue(_))
                    && !matches!(j.state, JobState::Failed(_)) =>
            {
                vec![
                    ("Enter", "result and next steps"),
                    ("Esc", "menu"),
                    ("?", "help"),
                ]
            }
            _ => vec![("Enter/Esc", "back to menu"), ("?", "help")],
        },
        Screen::SystemInfo => {
            vec![("Esc", "back"), ("?", "help"), ("q", "quit")]
        }
        Screen::ImgPath
        | Screen::ImgInfo
        | Screen::ImgTarget
        | Screen::ImgOptions
        | Screen::ImgConfirm => imgui::footer(app),
        Screen::Places | Screen::Browse => placesui::footer(app),
        Screen::Result
        | Screen::ResultOpen
        | Screen::CopyPart
        | Screen::CopyConfirm
        | Screen::BrowsePath => resultui::footer(app),
    }
}

fn draw_footer(app: &App, f: &mut Frame, area: Rect) {
    let mut spans = Vec::new();
    for (k, what) in footer_keys(app) {
        spans.push(Span::styled(format!(" {k} "), SEL));
        spans.push(Span::raw(format!(" {what} ")));
    }
    f.render_widget(Line::from(spans), area);
}

fn help_lines(app: &App) -> Vec<Line<'static>> {
    let mut l = vec![
        Line::styled("Keys", BOLD),
        Line::raw("  ↑ ↓ or j k   move          Enter   choose / continue"),
        Line::raw("  Esc          go back       q       quit (not while a job runs)"),
        Line::raw("  ?            this help     r       re-read the list of disks"),
        Line::raw(""),
    ];
    let specific: &[&str] = match app.screen {
        Screen::Job
            if app
                .job
                .as_ref()
                .is_some_and(|j| !matches!(j.request, JobRequest::Rescue(_))) =>
        {
            &[
                "Three rates are shown: reading the input, (de)compressing, writing the",
                "output. The slowest one is the bottleneck. p pauses and resumes; a aborts",
                "(a partly written image or disk is not usable). Esc returns to the menu",
                "while the job goes on.",
            ]
        }
        Screen::Job => &[
            "The block map shows the whole source disk. Each cell is a slice of it,",
            "drawn with the worst state found inside: one bad sector marks its cell.",
            "p pauses and resumes; a stops (the mapfile is saved: run the same rescue",
            "again to continue). Esc returns to the menu while the rescue goes on.",
        ],
        Screen::Confirm => &[
            "Check both sides: the left disk is only read, the right side is",
            "overwritten. For a disk target, type its name (like sdb) to confirm.",
        ],
        Screen::Dest | Screen::ImgTarget => &[
            "Best: an image file on a healthy disk. Disks that are the source, the",
            "disk salvor runs from, mounted, or too small cannot be chosen.",
        ],
        Screen::ImgPath if app.flow.feature == Feature::Image => &[
            "A name ending in .img or .raw writes a plain (sparse) copy of the disk;",
            "anything else, like .img.zst, a compressed salvor image with checksums.",
        ],
        Screen::Options => &[
            "The defaults are right for most failing disks. Space or arrows change",
            "the highlighted option.",
        ],
        Screen::Places | Screen::Browse => placesui::help(app),
        Screen::Result | Screen::CopyPart | Screen::CopyConfirm => resultui::help(),
        Screen::ImagePath | Screen::ImgPath => &[
            "Tab lists the filesystems of the other disks, mounts one if needed and",
            "lets you browse to the folder and file instead of typing the path.",
        ],
        _ => &[
            "salvor never writes to the disk being rescued. Anything that will be",
            "overwritten is named with its model, serial and size before it starts.",
        ],
    };
    l.extend(specific.iter().map(|s| Line::raw(*s)));
    l.push(Line::raw(""));
    l.push(Line::styled("Press any key to close", DIM));
    l
}

fn draw_help(app: &App, f: &mut Frame) {
    let lines = help_lines(app);
    let area = f.area();
    let w = area.width.min(76);
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(" Help "))
            .wrap(Wrap { trim: false }),
        r,
    );
}

fn menu_label(app: &App, item: MenuItem) -> (String, &'static str) {
    let feature = match item {
        MenuItem::Rescue => Some(Feature::Rescue),
        MenuItem::Flow(f) => Some(f),
        _ => None,
    };
    if let Some(j) = app
        .job
        .as_ref()
        .filter(|j| Some(j.request.feature()) == feature)
    {
        let what = job_noun(j);
        return if j.state.is_active() {
            (format!("Show the running {what}"), "")
        } else {
            (format!("Show the last {what}"), "")
        };
    }
    match item {
        MenuItem::Rescue => (
            "Rescue a failing disk".into(),
            "copy what can still be read; resumable",
        ),
        MenuItem::Disks => (
            "Disks".into(),
            "every disk with model, serial, size, mounts",
        ),
        MenuItem::Flow(f) => (
            f.title().into(),
            match f {
                Feature::Image => "into a compressed, checksummed image file",
                Feature::Restore => "write an image back onto a disk",
                Feature::Clone => "copy a healthy disk onto another disk",
                _ => "check every chunk of an image",
            },
        ),
        MenuItem::BrowseImage => (
            "Browse an image".into(),
            "copy files out of an image's partition",
        ),
        MenuItem::Result => (
            "Rescue result".into(),
            "damaged files of a rescue; retry; copy files",
        ),
        MenuItem::SystemInfo => ("System info".into(), "kernel, memory, Secure Boot"),
        MenuItem::Quit => ("Quit".into(), "back to the shell"),
    }
}

fn draw_menu(app: &App, f: &mut Frame, area: Rect) {
    let [list, info] = Layout::vertical([
        Constraint::Length(MENU.len() as u16 + 2),
        Constraint::Min(0),
    ])
    .areas(area);
    let lines: Vec<Line> = MENU
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let (label, hint) = menu_label(app, *item);
            let sel = i == app.menu_cursor;
            let mark = if sel { "> " } else { "  " };
            let style = if sel { SEL } else { Style::new() };
            Line::from(vec![
                Span::styled(format!("{mark}{:<26}", label), style),
                Span::raw(format!("  {hint}")),
            ])
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" What do you want to do? ")),
        list,
    );
    let n = app.disks.len();
    let mut text = vec![
        Line::raw(""),
        Line::raw(format!(
            "  {n} disk{} found. salvor never writes to a disk you rescue from.",
            if n == 1 { "" } else { "s" }
        )),
        Line::raw("  Before anything is overwritten you see it named by model, serial and size."),
    ];
    if let Some(e) = &app.disks_error {
        text.push(Line::styled(format!("  Could not list disks: {e}"), WARN));
    }
    let room = usize::from(info.height).saturating_sub(text.len());
    // All disks if they fit; otherwise one row less and a "+N more" line.
    let shown = if n <= room { n } else { room.saturating_sub(1) };
    let w = usize::from(info.width);
    for d in &app.disks[..shown] {
        text.push(Line::styled(menu_disk_text(d, w), LISTED));
    }
    if shown < n {
        text.push(Line::styled(
            format!("  +{} more (see Disks)", n - shown),
            DIM,
        ));
    }
    f.render_widget(Paragraph::new(text), info);
}

/// A style for text that must reach a serial console verbatim: a cell styled unlike a blank one
/// is always sent, so the gaps between words arrive as spaces instead of cursor moves (the boot
/// test reads the console with the escape sequences stripped).
const LISTED: Style = Style::new().fg(Color::Gray);

/// One disk on the first screen, `w` wide: `  name size transport model serial S flags`. The model
/// is cut first so that the serial and the flags (BOOT, mounted) stay visible.
fn menu_disk_text(d: &DiskRow, w: usize) -> String {
    let what = match &d.backing_file {
        Some(b) => format!("file {}", b.display()),
        None => d.model_or_unknown().to_string(),
    };
    let head = format!(
        "  {:<7} {:>8}  {:<6}  ",
        d.name(),
        format_bytes(d.size),
        d.transport
    );
    let mut tail = format!("  serial {}", d.serial.as_deref().unwrap_or("-"));
    let flags = disk_flags(d);
    if !flags.is_empty() {
        tail.push_str("  ");
        tail.push_str(&flags);
    }
    let room = w.saturating_sub(head.chars().count() + tail.chars().count());
    let n = what.chars().count();
    let what = if n <= room {
        what
    } else {
        fit(&what, room.max(8))
    };
    fit(&format!("{head}{what}{tail}"), w)
}

fn disk_flags(d: &DiskRow) -> String {
    let mut v = Vec::new();
    if d.is_boot {
        v.push("BOOT");
    }
    if d.is_mounted() {
        v.push("mounted");
    }
    if d.read_only {
        v.push("ro");
    }
    v.join(" ")
}

/// One disk as a table row of width `w`.
fn disk_line(d: &DiskRow, w: usize, selected: bool, note: Option<&str>) -> Line<'static> {
    let mark = if selected { "> " } else { "  " };
    let flags = match note {
        Some(n) => format!("x {n}"),
        None => disk_flags(d),
    };
    let flags_w = 14;
    let fixed = 2 + 9 + 9 + 7 + flags_w;
    let rest = w.saturating_sub(fixed);
    let model_w = rest * 3 / 5;
    let serial_w = rest - model_w;
    let model = match &d.backing_file {
        Some(b) => format!("file {}", b.display()),
        None => d.model_or_unknown().to_string(),
    };
    let text = format!(
        "{mark}{} {} {} {} {} {}",
        fit(&d.name(), 8),
        fit(&model, model_w.saturating_sub(1)),
        fit(
            d.serial.as_deref().unwrap_or("-"),
            serial_w.saturating_sub(1)
        ),
        fit(&format_bytes(d.size), 8),
        fit(&d.transport, 6),
        fit(&flags, flags_w.saturating_sub(1)),
    );
    let style = if selected {
        SEL
    } else if note.is_some() {
        DIM
    } else if d.is_boot {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    };
    Line::styled(text, style)
}

fn disk_header(w: usize, note: bool) -> Line<'static> {
    let flags_w = 14;
    let rest = w.saturating_sub(2 + 9 + 9 + 7 + flags_w);
    let model_w = rest * 3 / 5;
    let serial_w = rest - model_w;
    Line::styled(
        format!(
            "  {} {} {} {} {} {}",
            fit("NAME", 8),
            fit("MODEL", model_w.saturating_sub(1)),
            fit("SERIAL", serial_w.saturating_sub(1)),
            fit("SIZE", 8),
            fit("BUS", 6),
            fit(
                if note { "NOT ALLOWED" } else { "FLAGS" },
                flags_w.saturating_sub(1)
            ),
        ),
        BOLD,
    )
}

/// The detail lines of one disk: identity, partitions, mounts.
/// `narrow` puts one fact per line (the confirmation screen's half-width panels).
pub(super) fn disk_details(d: &DiskRow, narrow: bool) -> Vec<Line<'static>> {
    let facts = [
        ("Model: ", d.model_or_unknown().to_string()),
        ("Serial: ", d.serial_or_unknown().to_string()),
        (
            "Size: ",
            format!("{} ({} bytes)", format_bytes(d.size), d.size),
        ),
        ("Bus: ", d.transport.clone()),
        ("Removable: ", yes_no(d.removable).to_string()),
    ];
    let groups: &[&[usize]] = if narrow {
        &[&[0], &[1], &[2], &[3, 4]]
    } else {
        &[&[0, 1], &[2, 3, 4]]
    };
    let mut l: Vec<Line<'static>> = groups
        .iter()
        .map(|g| {
            let mut spans = Vec::new();
            for (n, &i) in g.iter().enumerate() {
                let (k, v) = &facts[i];
                let k = if n > 0 {
                    format!("   {k}")
                } else {
                    (*k).to_string()
                };
                spans.push(Span::styled(k, BOLD));
                spans.push(Span::raw(v.clone()));
            }
            Line::from(spans)
        })
        .collect();
    if let Some(b) = &d.backing_file {
        l.push(Line::raw(format!(
            "Loop device backed by the file {}",
            b.display()
        )));
    }
    if d.is_boot {
        l.push(Line::styled(
            "BOOT DISK: salvor is running from this disk; it is never offered as a target",
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ));
    }
    if d.read_only {
        l.push(Line::raw("Read-only device"));
    }
    for m in &d.mountpoints {
        l.push(Line::raw(format!("Mounted at {}", m.display())));
    }
    if d.partitions.is_empty() {
        l.push(Line::styled("No partitions", DIM));
    }
    for p in &d.partitions {
        let name = p
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // "…" while a probe is under way; "?" when nothing is known.
        let fs = match (&p.fstype, p.probing) {
            (Some(f), _) => f.clone(),
            (None, Some(true)) => "…".into(),
            (None, Some(false)) => "? (no answer)".into(),
            (None, None) => "?".into(),
        };
        let mut s = format!("  {name}  {}  {fs}", format_bytes(p.size));
        if let Some(lab) = p.fs_label.as_ref().or(p.label.as_ref()) {
            s.push_str(&format!("  \"{lab}\""));
        }
        if let Some(g) = p
            .gpt_name
            .as_ref()
            .filter(|g| Some(*g) != p.fs_label.as_ref())
        {
            s.push_str(&format!("  GPT name \"{g}\""));
        }
        if let Some(m) = p.mountpoints.first() {
            s.push_str(&format!("  mounted at {}", m.display()));
        }
        l.push(Line::raw(s));
    }
    l
}

/// A row of [`draw_disk_table`]: a disk (or, as `None`, the "image file" choice) and, when it
/// cannot be chosen, why (a short form for the table, a sentence for the details).
pub(super) type DiskTableRow<'a> = (Option<&'a DiskRow>, Option<(String, String)>);

/// A bordered table of disks with a details panel for the highlighted one.
#[allow(clippy::too_many_arguments)]
pub(super) fn draw_disk_table(
    app: &App,
    f: &mut Frame,
    area: Rect,
    title: &str,
    rows: &[DiskTableRow],
    cursor: usize,
    detail_title: &str,
    choosing_target: bool,
) {
    let max_list = (area.height / 2).max(5);
    let list_h = (rows.len() as u16 + 3).min(max_list).min(area.height);
    let [list, detail] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Min(0)]).areas(area);
    let inner_w = usize::from(list.width.saturating_sub(2));
    let visible = usize::from(list.height.saturating_sub(3));
    let first = scroll(cursor, visible);
    let any_note = rows.iter().any(|(_, n)| n.is_some());
    let mut lines = vec![disk_header(inner_w, any_note)];
    for (i, (d, note)) in rows.iter().enumerate().skip(first).take(visible) {
        let sel = i == cursor;
        match d {
            Some(d) => lines.push(disk_line(
                d,
                inner_w,
                sel,
                note.as_ref().map(|(short, _)| short.as_str()),
            )),
            None => {
                let mark = if sel { "> " } else { "  " };
                lines.push(Line::styled(
                    fit(
                        &format!("{mark}[ An image file on a healthy disk: you type its path ]"),
                        inner_w,
                    ),
                    if sel { SEL } else { GOOD },
                ));
            }
        }
    }
    if rows.is_empty() {
        lines.push(Line::styled(
            match &app.disks_error {
                Some(e) => format!("  Could not list disks: {e}"),
                None => "  No disks found. Plug the disk in and press r.".into(),
            },
            WARN,
        ));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(" {title} "))),
        list,
    );
    let detail_lines = match rows.get(cursor) {
        Some((Some(d), note)) => {
            let mut l = Vec::new();
            if let Some((_, why)) = note {
                l.push(Line::styled(format!("Cannot be the target: {why}"), WARN));
            } else if choosing_target {
                l.push(Line::styled(
                    "If chosen, EVERYTHING on this disk is overwritten",
                    WARN,
                ));
            }
            l.extend(disk_details(&app.with_facts(d), false));
            l
        }
        Some((None, _)) => vec![
            Line::raw("Save everything that can be read into a file (an image of the disk)."),
            Line::raw("The file must be on another, healthy disk that is mounted here."),
            Line::raw(
                "This is the safest choice: nothing existing is overwritten except that file.",
            ),
        ],
        None => Vec::new(),
    };
    f.render_widget(
        Paragraph::new(detail_lines)
            .block(Block::bordered().title(format!(" {detail_title} ")))
            .wrap(Wrap { trim: false }),
        detail,
    );
}

fn draw_disks(app: &App, f: &mut Frame, area: Rect) {
    let rows: Vec<_> = app.disks.iter().map(|d| (Some(d), None)).collect();
    let title = format!(
        "{} disk{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    draw_disk_table(
        app,
        f,
        area,
        &title,
        &rows,
        app.disk_cursor,
        "Details",
        false,
    );
}

fn draw_source(app: &App, f: &mut Frame, area: Rect) {
    let rows: Vec<_> = app.disks.iter().map(|d| (Some(d), None)).collect();
    let title = match app.flow.feature {
        Feature::Image => "Choose the disk to image: it is only READ, never written",
        Feature::Clone => "Choose the disk to copy: it is only READ, never written",
        _ => "Choose the disk to rescue: it is only READ, never written",
    };
    draw_disk_table(
        app,
        f,
        area,
        title,
        &rows,
        app.disk_cursor,
        "This disk",
        false,
    );
}

fn source_line(app: &App) -> Line<'static> {
    let s = app
        .flow
        .source
        .as_ref()
        .map(DiskRow::identity_line)
        .unwrap_or_default();
    Line::from(vec![Span::styled("Reading from: ", GOOD), Span::raw(s)])
}

fn draw_dest(app: &App, f: &mut Frame, area: Rect) {
    let [top, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    f.render_widget(source_line(app), top);
    let mut rows: Vec<DiskTableRow> = vec![(None, None)];
    rows.extend(app.disks.iter().map(|d| {
        (
            Some(d),
            app.target_refusal(d)
                .map(|(short, why)| (short.to_string(), why)),
        )
    }));
    draw_disk_table(
        app,
        f,
        rest,
        "Choose the target: it will be OVERWRITTEN",
        &rows,
        app.flow.dest_cursor,
        "Target",
        true,
    );
}

pub(super) fn input_box(title: &str, text: &str) -> Paragraph<'static> {
    Paragraph::new(Line::from(vec![
        Span::raw(text.to_string()),
        Span::styled("_", SEL),
    ]))
    .block(Block::bordered().title(format!(" {title} ")))
}

/// Mounted filesystems that are not on the source: where an image could go.
pub(super) fn writable_places(app: &App) -> Vec<Line<'static>> {
    let mut l = Vec::new();
    for (m, d, p) in app.writable_mounts() {
        let ident = format!("{}, {}", d.model_or_unknown(), format_bytes(d.size));
        l.push(Line::raw(match p {
            None => format!("  {}  ({}: {ident})", m.display(), d.name()),
            Some(p) => {
                let name = p
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!(
                    "  {}  ({name} {} {}: {ident})",
                    m.display(),
                    p.fstype.as_deref().unwrap_or("?"),
                    format_bytes(p.size)
                )
            }
        }));
    }
    if l.is_empty() {
        l.push(Line::styled(
            "  (none yet: press Tab to mount a disk's partition and browse it)",
            DIM,
        ));
    }
    l
}

fn draw_image_path(app: &App, f: &mut Frame, area: Rect) {
    let [top, input, rest] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(area);
    let need = app.flow.source.as_ref().map_or(0, |s| s.size);
    f.render_widget(
        Paragraph::new(vec![
            source_line(app),
            Line::raw(format!(
                "Type the full path of the image file. It needs up to {} of free space",
                format_bytes(need)
            )),
            Line::raw("on a healthy disk. A mapfile named like it plus .map goes beside it."),
        ]),
        top,
    );
    f.render_widget(input_box("Image file path", &app.flow.input), input);
    let mut l = vec![Line::styled(
        "Mounted places (not on the source disk):",
        BOLD,
    )];
    l.extend(writable_places(app));
    f.render_widget(Paragraph::new(l).wrap(Wrap { trim: false }), rest);
}

fn draw_mapfile(app: &App, f: &mut Frame, area: Rect) {
    let fl = &app.flow;
    let mut l = vec![
        source_line(app),
        Line::raw(""),
        Line::raw("salvor writes down what it has read in a mapfile. If the rescue stops (power"),
        Line::raw("cut, disk unplugged, you press a), starting it again with the same mapfile"),
        Line::raw("continues where it stopped and never reads good areas twice."),
        Line::raw(""),
        Line::from(vec![
            Span::styled("Mapfile: ", BOLD),
            Span::raw(fl.mapfile.display().to_string()),
        ]),
        Line::raw(""),
    ];
    match &fl.mapfile_view {
        MapfileView::Existing { summary, mismatch } => {
            let t = &summary.totals;
            let left = t.non_tried + t.non_trimmed + t.non_scraped;
            let of_disk = match &summary.source {
                Some(s) => format!("the disk {s}"),
                None => "a disk (a GNU ddrescue mapfile: it does not say which)".into(),
            };
            l.push(Line::styled(
                "A mapfile from an earlier rescue is already there.",
                GOOD,
            ));
            l.push(Line::raw(format!("It records a rescue of {of_disk}:")));
            l.push(Line::raw(format!(
                "  rescued {}, bad {}, not read yet {} (of {}).",
                format_bytes(t.finished),
                format_bytes(t.bad_sector),
                format_bytes(left),
                format_bytes(summary.size)
            )));
            match mismatch {
                Some(why) => {
                    l.push(Line::styled(
                        format!("It belongs to ANOTHER disk ({why})."),
                        WARN,
                    ));
                    l.push(Line::raw(
                        "Press e and choose another path for this rescue.",
                    ));
                }
                None => l.push(Line::raw(
                    "salvor will RESUME that rescue: parts already rescued are not read again.",
                )),
            }
        }
        MapfileView::Unreadable(e) => {
            l.push(Line::styled(
                format!("The file there cannot be used: {e}"),
                WARN,
            ));
            l.push(Line::raw("Press e and choose another path."));
        }
        MapfileView::New => {
            l.push(Line::raw(
                "There is no mapfile there yet: a new rescue starts.",
            ));
        }
    }
    if fl.mapfile_volatile {
        l.push(Line::raw(""));
        l.push(Line::styled(
            "Warning: this folder is in the computer's memory, not on a disk.",
            WARN,
        ));
        l.push(Line::raw(
            "It is erased when the power goes off or the computer restarts, and the rescue",
        ));
        l.push(Line::raw(
            "could then not continue where it stopped. Press e and choose a folder on a USB",
        ));
        l.push(Line::raw(
            "stick or another disk (not the one being rescued); Tab there lists disks to mount.",
        ));
    }
    f.render_widget(
        Paragraph::new(l)
            .block(Block::bordered())
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn draw_mapfile_path(app: &App, f: &mut Frame, area: Rect) {
    let [top, input, rest] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(vec![
            source_line(app),
            Line::raw("Type the full path of the mapfile (an existing one is resumed)."),
        ]),
        top,
    );
    f.render_widget(input_box("Mapfile path", &app.flow.input), input);
    let mut l = vec![Line::styled(
        "Mounted places (not on the source disk):",
        BOLD,
    )];
    l.extend(writable_places(app));
    f.render_widget(Paragraph::new(l), rest);
}

fn retry_text(n: i32) -> String {
    match n {
        -1 => "until all are read".into(),
        0 => "none".into(),
        n => n.to_string(),
    }
}

fn option_rows(c: &Choices) -> [(&'static str, String, &'static str); 5] {
    [
        (
            "Retry bad sectors",
            retry_text(c.retry_passes),
            "Extra passes over unreadable sectors at the very end. Each pass wears a dying disk.",
        ),
        (
            "Direct disk access",
            if c.direct { "on" } else { "off" }.into(),
            "Bypass the kernel's cache: finds bad sectors exactly, but can be slower.",
        ),
        (
            "Read backwards",
            if c.reverse { "on" } else { "off" }.into(),
            "Start at the end of the disk. Helps when the start makes the disk hang.",
        ),
        (
            "Scrape bad areas",
            if c.scrape { "on" } else { "off" }.into(),
            "Read around bad areas sector by sector. Off = only the easy data, faster.",
        ),
        (
            "Unused space",
            if c.skip_free { "skip" } else { "read last" }.into(),
            "Space no file uses is read after all files. Skip it to spare a dying disk.",
        ),
    ]
}

fn draw_options(app: &App, f: &mut Frame, area: Rect) {
    let mut l = vec![
        source_line(app),
        Line::raw("The defaults suit most failing disks."),
        Line::raw(""),
    ];
    for (i, (name, value, help)) in option_rows(&app.flow.choices).into_iter().enumerate() {
        let sel = i == app.flow.opt_cursor;
        let mark = if sel { "> " } else { "  " };
        l.push(Line::from(vec![
            Span::styled(format!("{mark}{name:<22}"), if sel { SEL } else { BOLD }),
            Span::styled(
                format!(" < {value} >"),
                if sel { SEL } else { Style::new() },
            ),
        ]));
        l.push(Line::styled(format!("    {help}"), DIM));
    }
    f.render_widget(
        Paragraph::new(l)
            .block(Block::bordered())
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn choices_summary(c: &Choices) -> String {
    let mut v = vec![format!("retry passes: {}", retry_text(c.retry_passes))];
    if c.direct {
        v.push("direct access".into());
    }
    if c.reverse {
        v.push("backwards".into());
    }
    if !c.scrape {
        v.push("no scraping".into());
    }
    if c.skip_free {
        v.push("unused space skipped".into());
    }
    v.join(", ")
}

fn draw_confirm(app: &App, f: &mut Frame, area: Rect) {
    let fl = &app.flow;
    let [sides, below] = Layout::vertical([Constraint::Min(6), Constraint::Length(7)]).areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(sides);
    let src_lines = fl
        .source
        .as_ref()
        .map(|d| disk_details(d, true))
        .unwrap_or_default();
    let mut src = vec![Line::styled(
        fl.source
            .as_ref()
            .map(|s| s.path.display().to_string())
            .unwrap_or_default(),
        BOLD,
    )];
    src.extend(src_lines);
    side_panel(f, left, src, Side::Read);
    let mut dst = Vec::new();
    match &fl.target {
        Some(Target::Disk(d)) => {
            dst.push(Line::styled(
                format!("{}: EVERYTHING ON IT", d.path.display()),
                WARN,
            ));
            dst.extend(disk_details(d, true));
        }
        Some(Target::Image(p)) => {
            dst.push(Line::styled(format!("Image file {}", p.display()), WARN));
            if fl.image_exists {
                dst.push(Line::raw(
                    "The file exists: rescued data is written into it.",
                ));
            } else {
                dst.push(Line::raw("A new file is created."));
            }
            if let Some(d) = app.disk_holding(p) {
                dst.push(Line::raw(format!("On {}", d.identity_line())));
            }
        }
        None => {}
    }
    side_panel(f, right, dst, Side::Overwritten);
    let resume = if fl.mapfile_exists {
        "resume the earlier rescue"
    } else {
        "new rescue"
    };
    let mut l = vec![
        Line::from(vec![
            Span::styled("Mapfile: ", BOLD),
            Span::raw(format!("{} ({resume})", fl.mapfile.display())),
        ]),
        Line::from(vec![
            Span::styled("Options: ", BOLD),
            Span::raw(choices_summary(&fl.choices)),
        ]),
        Line::raw(""),
    ];
    let prompt = match &fl.target {
        Some(Target::Disk(d)) => {
            l.push(Line::styled(
                format!(
                    "Everything on {} will be destroyed. To go on, type its name: {}",
                    d.path.display(),
                    d.name()
                ),
                WARN,
            ));
            Some(input_box("Type the target's name, then Enter", &fl.input))
        }
        _ => {
            l.push(Line::styled(
                "Press Enter (or y) to start the rescue, Esc to go back.",
                BOLD,
            ));
            None
        }
    };
    let [text, input] =
        Layout::vertical([Constraint::Length(4), Constraint::Length(3)]).areas(below);
    f.render_widget(Paragraph::new(l).wrap(Wrap { trim: false }), text);
    if let Some(p) = prompt {
        f.render_widget(p, input);
    }
}

pub(super) fn state_span(job: &Job) -> Span<'static> {
    let waiting = job.snapshot.as_ref().is_some_and(|s| s.waiting_for_device);
    if let JobRequest::Image(r) = &job.request {
        return match &job.state {
            JobState::Finished { .. } => Span::styled("Finished OK", GOOD),
            JobState::Stopped if r.feature == Feature::Verify => {
                Span::styled("Stopped before the end", BOLD)
            }
            JobState::Stopped => Span::styled("ABORTED: the output is incomplete", WARN),
            JobState::Stopping => Span::styled("stopping...", BOLD),
            JobState::Failed(_) if job.image.bad_chunk.is_some() => {
                Span::styled("! BAD: the image is damaged", WARN)
            }
            _ => rescue_state_span(job, false),
        };
    }
    rescue_state_span(job, waiting)
}

fn rescue_state_span(job: &Job, waiting: bool) -> Span<'static> {
    match &job.state {
        _ if waiting && job.state.is_active() => {
            Span::styled("! WAITING FOR THE SOURCE TO COME BACK", WARN)
        }
        JobState::Starting => Span::styled("starting...", BOLD),
        JobState::Running => Span::styled("> running", GOOD),
        JobState::Paused => Span::styled(
            "|| PAUSED",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
        JobState::Stopping => Span::styled("stopping, saving the mapfile...", BOLD),
        JobState::Finished { complete } => {
            let bad = job.snapshot.as_ref().map_or(0, |s| s.totals.bad_sector);
            let pending = job.snapshot.as_ref().map_or(0, |s| s.totals.pending());
            if bad == 0 && pending == 0 && *complete {
                Span::styled("Finished: every byte rescued", GOOD)
            } else if bad > 0 {
                Span::styled(format!("Finished: {} unreadable", format_bytes(bad)), WARN)
            } else {
                Span::styled("Finished: some areas not tried", BOLD)
            }
        }
        JobState::Stopped => Span::styled(
            "Stopped: the mapfile is saved; start the same rescue to resume",
            BOLD,
        ),
        JobState::Failed(_) => Span::styled("! FAILED: see the log", WARN),
    }
}

fn phase_short(p: crate::mapfile::Phase) -> &'static str {
    use crate::mapfile::Phase;
    match p {
        Phase::Copying => "copying",
        Phase::Trimming => "trimming",
        Phase::Scraping => "scraping",
        Phase::Retrying => "retrying",
        Phase::Filling => "filling",
        Phase::Generating => "generating",
        Phase::Finished => "finished",
    }
}

pub(super) fn kv(k: &str, v: String) -> Line<'static> {
    Line::from(vec![Span::styled(format!("{k:<10}"), BOLD), Span::raw(v)])
}

fn remaining_text(r: Option<(Duration, Duration)>) -> String {
    match r {
        None => "unknown yet".into(),
        Some((lo, hi)) if lo == hi => format_duration(lo),
        Some((lo, hi)) if hi == Duration::MAX => format!("at least {}", format_duration(lo)),
        Some((lo, hi)) => format!("{} to {}", format_duration(lo), format_duration(hi)),
    }
}

/// The "From:" and "To:" lines at the top of the job view.
pub(super) fn draw_from_to(job: &Job, f: &mut Frame, from: Rect, to: Rect) {
    f.render_widget(
        Line::from(vec![
            Span::styled("From: ", GOOD),
            Span::raw(job.request.from_line()),
        ]),
        from,
    );
    f.render_widget(
        Line::from(vec![
            Span::styled("To:   ", WARN),
            Span::raw(job.request.to_line()),
        ]),
        to,
    );
}

/// The job's log, newest lines at the bottom.
pub(super) fn draw_log(job: &Job, f: &mut Frame, log: Rect) {
    let log_block = Block::new().borders(Borders::TOP).title(" Log ");
    let visible = usize::from(log_block.inner(log).height);
    let start = job.log.len().saturating_sub(visible);
    let lines: Vec<Line> = job.log[start..]
        .iter()
        .map(|s| {
            let st = if s.contains("error")
                || s.contains("GONE")
                || s.contains("Error")
                || s.contains("BAD")
            {
                WARN
            } else {
                Style::new()
            };
            Line::styled(s.clone(), st)
        })
        .collect();
    f.render_widget(Paragraph::new(Text::from(lines)).block(log_block), log);
}

pub(super) fn log_height(area: Rect) -> u16 {
    if area.height >= 34 {
        10
    } else {
        5
    }
}

fn draw_job(app: &App, f: &mut Frame, area: Rect) {
    let Some(job) = &app.job else {
        return;
    };
    if matches!(job.request, JobRequest::Image(_)) {
        return imgui::draw_job(job, f, area);
    }
    let log_h = log_height(area);
    let [from, to, map, legend, stats, log] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(6),
        Constraint::Length(log_h),
    ])
    .areas(area);
    draw_from_to(job, f, from, to);
    let size = job.size();
    let inner_cells =
        u64::from(map.width.saturating_sub(2)) * u64::from(map.height.saturating_sub(2));
    let per_cell = if inner_cells > 0 {
        size.div_ceil(inner_cells)
    } else {
        0
    };
    let title = format!(
        " Block map: whole source, one cell = {} ",
        format_bytes(per_cell)
    );
    let block = Block::bordered().title(title);
    let inner = block.inner(map);
    f.render_widget(block, map);
    let pos = job
        .snapshot
        .as_ref()
        .filter(|_| job.state.is_active())
        .map(|s| s.pos);
    f.render_widget(
        BlockMap {
            blocks: &job.blocks,
            size,
            pos,
        },
        inner,
    );
    f.render_widget(blockmap::legend(pos.is_some()), legend);

    // The state gets the whole width: "Stopped ..." or "WAITING FOR THE SOURCE ..." must never
    // run into the right column at 80 columns.
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
    let col = usize::from(left.width).saturating_sub(10);
    let fits = |v: String| fit(&v, col).trim_end().to_string();
    let mut l = Vec::new();
    let mut r = Vec::new();
    if let Some(s) = job.shown_snapshot() {
        let t = &s.totals;
        let dir = match s.direction {
            Direction::Forwards => "fwd",
            Direction::Backwards => "back",
        };
        let paused = job.is_paused();
        l.push(kv(
            "Phase",
            fits(format!("{}, pass {} {dir}", phase_short(s.phase), s.pass)),
        ));
        l.push(kv(
            "Rescued",
            fits(format!(
                "{} of {} ({:.2}%)",
                format_bytes_like(t.finished, s.domain_size),
                format_bytes(s.domain_size),
                pct(t.finished, s.domain_size)
            )),
        ));
        // Bad bytes are what is still unreadable; a failed read is only an attempt (trimming
        // and scraping rescue most of what a failed read covered).
        l.push(Line::from(vec![
            Span::styled(format!("{:<10}", "Bad bytes"), BOLD),
            Span::styled(
                fits(if t.bad_sector == 0 {
                    "none so far".into()
                } else {
                    format!(
                        "{} in {} area{}",
                        format_bytes(t.bad_sector),
                        t.bad_areas,
                        if t.bad_areas == 1 { "" } else { "s" }
                    )
                }),
                if t.bad_sector > 0 { WARN } else { Style::new() },
            ),
        ]));
        l.push(kv(
            "Left",
            fits(if t.pending() == 0 {
                "nothing left to try".into()
            } else {
                format!(
                    "{} ({} near errors)",
                    format_bytes_like(t.pending(), s.domain_size),
                    format_bytes_like(t.non_trimmed + t.non_scraped, s.domain_size)
                )
            }),
        ));
        l.push(kv("Files", fits(live_files_text(job))));
        r.push(kv(
            "Rate",
            if paused {
                "paused".into()
            } else {
                fits(format!(
                    "{} now, {} avg",
                    rate(s.current_rate),
                    rate(s.average_rate)
                ))
            },
        ));
        r.push(kv(
            "Reads",
            fits(format!(
                "{}, {} failed read{}",
                s.reads,
                s.read_errors,
                if s.read_errors == 1 { "" } else { "s" }
            )),
        ));
        r.push(kv(
            "Last good",
            format!("{} ago", format_duration(s.since_last_good_read)),
        ));
        r.push(kv(
            "Elapsed",
            fits(format!(
                "{} (at {})",
                format_duration(s.elapsed),
                format_bytes_like(s.pos, s.domain_size)
            )),
        ));
        r.push(kv(
            "Time left",
            if paused {
                "paused".into()
            } else {
                fits(remaining_text(s.remaining))
            },
        ));
    } else {
        l.push(Line::raw("Opening the source..."));
    }
    f.render_widget(Paragraph::new(l), left);
    f.render_widget(Paragraph::new(r), right);
    draw_log(job, f, log);
}

/// The damaged-files count of the job screen ([`super::livefiles`]).
fn live_files_text(job: &Job) -> String {
    let live = &job.live_files;
    match (&live.count, &live.error) {
        (_, Some(e)) => format!("not known ({e})"),
        (None, None) if live.is_pending() => "counting damaged files...".into(),
        (None, None) => "after the first mapfile save".into(),
        (Some(c), None) if c.filesystems == 0 => "no filesystem known on the copy yet".into(),
        (Some(c), None) => {
            let mut v = if c.damaged_files == 0 {
                "none damaged so far".to_string()
            } else {
                format!(
                    "{} damaged ({} lost)",
                    c.damaged_files,
                    format_bytes(c.lost_bytes)
                )
            };
            let unknown = c.damaged_dirs + c.lost_names;
            if unknown > 0 {
                v.push_str(&format!(", {unknown} dirs/names unknown"));
            }
            v
        }
    }
}

fn draw_sysinfo(app: &App, f: &mut Frame, area: Rect) {
    let Some(s) = &app.sysinfo else {
        return;
    };
    let sb = s.secure_boot.map_or("unknown", |b| b.describe());
    let l = vec![
        kv("salvor", s.version.clone()),
        kv("Kernel", s.kernel.clone()),
        kv("CPU", s.cpu.clone()),
        kv(
            "Memory",
            format!(
                "{} total, {} available",
                format_bytes(s.mem_total),
                format_bytes(s.mem_available)
            ),
        ),
        Line::from(vec![
            Span::styled(format!("{:<10}", "Secure Boot"), BOLD),
            Span::raw(format!(" {sb}")),
        ]),
        kv(
            "Lockdown",
            s.lockdown.clone().unwrap_or_else(|| "not supported".into()),
        ),
        kv("Disks", app.disks.len().to_string()),
    ];
    f.render_widget(
        Paragraph::new(l)
            .block(Block::bordered())
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// Which side of a confirmation screen a panel shows.
pub(super) enum Side {
    Read,
    Overwritten,
}

/// One of the two panels of a confirmation screen: what is read (never written) and what will
/// be overwritten, each with its own title and colour so the two cannot be confused.
pub(super) fn side_panel(f: &mut Frame, area: Rect, lines: Vec<Line<'static>>, side: Side) {
    let (title, style) = match side {
        Side::Read => (" READ FROM (never written) ", GOOD),
        Side::Overwritten => (" WILL BE OVERWRITTEN ", WARN),
    };
    f.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(title).border_style(style))
            .wrap(Wrap { trim: false }),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_and_pads() {
        assert_eq!(fit("abc", 5), "abc  ");
        assert_eq!(fit("abcdef", 4), "abc~");
        assert_eq!(fit("abc", 0), "");
    }

    #[test]
    fn scrolling_keeps_cursor_visible() {
        assert_eq!(scroll(0, 5), 0);
        assert_eq!(scroll(4, 5), 0);
        assert_eq!(scroll(7, 5), 3);
    }
}
