//! One QUIC connection: the TLS handshake, the HTTP/3 control streams, a task per request,
//! and a graceful end (GOAWAY, requests in flight finish) when the worker shuts down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::request::serve_request;
use crate::http::server::{Handler, ServerContext};
use crate::metrics::meter::Held;
use crate::metrics::region::{Counter, Gauge};
use crate::tls::TlsInfo;

/// `H3_NO_ERROR`: how a connection is closed once its requests are done.
const H3_NO_ERROR: u32 = 0x100;

pub type H3Connection = h3::server::Connection<h3_quinn::Connection, Bytes>;

/// What every connection of the endpoint shares.
pub struct Served<H> {
    pub handler: Arc<H>,
    pub server: Arc<ServerContext>,
    pub tls_cert: Arc<str>,
    pub shutdown: CancellationToken,
    pub max_headers_size: u64,
}

impl<H: Handler> Served<H> {
    pub async fn serve(self, incoming: quinn::Incoming) {
        let peer = incoming.remote_address();
        let meter = self.server.meter.clone();
        let _open = meter.as_ref().map(|meter| {
            meter.count(Counter::ConnectionsHandled, 1);
            Held::new(meter, Gauge::ConnectionsActive)
        });
        // (A handshake in progress when the worker stops is dropped: the client retries elsewhere.)
        let handshake = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => return,
            handshake = incoming => handshake,
        };
        let conn = match handshake {
            Ok(conn) => conn,
            Err(err) => {
                log::debug!("QUIC handshake with {peer} failed: {err}");
                if let Some(meter) = &meter {
                    meter.count(Counter::TlsHandshakeFailures, 1);
                }
                return;
            }
        };
        let tls = Arc::new(tls_info(&conn, self.tls_cert.clone()));
        let built = h3::server::builder()
            .max_field_section_size(self.max_headers_size)
            .build(h3_quinn::Connection::new(conn.clone()))
            .await;
        let h3 = match built {
            Ok(h3) => h3,
            Err(err) => {
                log::debug!("HTTP/3 connection from {peer} failed to start: {err}");
                return;
            }
        };
        if !self.drive(h3, &conn, peer, tls).await {
            if let Some(meter) = &meter {
                meter.count(Counter::ConnectionsErr, 1);
            }
        }
    }

    /// Accepts requests until the client is done or the worker shuts down; `false` when the
    /// connection ended with an error.
    async fn drive(&self, mut h3: H3Connection, conn: &quinn::Connection, peer: SocketAddr, tls: Arc<TlsInfo>) -> bool {
        let requests = TaskTracker::new();
        // Cancelled once the connection is gone: requests still running learn their client left.
        let gone = CancellationToken::new();
        let mut draining = false;
        let ok = loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled(), if !draining => {
                    draining = true;
                    // A request the client sent before it read the GOAWAY is still let in.
                    if let Err(err) = h3.shutdown(1).await {
                        log::debug!("HTTP/3 GOAWAY to {peer} failed: {err}");
                        break false;
                    }
                    requests.close();
                }
                _ = requests.wait(), if draining => break true,
                accepted = h3.accept() => match accepted {
                    Ok(Some(resolver)) => {
                        let handler = self.handler.clone();
                        let server = self.server.clone();
                        let tls = tls.clone();
                        let gone = gone.clone();
                        requests.spawn(async move {
                            // Boxed here, not moved whole through the spawn: the request's state is
                            // a few KiB.
                            let request = Box::pin(serve_request(resolver, handler, server, peer, tls));
                            tokio::select! {
                                _ = request => {}
                                // Dropping the request tells its app the client went away.
                                _ = gone.cancelled() => {}
                            }
                        });
                    }
                    // The client sent a GOAWAY and its requests are done.
                    Ok(None) => break true,
                    Err(err) => {
                        let quiet = err.is_h3_no_error()
                            || matches!(
                                conn.close_reason(),
                                Some(
                                    quinn::ConnectionError::TimedOut
                                        | quinn::ConnectionError::LocallyClosed
                                        | quinn::ConnectionError::ApplicationClosed(_)
                                )
                            );
                        if !quiet {
                            log::debug!("HTTP/3 connection from {peer} ended with an error: {err}");
                        }
                        break quiet;
                    }
                },
            }
        };
        if conn.close_reason().is_some() {
            gone.cancel();
        }
        requests.close();
        requests.wait().await;
        if conn.close_reason().is_none() {
            // The last responses may still be unacknowledged: closing now would drop them, so
            // the client gets a moment to close first.
            let _ = tokio::time::timeout(CLOSE_GRACE, conn.closed()).await;
            conn.close(H3_NO_ERROR.into(), b"");
        }
        ok
    }
}

/// How long a finished connection waits for its client to close it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

fn tls_info(conn: &quinn::Connection, server_cert: Arc<str>) -> TlsInfo {
    let client_chain = conn
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .map(|chain| *chain)
        .unwrap_or_default();
    TlsInfo::for_quic(server_cert, client_chain)
}
