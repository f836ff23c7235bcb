//! The library's error type.
//!
//! Every public function returns [`Result<T>`]. An [`Error`] knows its [`ErrorKind`], which decides
//! the process exit code (ddrescue's convention: 1 environment/I/O, 2 corrupt or invalid input,
//! 3 internal bug, 128+N for a signal), and whether retrying the same operation later can help
//! (a device that went away may come back; a corrupt mapfile will not fix itself).

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarsely: this decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Missing file, permission, bad option, refused destination, I/O failure (exit 1).
    Environment,
    /// A corrupt or invalid input file: mapfile, image (exit 2).
    InvalidInput,
    /// A bug in salvor (exit 3).
    Internal,
    /// Stopped by a signal after saving state (exit 128 + signal).
    Interrupted(i32),
}

impl ErrorKind {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Environment => 1,
            ErrorKind::InvalidInput => 2,
            ErrorKind::Internal => 3,
            ErrorKind::Interrupted(sig) => 128 + sig,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a named file or device.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A command-line argument that cannot be used.
    #[error("invalid argument {arg}: {reason}")]
    InvalidArgument { arg: String, reason: String },
    /// A file whose content is corrupt or does not fit (mapfile, image). `location` names the
    /// line or offset.
    #[error("{}: {location}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        location: String,
        reason: String,
    },
    /// A destination that must not be written: it is the source, mounted, too small, ...
    #[error("refusing to write {}: {reason}", target.display())]
    Refused { target: PathBuf, reason: String },
    /// The source device disappeared (unplugged, reset, removed). Retrying after it comes back helps.
    #[error("source {} is gone: {reason}", path.display())]
    DeviceGone { path: PathBuf, reason: String },
    /// The destination has no space left.
    #[error("{}: no space left on device at offset {offset}", path.display())]
    NoSpace { path: PathBuf, offset: u64 },
    /// The destination failed a write or a sync. Linux reports a writeback error once and then
    /// drops the pages, so nothing written since the last successful sync can be trusted: the
    /// run stops and no newer mapfile is saved.
    #[error("{}: {reason}", path.display())]
    DestinationFailed { path: PathBuf, reason: String },
    /// A limit set by the user was reached (e.g. `--timeout`).
    #[error("{0}")]
    LimitReached(String),
    /// Stopped by a signal; state was saved.
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
    /// Something that should never happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn invalid_arg(arg: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            arg: arg.into(),
            reason: reason.into(),
        }
    }

    pub fn corrupt(
        path: impl Into<PathBuf>,
        location: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            path: path.into(),
            location: location.into(),
            reason: reason.into(),
        }
    }

    pub fn refused(target: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Refused {
            target: target.into(),
            reason: reason.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Corrupt { .. } => ErrorKind::InvalidInput,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Interrupted(sig) => ErrorKind::Interrupted(*sig),
            _ => ErrorKind::Environment,
        }
    }

    /// Whether trying the same operation again later may succeed without the user changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::DeviceGone { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }

    pub fn exit_code(&self) -> i32 {
        self.kind().exit_code()
    }
}
