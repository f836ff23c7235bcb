//! The System info screen's facts: kernel, memory, CPU, Secure Boot.

use std::path::Path;

const SECURE_BOOT_VAR: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureBoot {
    On,
    Off,
    NotUefi,
}

impl SecureBoot {
    pub fn describe(self) -> &'static str {
        match self {
            SecureBoot::On => "on",
            SecureBoot::Off => "off",
            SecureBoot::NotUefi => "not UEFI (legacy BIOS boot)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SystemInfo {
    pub kernel: String,
    pub cpu: String,
    pub mem_total: u64,
    pub mem_available: u64,
    pub secure_boot: Option<SecureBoot>,
    /// The kernel's lockdown mode ("none", "integrity", "confidentiality"), if it has one.
    pub lockdown: Option<String>,
    pub version: String,
}

impl SystemInfo {
    /// Reads /proc and /sys; missing facts stay empty rather than failing the screen.
    pub fn read() -> SystemInfo {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        SystemInfo {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| format!("Linux {}", s.trim()))
                .unwrap_or_else(|_| "unknown".into()),
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| "unknown".into()),
            mem_total: meminfo_kib(&meminfo, "MemTotal:") * 1024,
            mem_available: meminfo_kib(&meminfo, "MemAvailable:") * 1024,
            secure_boot: Some(secure_boot(
                Path::new("/sys/firmware/efi"),
                Path::new(SECURE_BOOT_VAR),
            )),
            lockdown: std::fs::read_to_string("/sys/kernel/security/lockdown")
                .ok()
                .and_then(|t| lockdown_mode(&t)),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The active mode of `/sys/kernel/security/lockdown`, which lists all modes and brackets the
/// active one: "none [integrity] confidentiality" → "integrity".
fn lockdown_mode(text: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .map(str::to_string)
}

fn meminfo_kib(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// efivarfs files start with 4 bytes of attributes; the variable's single byte follows.
fn secure_boot(efi_dir: &Path, var: &Path) -> SecureBoot {
    if !efi_dir.exists() {
        return SecureBoot::NotUefi;
    }
    match std::fs::read(var) {
        Ok(b) if b.len() >= 5 && b[4] == 1 => SecureBoot::On,
        // UEFI firmware without the variable has no Secure Boot to enable.
        _ => SecureBoot::Off,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_boot_states() {
        let d = tempfile::tempdir().unwrap();
        let efi = d.path().join("efi");
        let var = efi.join("SecureBoot");
        assert_eq!(secure_boot(&efi, &var), SecureBoot::NotUefi);
        std::fs::create_dir(&efi).unwrap();
        assert_eq!(secure_boot(&efi, &var), SecureBoot::Off);
        std::fs::write(&var, [6, 0, 0, 0, 1]).unwrap();
        assert_eq!(secure_boot(&efi, &var), SecureBoot::On);
        std::fs::write(&var, [6, 0, 0, 0, 0]).unwrap();
        assert_eq!(secure_boot(&efi, &var), SecureBoot::Off);
    }

    #[test]
    fn lockdown_modes() {
        assert_eq!(
            lockdown_mode("[none] integrity confidentiality\n").as_deref(),
            Some("none")
        );
        assert_eq!(
            lockdown_mode("none [integrity] confidentiality").as_deref(),
            Some("integrity")
        );
        assert_eq!(lockdown_mode(""), None);
    }

    #[test]
    fn meminfo() {
        let t = "MemTotal:       16314532 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(meminfo_kib(t, "MemTotal:"), 16314532);
        assert_eq!(meminfo_kib(t, "MemAvailable:"), 8000000);
        assert_eq!(meminfo_kib(t, "Nope:"), 0);
    }
}
