//! The state of one request shared by hyper's side and the app's: whether the response was
//! fully handed over, whether the client went away, and who wants to hear about it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Called once when what it watches happens (run on whichever thread saw it).
pub type Notify = Box<dyn FnOnce() + Send>;

pub struct RequestState {
    completed: AtomicBool,
    disconnected: Mutex<Disconnect>,
}

struct Watcher {
    notify: Notify,
    /// Also fired once the response is fully handed over, not only on disconnect.
    on_complete: bool,
}

#[derive(Default)]
struct Disconnect {
    happened: bool,
    watchers: Vec<Watcher>,
}

impl Default for RequestState {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestState {
    pub fn new() -> Self {
        Self {
            completed: AtomicBool::new(false),
            disconnected: Mutex::new(Disconnect::default()),
        }
    }

    /// The response was fully handed over: watchers that asked for it fire.
    pub fn complete(&self) {
        self.completed.store(true, Ordering::Release);
        let done = {
            let mut state = self.disconnected.lock().unwrap_or_else(|e| e.into_inner());
            if !state.watchers.iter().any(|w| w.on_complete) {
                return;
            }
            let (done, kept): (Vec<Watcher>, Vec<Watcher>) = std::mem::take(&mut state.watchers)
                .into_iter()
                .partition(|w| w.on_complete);
            state.watchers = kept;
            done
        };
        // Fired outside the lock: a watcher may look at this state again.
        for watcher in done {
            (watcher.notify)();
        }
    }

    pub fn is_completed(&self) -> bool {
        self.completed.load(Ordering::Acquire)
    }

    pub fn is_disconnected(&self) -> bool {
        self.disconnected.lock().map(|d| d.happened).unwrap_or(true)
    }

    fn mark_disconnected(&self) {
        let watchers = {
            let mut state = self.disconnected.lock().unwrap_or_else(|e| e.into_inner());
            if state.happened {
                return;
            }
            state.happened = true;
            std::mem::take(&mut state.watchers)
        };
        for watcher in watchers {
            (watcher.notify)();
        }
    }

    /// Registers `notify` for a disconnect (and, with `on_complete`, for the response being
    /// fully handed over); `false`, and `notify` dropped unrun, when that already happened.
    pub fn watch(&self, on_complete: bool, notify: Notify) -> bool {
        let mut state = self.disconnected.lock().unwrap_or_else(|e| e.into_inner());
        if state.happened || (on_complete && self.is_completed()) {
            return false;
        }
        state.watchers.push(Watcher { notify, on_complete });
        true
    }
}

/// Lives as long as the client may still receive the response. Dropping it before the
/// response completed means hyper gave up on the client: the disconnect watchers fire.
pub struct DisconnectGuard(pub Arc<RequestState>);

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if !self.0.is_completed() {
            self.0.mark_disconnected();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counter() -> (Arc<AtomicUsize>, impl Fn() -> Notify) {
        let count = Arc::new(AtomicUsize::new(0));
        let shared = count.clone();
        (count, move || {
            let count = shared.clone();
            Box::new(move || {
                count.fetch_add(1, Ordering::SeqCst);
            })
        })
    }

    #[test]
    fn a_dropped_guard_before_completion_is_a_disconnect() {
        let state = Arc::new(RequestState::new());
        let (fired, notify) = counter();
        assert!(state.watch(false, notify()));
        drop(DisconnectGuard(state.clone()));
        assert!(state.is_disconnected());
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        // Once it happened, new watchers are refused rather than left waiting forever.
        assert!(!state.watch(false, notify()));
    }

    #[test]
    fn completion_fires_only_the_watchers_that_asked_for_it() {
        let state = Arc::new(RequestState::new());
        let (on_complete, notify_complete) = counter();
        let (on_disconnect, notify_disconnect) = counter();
        assert!(state.watch(true, notify_complete()));
        assert!(state.watch(false, notify_disconnect()));
        state.complete();
        assert_eq!(on_complete.load(Ordering::SeqCst), 1);
        assert_eq!(on_disconnect.load(Ordering::SeqCst), 0);
        // A completed response then dropped is not a disconnect.
        drop(DisconnectGuard(state.clone()));
        assert!(!state.is_disconnected());
        assert_eq!(on_disconnect.load(Ordering::SeqCst), 0);
        assert!(!state.watch(true, notify_complete()));
    }

    #[test]
    fn a_disconnect_fires_each_watcher_once() {
        let state = Arc::new(RequestState::new());
        let (fired, notify) = counter();
        state.watch(true, notify());
        state.watch(false, notify());
        state.mark_disconnected();
        state.mark_disconnected();
        assert_eq!(fired.load(Ordering::SeqCst), 2);
    }
}
