//! One HTTP/3 request: its head and body handed to `dispatch`, the response written back
//! as HEADERS and DATA frames.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderName, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use crate::http::body::ResponseBody;
use crate::http::limits::{BodySource, BoxError};
use crate::http::server::{dispatch, Handler, ServerContext};
use crate::tls::TlsInfo;

type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;
type SendHalf = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type RecvHalf = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

pub async fn serve_request<H: Handler>(
    resolver: Resolver,
    handler: Arc<H>,
    server: Arc<ServerContext>,
    peer: SocketAddr,
    tls: Arc<TlsInfo>,
) {
    let (req, stream) = match resolver.resolve_request().await {
        Ok(resolved) => resolved,
        Err(err) => {
            // h3 has answered a malformed request itself (a stream error to the client).
            log::debug!("HTTP/3 request from {peer} refused: {err}");
            return;
        }
    };
    let (send, recv) = stream.split();
    let (parts, ()) = req.into_parts();
    let body = BodySource::Other(Box::pin(RequestBody {
        recv: Some(recv),
        done: false,
        runtime: tokio::runtime::Handle::current(),
    }));
    let response = dispatch(&server, handler, parts, body, peer, Some(tls)).await;
    if let Err(err) = write_response(send, response).await {
        log::debug!("HTTP/3 response to {peer} not sent: {err}");
    }
}

/// Headers of HTTP/1.1 connections that HTTP/3 forbids (RFC 9114 4.2).
const CONNECTION_SPECIFIC: [HeaderName; 4] = [
    CONNECTION,
    TRANSFER_ENCODING,
    UPGRADE,
    HeaderName::from_static("keep-alive"),
];

async fn write_response(mut send: SendHalf, response: Response<ResponseBody>) -> Result<(), BoxError> {
    let (mut head, body) = response.into_parts();
    for name in &CONNECTION_SPECIFIC {
        head.headers.remove(name);
    }
    // As hyper does on the other protocols: a body of known size says so.
    if let Some(len) = body.size_hint().exact() {
        head.headers
            .entry(CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(len));
    }
    send.send_response(Response::from_parts(head, ())).await?;
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) if data.is_empty() => {}
                Ok(data) => send.send_data(data).await?,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        send.send_trailers(trailers).await?;
                    }
                }
            },
            Err(err) => {
                // As on HTTP/2: the stream is reset, so the client cannot take it as whole.
                send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                return Err(err.into());
            }
        }
    }
    send.finish().await?;
    Ok(())
}

/// The request body as DATA frames arrive; the trailers, if any, are dropped.
struct RequestBody {
    recv: Option<RecvHalf>,
    done: bool,
    runtime: tokio::runtime::Handle,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(recv) = this.recv.as_mut().filter(|_| !this.done) else {
            return Poll::Ready(None);
        };
        match recv.poll_recv_data(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(mut data))) => {
                let data = data.copy_to_bytes(data.remaining());
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Ok(None)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(err)) => {
                this.done = true;
                Poll::Ready(Some(Err(err.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // Apps let go of their request on their own thread, often holding the GIL; dropping
        // the stream takes quinn's connection lock, so it is left to a runtime thread: a
        // Python thread never waits for a transport lock.
        if let Some(recv) = self.recv.take() {
            if tokio::runtime::Handle::try_current().is_err() {
                self.runtime.spawn(async move { drop(recv) });
            }
        }
    }
}
