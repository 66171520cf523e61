//! Tokio runtimes per mode, the accept loop with its backpressure, graceful shutdown.

use std::net::TcpListener as StdTcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::server::{serve_connection, Handler, ServerContext};

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
    tls: Option<TlsAcceptor>,
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
    listener: StdTcpListener,
    handler: Arc<H>,
    server: ServerContext,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    on_stopped: Box<dyn Fn() + Send + Sync>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    listener.set_nonblocking(true)?;
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

async fn accept_loop<H: Handler>(listener: StdTcpListener, shared: Arc<Shared<H>>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
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
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of descriptors and the like: back off instead of spinning.
                log::warn!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = shared.handler.clone();
        let server = shared.server.clone();
        let shutdown = shared.shutdown.clone();
        let tls = shared.tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(stream, peer, handler, server, shutdown).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, peer, handler, server, shutdown).await,
                    Ok(Err(err)) => log::debug!("TLS handshake with {peer} failed: {err}"),
                    Err(_) => log::debug!("TLS handshake with {peer} timed out"),
                },
            }
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}
