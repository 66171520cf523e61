//! Tokio runtimes per mode, the accept loop with its backpressure, graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handoff::Handoff;
use crate::http::activity::Signals;
use crate::http::server::{serve_connection, Handler, ServerContext};
use crate::http3::Http3Listener;
use crate::metrics::meter::Held;
use crate::metrics::region::{Counter, Gauge};
use crate::net::Listener;
use crate::tls::TlsInfo;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeMode {
    /// N single-threaded runtimes, each with its own accept loop.
    St,
    /// One runtime with N threads.
    Mt,
}

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub mode: RuntimeMode,
    pub threads: usize,
    pub blocking_threads: usize,
    pub backpressure: usize,
}

/// What every accept loop of a worker shares.
struct Shared<H> {
    handler: Arc<H>,
    tls: Option<(TlsAcceptor, Arc<str>)>,
    server: Arc<ServerContext>,
    shutdown: CancellationToken,
    /// Shutdown and budget pressure, for every connection.
    signals: Arc<Signals>,
    permits: Arc<Semaphore>,
    remaining: AtomicUsize,
    on_stopped: Box<dyn Fn() + Send + Sync>,
}

/// Starts the runtime threads and returns at once; `on_stopped` runs (on a runtime thread)
/// once shutdown was asked for and every connection has finished.
#[allow(clippy::too_many_arguments)]
pub fn start<H: Handler>(
    config: &RuntimeConfig,
    listener: Listener,
    handler: Arc<H>,
    server: ServerContext,
    tls: Option<(TlsAcceptor, Arc<str>)>,
    mut http3: Option<Http3Listener>,
    shutdown: CancellationToken,
    on_stopped: Box<dyn Fn() + Send + Sync>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    listener.set_nonblocking()?;
    let loops = match config.mode {
        RuntimeMode::St => config.threads.max(1),
        RuntimeMode::Mt => 1,
    };
    let shared = Arc::new(Shared {
        handler,
        tls,
        server: Arc::new(server),
        shutdown,
        signals: Arc::new(Signals::default()),
        permits: Arc::new(Semaphore::new(config.backpressure.clamp(1, Semaphore::MAX_PERMITS))),
        remaining: AtomicUsize::new(loops),
        on_stopped,
    });
    let mut threads = Vec::with_capacity(loops);
    for idx in 0..loops {
        // A single-threaded runtime takes responses from other threads without a wake-up
        // while it waits for them (see `handoff.rs`).
        let handoff = (config.mode == RuntimeMode::St).then(|| Arc::new(Handoff::default()));
        let mut builder = match config.mode {
            RuntimeMode::St => tokio::runtime::Builder::new_current_thread(),
            RuntimeMode::Mt => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(config.threads.max(1));
                b
            }
        };
        if let Some(handoff) = &handoff {
            let handoff = handoff.clone();
            builder.on_thread_park(move || handoff.before_park());
        }
        let runtime = builder
            .max_blocking_threads(config.blocking_threads.max(1))
            .thread_name(format!("granian-rt-{idx}"))
            .enable_all()
            .build()?;
        let listener = listener.try_clone()?;
        let shared = shared.clone();
        // QUIC has one endpoint per worker: the first runtime drives it.
        let quic = http3.take();
        let thread = std::thread::Builder::new()
            .name(format!("granian-rt-{idx}"))
            .spawn(move || {
                if let Some(handoff) = handoff {
                    Handoff::install(handoff);
                }
                runtime.block_on(async {
                    let quic = quic.map(|quic| {
                        let cert = shared.tls.as_ref().map(|(_, cert)| cert.clone()).unwrap_or_default();
                        tokio::spawn(quic.serve(
                            shared.handler.clone(),
                            shared.server.clone(),
                            cert,
                            shared.shutdown.clone(),
                        ))
                    });
                    accept_loop(listener, shared.clone()).await;
                    if let Some(quic) = quic {
                        let _ = quic.await;
                    }
                });
                if shared.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    (shared.on_stopped)();
                }
                // Leftover tasks (body reads the app abandoned) must not delay the exit.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        threads.push(thread);
    }
    Ok(threads)
}

/// The tokio side of a listener.
enum Accepting {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

impl Accepting {
    fn register(listener: Listener) -> std::io::Result<Self> {
        Ok(match listener {
            Listener::Tcp(l) => {
                // Responses leave as soon as they are written (no Nagle delay).
                socket2::SockRef::from(&l).set_tcp_nodelay(true)?;
                Self::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
            Listener::Unix(l, _) => Self::Unix(tokio::net::UnixListener::from_std(l)?),
        })
    }

    /// Whether clients wait in the accept queue. Linux tells for TCP (the queue length is
    /// `tcpi_unacked` of a listening socket); elsewhere, and for Unix sockets, assume so.
    fn clients_waiting(&self) -> bool {
        #[cfg(target_os = "linux")]
        if let Self::Tcp(listener) = self {
            use std::os::fd::AsRawFd;
            // SAFETY: an all-zero `tcp_info` is a valid value of this plain C struct.
            let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            // SAFETY: the descriptor is the listener's own, open for this call; `info` and
            // `len` point to writable memory of the size `len` says.
            let done = unsafe {
                libc::getsockopt(
                    listener.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_INFO,
                    (&mut info as *mut libc::tcp_info).cast(),
                    &mut len,
                )
            };
            if done == 0 {
                return info.tcpi_unacked > 0;
            }
        }
        true
    }

    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Self::Tcp(l) => l.accept().await.map(|(s, peer)| {
                // Linux hands the listener's TCP_NODELAY to every accepted socket (set once in
                // `register`); elsewhere each connection sets it.
                #[cfg(not(target_os = "linux"))]
                let _ = s.set_nodelay(true);
                Accepted::Tcp(s, peer)
            }),
            Self::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        }
    }
}

/// TLS (when configured), then HTTP, on one accepted stream.
async fn serve_stream<IO, H>(io: IO, peer: SocketAddr, shared: Arc<Shared<H>>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let handler = shared.handler.clone();
    let server = shared.server.clone();
    let signals = shared.signals.clone();
    let meter = shared.server.meter.clone();
    let _open = meter.as_ref().map(|meter| {
        meter.count(Counter::ConnectionsHandled, 1);
        Held::new(meter, Gauge::ConnectionsActive)
    });
    // The connection's state (hyper's, rustls's) is several KiB: it lives in its own box so the
    // task spawned per accepted socket stays small and is not copied whole on spawn.
    let served = match &shared.tls {
        None => {
            let connection = Box::pin(serve_connection(io, peer, None, handler, server, signals));
            connection.await
        }
        Some((acceptor, server_cert)) => {
            let connection = Box::pin(serve_tls(io, peer, acceptor, server_cert, handler, server, signals));
            connection.await
        }
    };
    if let (false, Some(meter)) = (served, &meter) {
        meter.count(Counter::ConnectionsErr, 1);
    }
}

/// The TLS handshake (bounded in time), then HTTP over it. `false` when either failed.
async fn serve_tls<IO, H>(
    io: IO,
    peer: SocketAddr,
    acceptor: &TlsAcceptor,
    server_cert: &Arc<str>,
    handler: Arc<H>,
    server: Arc<ServerContext>,
    signals: Arc<Signals>,
) -> bool
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(stream)) => {
            let info = Arc::new(TlsInfo::from_connection(stream.get_ref().1, server_cert.clone()));
            serve_connection(stream, peer, Some(info), handler, server, signals).await
        }
        failed => {
            match failed {
                Ok(Err(err)) => log::debug!("TLS handshake with {peer} failed: {err}"),
                _ => log::debug!("TLS handshake with {peer} timed out"),
            }
            if let Some(meter) = &server.meter {
                meter.count(Counter::TlsHandshakeFailures, 1);
            }
            false
        }
    }
}

/// How often a worker whose budget is spent looks for clients waiting to be accepted.
const PRESS_INTERVAL: Duration = Duration::from_millis(250);

/// The next permit once the budget is spent. While clients wait in the accept queue,
/// connections at rest are asked to close to make room for them. None on shutdown.
async fn wait_for_room<H: Handler>(shared: &Shared<H>, listener: &Accepting) -> Option<OwnedSemaphorePermit> {
    loop {
        tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => return None,
            permit = shared.permits.clone().acquire_owned() => return permit.ok(),
            _ = tokio::time::sleep(PRESS_INTERVAL) => {
                if listener.clients_waiting() {
                    shared.signals.press();
                }
            }
        }
    }
}

async fn accept_loop<H: Handler>(listener: Listener, shared: Arc<Shared<H>>) {
    let listener = match Accepting::register(listener) {
        Ok(l) => l,
        Err(err) => {
            log::error!("cannot register the listener with the runtime: {err}");
            return;
        }
    };
    let connections = TaskTracker::new();
    let paced = shared.tls.is_some();
    loop {
        let permit = match shared.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match wait_for_room(&shared, &listener).await {
                Some(permit) => permit,
                None => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors and the like: back off instead of spinning.
                log::warn!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        connections.spawn(async move {
            match accepted {
                Accepted::Tcp(stream, peer) => serve_stream(stream, peer, shared).await,
                // Unix peers have no address: the scopes report an unspecified one.
                Accepted::Unix(stream) => serve_stream(stream, SocketAddr::from(([0, 0, 0, 0], 0)), shared).await,
            }
            drop(permit);
        });
        // A TLS connection starts with a handshake of about 0.3 ms of CPU. Taking every
        // waiting client at once queued a burst of handshakes ahead of the requests already
        // in flight (p99 of TLS requests on new connections: 15-20 ms against 10-13);
        // letting the runtime's other tasks run between two accepts spreads them out. Plain
        // connections cost too little to start for that to pay.
        if paced {
            tokio::task::yield_now().await;
        }
    }
    drop(listener);
    shared.signals.shut_down();
    connections.close();
    connections.wait().await;
}
