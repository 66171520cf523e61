//! The service manager's side channel (`sd_notify(3)`, `sd_listen_fds(3)`), for the main
//! process's supervisor: readiness, reload and stop notices, the watchdog, and the sockets
//! passed by socket activation. Each call does nothing when systemd did not ask for it.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use sd_notify::NotifyState;

/// Sends `states` (`"READY"`, `"RELOADING"`, `"STOPPING"`, `"WATCHDOG"`, or `"STATUS=..."`)
/// in one message to `NOTIFY_SOCKET`; false when no service manager listens.
/// `RELOADING` carries the `MONOTONIC_USEC` that systemd 253 and later require with it.
#[pyfunction]
pub fn systemd_notify(states: Vec<String>) -> PyResult<bool> {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return Ok(false);
    }
    let mut message = Vec::with_capacity(states.len() + 1);
    for state in &states {
        match state.as_str() {
            "READY" => message.push(NotifyState::Ready),
            "RELOADING" => {
                message.push(NotifyState::Reloading);
                message.push(NotifyState::monotonic_usec_now()?);
            }
            "STOPPING" => message.push(NotifyState::Stopping),
            "WATCHDOG" => message.push(NotifyState::Watchdog),
            other => match other.strip_prefix("STATUS=") {
                Some(status) => message.push(NotifyState::Status(status)),
                None => return Err(PyOSError::new_err(format!("unknown service manager notice {other:?}"))),
            },
        }
    }
    sd_notify::notify(&message).map_err(|e| PyOSError::new_err(format!("cannot notify the service manager: {e}")))?;
    Ok(true)
}

/// Seconds between two watchdog pings when the service manager watches this process:
/// half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises; None without a watchdog.
#[pyfunction]
pub fn systemd_watchdog_interval() -> Option<f64> {
    sd_notify::watchdog_enabled().map(|timeout| timeout.as_secs_f64() / 2.0)
}

/// The descriptors socket activation passed to this process (`LISTEN_FDS` and `LISTEN_PID`
/// naming it), close-on-exec from now on; empty otherwise.
#[pyfunction]
pub fn systemd_listen_fds() -> PyResult<Vec<i32>> {
    sd_notify::listen_fds()
        .map(|fds| fds.collect())
        .map_err(|e| PyOSError::new_err(format!("socket activation: {e}")))
}
