//! Copying files out of a mounted filesystem (a rescued copy, or an image's partition) into a
//! folder on another disk: the one copier behind "Copy my files" and "Browse an image".
//!
//! Files the damaged-files report names are skipped, or copied with a `.damaged` mark so that
//! nobody takes their zero-filled holes for data. Nothing existing is overwritten, symlinks and
//! special files are not followed, and a file that cannot be read is left out and named, while
//! a destination that cannot be written stops the copy (a full disk would fail every file). It
//! runs on a worker thread; progress goes through a callback and never to a terminal.

use crate::error::{Error, Result};
use crate::progress::Control;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What to do with a file the rescue did not wholly recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DamagedChoice {
    #[default]
    Skip,
    /// Copied as `NAME.damaged`.
    Mark,
}

/// The suffix of a damaged file copied anyway.
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// One copy: `items` (files or folders under `root`) go into `dest`, each under its own name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyRequest {
    /// Where the filesystem is mounted: damaged paths are relative to it.
    pub root: PathBuf,
    pub items: Vec<PathBuf>,
    pub dest: PathBuf,
    /// Damaged files as the report names them, from the filesystem's root ("/dir/file").
    pub damaged: Vec<String>,
    pub choice: DamagedChoice,
}

/// How far the copy got.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyProgress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The file being copied, relative to the root.
    pub current: String,
}

/// How the copy ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySummary {
    pub files: u64,
    pub bytes: u64,
    /// Damaged files left out, or copied with the mark (by the choice).
    pub damaged: Vec<String>,
    /// Entries already at the destination (never overwritten), symlinks and special files.
    pub left_out: Vec<(String, &'static str)>,
    /// Files that could not be read: (path, why).
    pub unreadable: Vec<(String, String)>,
    /// Stopped by the user before the end.
    pub stopped: bool,
}

/// Copy buffer: big enough for disk speed, small enough to check for a stop often.
const CHUNK: usize = 1 << 20;

/// A file or folder to copy, found by the walk.
struct Item {
    src: PathBuf,
    dst: PathBuf,
    /// Path from the filesystem's root.
    rel: String,
    kind: ItemKind,
}

enum ItemKind {
    Dir,
    File {
        len: u64,
        damaged: bool,
    },
    /// Left out, with why.
    Skip(&'static str),
}

/// The path of `p` from `root`, as the damaged-files report writes it ("/a/b").
fn rel_path(root: &Path, p: &Path) -> String {
    let r = p.strip_prefix(root).unwrap_or(p);
    format!("/{}", r.display())
}

/// Lists everything to copy, folders before their contents.
fn walk(req: &CopyRequest, damaged: &HashSet<&str>) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, PathBuf)> = Vec::new();
    for it in req.items.iter().rev() {
        let Some(name) = it.file_name() else {
            return Err(Error::invalid_arg(
                it.display().to_string(),
                "not a file or folder name",
            ));
        };
        stack.push((it.clone(), req.dest.join(name)));
    }
    while let Some((src, dst)) = stack.pop() {
        let rel = rel_path(&req.root, &src);
        let meta = std::fs::symlink_metadata(&src).map_err(|e| Error::io(&src, e))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&src)
                .map_err(|e| Error::io(&src, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            children.sort();
            for c in children.into_iter().rev() {
                if let Some(n) = c.file_name() {
                    let d = dst.join(n);
                    stack.push((c, d));
                }
            }
            ItemKind::Dir
        } else if ft.is_file() {
            ItemKind::File {
                len: meta.len(),
                damaged: damaged.contains(rel.as_str()),
            }
        } else if ft.is_symlink() {
            ItemKind::Skip("a symbolic link")
        } else {
            ItemKind::Skip("not a regular file")
        };
        out.push(Item {
            src,
            dst,
            rel,
            kind,
        });
    }
    Ok(out)
}

/// Copies what `req` asks, reporting progress after every chunk. Errors are the destination's
/// (or a folder that cannot be listed); unreadable files are listed in the summary instead.
pub fn copy(
    req: &CopyRequest,
    control: &Control,
    progress: &mut dyn FnMut(&CopyProgress),
) -> Result<CopySummary> {
    if !req.dest.is_dir() {
        return Err(Error::invalid_arg(
            req.dest.display().to_string(),
            "the destination is not a folder",
        ));
    }
    let damaged: HashSet<&str> = req.damaged.iter().map(String::as_str).collect();
    let items = walk(req, &damaged)?;
    let wanted = |damaged: bool| !damaged || req.choice == DamagedChoice::Mark;
    let mut p = CopyProgress::default();
    for it in &items {
        if let ItemKind::File { len, damaged } = it.kind {
            if wanted(damaged) {
                p.files_total += 1;
                p.bytes_total += len;
            }
        }
    }
    let mut sum = CopySummary::default();
    progress(&p);
    let mut buf = vec![0u8; CHUNK];
    for it in &items {
        if control.stop_requested().is_some() {
            sum.stopped = true;
            break;
        }
        match it.kind {
            ItemKind::Skip(why) => sum.left_out.push((it.rel.clone(), why)),
            ItemKind::Dir => match std::fs::create_dir(&it.dst) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && it.dst.is_dir() => {}
                Err(e) => return Err(Error::io(&it.dst, e)),
            },
            ItemKind::File { damaged, .. } => {
                if damaged {
                    sum.damaged.push(it.rel.clone());
                    if !wanted(true) {
                        continue;
                    }
                }
                let dst = if damaged {
                    let mut d = it.dst.clone().into_os_string();
                    d.push(DAMAGED_SUFFIX);
                    PathBuf::from(d)
                } else {
                    it.dst.clone()
                };
                p.current = it.rel.clone();
                match copy_file(&it.src, &dst, &mut buf, control, &mut p, progress)? {
                    FileResult::Done(n) => {
                        sum.files += 1;
                        sum.bytes += n;
                    }
                    FileResult::Exists => sum.left_out.push((it.rel.clone(), "already there")),
                    FileResult::Unreadable(why) => sum.unreadable.push((it.rel.clone(), why)),
                    FileResult::Stopped => {
                        sum.stopped = true;
                        break;
                    }
                }
                p.files_done += 1;
                progress(&p);
            }
        }
    }
    // "Copied" must mean on the destination disk, not in the page cache: the user unplugs it
    // next. One syncfs for the whole copy (an fsync per file would cost a flush each).
    let dir = std::fs::File::open(&req.dest).map_err(|e| Error::io(&req.dest, e))?;
    nix::unistd::syncfs(&dir).map_err(|e| Error::io(&req.dest, std::io::Error::from(e)))?;
    Ok(sum)
}

enum FileResult {
    Done(u64),
    Exists,
    Unreadable(String),
    Stopped,
}

/// Copies one file, never over an existing one; a partial copy is removed.
fn copy_file(
    src: &Path,
    dst: &Path,
    buf: &mut [u8],
    control: &Control,
    p: &mut CopyProgress,
    progress: &mut dyn FnMut(&CopyProgress),
) -> Result<FileResult> {
    let mut input = match std::fs::File::open(src) {
        Ok(f) => f,
        Err(e) => return Ok(FileResult::Unreadable(e.to_string())),
    };
    let mut out = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(FileResult::Exists),
        Err(e) => return Err(Error::io(dst, e)),
    };
    let mut n = 0u64;
    let result = loop {
        if control.stop_requested().is_some() {
            break Ok(FileResult::Stopped);
        }
        let got = match input.read(buf) {
            Ok(0) => break Ok(FileResult::Done(n)),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Ok(FileResult::Unreadable(e.to_string())),
        };
        if let Err(e) = out.write_all(&buf[..got]) {
            break Err(Error::io(dst, e));
        }
        n += got as u64;
        p.bytes_done += got as u64;
        progress(p);
    };
    if !matches!(result, Ok(FileResult::Done(_))) {
        drop(out);
        // What was written of it is not the file: leave nothing half-copied behind.
        let _ = std::fs::remove_file(dst);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_a_tree_skipping_or_marking_damaged_files() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("fs");
        std::fs::create_dir_all(root.join("photos/2024")).unwrap();
        std::fs::write(root.join("photos/a.jpg"), vec![7u8; 3 * CHUNK + 5]).unwrap();
        std::fs::write(root.join("photos/2024/b.jpg"), b"bbb").unwrap();
        std::os::unix::fs::symlink("a.jpg", root.join("photos/link")).unwrap();
        let dest = t.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        let mut req = CopyRequest {
            root: root.clone(),
            items: vec![root.join("photos")],
            dest: dest.clone(),
            damaged: vec!["/photos/2024/b.jpg".into()],
            choice: DamagedChoice::Skip,
        };
        let mut last = CopyProgress::default();
        let s = copy(&req, &Control::new(), &mut |p| last = p.clone()).unwrap();
        assert_eq!(s.files, 1);
        assert_eq!(s.damaged, vec!["/photos/2024/b.jpg".to_string()]);
        assert_eq!(
            s.left_out,
            vec![("/photos/link".to_string(), "a symbolic link")]
        );
        assert_eq!(
            std::fs::read(dest.join("photos/a.jpg")).unwrap(),
            std::fs::read(root.join("photos/a.jpg")).unwrap()
        );
        assert!(!dest.join("photos/2024/b.jpg").exists());
        assert_eq!((last.files_done, last.files_total), (1, 1));
        assert_eq!(last.bytes_done, last.bytes_total);
        // Again with marks: a.jpg is there already (never overwritten), b.jpg gets its mark.
        req.choice = DamagedChoice::Mark;
        let s = copy(&req, &Control::new(), &mut |_| {}).unwrap();
        assert_eq!(s.files, 1);
        assert!(s
            .left_out
            .contains(&("/photos/a.jpg".into(), "already there")));
        assert_eq!(
            std::fs::read(dest.join("photos/2024/b.jpg.damaged")).unwrap(),
            b"bbb"
        );
    }

    #[test]
    fn a_stop_leaves_no_partial_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("big"), vec![1u8; 4 * CHUNK]).unwrap();
        let dest = t.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        let req = CopyRequest {
            root: t.path().into(),
            items: vec![t.path().join("big")],
            dest: dest.clone(),
            ..CopyRequest::default()
        };
        let control = Control::new();
        let s = copy(&req, &control, &mut |p| {
            if p.bytes_done > 0 {
                control.request_stop(crate::progress::StopReason::User);
            }
        })
        .unwrap();
        assert!(s.stopped);
        assert!(!dest.join("big").exists());
    }
}
