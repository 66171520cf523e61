//! Responses handed from the WSGI threads back to a single-threaded runtime without a
//! wake-up syscall.
//!
//! A response made on another thread reaches its connection's task through a tokio waker,
//! and a wake from outside a current-thread runtime always writes its eventfd (whether the
//! runtime sleeps or not), after which the runtime returns from `epoll_wait` once more. So
//! when responses are due, a runtime about to park first spins a moment, yielding its core
//! (on a loaded machine, the core the WSGI thread needs): the responses that arrive
//! meanwhile are left here, and the runtime wakes their tasks from its own thread.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::response::{Delivery, ResponseOutbox};

/// How long a runtime waits for due responses before it parks.
const SPIN_FOR: Duration = Duration::from_micros(100);
/// After this many spins in a row that waited in vain (an app slower than the spin), the
/// runtime parks at once, trying a spin again only every [`RETRY_EVERY`] parks.
const MISSES_BEFORE_BACKOFF: u32 = 3;
const RETRY_EVERY: u32 = 32;

#[derive(Default)]
pub struct Handoff {
    /// Responses awaited from other threads.
    awaited: AtomicUsize,
    /// Spins in a row that got nothing, and parks since the runtime stopped spinning
    /// (touched by the runtime's thread only).
    misses: AtomicU32,
    skipped: AtomicU32,
    mailbox: Mutex<Mailbox>,
}

#[derive(Default)]
struct Mailbox {
    /// The runtime is spinning in `before_park`: deliveries wait here for it.
    spinning: bool,
    deliveries: Vec<Delivery>,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Handoff>>> = const { RefCell::new(None) };
}

impl Handoff {
    /// Makes `handoff` the one of the runtime this thread drives.
    pub fn install(handoff: Arc<Handoff>) {
        CURRENT.with(|current| *current.borrow_mut() = Some(handoff));
    }

    /// The hand-off of the runtime driving this thread, if it has one.
    pub fn current() -> Option<Arc<Handoff>> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// Runs (as the runtime's `on_thread_park`) before the runtime parks: while responses are
    /// due, waits up to [`SPIN_FOR`] for them and delivers them from this thread.
    pub fn before_park(&self) {
        if self.awaited.load(Ordering::Acquire) == 0 || self.backing_off() {
            return;
        }
        self.lock().spinning = true;
        let started = Instant::now();
        loop {
            // A response settles just before its delivery: spin on time alone.
            let due = started.elapsed() < SPIN_FOR;
            let delivered = {
                let mut mailbox = self.lock();
                if mailbox.deliveries.is_empty() && due {
                    None
                } else {
                    mailbox.spinning = false;
                    Some(std::mem::take(&mut mailbox.deliveries))
                }
            };
            match delivered {
                Some(deliveries) => {
                    let misses = if deliveries.is_empty() {
                        self.misses.load(Ordering::Relaxed) + 1
                    } else {
                        0
                    };
                    self.misses.store(misses, Ordering::Relaxed);
                    // From the runtime's thread: each wake queues the task locally.
                    for delivery in deliveries {
                        delivery();
                    }
                    return;
                }
                None => std::thread::yield_now(),
            }
        }
    }

    /// Whether spins have been in vain lately (this park goes without one).
    fn backing_off(&self) -> bool {
        if self.misses.load(Ordering::Relaxed) < MISSES_BEFORE_BACKOFF {
            return false;
        }
        let skipped = self.skipped.load(Ordering::Relaxed) + 1;
        if skipped < RETRY_EVERY {
            self.skipped.store(skipped, Ordering::Relaxed);
            return true;
        }
        // Try again: one more miss and the runtime backs off anew.
        self.skipped.store(0, Ordering::Relaxed);
        self.misses.store(MISSES_BEFORE_BACKOFF - 1, Ordering::Relaxed);
        false
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mailbox> {
        self.mailbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ResponseOutbox for Handoff {
    fn response_awaited(&self) {
        self.awaited.fetch_add(1, Ordering::AcqRel);
    }

    fn response_settled(&self) {
        self.awaited.fetch_sub(1, Ordering::AcqRel);
    }

    /// Leaves `delivery` for the spinning runtime, or runs it now (a wake-up) otherwise.
    fn deliver(&self, _runtime: &tokio::runtime::Handle, delivery: Delivery) {
        {
            let mut mailbox = self.lock();
            if mailbox.spinning {
                mailbox.deliveries.push(delivery);
                return;
            }
        }
        delivery();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_delivery_while_nothing_spins_runs_at_once() {
        let handoff = Handoff::default();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        handoff.deliver(runtime.handle(), Box::new(move || flag.store(true, Ordering::Release)));
        assert!(ran.load(Ordering::Acquire));
    }

    #[test]
    fn spins_in_vain_make_the_runtime_park_at_once_for_a_while() {
        let handoff = Handoff::default();
        handoff.response_awaited(); // never answered: every spin waits in vain
        for _ in 0..MISSES_BEFORE_BACKOFF {
            let started = Instant::now();
            handoff.before_park();
            assert!(started.elapsed() >= SPIN_FOR);
        }
        assert!(handoff.backing_off());
        for _ in 1..RETRY_EVERY - 1 {
            assert!(handoff.backing_off());
        }
        assert!(!handoff.backing_off(), "a spin is tried again");
    }

    #[test]
    fn a_delivery_while_the_runtime_spins_waits_for_it_and_runs_on_its_thread() {
        let handoff = Arc::new(Handoff::default());
        handoff.response_awaited();
        handoff.response_awaited(); // a second one still due after the first settles
        handoff.lock().spinning = true; // as `before_park` sets it
        let ran_on = Arc::new(Mutex::new(None));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let (sender, handle, record) = (handoff.clone(), runtime.handle().clone(), ran_on.clone());
        std::thread::spawn(move || {
            sender.response_settled();
            sender.deliver(
                &handle,
                Box::new(move || *record.lock().expect("lock") = Some(std::thread::current().id())),
            );
        })
        .join()
        .expect("the producer ran");
        assert!(ran_on.lock().expect("lock").is_none(), "left for the spinning runtime");
        handoff.before_park();
        assert_eq!(*ran_on.lock().expect("lock"), Some(std::thread::current().id()));
        assert!(!handoff.lock().spinning);
    }
}
