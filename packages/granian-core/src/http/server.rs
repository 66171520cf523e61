//! The hyper side: connection builders from the user's settings, and serving one connection
//! until it ends or the worker shuts down.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderValue, ALT_SVC, CONNECTION, CONTENT_LENGTH, SERVER};
use http::{Method, Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

use super::activity::{evictable, verdict, Activity, Signals, Timers, Verdict, Watched};
use super::body::ResponseBody;
use super::limits::{BodyLimits, BodySource, IncomingBody, Refusal};
use super::response::{error_response, settle_length};
use super::util::version_labels;
use crate::files::StaticFiles;
use crate::log::{AccessFormat, AccessRecord};
use crate::metrics::meter::Meter;
use crate::metrics::region::Counter;
use crate::tls::TlsInfo;

/// What a protocol (RSGI, ASGI, WSGI) plugs into the HTTP server.
pub trait Handler: Send + Sync + 'static {
    /// Whether websocket upgrades reach the app (then HTTP/2 offers them too).
    fn takes_websockets(&self) -> bool {
        false
    }

    fn handle(
        self: Arc<Self>,
        req: Request<IncomingBody>,
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
    pub keep_alive_timeout: Duration,
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
        // The header and keep-alive timers are the server's own (`activity.rs`).
        $builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
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

/// `websockets`: HTTP/2 also takes websockets (RFC 8441's extended CONNECT, announced with
/// `SETTINGS_ENABLE_CONNECT_PROTOCOL`).
pub fn build(mode: HttpMode, h1: &Http1Settings, h2: &Http2Settings, websockets: bool) -> ConnBuilder {
    match mode {
        HttpMode::Auto => {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            apply_http1!(builder.http1(), h1);
            apply_http2!(builder.http2(), h2);
            if websockets {
                builder.http2().enable_connect_protocol();
            }
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
            if websockets {
                builder.enable_connect_protocol();
            }
            ConnBuilder::Http2(builder)
        }
    }
}

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
    pub timers: Timers,
    pub limits: BodyLimits,
    /// With `--http3`: the `Alt-Svc` every HTTP/1.1 and HTTP/2 response carries.
    pub alt_svc: Option<HeaderValue>,
}

/// An answer the server gives itself; on HTTP/1 it closes the connection (the rest of the
/// request may still be on its way).
fn refuse(status: http::StatusCode, version: Version) -> Response<ResponseBody> {
    let mut response = error_response(status);
    if version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// One request, whatever carried it: static files, limits, the app, metrics and the access
/// log. The transport writes the response out.
///
/// Not an async fn: the request is prepared before the future exists, so the future (boxed,
/// once per request) holds only what crosses its awaits; an async fn kept every argument and
/// temporary alive in it, ~1.8 KiB, past the allocator's fast path for small blocks.
pub fn dispatch<'a, H: Handler>(
    ctx: &'a ServerContext,
    handler: Arc<H>,
    parts: http::request::Parts,
    body: BodySource,
    peer: SocketAddr,
    tls: Option<Arc<TlsInfo>>,
) -> impl Future<Output = Response<ResponseBody>> + Send + 'a {
    let refused = ctx.limits.check_declared(&parts.headers);
    let (body, refusal) = IncomingBody::new(body, ctx.limits);
    let mut req = Request::from_parts(parts, body);
    if let Some(tls) = tls {
        req.extensions_mut().insert(tls);
    }
    let version = req.version();
    let is_head = req.method() == Method::HEAD;
    // hyper drops HEAD bodies on HTTP/1 only.
    let head_multiplexed = is_head && version >= Version::HTTP_2;
    // One clock read serves the access log and the metrics.
    let started = (ctx.access.is_some() || ctx.meter.is_some()).then(Instant::now);
    let access = ctx.access.as_ref().map(|log| Box::new(AccessStart::new(log, &req)));
    // Made here, not in the block below, so the request is held once (by this future).
    let answering = answer(ctx, handler, req, peer, refused, refusal, version);
    async move {
        let (response, served_static) = answering.await;
        let mut response = settle_length(response, is_head);
        if let (Some(meter), Some(started)) = (&ctx.meter, started) {
            meter.request(version, response.status(), started.elapsed());
            if served_static {
                meter.count(Counter::StaticHandled, 1);
                if response.status().as_u16() >= 400 {
                    // Its body (`Not found`) is no file's bytes.
                    meter.count(Counter::StaticErr, 1);
                } else {
                    meter.count(Counter::StaticBytes, response.body().size_hint().exact().unwrap_or(0));
                }
            } else {
                response.body_mut().count_into(meter.clone());
            }
        }
        if head_multiplexed {
            // Keep the length, not the bytes.
            strip_body(&mut response);
        }
        name_server(&mut response);
        if let (Some(access), Some(started)) = (access, started) {
            access.emit(ctx.scheme, peer, version, started, response.status());
        }
        response
    }
}

/// Every answer but a websocket's 101 says `server: granian` (as granian does), unless the app
/// named a server itself.
fn name_server(response: &mut Response<ResponseBody>) {
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        response
            .headers_mut()
            .entry(SERVER)
            .or_insert(HeaderValue::from_static("granian"));
    }
}

/// The response to a request, and whether it was a static file: `dispatch` without its
/// bookkeeping. Each branch returns as soon as it has its answer, so no response waits in
/// the future's state while the app runs. (A block, not an async fn: an async fn's future
/// holds its arguments twice.)
#[allow(clippy::manual_async_fn)]
fn answer<'a, H: Handler>(
    ctx: &'a ServerContext,
    handler: Arc<H>,
    req: Request<IncomingBody>,
    peer: SocketAddr,
    refused: Option<http::StatusCode>,
    refusal: Option<Refusal>,
    version: Version,
) -> impl Future<Output = (Response<ResponseBody>, bool)> + Send + 'a {
    async move {
        if let Some(statics) = &ctx.statics {
            // Boxed: only a worker that serves files pays for the file lookup's state.
            if let Some(response) = Box::pin(statics.serve(req.method(), req.uri().path(), req.headers())).await {
                return (response, true);
            }
        }
        // Over a limit by its own account: the app never sees it.
        if let Some(status) = refused {
            return (refuse(status, version), false);
        }
        let response = handler.handle(req, peer).await;
        // A body refused mid-read made the app fail (or give up): the client learns why.
        let response = match refusal.and_then(|r| r.status()) {
            Some(status) if response.status().is_server_error() || response.status() == status => {
                refuse(status, version)
            }
            _ => response,
        };
        (response, false)
    }
}

/// What the access log keeps of a request while it is served: boxed, and only with the log on.
struct AccessStart<'a> {
    log: &'a AccessLog,
    time: SystemTime,
    method: Method,
    uri: http::Uri,
    headers: Vec<Option<HeaderValue>>,
}

impl<'a> AccessStart<'a> {
    fn new(log: &'a AccessLog, req: &Request<IncomingBody>) -> Self {
        // Header values are shared (Bytes), not copied; no allocation when none is shown.
        let headers = log
            .format
            .header_names()
            .iter()
            .map(|name| req.headers().get(name.as_str()).cloned())
            .collect();
        Self {
            log,
            time: SystemTime::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers,
        }
    }

    fn emit(&self, scheme: &str, peer: SocketAddr, version: Version, started: Instant, status: http::StatusCode) {
        let addr = peer.ip().to_string();
        let header_values: Vec<Option<&str>> = self
            .headers
            .iter()
            .map(|value| value.as_ref().and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()))
            .collect();
        let line = self.log.format.render(&AccessRecord {
            headers: &header_values,
            addr: &addr,
            time: self.time,
            dt_ms: started.elapsed().as_secs_f64() * 1000.0,
            status: status.as_u16(),
            path: self.uri.path(),
            query_string: self.uri.query().unwrap_or(""),
            method: self.method.as_str(),
            scheme,
            protocol: version_labels(version).protocol,
        });
        (self.log.emit)(line);
    }
}

/// Serves one connection until it ends, its timers close it, or the worker shuts down: then
/// requests in flight finish, HTTP/1 answers carry `Connection: close`, HTTP/2 gets a GOAWAY,
/// and a connection at rest gets a short grace for a request already on its way.
/// `false` when the connection ended with an error.
pub async fn serve_connection<IO, H>(
    io: IO,
    peer: SocketAddr,
    tls: Option<Arc<TlsInfo>>,
    handler: Arc<H>,
    ctx: Arc<ServerContext>,
    signals: Arc<Signals>,
) -> bool
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let activity = Activity::new();
    let service_ctx = ctx.clone();
    let seen = activity.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let version = req.version();
        let in_flight = seen.begin(version == Version::HTTP_2);
        let handler = handler.clone();
        let ctx = service_ctx.clone();
        let tls = tls.clone();
        async move {
            let (parts, body) = req.into_parts();
            // Boxed: this future is ~1 KiB, and hyper and tokio move the service's future whole
            // several times per request (an HTTP/2 stream is a task of its own): one allocation
            // (small enough for the allocator's per-thread cache) is cheaper.
            let dispatched = Box::pin(dispatch(&ctx, handler, parts, BodySource::Hyper(body), peer, tls));
            let mut response = dispatched.await;
            if let Some(alt_svc) = &ctx.alt_svc {
                response.headers_mut().insert(ALT_SVC, alt_svc.clone());
            }
            // (Not on a websocket's 101: its `Connection: upgrade` must stand.)
            let upgrading = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
            if version < Version::HTTP_2 && !upgrading && in_flight.connection_draining() {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            // The request ends with its body: written out, or dropped with the connection.
            response.body_mut().hold(in_flight);
            Ok::<_, Infallible>(response)
        }
    });
    let timers = ctx.timers;
    // Each builder yields its own connection type: drive them alike.
    macro_rules! drive {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            let mut drain_started = None;
            let mut pressure_seen = signals.pressure();
            let mut closing = false;
            let timer = tokio::time::sleep(timers.header_read);
            tokio::pin!(timer);
            // Kept across wake-ups, renewed only once it fired: registering with the
            // worker-wide `Notify` takes its lock.
            let signalled = signals.notified();
            tokio::pin!(signalled);
            signalled.as_mut().enable();
            loop {
                if drain_started.is_none() && signals.is_shut_down() {
                    drain_started = Some(activity.age());
                    activity.start_draining();
                    if activity.is_http2() {
                        conn.as_mut().graceful_shutdown(); // GOAWAY: streams in flight finish
                    }
                }
                let pressure = signals.pressure();
                if pressure != pressure_seen {
                    pressure_seen = pressure;
                    if !closing && evictable(&activity, &timers) {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                if !closing {
                    match verdict(&activity, &timers, drain_started) {
                        Verdict::Close => {
                            closing = true;
                            conn.as_mut().graceful_shutdown();
                        }
                        Verdict::Abort => break Err("no complete request head in time".to_string()),
                        Verdict::Wait(left) => timer.as_mut().reset(tokio::time::Instant::now() + left),
                    }
                }
                tokio::select! {
                    biased;
                    result = conn.as_mut() => break result.map_err(|e| e.to_string()),
                    _ = signalled.as_mut() => {
                        // Enabled before the flags are read again, so that no signal is missed.
                        signalled.set(signals.notified());
                        signalled.as_mut().enable();
                    }
                    _ = timer.as_mut(), if !closing => {}
                }
            }
        }};
    }
    let io = TokioIo::new(Watched::new(io, activity.clone()));
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
