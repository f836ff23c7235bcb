//! What each partition holds, for the Disks screen: filesystem, its label and the GPT name
//! ("family photos"). Gathered on a worker, a few sectors per partition: the partition table
//! (`blockdev::partition_table_of_path`), then three 4 KiB windows of each partition (at 0,
//! 32 KiB and 64 KiB: where every magic `fs::detect` knows and the labels in superblocks are).
//! A dying disk can take minutes over one read, so each disk has a deadline after which the
//! screen says it did not answer; the disk under rescue is never read while a job runs.

use super::app::App;
use super::disks::DiskRow;
use super::worker::{Task, WorkerMsg};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// How long a disk may take to answer before the screen gives up on it.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// The bytes read of a partition: three windows of a few sectors.
const WINDOW: usize = 4096;
const WINDOWS: [u64; 3] = [0, 0x8000, 0x10000];

/// Where the facts about one partition stand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Facts {
    /// Asked at this moment; not answered yet.
    Pending(Option<Instant>),
    Known {
        fstype: Option<String>,
        label: Option<String>,
        gpt_name: Option<String>,
    },
    /// The disk did not answer in time, or could not be read.
    #[default]
    NoAnswer,
}

/// One partition's answer from the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartFacts {
    pub dev: PathBuf,
    pub fstype: Option<String>,
    pub label: Option<String>,
    pub gpt_name: Option<String>,
}

/// The partition number at the end of a device name: `sdb2` → 2, `loop0p1` → 1, `sdb` → 0.
pub fn part_number(dev: &Path, disk: &Path) -> u32 {
    let name = dev.to_string_lossy();
    let disk = disk.to_string_lossy();
    name.strip_prefix(disk.as_ref())
        .map(|t| t.trim_start_matches('p'))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// Text from a fixed-size label field: up to the first NUL, trimmed; `None` when empty.
fn field(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The filesystem and its label from the windows read (`buf` holds bytes 0..68 KiB+, unread
/// parts zero). NTFS and exFAT keep their labels in files, beyond a few sectors: none for them.
pub fn fs_and_label(buf: &[u8]) -> (Option<String>, Option<String>) {
    let head = &buf[..buf.len().min(crate::blockdev::fstype::PROBE_LEN)];
    let kind = crate::fs::detect(head);
    let name = kind.to_string();
    let at = |off: usize, len: usize| buf.get(off..off + len).and_then(field);
    use crate::fs::FsKind as K;
    let label = match kind {
        K::Ext2 | K::Ext3 | K::Ext4 => at(1024 + 120, 16),
        K::Xfs => at(108, 12),
        K::Btrfs => at(0x10000 + 0x12B, 256),
        K::Swap => at(1024 + 28, 16),
        K::Fat12 | K::Fat16 | K::Fat32 => {
            let fat32 = buf.get(0x52..0x57) == Some(b"FAT32");
            at(if fat32 { 0x47 } else { 0x2B }, 11).filter(|l| l != "NO NAME")
        }
        K::Other(ref o) if o == "iso9660" => at(0x8028, 32),
        _ => None,
    };
    let fstype = match kind {
        K::Unknown => None,
        _ => Some(name),
    };
    (fstype, label)
}

/// Reads the windows of the partition `dev`.
fn read_windows(dev: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(dev)?;
    let mut buf = vec![0u8; WINDOWS[2] as usize + WINDOW];
    for off in WINDOWS {
        let o = off as usize;
        let mut got = 0;
        // A short read at the end of a small partition leaves zeros, as past its end.
        while got < WINDOW {
            match f.read_at(&mut buf[o + got..o + WINDOW], off + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(buf)
}

/// The worker's part: the table's names, then each partition, one message each.
pub fn probe_disk(disk: &Path, parts: &[PathBuf], tx: &Sender<WorkerMsg>) {
    let names: Vec<(u32, String)> = crate::blockdev::partition_table_of_path(disk)
        .map(|t| {
            t.entries
                .iter()
                .filter_map(|e| Some((e.number, e.name.clone().filter(|n| !n.is_empty())?)))
                .collect()
        })
        .unwrap_or_default();
    for dev in parts {
        let n = part_number(dev, disk);
        let (fstype, label) = match read_windows(dev) {
            Ok(buf) => fs_and_label(&buf),
            Err(_) => (None, None),
        };
        let gpt_name = names
            .iter()
            .find(|(k, _)| *k == n && n > 0)
            .map(|(_, s)| s.clone());
        let msg = WorkerMsg::PartFacts(PartFacts {
            dev: dev.clone(),
            fstype,
            label,
            gpt_name,
        });
        // A closed channel: the UI is gone.
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// The volumes of a disk whose facts are gathered: its partitions, or itself.
fn volumes(d: &DiskRow) -> Vec<PathBuf> {
    if d.partitions.is_empty() {
        vec![d.path.clone()]
    } else {
        d.partitions
            .iter()
            .map(|p| p.path.clone())
            .filter(|p| !p.as_os_str().is_empty())
            .collect()
    }
}

impl App {
    /// Disks a running job reads or writes: never read for the Disks screen.
    fn job_disks(&self) -> Vec<PathBuf> {
        use super::app::JobRequest;
        let Some(job) = self.job.as_ref().filter(|j| j.state.is_active()) else {
            return Vec::new();
        };
        match &job.request {
            JobRequest::Rescue(r) => vec![r.source.clone(), r.dest.clone()],
            JobRequest::Image(r) => {
                let mut v = vec![r.input.clone()];
                v.extend(r.output.clone());
                v
            }
        }
    }

    /// Asks for the facts of every partition not known or asked yet (the Disks screen).
    pub(super) fn request_part_facts(&mut self, now: Instant) {
        let busy = self.job_disks();
        let disks = self.disks.clone();
        for d in &disks {
            let vols = volumes(d);
            let busy_disk = busy
                .iter()
                .any(|b| *b == d.path || vols.contains(b) || d.backing_file.as_ref() == Some(b));
            if busy_disk {
                for v in vols {
                    self.part_facts.insert(v, Facts::NoAnswer);
                }
                continue;
            }
            let todo: Vec<PathBuf> = vols
                .into_iter()
                .filter(|v| !self.part_facts.contains_key(v))
                .collect();
            if todo.is_empty() {
                continue;
            }
            for v in &todo {
                self.part_facts.insert(v.clone(), Facts::Pending(Some(now)));
            }
            self.tasks.push(Task::ProbeDisk {
                disk: d.path.clone(),
                parts: todo,
            });
        }
    }

    pub(super) fn on_part_facts(&mut self, p: PartFacts) {
        self.part_facts.insert(
            p.dev,
            Facts::Known {
                fstype: p.fstype,
                label: p.label,
                gpt_name: p.gpt_name,
            },
        );
    }

    /// Gives up on partitions whose disk did not answer by the deadline.
    pub(super) fn expire_part_facts(&mut self, now: Instant) {
        for f in self.part_facts.values_mut() {
            if let Facts::Pending(Some(t)) = f {
                if now.saturating_duration_since(*t) >= PROBE_DEADLINE {
                    *f = Facts::NoAnswer;
                }
            }
        }
    }

    /// `d` with what the probes found filled in, for drawing.
    pub fn with_facts(&self, d: &DiskRow) -> DiskRow {
        let mut d = d.clone();
        for p in &mut d.partitions {
            match self.part_facts.get(&p.path) {
                Some(Facts::Known {
                    fstype,
                    label,
                    gpt_name,
                }) => {
                    p.fstype = p.fstype.clone().or_else(|| fstype.clone());
                    p.fs_label = label.clone();
                    p.gpt_name = gpt_name.clone().or_else(|| p.label.clone());
                }
                Some(Facts::Pending(_)) => p.probing = Some(true),
                Some(Facts::NoAnswer) => p.probing = Some(false),
                None => {}
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_superblocks() {
        let mut b = vec![0u8; 0x11000];
        // ext4: magic, an extent-feature flag, the label.
        b[1024 + 0x38..1024 + 0x3A].copy_from_slice(&[0x53, 0xEF]);
        b[1024 + 0x60] = 0x40; // INCOMPAT_EXTENTS
        b[1024 + 120..1024 + 120 + 13].copy_from_slice(b"family photos");
        let (fs, label) = fs_and_label(&b);
        assert_eq!(fs.as_deref(), Some("ext4"));
        assert_eq!(label.as_deref(), Some("family photos"));
        assert_eq!(fs_and_label(&vec![0u8; 0x11000]), (None, None));
    }

    /// A real ext4 made by mkfs.ext4 -L, read through the worker's path.
    #[test]
    fn probes_a_real_ext4_label() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("fs.img");
        std::fs::write(&img, vec![0u8; 8 << 20]).unwrap();
        let st = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "family photos"])
            .arg(&img)
            .status()
            .expect("mkfs.ext4 is missing: install e2fsprogs");
        assert!(st.success());
        let (tx, rx) = std::sync::mpsc::channel();
        probe_disk(&img, std::slice::from_ref(&img), &tx);
        let msgs: Vec<WorkerMsg> = rx.try_iter().collect();
        let [WorkerMsg::PartFacts(p)] = &msgs[..] else {
            panic!("{msgs:?}");
        };
        assert_eq!(p.fstype.as_deref(), Some("ext4"));
        assert_eq!(p.label.as_deref(), Some("family photos"));
        assert_eq!(p.gpt_name, None);
    }

    #[test]
    fn partition_numbers_from_names() {
        assert_eq!(
            part_number(Path::new("/dev/sdb2"), Path::new("/dev/sdb")),
            2
        );
        assert_eq!(
            part_number(Path::new("/dev/loop0p1"), Path::new("/dev/loop0")),
            1
        );
        assert_eq!(part_number(Path::new("/dev/sdb"), Path::new("/dev/sdb")), 0);
    }
}
