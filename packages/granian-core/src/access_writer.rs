//! Access lines written straight to the stream of the default `granian.access` handler.
//!
//! Handing every line to Python's `logging` costs a loop job, a log record and a flushed
//! write per request. While `granian.access` still has the handler the server installed
//! (plain `%(message)s` lines on stdout), the same bytes are written from here instead:
//! runtime threads append to a buffer and one thread writes whatever piled up within
//! [`BATCH_WINDOW`] in a single `write`, so a busy worker pays one wake-up and one syscall
//! per window rather than per request, and never takes the GIL for it.

use std::fs::File;
use std::io::Write;
use std::os::fd::{BorrowedFd, RawFd};
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
                        if let Err(err) = out.write_all(&batch) {
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
