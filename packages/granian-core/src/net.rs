//! Listening sockets: bound here (socket2, for backlog and address reuse) and handed to
//! the runtimes of a worker.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::Mutex;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use socket2::{Domain, Protocol, Socket, Type};

pub fn bind_tcp(address: &str, port: u16, backlog: i32) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = (address, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("cannot resolve {address}")))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// A bound TCP listener owned by Python until a worker takes it.
#[pyclass(frozen, module = "granian._granian")]
pub struct SocketHolder {
    listener: Mutex<Option<TcpListener>>,
    local: SocketAddr,
}

impl SocketHolder {
    pub fn take(&self) -> PyResult<TcpListener> {
        let guard = self
            .listener
            .lock()
            .map_err(|_| PyRuntimeError::new_err("listener lock poisoned"))?;
        let listener = guard
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("listener is closed"))?;
        Ok(listener.try_clone()?)
    }
}

#[pymethods]
impl SocketHolder {
    #[staticmethod]
    fn bind(address: &str, port: u16, backlog: i32) -> PyResult<Self> {
        let listener = bind_tcp(address, port, backlog)
            .map_err(|e| PyOSError::new_err(format!("cannot bind to {address}:{port}: {e}")))?;
        let local = listener.local_addr()?;
        Ok(Self {
            listener: Mutex::new(Some(listener)),
            local,
        })
    }

    /// Adopts a listening socket opened elsewhere (a parent process), by descriptor.
    #[staticmethod]
    fn from_fd(fd: i32) -> PyResult<Self> {
        let dup = nix_dup(fd)?;
        let listener = unsafe { TcpListener::from_raw_fd(dup) };
        let local = listener.local_addr()?;
        Ok(Self {
            listener: Mutex::new(Some(listener)),
            local,
        })
    }

    fn fileno(&self) -> PyResult<i32> {
        use std::os::fd::AsRawFd;
        let guard = self
            .listener
            .lock()
            .map_err(|_| PyRuntimeError::new_err("listener lock poisoned"))?;
        guard
            .as_ref()
            .map(|l| l.as_raw_fd())
            .ok_or_else(|| PyRuntimeError::new_err("listener is closed"))
    }

    #[getter]
    fn address(&self) -> String {
        self.local.ip().to_string()
    }

    #[getter]
    fn port(&self) -> u16 {
        self.local.port()
    }

    fn close(&self) {
        if let Ok(mut guard) = self.listener.lock() {
            guard.take();
        }
    }
}

fn nix_dup(fd: i32) -> PyResult<i32> {
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    Ok(borrowed.try_clone_to_owned()?.into_raw_fd())
}
