//! Prints what the filesystem layer finds in a file or device: `fsprobe PATH [START LEN]`.
use salvor::device::{FileSource, OpenOptions, Source};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: fsprobe PATH [START LEN]");
        std::process::exit(2);
    };
    let mut src = match FileSource::open(std::path::Path::new(path), OpenOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let size = src.geometry().size;
    let start: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let len: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(size - start);
    match salvor::fs::probe(&mut src, start..start + len) {
        Ok(r) => println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
