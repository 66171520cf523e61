//! Python ⇄ Rust async hand-off.
//!
//! Tokio threads never take the GIL. Whatever must touch Python is boxed as a job and
//! queued on the [`LoopBridge`]; the asyncio loop owns the read end of a socket pair
//! (`loop.add_reader`) and drains the queue on its own thread, where it already holds the
//! GIL. One wake-up byte is written per batch, not per job, so a busy loop picks up many
//! requests per epoll round.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::http::response::{Delivery, ResponseOutbox};
use crate::metrics::meter::Meter;
use crate::metrics::region::Counter;

pub type Job = Box<dyn FnOnce(Python<'_>) + Send>;

/// Deliveries that leave together at most: enough for the wake-up to be shared, few enough
/// that the first responses of a long loop pass do not wait for the last. As many as a drain
/// starts ([`DRAIN_LIMIT`]): on a core shared by both threads each wake-up of the runtime
/// is a switch, and at 512 connections a limit of 16 made 0.06 of them per request, 32 makes
/// 0.012.
const BATCH_LIMIT: usize = 32;

/// Jobs run per drain at most; the rest wait for the next pass of the loop. A job that
/// starts a request makes its task, and the task runs on the loop's next pass: every
/// request of a drain holds its objects (~15 tracked by CPython's cyclic GC) at once. At
/// 512 connections a drain held a hundred requests and more, past the 700 allocations
/// that start a collection, whose survivors (requests still running) went on to the older
/// generations and made their collections longer. 32 requests stay below it.
const DRAIN_LIMIT: usize = 32;

pub struct BridgeQueue {
    jobs: Mutex<Vec<Job>>,
    signaled: AtomicBool,
    /// With `--metrics`: where the time jobs wait for the loop is counted, and when the
    /// first job since the last drain was queued.
    meter: OnceLock<Meter>,
    first_queued: Mutex<Option<Instant>>,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    outbox: Outbox,
}

/// Deliveries from the loop thread to the runtime, handed over in batches.
///
/// Completing a response wakes the task waiting for it; from the loop thread that is a
/// cross-thread wake-up of the runtime (an eventfd write, and on a shared core often a
/// switch to the runtime thread at once, which then writes that one response alone).
/// Batched, the runtime is woken once for every response the loop produced in one pass,
/// and an HTTP/2 connection writes the frames of all its finished streams together.
struct Outbox {
    pending: Mutex<Vec<(tokio::runtime::Handle, Delivery)>>,
    /// A flush is already due: at the end of the current drain, or queued with call_soon.
    flush_due: AtomicBool,
    draining: AtomicBool,
    /// `(loop.call_soon, flusher)`: how a flush is queued when no drain is running.
    scheduler: PyOnceLock<(Py<PyAny>, Py<PyAny>)>,
    /// The loop's thread: only deliveries made there wait for the batch.
    loop_thread: OnceLock<ThreadId>,
    /// Requests of this loop still waiting for their response: when the last one answers,
    /// the batch is complete and leaves at once (a lone request waits for no loop pass).
    awaiting: AtomicUsize,
}

impl BridgeQueue {
    fn new() -> std::io::Result<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Self {
            jobs: Mutex::new(Vec::with_capacity(64)),
            signaled: AtomicBool::new(false),
            meter: OnceLock::new(),
            first_queued: Mutex::new(None),
            wake_tx,
            wake_rx,
            outbox: Outbox {
                pending: Mutex::new(Vec::with_capacity(64)),
                flush_due: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                scheduler: PyOnceLock::new(),
                loop_thread: OnceLock::new(),
                awaiting: AtomicUsize::new(0),
            },
        })
    }

    fn flush_outbox(&self) {
        let outbox = &self.outbox;
        outbox.flush_due.store(false, Ordering::Release);
        let batch = std::mem::take(&mut *outbox.pending.lock().unwrap_or_else(|e| e.into_inner()));
        // One task per runtime (one unless several single-thread runtimes serve this loop):
        // one wake-up each, and the completions happen on the runtime's own thread, where
        // waking the connections' tasks costs no syscall.
        let mut by_runtime: Vec<(tokio::runtime::Handle, Vec<Delivery>)> = Vec::new();
        for (runtime, delivery) in batch {
            match by_runtime.iter_mut().find(|(r, _)| r.id() == runtime.id()) {
                Some((_, deliveries)) => deliveries.push(delivery),
                None => by_runtime.push((runtime, vec![delivery])),
            }
        }
        for (runtime, deliveries) in by_runtime {
            runtime.spawn(async move {
                for delivery in deliveries {
                    delivery();
                }
            });
        }
    }

    /// Counts the time jobs wait for the loop into `meter`.
    pub fn meter(&self, meter: Meter) {
        let _ = self.meter.set(meter);
    }

    /// Queue a job to run on the loop thread. Callable from any thread, GIL or not.
    pub fn schedule(self: &Arc<Self>, job: Job) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).push(job);
        if !self.signaled.swap(true, Ordering::AcqRel) {
            if self.meter.get().is_some() {
                *self.first_queued.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            }
            match tokio::runtime::Handle::try_current() {
                // On a runtime thread, the wake-up waits behind the tasks already runnable:
                // the other connections that have a request ready queue theirs first, and
                // the loop thread, once woken (it takes the core at once), drains them all.
                Ok(runtime) => {
                    let queue = self.clone();
                    runtime.spawn(async move { queue.wake() });
                }
                Err(_) => self.wake(),
            }
        }
    }

    fn wake(&self) {
        // A full socket buffer means a wake-up is already pending: nothing lost.
        let _ = (&self.wake_tx).write(&[1u8]);
    }

    fn drain(&self, py: Python<'_>) {
        let mut sink = [0u8; 256];
        while let Ok(n) = (&self.wake_rx).read(&mut sink) {
            if n < sink.len() {
                break;
            }
        }
        if let Some(meter) = self.meter.get() {
            if let Some(queued) = self.first_queued.lock().unwrap_or_else(|e| e.into_inner()).take() {
                meter.count_duration(Counter::PyWaitUs, queued.elapsed());
            }
        }
        // Cleared before taking the jobs: anything queued after this line wakes us again.
        self.signaled.store(false, Ordering::Release);
        let (jobs, deferred) = {
            let mut queued = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if queued.len() > DRAIN_LIMIT {
                let rest = queued.split_off(DRAIN_LIMIT);
                (std::mem::replace(&mut *queued, rest), true)
            } else {
                (std::mem::take(&mut *queued), false)
            }
        };
        // The rest runs on the next pass, after the tasks this drain starts.
        if deferred && !self.signaled.swap(true, Ordering::AcqRel) {
            if self.meter.get().is_some() {
                *self.first_queued.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            }
            self.wake();
        }
        self.outbox.draining.store(true, Ordering::Release);
        for job in jobs {
            if catch_unwind(AssertUnwindSafe(|| job(py))).is_err() {
                log::error!("internal error while handing work to the event loop");
            }
        }
        self.outbox.draining.store(false, Ordering::Release);
        if self.outbox.flush_due.load(Ordering::Acquire) {
            self.flush_outbox();
        }
    }
}

impl ResponseOutbox for BridgeQueue {
    /// Runs `delivery` soon: from the loop's thread with the other deliveries of this loop
    /// pass (on `runtime`), from any other thread at once (an app may answer from a thread
    /// of its own; nothing would flush a batch there).
    fn deliver(&self, runtime: &tokio::runtime::Handle, delivery: Delivery) {
        let outbox = &self.outbox;
        if outbox.loop_thread.get() != Some(&std::thread::current().id()) {
            delivery();
            return;
        }
        let queued = {
            let mut pending = outbox.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.push((runtime.clone(), delivery));
            pending.len()
        };
        let draining = outbox.draining.load(Ordering::Acquire);
        // Leaves now when nothing else of this pass is coming (no other request of the loop
        // awaits its answer), or when the batch is long enough that the first answers would
        // wait too long for the last.
        if queued >= BATCH_LIMIT || (outbox.awaiting.load(Ordering::Acquire) == 0 && !draining) {
            self.flush_outbox();
            return;
        }
        if outbox.flush_due.swap(true, Ordering::AcqRel) {
            return;
        }
        if draining {
            return; // the drain flushes when its jobs are done
        }
        // Deliveries come from the loop thread, which holds the GIL: attaching is a check.
        let scheduled = Python::attach(|py| {
            outbox
                .scheduler
                .get(py)
                .is_some_and(|(call_soon, flusher)| call_soon.bind(py).call1((flusher.bind(py),)).is_ok())
        });
        if !scheduled {
            self.flush_outbox();
        }
    }

    fn response_awaited(&self) {
        self.outbox.awaiting.fetch_add(1, Ordering::AcqRel);
    }

    fn response_settled(&self) {
        self.outbox.awaiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The loop side of the bridge, given to Python so it can `add_reader` the wake socket.
#[pyclass(frozen, module = "granian._granian")]
pub struct LoopBridge {
    pub queue: Arc<BridgeQueue>,
}

#[pymethods]
impl LoopBridge {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(Self {
            queue: Arc::new(BridgeQueue::new()?),
        })
    }

    fn fileno(&self) -> i32 {
        self.queue.wake_rx.as_raw_fd()
    }

    fn drain(&self, py: Python<'_>) {
        self.queue.drain(py);
    }

    /// Lets deliveries made outside a drain be flushed with `loop.call_soon`, after the
    /// tasks that are ready in this pass of the loop. Without it they go out one by one.
    fn bind_loop(slf: &Bound<'_, Self>, event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let call_soon = event_loop.getattr("call_soon")?.unbind();
        let flusher = Py::new(
            py,
            OutboxFlusher {
                queue: Arc::downgrade(&slf.get().queue),
            },
        )?
        .into_any();
        let outbox = &slf.get().queue.outbox;
        let _ = outbox.scheduler.set(py, (call_soon, flusher));
        let _ = outbox.loop_thread.set(std::thread::current().id());
        Ok(())
    }

    /// Hands over what is still waiting in the outbox (a loop that stops before its
    /// queued flush ran).
    fn flush(&self) {
        self.queue.flush_outbox();
    }
}

/// What `call_soon` runs to flush the outbox. Weak: the queue holds this object, and a
/// strong reference back would keep both (and the loop) alive forever.
#[pyclass(frozen, module = "granian._granian")]
struct OutboxFlusher {
    queue: std::sync::Weak<BridgeQueue>,
}

#[pymethods]
impl OutboxFlusher {
    fn __call__(&self) {
        if let Some(queue) = self.queue.upgrade() {
            queue.flush_outbox();
        }
    }
}

/// Completes an asyncio future on the loop thread, unless the app already cancelled it.
pub fn resolve(
    queue: &Arc<BridgeQueue>,
    future: Py<PyAny>,
    outcome: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send + 'static,
) {
    queue.schedule(Box::new(move |py| {
        let future = future.bind(py);
        if future
            .call_method0(pyo3::intern!(py, "done"))
            .is_ok_and(|d| d.is_truthy().unwrap_or(true))
        {
            return;
        }
        let _ = match outcome(py) {
            Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,)),
            Err(err) => future.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),)),
        };
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counting_delivery(count: &Arc<AtomicUsize>) -> Delivery {
        let count = count.clone();
        Box::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
        })
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a test runtime")
    }

    #[test]
    fn jobs_queued_from_other_threads_run_on_the_drain() {
        Python::initialize();
        let queue = Arc::new(BridgeQueue::new().expect("a socket pair"));
        let ran = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (queue, ran) = (queue.clone(), ran.clone());
                std::thread::spawn(move || {
                    queue.schedule(Box::new(move |_| {
                        ran.fetch_add(1, Ordering::SeqCst);
                    }))
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a scheduling thread");
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0, "jobs run on the loop thread only");
        Python::attach(|py| queue.drain(py));
        assert_eq!(ran.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_long_queue_is_drained_over_several_passes_in_order() {
        Python::initialize();
        let queue = Arc::new(BridgeQueue::new().expect("a socket pair"));
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..DRAIN_LIMIT + 8 {
            let order = order.clone();
            queue.schedule(Box::new(move |_| order.lock().unwrap().push(i)));
        }
        let readable = |queue: &BridgeQueue| {
            let mut probe = [0u8; 1];
            // SAFETY: a nonblocking peek into a local buffer of the given length.
            let n = unsafe {
                libc::recv(
                    queue.wake_rx.as_raw_fd(),
                    probe.as_mut_ptr().cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            n == 1
        };
        Python::attach(|py| queue.drain(py));
        assert_eq!(
            order.lock().unwrap().len(),
            DRAIN_LIMIT,
            "one pass runs the first jobs only"
        );
        assert!(readable(&queue), "the rest wakes the loop again");
        Python::attach(|py| queue.drain(py));
        assert_eq!(*order.lock().unwrap(), (0..DRAIN_LIMIT + 8).collect::<Vec<_>>());
        assert!(!readable(&queue), "nothing left: no wake-up");
    }

    #[test]
    fn a_delivery_off_the_loop_thread_runs_at_once() {
        let queue = BridgeQueue::new().expect("a socket pair");
        let delivered = Arc::new(AtomicUsize::new(0));
        queue.deliver(runtime().handle(), counting_delivery(&delivered));
        assert_eq!(delivered.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn deliveries_of_a_drain_leave_together_at_its_end() {
        Python::initialize();
        let queue = Arc::new(BridgeQueue::new().expect("a socket pair"));
        queue
            .outbox
            .loop_thread
            .set(std::thread::current().id())
            .expect("unset");
        let runtime = runtime();
        let delivered = Arc::new(AtomicUsize::new(0));
        let seen_in_drain = Arc::new(AtomicUsize::new(usize::MAX));
        // Three requests await their answers; each job of the drain answers one.
        for _ in 0..3 {
            queue.response_awaited();
        }
        for _ in 0..3 {
            let (outbox, handle, delivered) = (queue.clone(), runtime.handle().clone(), delivered.clone());
            queue.schedule(Box::new(move |_| {
                outbox.response_settled();
                outbox.deliver(&handle, counting_delivery(&delivered));
            }));
        }
        let (probe, seen) = (delivered.clone(), seen_in_drain.clone());
        queue.schedule(Box::new(move |_| {
            seen.store(probe.load(Ordering::SeqCst), Ordering::SeqCst)
        }));
        Python::attach(|py| queue.drain(py));
        assert_eq!(seen_in_drain.load(Ordering::SeqCst), 0, "nothing leaves mid-drain");
        // The batch is one task on the runtime: it runs when the runtime does.
        runtime.block_on(tokio::task::yield_now());
        assert_eq!(delivered.load(Ordering::SeqCst), 3);
    }
}
