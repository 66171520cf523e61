//! What one connection is doing, as its requests and its socket see it: the timers that close
//! idle and silent connections, and a graceful drain on shutdown, read it.
//!
//! hyper's own HTTP/1 header timer starts as soon as a connection waits for its next request,
//! so it cannot tell a keep-alive connection at rest from a client that is slow to send its
//! headers, and hyper-util's protocol detection waits for the first bytes with no timer at
//! all. The server keeps these times itself instead: requests in flight, when the connection
//! last fell idle, and when the first byte of the next request arrived.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// The state of one connection, shared by its service (requests begin and end), its socket
/// (bytes arrive) and the task that drives it (timers, shutdown).
pub struct Activity {
    opened: Instant,
    in_flight: AtomicU32,
    /// When (ms after `opened`) the connection last had no request in flight.
    idle_since: AtomicU64,
    /// Whether bytes arrived since then (the next request is on its way), and when.
    received: AtomicBool,
    received_at: AtomicU64,
    /// Requests served so far: a fresh connection is held to the header timer, not the
    /// keep-alive one.
    served: AtomicU64,
    /// Set on shutdown: HTTP/1 responses from now on close their connection.
    draining: AtomicBool,
    http2: AtomicBool,
}

/// Where a connection stands for its timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Requests in flight: the body read timeout and the app are in charge.
    Busy,
    /// Nothing in flight and no byte of a next request: at rest since `since`.
    Idle { since: Duration, fresh: bool },
    /// The first bytes of a request arrived at `since`, its head is not complete yet.
    Receiving { since: Duration },
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            received: AtomicBool::new(false),
            received_at: AtomicU64::new(0),
            served: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            http2: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// How long the connection has been open.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// A request head was read: the guard ends the request when the response is done with.
    pub fn begin(self: &Arc<Self>, http2: bool) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.received.store(false, Ordering::Relaxed);
        if http2 && !self.http2.load(Ordering::Relaxed) {
            self.http2.store(true, Ordering::Relaxed);
        }
        InFlight(self.clone())
    }

    fn end(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.idle_since.store(self.now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn arrived(&self) {
        if !self.received.load(Ordering::Relaxed) {
            self.received_at.store(self.now_ms(), Ordering::Relaxed);
            self.received.store(true, Ordering::Release);
        }
    }

    pub fn phase(&self) -> Phase {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Phase::Busy;
        }
        if self.received.load(Ordering::Acquire) {
            return Phase::Receiving {
                since: Duration::from_millis(self.received_at.load(Ordering::Relaxed)),
            };
        }
        Phase::Idle {
            since: Duration::from_millis(self.idle_since.load(Ordering::Relaxed)),
            fresh: self.served.load(Ordering::Relaxed) == 0,
        }
    }

    pub fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// One request in flight on a connection; dropped with its response body (written out, or
/// abandoned by hyper when the client went away).
pub struct InFlight(Arc<Activity>);

impl InFlight {
    /// Whether its connection is draining (the worker shuts down).
    pub fn connection_draining(&self) -> bool {
        self.0.is_draining()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A connection's socket, noting in its [`Activity`] when bytes arrive.
pub struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.arrived();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The connection timers' settings.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    /// From the first byte of a request (or from the connection's start, for its first
    /// request) to its complete head.
    pub header_read: Duration,
    /// How long an HTTP/1 connection may rest between requests.
    pub keep_alive: Duration,
    /// On shutdown, how long a connection at rest is given to send a request it may already
    /// be sending: it is answered (with `Connection: close`) rather than cut off.
    pub drain_grace: Duration,
}

/// How long, on shutdown, a connection at rest is given to send a request it may already be
/// sending.
pub const DRAIN_GRACE: Duration = Duration::from_millis(1000);

/// How often a busy connection is looked at again, at most.
const BUSY_RECHECK: Duration = Duration::from_millis(250);

/// What the driving task should do with a connection now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it; look again at the latest after this long.
    Wait(Duration),
    /// Close it (gracefully: nothing is in flight).
    Close,
    /// Drop it: no request (or no complete request head) arrived in time. Nothing is in
    /// flight, and hyper would keep waiting for the head it started, or for the HTTP/2 preface.
    Abort,
}

/// Whether a connection may be closed to make room for new ones when the backpressure budget
/// is spent: one at rest for a while after a response, or one that has sent nothing for a while.
pub fn evictable(activity: &Activity, timers: &Timers) -> bool {
    match activity.phase() {
        // At rest a while (a client about to send would likely have sent): HTTP/1 only, an
        // HTTP/2 connection may be multiplexing a client's next requests.
        Phase::Idle { since, fresh } => {
            (fresh || !activity.is_http2()) && activity.age().saturating_sub(since) >= timers.drain_grace
        }
        Phase::Busy | Phase::Receiving { .. } => false,
    }
}

/// What a worker's accept loops tell all its connections at once: shutdown began, or the
/// backpressure budget is spent and connections at rest should make room.
#[derive(Default)]
pub struct Signals {
    notify: Notify,
    shutdown: AtomicBool,
    pressure: AtomicU64,
}

impl Signals {
    pub fn shut_down(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn press(&self) {
        self.pressure.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// A wake-up for the next signal: enable it before reading the flags, so that none is missed.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    pub fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// How many times the budget ran out so far.
    pub fn pressure(&self) -> u64 {
        self.pressure.load(Ordering::Acquire)
    }
}

/// The timers' verdict on a connection; `drain_started` is the connection's age when
/// shutdown began.
pub fn verdict(activity: &Activity, timers: &Timers, drain_started: Option<Duration>) -> Verdict {
    let now = activity.age();
    // The state may change any time (a request ends): look again within the shortest timer.
    let mut recheck = timers.header_read.min(timers.keep_alive);
    if drain_started.is_some() {
        recheck = recheck.min(timers.drain_grace);
    }
    match verdict_now(activity, timers, drain_started, now) {
        Verdict::Wait(left) => Verdict::Wait(left.min(recheck).max(MIN_WAIT)),
        other => other,
    }
}

/// Timers shorter than this are looked at this often, not more.
const MIN_WAIT: Duration = Duration::from_millis(10);

fn verdict_now(activity: &Activity, timers: &Timers, drain_started: Option<Duration>, now: Duration) -> Verdict {
    let limit_from = |start: Duration, limit: Duration| match (start + limit).checked_sub(now) {
        Some(left) if !left.is_zero() => Verdict::Wait(left),
        _ => Verdict::Close,
    };
    let head_limit_from = |start: Duration| match limit_from(start, timers.header_read) {
        Verdict::Close => Verdict::Abort,
        waiting => waiting,
    };
    match (activity.phase(), drain_started) {
        (Phase::Busy, _) => Verdict::Wait(
            timers
                .keep_alive
                .min(timers.header_read)
                .clamp(BUSY_RECHECK, BUSY_RECHECK * 4),
        ),
        (Phase::Receiving { since }, _) if !activity.is_http2() => head_limit_from(since),
        (Phase::Idle { since, fresh: true }, Some(drain)) => match limit_from(since.max(drain), timers.drain_grace) {
            Verdict::Close => Verdict::Abort,
            waiting => waiting,
        },
        (Phase::Idle { since, fresh: false }, Some(drain)) => limit_from(since.max(drain), timers.drain_grace),
        (_, Some(_)) => Verdict::Wait(timers.drain_grace),
        // HTTP/2 keeps itself alive (pings): only its silent start is timed.
        (Phase::Idle { fresh: false, .. } | Phase::Receiving { .. }, None) if activity.is_http2() => {
            Verdict::Wait(timers.keep_alive.max(timers.header_read).max(BUSY_RECHECK * 4))
        }
        (Phase::Idle { since, fresh: true }, None) => head_limit_from(since),
        (Phase::Idle { since, fresh: false }, None) => limit_from(since, timers.keep_alive),
        (Phase::Receiving { since }, None) => head_limit_from(since),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMERS: Timers = Timers {
        header_read: Duration::from_secs(30),
        keep_alive: Duration::from_secs(5),
        drain_grace: Duration::from_secs(1),
    };

    #[test]
    fn a_silent_new_connection_is_held_to_the_header_timer() {
        let activity = Activity::new();
        match verdict_now(&activity, &TIMERS, None, activity.age()) {
            Verdict::Wait(left) => assert!(left > Duration::from_secs(29)),
            other => panic!("{other:?}"),
        }
        // Looked at again within the shortest timer: a request may end meanwhile.
        match verdict(&activity, &TIMERS, None) {
            Verdict::Wait(left) => assert!(left <= TIMERS.keep_alive),
            other => panic!("{other:?}"),
        }
        let short = Timers {
            header_read: Duration::ZERO,
            ..TIMERS
        };
        assert_eq!(verdict(&activity, &short, None), Verdict::Abort);
    }

    #[test]
    fn a_connection_at_rest_after_a_request_is_held_to_the_keep_alive_timer() {
        let activity = Activity::new();
        drop(activity.begin(false));
        match verdict(&activity, &TIMERS, None) {
            Verdict::Wait(left) => assert!(left <= Duration::from_secs(5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_in_flight_is_never_closed_by_the_timers() {
        let activity = Activity::new();
        let request = activity.begin(false);
        let none = Timers {
            header_read: Duration::ZERO,
            keep_alive: Duration::ZERO,
            drain_grace: Duration::ZERO,
        };
        assert!(matches!(verdict(&activity, &none, None), Verdict::Wait(_)));
        assert!(matches!(
            verdict(&activity, &none, Some(Duration::ZERO)),
            Verdict::Wait(_)
        ));
        drop(request);
        assert_eq!(verdict(&activity, &none, None), Verdict::Close);
    }

    #[test]
    fn draining_gives_a_connection_at_rest_a_grace_then_closes_it() {
        let activity = Activity::new();
        drop(activity.begin(false));
        assert!(matches!(
            verdict(&activity, &TIMERS, Some(activity.age())),
            Verdict::Wait(_)
        ));
        let no_grace = Timers {
            drain_grace: Duration::ZERO,
            ..TIMERS
        };
        assert_eq!(verdict(&activity, &no_grace, Some(activity.age())), Verdict::Close);
    }

    #[test]
    fn a_head_that_does_not_complete_in_time_is_aborted() {
        let activity = Activity::new();
        activity.arrived();
        let none = Timers {
            header_read: Duration::ZERO,
            ..TIMERS
        };
        assert_eq!(verdict(&activity, &none, None), Verdict::Abort);
        assert!(matches!(verdict(&activity, &TIMERS, None), Verdict::Wait(_)));
    }

    #[test]
    fn http2_at_rest_is_left_to_its_own_keep_alive() {
        let activity = Activity::new();
        drop(activity.begin(true));
        activity.arrived(); // a ping
        let none = Timers {
            header_read: Duration::ZERO,
            keep_alive: Duration::ZERO,
            drain_grace: Duration::ZERO,
        };
        assert!(matches!(verdict(&activity, &none, None), Verdict::Wait(_)));
    }

    #[test]
    fn bytes_of_a_next_request_switch_to_the_header_timer() {
        let activity = Activity::new();
        drop(activity.begin(false));
        activity.arrived();
        assert!(matches!(activity.phase(), Phase::Receiving { .. }));
        let request = activity.begin(false);
        assert_eq!(activity.phase(), Phase::Busy);
        drop(request);
        assert!(matches!(activity.phase(), Phase::Idle { fresh: false, .. }));
    }
}
