//! The blocking thread pool: threads spawned on demand up to a maximum, the ones above the
//! first exiting after an idle timeout. WSGI apps run here, never on a tokio thread.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::metrics::meter::Meter;
use crate::metrics::region::{Counter, Gauge};

pub type BlockingJob = Box<dyn FnOnce() + Send>;

/// How many times a thread that ran out of work yields its core before it parks. A job that
/// arrives meanwhile is taken without a futex wake-up and a sleep, which is most of the
/// cost of a hand-off when requests come back to back.
const SPIN_YIELDS: usize = 64;

/// Runs a piece of a pool thread's life: the whole thread, or one idle wait. WSGI uses it to
/// keep the GIL across consecutive jobs and release it only while waiting for work.
pub type Around = Arc<dyn Fn(&mut dyn FnMut()) + Send + Sync>;

#[cfg(test)]
fn plain() -> Around {
    Arc::new(|body: &mut dyn FnMut()| body())
}

struct State {
    /// Each job with when it was queued (kept only with metrics on).
    jobs: VecDeque<(BlockingJob, Option<Instant>)>,
    idle: usize,
    /// Idle threads already woken for a queued job, not yet running: not available again.
    notified: usize,
    /// Threads out of work but not parked yet: they look at the queue by themselves.
    spinning: usize,
    total: usize,
    stopped: bool,
}

struct Inner {
    state: Mutex<State>,
    wake: Condvar,
    max_threads: usize,
    idle_timeout: Duration,
    around_thread: Around,
    around_wait: Around,
    meter: OnceLock<Meter>,
}

#[derive(Clone)]
pub struct BlockingPool(Arc<Inner>);

impl BlockingPool {
    #[cfg(test)]
    pub fn new(max_threads: usize, idle_timeout: Duration) -> Self {
        Self::with_hooks(max_threads, idle_timeout, plain(), plain())
    }

    pub fn with_hooks(max_threads: usize, idle_timeout: Duration, around_thread: Around, around_wait: Around) -> Self {
        Self(Arc::new(Inner {
            around_thread,
            around_wait,
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: 0,
                notified: 0,
                spinning: 0,
                total: 0,
                stopped: false,
            }),
            wake: Condvar::new(),
            max_threads: max_threads.max(1),
            idle_timeout,
            meter: OnceLock::new(),
        }))
    }

    /// Reports the pool's threads, queue and time spent into `meter`.
    pub fn meter(&self, meter: Meter) {
        let _ = self.0.meter.set(meter);
    }

    pub fn spawn(&self, job: BlockingJob) {
        let meter = self.0.meter.get();
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.jobs.push_back((job, meter.map(|_| Instant::now())));
        if let Some(meter) = meter {
            meter.set(Gauge::BlockingQueue, state.jobs.len() as i64);
        }
        if state.jobs.len() <= state.spinning {
            // Each queued job has a spinning thread about to take it.
            return;
        }
        if state.idle > state.notified {
            state.notified += 1;
            drop(state);
            self.0.wake.notify_one();
            return;
        }
        if state.total < self.0.max_threads {
            state.total += 1;
            let index = state.total;
            if let Some(meter) = meter {
                meter.set(Gauge::BlockingThreads, state.total as i64);
            }
            drop(state);
            let inner = self.0.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("granian-blocking-{index}"))
                .spawn(move || run(inner));
            if let Err(err) = spawned {
                log::error!("cannot start a blocking thread: {err}");
                self.0.state.lock().unwrap_or_else(|e| e.into_inner()).total -= 1;
            }
        }
        // Otherwise every thread is busy: the job waits in the queue for the first free one.
    }

    /// Live threads.
    #[cfg(test)]
    pub fn size(&self) -> usize {
        self.0.state.lock().map(|s| s.total).unwrap_or(0)
    }

    /// Lets queued jobs finish, then stops every thread.
    pub fn stop(&self) {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner()).stopped = true;
        self.0.wake.notify_all();
    }
}

fn run(inner: Arc<Inner>) {
    let around = inner.around_thread.clone();
    around(&mut || work(&inner));
}

/// How an idle thread got back to work.
enum Woke {
    /// It saw a job (or the stop) while spinning.
    Spinning,
    Parked {
        timed_out: bool,
    },
}

fn work(inner: &Inner) {
    let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some((job, queued)) = state.jobs.pop_front() {
            let meter = inner.meter.get();
            if let Some(meter) = meter {
                meter.set(Gauge::BlockingQueue, state.jobs.len() as i64);
            }
            drop(state);
            // Timed only with metrics on: no clock read per job otherwise.
            let started = meter.map(|_| Instant::now());
            if let (Some(meter), Some(queued), Some(started)) = (meter, queued, started) {
                meter.count_duration(Counter::PyWaitUs, started.duration_since(queued));
            }
            // A panic inside a job must not take the thread (and its count) with it.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                log::error!("a blocking job panicked");
            }
            if let (Some(meter), Some(started)) = (meter, started) {
                meter.count_duration(Counter::BlockingBusyUs, started.elapsed());
            }
            state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        if state.stopped {
            break;
        }
        // The lock is given back inside the wait hook: re-taking it there, before the hook
        // restores the GIL, would invert the GIL -> lock order the job loop uses (deadlock).
        state.spinning += 1;
        let idle_since = inner.meter.get().map(|_| Instant::now());
        let mut parked = Some(state);
        let mut woke = None;
        (inner.around_wait)(&mut || {
            let Some(mut guard) = parked.take() else {
                return;
            };
            for _ in 0..SPIN_YIELDS {
                if !guard.jobs.is_empty() || guard.stopped {
                    break;
                }
                drop(guard);
                std::thread::yield_now();
                guard = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            }
            guard.spinning -= 1;
            if !guard.jobs.is_empty() || guard.stopped {
                woke = Some(Woke::Spinning);
                return;
            }
            guard.idle += 1;
            let (guard, timeout) = inner
                .wake
                .wait_timeout(guard, inner.idle_timeout)
                .unwrap_or_else(|e| e.into_inner());
            drop(guard);
            woke = Some(Woke::Parked {
                timed_out: timeout.timed_out(),
            });
        });
        let Some(woke) = woke else {
            return;
        };
        if let (Some(meter), Some(idle_since)) = (inner.meter.get(), idle_since) {
            meter.count_duration(Counter::BlockingIdleUs, idle_since.elapsed());
        }
        state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Woke::Parked { timed_out } = woke {
            state.idle -= 1;
            state.notified = state.notified.saturating_sub(1);
            if timed_out && state.jobs.is_empty() && state.total > 1 {
                break;
            }
        }
    }
    state.total -= 1;
    if let Some(meter) = inner.meter.get() {
        meter.set(Gauge::BlockingThreads, state.total as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn grows_on_demand_and_shrinks_when_idle() {
        let pool = BlockingPool::new(3, Duration::from_millis(50));
        let (tx, rx) = mpsc::channel();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        for _ in 0..3 {
            let tx = tx.clone();
            let gate = gate.clone();
            pool.spawn(Box::new(move || {
                let (lock, cv) = &*gate;
                let mut open = lock.lock().unwrap();
                while !*open {
                    open = cv.wait(open).unwrap();
                }
                tx.send(()).unwrap();
            }));
        }
        assert_eq!(pool.size(), 3);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        for _ in 0..3 {
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.size() > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(pool.size(), 1);
        pool.stop();
    }

    #[test]
    fn queues_beyond_the_maximum() {
        let pool = BlockingPool::new(1, Duration::from_secs(1));
        let (tx, rx) = mpsc::channel();
        for i in 0..10 {
            let tx = tx.clone();
            pool.spawn(Box::new(move || tx.send(i).unwrap()));
        }
        let got: Vec<i32> = (0..10)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(pool.size(), 1);
        pool.stop();
    }
}
