//! Tokio runtimes per mode, the accept loop with its backpressure, graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::server::{serve_connection, Handler, ServerContext};
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
    permits: Arc<Semaphore>,
    remaining: AtomicUsize,
    on_stopped: Box<dyn Fn() + Send + Sync>,
}

/// Starts the runtime threads and returns at once; `on_stopped` runs (on a runtime thread)
/// once shutdown was asked for and every connection has finished.
pub fn start<H: Handler>(
    config: &RuntimeConfig,
    listener: Listener,
    handler: Arc<H>,
    server: ServerContext,
    tls: Option<(TlsAcceptor, Arc<str>)>,
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
        permits: Arc::new(Semaphore::new(config.backpressure.clamp(1, Semaphore::MAX_PERMITS))),
        remaining: AtomicUsize::new(loops),
        on_stopped,
    });
    let mut threads = Vec::with_capacity(loops);
    for idx in 0..loops {
        let runtime = match config.mode {
            RuntimeMode::St => tokio::runtime::Builder::new_current_thread(),
            RuntimeMode::Mt => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(config.threads.max(1));
                b
            }
        }
        .max_blocking_threads(config.blocking_threads.max(1))
        .thread_name(format!("granian-rt-{idx}"))
        .enable_all()
        .build()?;
        let listener = listener.try_clone()?;
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("granian-rt-{idx}"))
            .spawn(move || {
                runtime.block_on(accept_loop(listener, shared.clone()));
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
            Listener::Tcp(l) => Self::Tcp(tokio::net::TcpListener::from_std(l)?),
            Listener::Unix(l, _) => Self::Unix(tokio::net::UnixListener::from_std(l)?),
        })
    }

    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Self::Tcp(l) => l.accept().await.map(|(s, peer)| {
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
    let shutdown = shared.shutdown.clone();
    let meter = shared.server.meter.clone();
    let _open = meter.as_ref().map(|meter| {
        meter.count(Counter::ConnectionsHandled, 1);
        Held::new(meter, Gauge::ConnectionsActive)
    });
    let served = match &shared.tls {
        None => serve_connection(io, peer, None, handler, server, shutdown).await,
        Some((acceptor, server_cert)) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
            Ok(Ok(stream)) => {
                let info = Arc::new(TlsInfo::from_connection(stream.get_ref().1, server_cert.clone()));
                serve_connection(stream, peer, Some(info), handler, server, shutdown).await
            }
            failed => {
                match failed {
                    Ok(Err(err)) => log::debug!("TLS handshake with {peer} failed: {err}"),
                    _ => log::debug!("TLS handshake with {peer} timed out"),
                }
                if let Some(meter) = &meter {
                    meter.count(Counter::TlsHandshakeFailures, 1);
                }
                false
            }
        },
    };
    if let (false, Some(meter)) = (served, &meter) {
        meter.count(Counter::ConnectionsErr, 1);
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
    loop {
        let permit = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => break,
            permit = shared.permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
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
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}
