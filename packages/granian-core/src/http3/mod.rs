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
    /// Off with several workers: each has its own socket and the kernel routes packets by
    /// address, so a client whose address changed would reach a worker that does not know it.
    pub migration: bool,
    /// The largest request head accepted (QPACK-decoded), in bytes.
    pub max_headers_size: u64,
}

/// One worker's QUIC side: the socket and the TLS and transport settings it is served with.
pub struct Http3Listener {
    socket: std::net::UdpSocket,
    config: quinn::ServerConfig,
    settings: Http3Settings,
}

impl Http3Listener {
    /// Binds UDP at `addr` (the TCP listener's address). Every worker binds its own socket
    /// with SO_REUSEPORT; the kernel keeps a client's packets on one of them by address.
    pub fn bind(addr: SocketAddr, tls: &TlsSettings, settings: Http3Settings) -> Result<Self, String> {
        let socket = udp_socket(addr).map_err(|err| format!("--http3: cannot bind UDP {addr}: {err}"))?;
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
            .migration(settings.migration);
        Ok(Self {
            socket,
            config,
            settings,
        })
    }

    /// What HTTP/1.1 and HTTP/2 responses announce: HTTP/3 on the same port, for a day.
    pub fn alt_svc(&self) -> Option<HeaderValue> {
        let port = self.socket.local_addr().ok()?.port();
        HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).ok()
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
        let runtime = Arc::new(quinn::TokioRuntime);
        let endpoint = match quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(self.config),
            self.socket,
            runtime,
        ) {
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

fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // As the TCP listener: `[::]` also takes IPv4 clients.
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
