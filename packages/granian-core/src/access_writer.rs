//! Access lines written straight to the stream of the default `granian.access` handler.
//!
//! Handing every line to Python's `logging` costs a loop job, a log record and a flushed
//! write per request. While `granian.access` still has the handler the server installed
//! (plain `%(message)s` lines on stdout), the same bytes are written from here instead:
//! runtime threads append to a buffer and one thread writes whatever piled up within
//! [`BATCH_WINDOW`] in a single `write`, so a busy worker pays one wake-up and one syscall
//! per window rather than per request, and never takes the GIL for it.
//!
//! Several worker processes usually share that stdout. When it is a pipe (or a socket, as
//! under systemd), the kernel keeps a write() of at most `PIPE_BUF` bytes in one piece, but
//! may interleave a larger one with other processes' writes, tearing lines apart. So on
//! those, a batch goes out as several writes of whole lines, each at most `PIPE_BUF` bytes
//! (a longer line is written alone). A regular file or a terminal takes the batch at once.

use std::fs::File;
use std::io::Write;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the first line of a batch waits for others before the batch is written.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    ready: Condvar,
}

pub struct AccessWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl AccessWriter {
    /// Writes to a duplicate of `fd`, so Python closing its stream does not pull ours away.
    pub fn new(fd: RawFd) -> std::io::Result<Self> {
        // SAFETY: `fd` is the open descriptor of the handler's stream for this call.
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
        let mut out = File::from(owned);
        let limit = out
            .metadata()
            .ok()
            .filter(|meta| meta.file_type().is_fifo() || meta.file_type().is_socket())
            .map(|_| libc::PIPE_BUF);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            ready: Condvar::new(),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("granian-access-log".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(64 * 1024);
                loop {
                    let closed = {
                        let mut pending = worker.pending.lock().unwrap_or_else(|e| e.into_inner());
                        while pending.lines.is_empty() && !pending.closed {
                            pending = worker.ready.wait(pending).unwrap_or_else(|e| e.into_inner());
                        }
                        if !pending.closed {
                            // Let the batch fill: the lines of this window cost one write.
                            pending = worker
                                .ready
                                .wait_timeout_while(pending, BATCH_WINDOW, |p| !p.closed)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                        std::mem::swap(&mut pending.lines, &mut batch);
                        pending.closed
                    };
                    if !batch.is_empty() {
                        if let Err(err) = write_lines(&mut out, &batch, limit) {
                            log::warn!("access log: cannot write to stdout: {err}");
                        }
                        batch.clear();
                    }
                    if closed {
                        return;
                    }
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    pub fn push(&self, line: &str) {
        let mut pending = self.shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        let wake = pending.lines.is_empty();
        pending.lines.extend_from_slice(line.as_bytes());
        pending.lines.push(b'\n');
        drop(pending);
        if wake {
            self.shared.ready.notify_one();
        }
    }
}

/// Writes `batch`, whole lines, to `out`: at once without a `limit`, else in writes of
/// whole lines of at most `limit` bytes each (a line longer than that alone).
fn write_lines(out: &mut impl Write, batch: &[u8], limit: Option<usize>) -> std::io::Result<()> {
    let Some(limit) = limit else {
        return out.write_all(batch);
    };
    let mut rest = batch;
    while !rest.is_empty() {
        let end = if rest.len() <= limit {
            rest.len()
        } else {
            match rest[..limit].iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                // The first line alone is over the limit.
                None => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |newline| newline + 1),
            }
        };
        let (chunk, tail) = rest.split_at(end);
        out.write_all(chunk)?;
        rest = tail;
    }
    Ok(())
}

impl Drop for AccessWriter {
    /// Lines still buffered are written before the worker goes.
    fn drop(&mut self) {
        self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.shared.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps each write() apart.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(sizes: &[usize]) -> Vec<u8> {
        let mut batch = Vec::new();
        for (index, &size) in sizes.iter().enumerate() {
            batch.extend(std::iter::repeat_n(b'a' + (index % 26) as u8, size - 1));
            batch.push(b'\n');
        }
        batch
    }

    #[test]
    fn unlimited_is_one_write() {
        let batch = lines(&[5000, 3000, 10]);
        let mut out = Writes::default();
        write_lines(&mut out, &batch, None).unwrap();
        assert_eq!(out.0, vec![batch]);
    }

    #[test]
    fn limited_writes_are_whole_lines_within_the_limit() {
        let batch = lines(&[10, 20, 30, 100, 40, 5, 5]);
        let mut out = Writes::default();
        write_lines(&mut out, &batch, Some(64)).unwrap();
        let sizes: Vec<usize> = out.0.iter().map(Vec::len).collect();
        // 10+20+30 fit; the 100-byte line goes alone; 40+5+5 fit.
        assert_eq!(sizes, [60, 100, 50]);
        assert_eq!(out.0.concat(), batch);
        for write in &out.0 {
            assert_eq!(write.last(), Some(&b'\n'));
        }
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_one_write() {
        let batch = lines(&[64, 64, 1]);
        let mut out = Writes::default();
        write_lines(&mut out, &batch, Some(64)).unwrap();
        let sizes: Vec<usize> = out.0.iter().map(Vec::len).collect();
        assert_eq!(sizes, [64, 64, 1]);
    }

    #[test]
    fn many_small_lines_pack_up_to_the_limit() {
        let batch = lines(&[81; 200]);
        let mut out = Writes::default();
        write_lines(&mut out, &batch, Some(libc::PIPE_BUF)).unwrap();
        assert_eq!(out.0.concat(), batch);
        for write in &out.0 {
            assert!(write.len() <= libc::PIPE_BUF && write.len() > libc::PIPE_BUF - 81);
            assert_eq!(write.len() % 81, 0);
        }
    }
}
