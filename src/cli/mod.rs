//! The command line: argument parsing, the human and JSON progress printers, and the mapping of
//! errors to exit codes. STUB.
pub mod image;

/// Runs salvor with the process arguments; returns the exit code.
pub fn run() -> i32 {
    0
}
