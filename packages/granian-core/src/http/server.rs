//! The hyper side: connection builders from the user's settings, and serving one connection
//! until it ends or the worker shuts down.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{Method, Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::body::ResponseBody;
use super::util::version_labels;
use crate::files::StaticFiles;
use crate::log::{AccessFormat, AccessRecord};
use crate::metrics::meter::Meter;
use crate::metrics::region::Counter;
use crate::tls::TlsInfo;

/// What a protocol (RSGI, ASGI, WSGI) plugs into the HTTP server.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<ResponseBody>> + Send;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMode {
    Auto,
    Http1,
    Http2,
}

impl HttpMode {
    /// The protocols a TLS server speaking this mode offers (ALPN), preferred first.
    pub fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            HttpMode::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            HttpMode::Http1 => vec![b"http/1.1".to_vec()],
            HttpMode::Http2 => vec![b"h2".to_vec()],
        }
    }
}

#[derive(Clone, Debug)]
pub struct Http1Settings {
    pub header_read_timeout: Duration,
    pub keep_alive: bool,
    pub max_buffer_size: usize,
    pub pipeline_flush: bool,
}

#[derive(Clone, Debug)]
pub struct Http2Settings {
    pub adaptive_window: bool,
    pub initial_connection_window_size: u32,
    pub initial_stream_window_size: u32,
    pub keep_alive_interval: Option<Duration>,
    pub keep_alive_timeout: Duration,
    pub max_concurrent_streams: u32,
    pub max_frame_size: u32,
    pub max_headers_size: u32,
    pub max_send_buffer_size: usize,
}

/// Connection builders per HTTP mode. hyper-util's auto builder ignores `http1_only` /
/// `http2_only` once upgrades are enabled, so forced modes use hyper's own builders.
pub enum ConnBuilder {
    Auto(auto::Builder<TokioExecutor>),
    Http1(http1::Builder),
    Http2(http2::Builder<TokioExecutor>),
}

// The same settings apply to hyper's builders and to hyper-util's wrappers of them.
macro_rules! apply_http1 {
    ($builder:expr, $s:expr) => {
        $builder
            .timer(TokioTimer::new())
            .header_read_timeout($s.header_read_timeout)
            .keep_alive($s.keep_alive)
            .max_buf_size($s.max_buffer_size)
            .pipeline_flush($s.pipeline_flush)
    };
}

macro_rules! apply_http2 {
    ($builder:expr, $s:expr) => {
        $builder
            .timer(TokioTimer::new())
            .adaptive_window($s.adaptive_window)
            .initial_connection_window_size($s.initial_connection_window_size)
            .initial_stream_window_size($s.initial_stream_window_size)
            .keep_alive_interval($s.keep_alive_interval)
            .keep_alive_timeout($s.keep_alive_timeout)
            .max_concurrent_streams($s.max_concurrent_streams)
            .max_frame_size($s.max_frame_size)
            .max_header_list_size($s.max_headers_size)
            .max_send_buf_size($s.max_send_buffer_size)
    };
}

pub fn build(mode: HttpMode, h1: &Http1Settings, h2: &Http2Settings) -> ConnBuilder {
    match mode {
        HttpMode::Auto => {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            apply_http1!(builder.http1(), h1);
            apply_http2!(builder.http2(), h2);
            ConnBuilder::Auto(builder)
        }
        HttpMode::Http1 => {
            let mut builder = http1::Builder::new();
            apply_http1!(builder, h1);
            ConnBuilder::Http1(builder)
        }
        HttpMode::Http2 => {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            apply_http2!(builder, h2);
            ConnBuilder::Http2(builder)
        }
    }
}

/// How long shutdown waits for the first request of a just-accepted connection.
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

fn strip_body(response: &mut Response<ResponseBody>) {
    if let Some(len) = response.body().size_hint().exact() {
        if !response.headers().contains_key(CONTENT_LENGTH) {
            response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
    }
    *response.body_mut() = ResponseBody::empty();
}

/// The access log of a worker: the parsed format and where finished lines go.
pub struct AccessLog {
    pub format: AccessFormat,
    pub emit: Box<dyn Fn(String) + Send + Sync>,
}

/// What every connection of a worker shares, whatever the interface.
pub struct ServerContext {
    pub builder: ConnBuilder,
    pub scheme: &'static str,
    pub statics: Option<StaticFiles>,
    pub access: Option<AccessLog>,
    /// With `--metrics`: where this worker counts.
    pub meter: Option<Meter>,
}

async fn dispatch<H: Handler>(
    ctx: &ServerContext,
    handler: Arc<H>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    tls: Option<Arc<TlsInfo>>,
) -> Response<ResponseBody> {
    if let Some(tls) = tls {
        req.extensions_mut().insert(tls);
    }
    let version = req.version();
    let head_h2 = req.method() == Method::HEAD && version == Version::HTTP_2;
    // One clock read serves the access log and the metrics.
    let started = (ctx.access.is_some() || ctx.meter.is_some()).then(Instant::now);
    let access = ctx.access.as_ref().map(|log| {
        // Header values are shared (Bytes), not copied; no allocation when none is shown.
        let headers: Vec<Option<HeaderValue>> = log
            .format
            .header_names()
            .iter()
            .map(|name| req.headers().get(name.as_str()).cloned())
            .collect();
        (log, SystemTime::now(), req.method().clone(), req.uri().clone(), headers)
    });
    let static_response = match &ctx.statics {
        Some(statics) => statics.serve(req.method(), req.uri().path(), req.headers()).await,
        None => None,
    };
    let served_static = static_response.is_some();
    let mut response = match static_response {
        Some(response) => response,
        None => handler.handle(req, peer).await,
    };
    if let (Some(meter), Some(started)) = (&ctx.meter, started) {
        meter.request(version, response.status(), started.elapsed());
        if served_static {
            meter.count(Counter::StaticHandled, 1);
            if response.status().as_u16() >= 400 {
                meter.count(Counter::StaticErr, 1);
            }
            meter.count(Counter::StaticBytes, response.body().size_hint().exact().unwrap_or(0));
        } else {
            response.body_mut().count_into(meter.clone());
        }
    }
    if head_h2 {
        // hyper drops HEAD bodies on HTTP/1 only; on HTTP/2 keep the length, not the bytes.
        strip_body(&mut response);
    }
    if let (Some((log, time, method, uri, headers)), Some(started)) = (access, started) {
        let addr = peer.ip().to_string();
        let header_values: Vec<Option<&str>> = headers
            .iter()
            .map(|value| value.as_ref().and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()))
            .collect();
        let line = log.format.render(&AccessRecord {
            headers: &header_values,
            addr: &addr,
            time,
            dt_ms: started.elapsed().as_secs_f64() * 1000.0,
            status: response.status().as_u16(),
            path: uri.path(),
            query_string: uri.query().unwrap_or(""),
            method: method.as_str(),
            scheme: ctx.scheme,
            protocol: version_labels(version).protocol,
        });
        (log.emit)(line);
    }
    response
}

/// Serves one connection; on shutdown, lets in-flight requests finish, then closes.
/// `false` when the connection ended with an error.
pub async fn serve_connection<IO, H>(
    io: IO,
    peer: SocketAddr,
    tls: Option<Arc<TlsInfo>>,
    handler: Arc<H>,
    ctx: Arc<ServerContext>,
    shutdown: CancellationToken,
) -> bool
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let service_ctx = ctx.clone();
    let started = Arc::new(AtomicBool::new(false));
    let seen = started.clone();
    let service = service_fn(move |req| {
        seen.store(true, Ordering::Release);
        let handler = handler.clone();
        let ctx = service_ctx.clone();
        let tls = tls.clone();
        async move { Ok::<_, Infallible>(dispatch(&ctx, handler, req, peer, tls).await) }
    });
    // Each builder yields its own connection type: drive them alike, graceful on shutdown.
    macro_rules! drive {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            tokio::select! {
                biased;
                result = conn.as_mut() => result.map_err(|e| e.to_string()),
                _ = shutdown.cancelled() => {
                    // A connection accepted just before shutdown may not have sent its request
                    // yet: give it a moment, so a client is not cut off for nothing.
                    let mut finished = None;
                    if !started.load(Ordering::Acquire) {
                        tokio::select! {
                            result = conn.as_mut() => finished = Some(result.map_err(|e| e.to_string())),
                            _ = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
                        }
                    }
                    match finished {
                        Some(result) => result,
                        None => {
                            conn.as_mut().graceful_shutdown();
                            conn.await.map_err(|e| e.to_string())
                        }
                    }
                }
            }
        }};
    }
    let io = TokioIo::new(io);
    let result = match &ctx.builder {
        ConnBuilder::Auto(b) => drive!(b.serve_connection_with_upgrades(io, service)),
        ConnBuilder::Http1(b) => drive!(b.serve_connection(io, service).with_upgrades()),
        ConnBuilder::Http2(b) => drive!(b.serve_connection(io, service)),
    };
    match result {
        Ok(()) => true,
        Err(err) => {
            log::debug!("connection from {peer} ended with an error: {err}");
            false
        }
    }
}
