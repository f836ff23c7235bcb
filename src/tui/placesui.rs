//! Drawing the places list and the directory browser. Reads the [`App`] only.

use super::app::{App, Feature, Screen};
use super::places::{PickMode, Place};
use super::ui::{fit, input_box, BOLD, DIM, GOOD, SEL, WARN};
use crate::units::format_bytes;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

pub fn title(app: &App) -> String {
    let step = match (app.picker.back, app.flow.feature) {
        _ if app.picker.mode == PickMode::Select => "Copy my files 2/4: what to copy",
        _ if app.picker.mode == PickMode::Folder => "Copy my files 3/4: into which folder",
        (Some(Screen::ImagePath), _) => "Rescue 2/5: image file",
        (Some(Screen::BrowsePath), _) => "Browse an image: which image?",
        (_, Feature::Image) => "Image 2/4: image file",
        (_, Feature::Restore) => "Restore 1/5: which image?",
        _ => "Verify 1/2: which image?",
    };
    let what = if app.screen == Screen::Places {
        "places"
    } else {
        "browse"
    };
    format!("{step} - {what}")
}

pub fn footer(app: &App) -> Vec<(&'static str, &'static str)> {
    let write = app.picker.mode == PickMode::Write;
    match app.screen {
        Screen::Places => vec![
            ("↑↓/jk", "move"),
            ("Enter", "open (mounts)"),
            ("u", "unmount"),
            ("r", "refresh"),
            ("Esc", "back"),
        ],
        _ if app.picker.mode == PickMode::Select => vec![
            ("↑↓", "move"),
            ("Space", "mark"),
            ("Enter", "open"),
            ("Backspace", "up"),
            ("c", "copy marked"),
            ("Esc", "back"),
        ],
        _ if app.picker.mode == PickMode::Folder => vec![
            ("↑↓", "move"),
            ("Enter", "open"),
            ("Backspace", "up"),
            ("c", "copy here"),
            ("Esc", "places"),
        ],
        _ if app.picker.naming => vec![
            ("type", "the file name"),
            ("Enter", "save here"),
            ("Esc", "back"),
        ],
        _ if write => vec![
            ("↑↓", "move"),
            ("Enter", "open"),
            ("Backspace", "up"),
            ("s", "save here"),
            ("Esc", "places"),
        ],
        _ => vec![
            ("↑↓", "move"),
            ("Enter", "open / pick"),
            ("Backspace", "up"),
            ("Esc", "places"),
        ],
    }
}

pub fn help(app: &App) -> &'static [&'static str] {
    match app.screen {
        Screen::Places => &[
            "Filesystems on the other disks. Enter on one that is not mounted mounts",
            "it under /mnt (read-write to save a file, read-only to read an image).",
            "u unmounts what salvor mounted; leaving salvor unmounts it all.",
        ],
        _ => &[
            "Enter opens a folder; Backspace or .. goes up. To save, go to the folder",
            "and press s, then type the file name. To read, press Enter on the file.",
        ],
    }
}

/// `  WHERE  FS  SIZE  FREE  DISK` with the widths of [`place_line`].
fn columns(w: usize) -> (usize, usize) {
    // mark 2, fs 7, size 8, free 8, four spaces; the place and the disk share the rest.
    let rest = w.saturating_sub(2 + 7 + 8 + 8 + 4);
    let place_w = (rest * 2 / 5).max(20);
    (place_w, rest.saturating_sub(place_w))
}

fn place_line(p: &Place, w: usize, sel: bool) -> Line<'static> {
    let (place_w, disk_w) = columns(w);
    let mark = if sel { "> " } else { "  " };
    let wh = match &p.mount {
        Some(m) => m.display().to_string(),
        None => format!("{} (not mounted)", p.name()),
    };
    let free = match (&p.mount, p.free) {
        (Some(_), Some(f)) => format_bytes(f),
        _ => "-".into(),
    };
    let disk = match &p.note {
        Some(n) => format!("x {n}"),
        None => p.disk.clone(),
    };
    let text = format!(
        "{mark}{} {} {:>8} {:>8} {}",
        fit(&wh, place_w),
        fit(p.fstype.as_deref().unwrap_or("?"), 7),
        fit(&format_bytes(p.size), 8).trim_end(),
        free,
        fit(&disk, disk_w)
    );
    let style = if sel {
        SEL
    } else if p.note.is_some() {
        DIM
    } else {
        Style::new()
    };
    Line::styled(fit(&text, w), style)
}

fn place_details(app: &App, p: &Place) -> Vec<Line<'static>> {
    let write = app.picker.mode == PickMode::Write;
    let mut l = Vec::new();
    if let Some(e) = &app.picker.error {
        l.push(Line::styled(e.clone(), WARN));
        l.push(Line::raw(""));
    }
    let mut what = format!("{}  {}", p.dev.display(), format_bytes(p.size));
    if let Some(f) = &p.fstype {
        what.push_str(&format!("  {f}"));
    }
    if let Some(lab) = &p.label {
        what.push_str(&format!("  \"{lab}\""));
    }
    l.push(Line::styled(what, BOLD));
    l.push(Line::raw(format!("On {}", p.disk)));
    match (&p.note, &p.mount) {
        (Some(n), _) => l.push(Line::styled(format!("Cannot be used: {n}"), WARN)),
        (None, Some(m)) => {
            let by = if p.ours {
                "mounted by salvor (u unmounts it)"
            } else {
                "mounted"
            };
            l.push(Line::raw(format!("{} at {}", by, m.display())));
            if let Some(f) = p.free {
                l.push(Line::raw(format!("{} free", format_bytes(f))));
            }
            l.push(Line::styled(format!("Enter: browse {}", m.display()), GOOD));
        }
        (None, None) => {
            l.push(Line::styled(
                format!(
                    "Enter: mount it {} at {} and browse it",
                    if write { "read-write" } else { "read-only" },
                    crate::mount::mount_point(&p.dev).display()
                ),
                GOOD,
            ));
        }
    }
    l
}

pub fn draw_places(app: &App, f: &mut Frame, area: Rect) {
    let pk = &app.picker;
    let [top, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let intro = match pk.mode {
        PickMode::Write => "Where should the file go? A filesystem on a healthy disk:",
        PickMode::Read | PickMode::Select => "Where is the image? The filesystem that holds it:",
        PickMode::Folder => "Copy the files onto which filesystem? One on another, healthy disk:",
    };
    f.render_widget(Line::styled(intro, BOLD), top);
    let max_list = (rest.height / 2).max(5);
    let list_h = (pk.places.len() as u16 + 3).min(max_list).min(rest.height);
    let [list, detail] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Min(0)]).areas(rest);
    let w = usize::from(list.width.saturating_sub(2));
    let (place_w, disk_w) = columns(w);
    let mut lines = vec![Line::styled(
        fit(
            &format!(
                "  {} {} {:>8} {:>8} {}",
                fit("WHERE", place_w),
                fit("FS", 7),
                "SIZE",
                "FREE",
                fit("DISK", disk_w)
            ),
            w,
        ),
        BOLD,
    )];
    let visible = usize::from(list.height.saturating_sub(3));
    let first = pk.cursor.saturating_sub(visible.saturating_sub(1));
    for (i, p) in pk.places.iter().enumerate().skip(first).take(visible) {
        lines.push(place_line(p, w, i == pk.cursor));
    }
    if pk.places.is_empty() {
        lines.push(Line::styled(
            "  No filesystem on the other disks. Plug one in: the list refreshes by itself.",
            WARN,
        ));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Places ")),
        list,
    );
    let details = match pk.places.get(pk.cursor) {
        Some(p) => place_details(app, p),
        None => pk
            .error
            .iter()
            .map(|e| Line::styled(e.clone(), WARN))
            .collect(),
    };
    f.render_widget(
        Paragraph::new(details)
            .block(Block::bordered().title(" This place "))
            .wrap(Wrap { trim: false }),
        detail,
    );
}

pub fn draw_browse(app: &App, f: &mut Frame, area: Rect) {
    let pk = &app.picker;
    let write = pk.mode == PickMode::Write;
    let bottom_h = if write { 3 } else { 1 };
    let [top, list, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(bottom_h),
    ])
    .areas(area);
    let mut head = vec![
        Span::styled("Folder: ", BOLD),
        Span::raw(pk.dir.display().to_string()),
    ];
    if write {
        if let Some(free) = app.host.free_space(&pk.dir) {
            head.push(Span::styled(
                format!("  ({} free)", format_bytes(free)),
                DIM,
            ));
        }
    }
    f.render_widget(Line::from(head), top);
    let w = usize::from(list.width.saturating_sub(2));
    let visible = usize::from(list.height.saturating_sub(2));
    let first = pk.entry_cursor.saturating_sub(visible.saturating_sub(1));
    let mut lines = Vec::new();
    for (i, e) in pk.entries.iter().enumerate().skip(first).take(visible) {
        let sel = i == pk.entry_cursor && !pk.naming;
        let marked = pk.marked.iter().any(|m| {
            m.parent() == Some(pk.dir.as_path())
                && m.file_name().is_some_and(|n| n.to_string_lossy() == e.name)
        });
        let mark = match (sel, marked) {
            (true, true) => ">*",
            (true, false) => "> ",
            (false, true) => " *",
            (false, false) => "  ",
        };
        let (name, size) = if e.name == ".." {
            ("..  (up)".to_string(), String::new())
        } else if e.is_dir {
            (format!("{}/", e.name), String::new())
        } else {
            (e.name.clone(), format_bytes(e.size))
        };
        let name_w = w.saturating_sub(2 + 11);
        let text = format!("{mark}{} {size:>10}", fit(&name, name_w));
        let style = if sel {
            SEL
        } else if e.is_dir {
            BOLD
        } else {
            Style::new()
        };
        lines.push(Line::styled(text, style));
    }
    if pk.entries.iter().all(|e| e.name == "..") {
        lines.push(Line::styled("  (empty folder)", DIM));
    }
    if pk.cut > 0 {
        lines.push(Line::styled(
            format!("  +{} more not shown: type the path instead", pk.cut),
            DIM,
        ));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Folders and files ")),
        list,
    );
    if write {
        let title = if pk.naming {
            "File name to save here, then Enter"
        } else {
            "Press s to save here (or Enter on a file to replace it)"
        };
        let text = if pk.naming { pk.name.as_str() } else { "" };
        let mut b = input_box(title, text);
        if !pk.naming {
            b = Paragraph::new(Line::raw("")).block(Block::bordered().title(format!(" {title} ")));
        }
        f.render_widget(b, bottom);
    } else {
        let hint = match pk.mode {
            PickMode::Select if pk.marked.is_empty() => {
                "Space marks files and folders; c copies them (nothing marked: this folder)."
                    .to_string()
            }
            PickMode::Select => format!("{} marked; c copies them.", pk.marked.len()),
            PickMode::Folder => "Go to the folder to copy into and press c.".into(),
            _ => "Enter on an image file picks it.".into(),
        };
        f.render_widget(Line::styled(hint, DIM), bottom);
    }
}
