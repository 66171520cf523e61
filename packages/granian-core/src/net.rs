//! Listening sockets: TCP (socket2, for backlog and address reuse) and Unix sockets, bound
//! here and handed to the runtimes of a worker.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use socket2::{Domain, Protocol, Socket, Type};

/// Binds a TCP socket. With `reuse_port`, the socket joins the port's `SO_REUSEPORT` group, so
/// that every worker can listen on a socket of its own and the kernel spreads connections
/// among them; `listen` false only reserves the address (the main process does that, so that
/// a busy port fails the start and port 0 picks the port every worker then binds).
pub fn bind_tcp(
    address: &str,
    port: u16,
    backlog: i32,
    reuse_port: bool,
    listen: bool,
) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = (address, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("cannot resolve {address}")))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    socket.bind(&addr.into())?;
    if listen {
        socket.listen(backlog)?;
    }
    Ok(socket.into())
}

/// Binds a Unix socket at `path`, replacing a stale socket file (never another kind of file).
pub fn bind_unix(path: &Path, permissions: Option<u32>, backlog: i32) -> std::io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running server", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    if let Some(mode) = permissions {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    socket.listen(backlog)?;
    Ok(UnixListener::from(std::os::fd::OwnedFd::from(socket)))
}

/// A listening socket of either kind.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(match self {
            Self::Tcp(l) => Self::Tcp(l.try_clone()?),
            Self::Unix(l, p) => Self::Unix(l.try_clone()?, p.clone()),
        })
    }

    pub fn set_nonblocking(&self) -> std::io::Result<()> {
        match self {
            Self::Tcp(l) => l.set_nonblocking(true),
            Self::Unix(l, _) => l.set_nonblocking(true),
        }
    }

    fn raw_fd(&self) -> i32 {
        match self {
            Self::Tcp(l) => l.as_raw_fd(),
            Self::Unix(l, _) => l.as_raw_fd(),
        }
    }

    /// `(address, port)` as the scopes report the server: a Unix socket has its path, port 0.
    /// The bound TCP address; None for a Unix socket.
    pub fn tcp_address(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(..) => None,
        }
    }

    pub fn server_address(&self) -> (String, u16) {
        match self {
            Self::Tcp(l) => l
                .local_addr()
                .map(|a| (a.ip().to_string(), a.port()))
                .unwrap_or_else(|_| (String::new(), 0)),
            Self::Unix(_, path) => (path.display().to_string(), 0),
        }
    }
}

/// A bound listener owned by Python until a worker takes it.
#[pyclass(frozen, module = "granian._granian")]
pub struct SocketHolder {
    listener: Mutex<Option<Listener>>,
}

impl SocketHolder {
    pub fn take(&self) -> PyResult<Listener> {
        let guard = self
            .listener
            .lock()
            .map_err(|_| PyRuntimeError::new_err("listener lock poisoned"))?;
        let listener = guard
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("listener is closed"))?;
        Ok(listener.try_clone()?)
    }

    fn holding(listener: Listener) -> Self {
        Self {
            listener: Mutex::new(Some(listener)),
        }
    }
}

#[pymethods]
impl SocketHolder {
    #[staticmethod]
    #[pyo3(signature = (address, port, backlog, reuse_port = false, listen = true))]
    fn bind(address: &str, port: u16, backlog: i32, reuse_port: bool, listen: bool) -> PyResult<Self> {
        let listener = bind_tcp(address, port, backlog, reuse_port, listen)
            .map_err(|e| PyOSError::new_err(format!("cannot bind to {address}:{port}: {e}")))?;
        Ok(Self::holding(Listener::Tcp(listener)))
    }

    #[staticmethod]
    #[pyo3(signature = (path, permissions, backlog))]
    fn bind_unix(path: PathBuf, permissions: Option<u32>, backlog: i32) -> PyResult<Self> {
        let listener = bind_unix(&path, permissions, backlog)
            .map_err(|e| PyOSError::new_err(format!("cannot bind to unix:{}: {e}", path.display())))?;
        Ok(Self::holding(Listener::Unix(listener, path)))
    }

    /// Adopts a listening socket opened elsewhere (a parent process), by descriptor.
    #[staticmethod]
    fn from_fd(fd: i32) -> PyResult<Self> {
        if fd < 0 {
            return Err(PyOSError::new_err(format!("invalid socket descriptor {fd}")));
        }
        // SAFETY: `fd` is not negative, and the caller passes a descriptor its process holds
        // open (the parent's listener, inherited); the borrow ends with the duplication.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let owned = borrowed
            .try_clone_to_owned()
            .map_err(|e| PyOSError::new_err(format!("socket descriptor {fd}: {e}")))?;
        let socket = Socket::from(owned);
        // Served as given: it must already listen (bound and listening by whoever passed it).
        let listening = socket.r#type().ok() == Some(Type::STREAM) && socket.is_listener().unwrap_or(false);
        if !listening {
            return Err(PyOSError::new_err(format!(
                "descriptor {fd} is not a listening stream socket"
            )));
        }
        let local = socket.local_addr()?;
        let listener = match local.as_pathname() {
            Some(path) => {
                let path = path.to_path_buf();
                Listener::Unix(UnixListener::from(std::os::fd::OwnedFd::from(socket)), path)
            }
            None => Listener::Tcp(socket.into()),
        };
        Ok(Self::holding(listener))
    }

    fn fileno(&self) -> PyResult<i32> {
        let guard = self
            .listener
            .lock()
            .map_err(|_| PyRuntimeError::new_err("listener lock poisoned"))?;
        guard
            .as_ref()
            .map(|l| l.raw_fd())
            .ok_or_else(|| PyRuntimeError::new_err("listener is closed"))
    }

    #[getter]
    fn address(&self) -> String {
        self.listener
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|l| l.server_address().0))
            .unwrap_or_default()
    }

    #[getter]
    fn port(&self) -> u16 {
        self.listener
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|l| l.server_address().1))
            .unwrap_or(0)
    }

    #[getter]
    fn is_unix(&self) -> bool {
        matches!(self.listener.lock().ok().as_deref(), Some(Some(Listener::Unix(..))))
    }

    fn close(&self) {
        if let Ok(mut guard) = self.listener.lock() {
            guard.take();
        }
    }
}
