//! HTTP/3 (`--http3`): QUIC on UDP beside the TCP listener, with quinn, h3 and h3-quinn.
//! Requests go through the same `dispatch` as HTTP/1.1 and HTTP/2 (static files, limits,
//! the app, metrics, the access log); only reading the request and writing the response
//! are HTTP/3's own (`request.rs`).

mod connection;
mod request;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use quinn::crypto::rustls::QuicServerConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::server::{Handler, ServerContext};
use crate::tls::{server_config, TlsSettings};

/// The QUIC settings a user chooses (`--http3-*`).
#[derive(Clone, Copy, Debug)]
pub struct Http3Settings {
    pub idle_timeout: Duration,
    pub max_concurrent_streams: u32,
    /// The only worker on its port. Several workers each bind the port (SO_REUSEPORT) and the
    /// kernel routes packets by client address, which holds only while neither the client's
    /// address nor the set of sockets changes: so clients may migrate only to a sole worker, and
    /// a sole worker binds the port alone, its replacement on a reload waiting until the port
    /// is free (the predecessor's connections keep their packets until they end).
    pub sole_worker: bool,
    /// The largest request head accepted (QPACK-decoded), in bytes.
    pub max_headers_size: u64,
}

/// One worker's QUIC side: its socket (bound later when a predecessor still holds the port)
/// and the TLS and transport settings it is served with.
pub struct Http3Listener {
    addr: SocketAddr,
    socket: Option<std::net::UdpSocket>,
    config: quinn::ServerConfig,
    settings: Http3Settings,
}

impl Http3Listener {
    /// Binds UDP at `addr` (the TCP listener's address).
    pub fn bind(addr: SocketAddr, tls: &TlsSettings, settings: Http3Settings) -> Result<Self, String> {
        let socket = match udp_socket(addr, !settings.sole_worker) {
            Ok(socket) => Some(socket),
            // A worker being replaced still serves it: `serve` waits for it.
            Err(err) if settings.sole_worker && err.kind() == std::io::ErrorKind::AddrInUse => None,
            Err(err) => return Err(format!("--http3: cannot bind UDP {addr}: {err}")),
        };
        let crypto = server_config(&tls.with_alpn(vec![b"h3".to_vec()]))?;
        let crypto = QuicServerConfig::try_from(crypto).map_err(|err| format!("--http3: {err}"))?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(settings.idle_timeout)
                    .map_err(|err| format!("--http3-idle-timeout: {err}"))?,
            ))
            .max_concurrent_bidi_streams(settings.max_concurrent_streams.into());
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config
            .transport_config(Arc::new(transport))
            .migration(settings.sole_worker);
        Ok(Self {
            addr,
            socket,
            config,
            settings,
        })
    }

    /// What HTTP/1.1 and HTTP/2 responses announce: HTTP/3 on the same port, for a day.
    pub fn alt_svc(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("h3=\":{}\"; ma=86400", self.addr.port())).ok()
    }

    /// Serves QUIC connections until `shutdown`; then each connection gets a GOAWAY, its
    /// requests in flight finish, and it is closed. Must run inside the runtime.
    pub async fn serve<H: Handler>(
        self,
        handler: Arc<H>,
        server: Arc<ServerContext>,
        tls_cert: Arc<str>,
        shutdown: CancellationToken,
    ) {
        let socket = match self.socket {
            Some(socket) => socket,
            None => match wait_for_port(self.addr, &shutdown).await {
                Some(socket) => socket,
                None => return,
            },
        };
        let runtime = Arc::new(quinn::TokioRuntime);
        let endpoint = match quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(self.config), socket, runtime)
        {
            Ok(endpoint) => endpoint,
            Err(err) => {
                log::error!("HTTP/3: cannot start the QUIC endpoint: {err}");
                return;
            }
        };
        let connections = TaskTracker::new();
        loop {
            let incoming = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                incoming = endpoint.accept() => incoming,
            };
            let Some(incoming) = incoming else { break };
            let served = connection::Served {
                handler: handler.clone(),
                server: server.clone(),
                tls_cert: tls_cert.clone(),
                shutdown: shutdown.clone(),
                max_headers_size: self.settings.max_headers_size,
            };
            connections.spawn(served.serve(incoming));
        }
        // New connections are refused from now on; those open drain.
        endpoint.set_server_config(None);
        connections.close();
        connections.wait().await;
        // Lets the closes reach the clients before the socket goes.
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
}

/// How often a sole worker tries again for a port its predecessor still holds, and after how
/// long it says so.
const PORT_RETRY: Duration = Duration::from_millis(100);
const PORT_WAIT_WARNING: Duration = Duration::from_secs(10);

/// The port, once the worker that held it is gone (it finishes its connections first); None
/// on shutdown. Until then HTTP/3 clients are refused by that worker and use HTTP/2.
async fn wait_for_port(addr: SocketAddr, shutdown: &CancellationToken) -> Option<std::net::UdpSocket> {
    let started = tokio::time::Instant::now();
    let mut warned = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(PORT_RETRY) => {}
        }
        match udp_socket(addr, false) {
            Ok(socket) => return Some(socket),
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
                if !warned && started.elapsed() >= PORT_WAIT_WARNING {
                    warned = true;
                    log::warn!("HTTP/3: UDP {addr} is still taken (by the worker being replaced?): waiting for it");
                }
            }
            Err(err) => {
                log::error!("HTTP/3: cannot bind UDP {addr}: {err}");
                return None;
            }
        }
    }
}

fn udp_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // As the TCP listener: `[::]` also takes IPv4 clients.
        socket.set_only_v6(false)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
