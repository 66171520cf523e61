//! The hyper side: connection builders from the user's settings, and serving one connection
//! until it ends or the worker shuts down.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::body::ResponseBody;

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

pub type ConnBuilder = auto::Builder<TokioExecutor>;

pub fn build(mode: HttpMode, h1: &Http1Settings, h2: &Http2Settings) -> ConnBuilder {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(h1.header_read_timeout)
        .keep_alive(h1.keep_alive)
        .max_buf_size(h1.max_buffer_size)
        .pipeline_flush(h1.pipeline_flush);
    builder
        .http2()
        .timer(TokioTimer::new())
        .adaptive_window(h2.adaptive_window)
        .initial_connection_window_size(h2.initial_connection_window_size)
        .initial_stream_window_size(h2.initial_stream_window_size)
        .keep_alive_interval(h2.keep_alive_interval)
        .keep_alive_timeout(h2.keep_alive_timeout)
        .max_concurrent_streams(h2.max_concurrent_streams)
        .max_frame_size(h2.max_frame_size)
        .max_header_list_size(h2.max_headers_size)
        .max_send_buf_size(h2.max_send_buffer_size);
    match mode {
        HttpMode::Auto => builder,
        HttpMode::Http1 => builder.http1_only(),
        HttpMode::Http2 => builder.http2_only(),
    }
}

pub fn error_response(status: StatusCode) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = status;
    response
}

fn strip_body(response: &mut Response<ResponseBody>) {
    if let Some(len) = response.body().size_hint().exact() {
        if !response.headers().contains_key(CONTENT_LENGTH) {
            response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
    }
    *response.body_mut() = ResponseBody::empty();
}

/// Serves one connection; on shutdown, lets in-flight requests finish, then closes.
pub async fn serve_connection<IO, H>(
    io: IO,
    peer: SocketAddr,
    handler: Arc<H>,
    builder: Arc<ConnBuilder>,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move {
            let head_h2 = req.method() == Method::HEAD && req.version() == Version::HTTP_2;
            let mut response = handler.handle(req, peer).await;
            if head_h2 {
                // hyper drops HEAD bodies on HTTP/1 only; on HTTP/2 keep the length, not the bytes.
                strip_body(&mut response);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        log::debug!("connection from {peer} ended with an error: {err}");
    }
}
