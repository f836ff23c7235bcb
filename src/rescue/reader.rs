//! The device I/O thread of a rescue.
//!
//! The engine asks for one read at a time and decides everything; this thread only owns the
//! source and, while the engine walks a range sequentially, reads the next few chunks ahead so
//! that reading the device overlaps with writing the destination and bookkeeping. It stops reading
//! ahead at the first failed read: a failing area is never touched before the engine asks for it,
//! except for at most that one read if the engine stops right then.

use super::engine::engine_chunk;
use crate::device::file::AlignedBuf;
use crate::device::{ReadFault, Source};
use crate::progress::Direction;
use std::collections::VecDeque;
use std::io;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};

/// How many chunks may be read ahead of the engine.
const READ_AHEAD: usize = 3;

pub(super) enum Request {
    Read {
        pos: u64,
        len: u64,
        /// Bypass the page cache if the source allows it (reads near errors).
        direct: bool,
    },
    /// The engine will now read `[lo, hi)` chunk by chunk (`chunk` bytes, aligned) in `dir`.
    Sequential {
        lo: u64,
        hi: u64,
        dir: Direction,
        chunk: u64,
    },
    Reopen,
    /// A buffer the engine is done with.
    Recycle(AlignedBuf),
}

pub(super) enum Response {
    Read(Chunk),
    Reopened(io::Result<bool>),
}

pub(super) struct Chunk {
    pub pos: u64,
    pub len: u64,
    pub buf: AlignedBuf,
    pub good: usize,
    pub fault: Option<ReadFault>,
}

/// The engine's handle on the I/O thread.
pub(super) struct Reader {
    requests: Sender<Request>,
    responses: Receiver<Response>,
    pub describe: String,
}

impl Reader {
    pub fn read(&self, pos: u64, len: u64, direct: bool) -> Option<Chunk> {
        self.requests
            .send(Request::Read { pos, len, direct })
            .ok()?;
        match self.responses.recv().ok()? {
            Response::Read(c) => Some(c),
            Response::Reopened(_) => None,
        }
    }

    pub fn sequential(&self, lo: u64, hi: u64, dir: Direction, chunk: u64) {
        let _ = self
            .requests
            .send(Request::Sequential { lo, hi, dir, chunk });
    }

    pub fn reopen(&self) -> io::Result<bool> {
        self.requests
            .send(Request::Reopen)
            .map_err(|_| io::Error::other("I/O thread ended"))?;
        match self.responses.recv() {
            Ok(Response::Reopened(r)) => r,
            _ => Err(io::Error::other("I/O thread ended")),
        }
    }

    pub fn recycle(&self, buf: AlignedBuf) {
        let _ = self.requests.send(Request::Recycle(buf));
    }
}

/// Starts the I/O thread inside `scope`; it ends when the returned `Reader` is dropped.
pub(super) fn spawn<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    src: &'scope mut dyn Source,
    cluster: u64,
) -> Reader {
    let (req_tx, req_rx) = channel::<Request>();
    let (resp_tx, resp_rx) = channel::<Response>();
    let describe = src.describe();
    scope.spawn(move || serve(src, cluster, req_rx, resp_tx));
    Reader {
        requests: req_tx,
        responses: resp_rx,
        describe,
    }
}

struct Window {
    lo: u64,
    hi: u64,
    dir: Direction,
    chunk: u64,
}

fn serve(
    src: &mut dyn Source,
    cluster: u64,
    requests: Receiver<Request>,
    responses: Sender<Response>,
) {
    let mut spare: Vec<AlignedBuf> = Vec::new();
    let mut ahead: VecDeque<Chunk> = VecDeque::new();
    let mut window: Option<Window> = None;
    let take_buf = |spare: &mut Vec<AlignedBuf>| {
        spare
            .pop()
            .unwrap_or_else(|| AlignedBuf::new(cluster as usize, 4096))
    };
    loop {
        let reading_ahead = window.is_some() && ahead.len() < READ_AHEAD;
        let request = if reading_ahead {
            match requests.try_recv() {
                Ok(r) => Some(r),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match requests.recv() {
                Ok(r) => Some(r),
                Err(_) => return,
            }
        };
        match request {
            Some(Request::Recycle(buf)) => spare.push(buf),
            Some(Request::Sequential { lo, hi, dir, chunk }) => {
                spare.extend(ahead.drain(..).map(|c| c.buf));
                window = Some(Window {
                    lo,
                    hi,
                    dir,
                    chunk: chunk.clamp(1, cluster),
                });
            }
            Some(Request::Reopen) => {
                spare.extend(ahead.drain(..).map(|c| c.buf));
                window = None;
                if responses.send(Response::Reopened(src.reopen())).is_err() {
                    return;
                }
            }
            Some(Request::Read { pos, len, direct }) => {
                let chunk = match ahead.front() {
                    Some(c) if c.pos == pos && c.len == len && !direct => ahead.pop_front(),
                    _ => None,
                };
                let chunk = match chunk {
                    Some(c) => c,
                    None => {
                        // Not what was read ahead: the engine changed course.
                        spare.extend(ahead.drain(..).map(|c| c.buf));
                        window = None;
                        if direct {
                            read_chunk_direct(src, pos, len, take_buf(&mut spare))
                        } else {
                            read_chunk(src, pos, len, take_buf(&mut spare))
                        }
                    }
                };
                if responses.send(Response::Read(chunk)).is_err() {
                    return;
                }
            }
            None => {
                // Idle with a sequential window: read the next chunk ahead.
                let Some(w) = window.as_mut() else {
                    continue;
                };
                if w.lo >= w.hi {
                    window = None;
                    continue;
                }
                let (pos, len) = engine_chunk(w.lo, w.hi, w.dir, w.chunk);
                match w.dir {
                    Direction::Forwards => w.lo = pos + len,
                    Direction::Backwards => w.hi = pos,
                }
                let chunk = read_chunk(src, pos, len, take_buf(&mut spare));
                if chunk.fault.is_some() {
                    window = None;
                }
                ahead.push_back(chunk);
            }
        }
    }
}

/// A read that bypasses the page cache where the source allows it, else a normal one.
fn read_chunk_direct(src: &mut dyn Source, pos: u64, len: u64, mut buf: AlignedBuf) -> Chunk {
    if buf.len() < len as usize {
        buf = AlignedBuf::new(len as usize, 4096);
    }
    match src.read_direct_at(pos, &mut buf.as_mut_slice()[..len as usize]) {
        Some(outcome) => Chunk {
            pos,
            len,
            buf,
            good: outcome.good,
            fault: outcome.fault,
        },
        None => read_chunk(src, pos, len, buf),
    }
}

fn read_chunk(src: &mut dyn Source, pos: u64, len: u64, mut buf: AlignedBuf) -> Chunk {
    if buf.len() < len as usize {
        buf = AlignedBuf::new(len as usize, 4096);
    }
    let outcome = src.read_at(pos, &mut buf.as_mut_slice()[..len as usize]);
    Chunk {
        pos,
        len,
        buf,
        good: outcome.good,
        fault: outcome.fault,
    }
}
