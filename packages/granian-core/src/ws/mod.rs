//! Websockets: the upgrade handshake (hyper) and framing (tokio-tungstenite), with
//! permessage-deflate when the client offers it ([`deflate`], [`inflate_io`]). Once
//! upgraded, a reader task and a writer task own the socket; interfaces talk to them
//! through channels, so an app never waits on the socket itself.

mod deflate;
mod inflate_io;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use self::deflate::{DeflateParams, Deflater};
use self::inflate_io::WsIo;
use crate::http::body::ResponseBody;
use crate::http::limits::IncomingBody;
use crate::http::response::{error_response, response, ResponseSlot};
use crate::metrics::meter::{Held, Meter};
use crate::metrics::region::{Counter, Gauge};

/// What a client's websocket may send, how long it may stay silent, and whether its
/// messages may be compressed.
#[derive(Clone, Copy, Debug)]
pub struct WsSettings {
    /// The largest message, whole (its fragments together); a larger one closes with 1009.
    pub max_message: usize,
    /// The largest frame; refused with 1009 from its header, before its payload is read.
    pub max_frame: usize,
    /// How often the server pings the client (None: never).
    pub ping_interval: Option<std::time::Duration>,
    /// How long the client may send nothing (no message, no pong) before the server closes
    /// with 1001 (None: for ever).
    pub idle_timeout: Option<std::time::Duration>,
    /// Whether permessage-deflate is agreed when the client offers it (`--ws-compression`).
    pub compression: bool,
}
/// Bytes read from the socket at a time, to start with.
const READ_BUFFER: usize = 8 * 1024;
/// Messages queued from the client before the app reads them.
const INCOMING_QUEUE: usize = 64;
/// Messages queued by the app before it has to wait for the socket.
const OUTGOING_QUEUE: usize = 64;
/// How long a websocket sends nothing before its compressor's state is freed.
const COMPRESSOR_REST: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a close we sent waits for the client's answer before the connection is dropped.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the close for a protocol error waits for the app to take the messages before it.
const FAIL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The close frame owed to a client that broke the protocol. It goes out when the app reads
/// the failure, after the replies to the messages that came before it, or after
/// [`FAIL_GRACE`] when the app does not read.
#[derive(Clone)]
struct PendingClose {
    frame: Arc<Mutex<Option<Message>>>,
    outgoing: mpsc::Sender<Message>,
}

impl PendingClose {
    fn set(&self, code: u16) {
        if let Ok(mut frame) = self.frame.lock() {
            *frame = Some(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "".into(),
            })));
        }
    }

    fn fire(&self) {
        if let Some(frame) = self.frame.lock().ok().and_then(|mut f| f.take()) {
            let _ = self.outgoing.try_send(frame);
        }
    }
}

/// A websocket upgrade request, before the app decided.
pub struct WsUpgrade {
    pub on_upgrade: OnUpgrade,
    /// `Sec-WebSocket-Accept` for an HTTP/1.1 handshake; None over HTTP/2 (RFC 8441), where a
    /// 200 answers an extended CONNECT.
    pub accept_key: Option<String>,
    /// Counts the websocket's messages, with `--metrics`.
    pub meter: Option<Meter>,
    pub limits: WsSettings,
    /// The permessage-deflate parameters agreed, with the header that says so.
    deflate: Option<(DeflateParams, HeaderValue)>,
}

/// Whether `req` asks for a websocket, over HTTP/1.1 (RFC 6455: a GET with `Upgrade`) or
/// over HTTP/2 (RFC 8441: a CONNECT with `:protocol websocket`); takes its upgrade handle.
/// An HTTP/2 one is shown to the app as a GET, as on HTTP/1.1. `meter` counts its messages.
pub fn take_upgrade(req: &mut Request<IncomingBody>, meter: Option<&Meter>, limits: WsSettings) -> Option<WsUpgrade> {
    // Method and version first: most requests are ruled out without a header lookup.
    let over_http2 = match (req.version(), req.method()) {
        (Version::HTTP_11, &Method::GET) => false,
        (Version::HTTP_2, &Method::CONNECT) => true,
        _ => return None,
    };
    if req.headers().get(SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return None;
    }
    let accept_key = if over_http2 {
        let protocol = req.extensions().get::<hyper::ext::Protocol>();
        if protocol.map(|p| p.as_str()) != Some("websocket") {
            return None;
        }
        *req.method_mut() = Method::GET;
        None
    } else {
        Some(http1_accept_key(req)?)
    };
    let deflate = limits.compression.then(|| deflate::negotiate(req.headers())).flatten();
    Some(WsUpgrade {
        on_upgrade: hyper::upgrade::on(req),
        accept_key,
        meter: meter.cloned(),
        limits,
        deflate,
    })
}

/// The `Sec-WebSocket-Accept` of an HTTP/1.1 GET that asks for an upgrade, None when it does not.
fn http1_accept_key(req: &Request<IncomingBody>) -> Option<String> {
    let headers = req.headers();
    let has_token = |name: http::header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(UPGRADE, "websocket") || !has_token(CONNECTION, "upgrade") {
        return None;
    }
    let key = headers.get(SEC_WEBSOCKET_KEY)?.as_bytes().to_vec();
    Some(derive_accept_key(&key))
}

/// The answer that completes the handshake: 101 over HTTP/1.1, 200 over HTTP/2.
pub fn switching_protocols(accept_key: Option<&str>, mut headers: HeaderMap) -> Response<ResponseBody> {
    let Some(accept_key) = accept_key else {
        return response(StatusCode::OK, headers, ResponseBody::empty());
    };
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept_key) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    response(StatusCode::SWITCHING_PROTOCOLS, headers, ResponseBody::empty())
}

/// What the client sent.
pub enum WsEvent {
    Text(String),
    Binary(Bytes),
    /// The connection ended: the client's close code and reason (1005 when it gave none,
    /// 1006 when the connection dropped without a close frame).
    Closed(u16, String),
}

pub enum Outgoing {
    Text(String),
    Binary(Bytes),
    Close(u16, String),
}

/// An established websocket, shared by the app's protocol object.
pub struct WsChannel {
    outgoing: mpsc::Sender<Message>,
    incoming: Mutex<Option<mpsc::Receiver<WsEvent>>>,
    closed: Mutex<Option<(u16, String)>>,
    failure_close: PendingClose,
}

pub enum Sent {
    Queued,
    /// The queue is full: deliver it on the runtime.
    Full(PendingSend),
    Closed,
}

/// A message the full outgoing queue could not take yet.
pub struct PendingSend {
    sender: mpsc::Sender<Message>,
    message: Message,
}

impl PendingSend {
    /// Waits for room and queues the message; `false` when the socket closed meanwhile.
    pub async fn deliver(self) -> bool {
        self.sender.send(self.message).await.is_ok()
    }
}

/// A websocket upgrade waiting for the app's answer: accepted (101, then the upgrade
/// completes on the runtime), refused (403) or denied with a response of the app's.
pub struct PendingUpgrade {
    response: ResponseSlot,
    upgrade: Mutex<Option<WsUpgrade>>,
}

impl PendingUpgrade {
    pub fn new(response: ResponseSlot, upgrade: WsUpgrade) -> Self {
        Self {
            response,
            upgrade: Mutex::new(Some(upgrade)),
        }
    }

    fn take(&self) -> Option<WsUpgrade> {
        self.upgrade.lock().ok().and_then(|mut u| u.take())
    }

    /// Answers 101 with `headers` and completes the upgrade on `runtime`, where `then` gets
    /// the channel (None if the client went away first). `false` if already answered.
    pub fn accept(
        &self,
        runtime: &tokio::runtime::Handle,
        mut headers: HeaderMap,
        then: impl FnOnce(Option<Arc<WsChannel>>) + Send + 'static,
    ) -> bool {
        let Some(upgrade) = self.take() else {
            return false;
        };
        // An app that answers the extensions itself keeps them: we compress nothing then.
        let deflate = match upgrade.deflate {
            Some((params, answer)) if !headers.contains_key(SEC_WEBSOCKET_EXTENSIONS) => {
                headers.insert(SEC_WEBSOCKET_EXTENSIONS, answer);
                Some(params)
            }
            _ => None,
        };
        self.response
            .send(switching_protocols(upgrade.accept_key.as_deref(), headers));
        runtime.spawn(async move {
            then(
                establish(upgrade.on_upgrade, upgrade.limits, upgrade.meter, deflate)
                    .await
                    .ok(),
            );
        });
        true
    }

    /// Answers `response` instead of upgrading; `false` if already answered.
    pub fn deny(&self, response: Response<ResponseBody>) -> bool {
        self.take().is_some() && self.response.send(response)
    }

    /// Refuses the upgrade (403); `false` if already answered.
    pub fn reject(&self) -> bool {
        self.deny(error_response(StatusCode::FORBIDDEN))
    }
}

impl WsChannel {
    pub fn send(&self, message: Outgoing) -> Sent {
        let message = match message {
            Outgoing::Text(text) => Message::Text(text.into()),
            Outgoing::Binary(data) => Message::Binary(data),
            Outgoing::Close(code, reason) => Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            })),
        };
        match self.outgoing.try_send(message) {
            Ok(()) => Sent::Queued,
            Err(mpsc::error::TrySendError::Full(message)) => Sent::Full(PendingSend {
                sender: self.outgoing.clone(),
                message,
            }),
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Closed,
        }
    }

    /// The next event if one is waiting: `Err` when the app must wait for it.
    pub fn try_receive(&self) -> Result<WsEvent, ()> {
        if let Some(closed) = self.closed.lock().ok().and_then(|c| c.clone()) {
            return Ok(WsEvent::Closed(closed.0, closed.1));
        }
        let mut slot = self.incoming.lock().map_err(|_| ())?;
        let rx = slot.as_mut().ok_or(())?;
        match rx.try_recv() {
            Ok(event) => Ok(self.remember(event)),
            Err(mpsc::error::TryRecvError::Empty) => Err(()),
            Err(mpsc::error::TryRecvError::Disconnected) => Ok(self.remember(WsEvent::Closed(1006, String::new()))),
        }
    }

    /// Waits for the next event (on the runtime).
    pub async fn receive(self: Arc<Self>) -> WsEvent {
        let taken = self.incoming.lock().ok().and_then(|mut s| s.take());
        let Some(mut rx) = taken else {
            return WsEvent::Closed(1006, String::new());
        };
        let event = rx.recv().await.unwrap_or(WsEvent::Closed(1006, String::new()));
        if let Ok(mut slot) = self.incoming.lock() {
            *slot = Some(rx);
        }
        self.remember(event)
    }

    fn remember(&self, event: WsEvent) -> WsEvent {
        if let WsEvent::Closed(code, reason) = &event {
            self.failure_close.fire();
            if let Ok(mut closed) = self.closed.lock() {
                *closed = Some((*code, reason.clone()));
            }
        }
        event
    }
}

/// Completes the upgrade and starts the reader and writer tasks.
async fn establish(
    on_upgrade: OnUpgrade,
    limits: WsSettings,
    meter: Option<Meter>,
    deflate: Option<DeflateParams>,
) -> Result<Arc<WsChannel>, hyper::Error> {
    let upgraded = on_upgrade.await?;
    let open = meter.as_ref().map(|meter| Held::new(meter, Gauge::WebsocketsOpen));
    let (meter_in, meter_out) = (meter.clone(), meter);
    // An 8 KiB read buffer (tungstenite's default is 128 KiB, allocated up front): idle
    // websockets cost little, and a larger frame grows the buffer as it arrives.
    let max_frame = limits.max_frame.min(limits.max_message);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(limits.max_message))
        .max_frame_size(Some(max_frame));
    let io = WsIo::new(TokioIo::new(upgraded), deflate.as_ref(), max_frame);
    let mut deflater = deflate.map(Deflater::new);
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(OUTGOING_QUEUE);
    let (in_tx, in_rx) = mpsc::channel::<WsEvent>(INCOMING_QUEUE);
    let control = out_tx.clone();
    let failure_close = PendingClose {
        frame: Arc::new(Mutex::new(None)),
        outgoing: out_tx.clone(),
    };
    let owed_close = failure_close.clone();
    let reader = tokio::spawn(async move {
        // Open as long as the client can still send.
        let _open = open;
        let closed = loop {
            let message = match limits.idle_timeout {
                None => stream.next().await,
                Some(idle) => match tokio::time::timeout(idle, stream.next()).await {
                    Ok(message) => message,
                    Err(_) => {
                        log::debug!("websocket idle for {idle:?}: closing");
                        owed_close.set(1001);
                        owed_close.fire();
                        break (1001, String::new());
                    }
                },
            };
            if let (Some(meter), Some(Ok(Message::Text(_) | Message::Binary(_)))) = (&meter_in, &message) {
                meter.count(Counter::WebsocketMessagesIn, 1);
            }
            match message {
                Some(Ok(Message::Text(text))) => {
                    if in_tx.send(WsEvent::Text(text.as_str().to_owned())).await.is_err() {
                        break (1006, String::new());
                    }
                }
                Some(Ok(Message::Binary(data))) => {
                    if in_tx.send(WsEvent::Binary(data)).await.is_err() {
                        break (1006, String::new());
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.as_str().to_owned()))
                        .unwrap_or((1005, String::new()));
                    // Echo the close so the client's handshake completes.
                    let _ = control.try_send(Message::Close(Some(CloseFrame {
                        code: CloseCode::from(if code == 1005 { 1000 } else { code }),
                        reason: "".into(),
                    })));
                    break (code, reason);
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    log::debug!("websocket read error: {err}");
                    use tokio_tungstenite::tungstenite::error::ProtocolError;
                    let code = match err {
                        // A dropped TCP connection is "abnormal closure", not a protocol error.
                        tokio_tungstenite::tungstenite::Error::Protocol(
                            ProtocolError::ResetWithoutClosingHandshake,
                        ) => 1006,
                        tokio_tungstenite::tungstenite::Error::Capacity(_) => 1009,
                        tokio_tungstenite::tungstenite::Error::Utf8(_) => 1007,
                        tokio_tungstenite::tungstenite::Error::Protocol(_) => 1002,
                        _ => 1006,
                    };
                    if code == 1006 {
                        // The connection is gone: stop the writer now, later sends fail.
                        let _ = control.try_send(Message::Close(Some(CloseFrame {
                            code: CloseCode::from(1000),
                            reason: "".into(),
                        })));
                    } else {
                        owed_close.set(code);
                    }
                    break (code, String::new());
                }
                None => {
                    let _ = control.try_send(Message::Close(None));
                    break (1006, String::new());
                }
            }
        };
        let failed = matches!(closed.0, 1002 | 1007 | 1009);
        let _ = in_tx.send(WsEvent::Closed(closed.0, closed.1)).await;
        if failed {
            tokio::time::sleep(FAIL_GRACE).await;
            owed_close.fire();
        }
    });
    let reader_abort = reader.abort_handle();
    tokio::spawn(async move {
        let mut closing = false;
        // Pings keep idle connections (and the proxies between) alive; the client's pongs
        // count as activity for the idle timeout.
        let mut pings = limits.ping_interval.map(|every| {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        loop {
            let next = async {
                match &mut pings {
                    None => out_rx.recv().await,
                    Some(ticker) => tokio::select! {
                        message = out_rx.recv() => message,
                        _ = ticker.tick() => Some(Message::Ping(Default::default())),
                    },
                }
            };
            // A compressor at rest for a while gives its memory back.
            let message = match deflater.as_mut().filter(|d| d.holds_state()) {
                None => next.await,
                Some(deflater) => match tokio::time::timeout(COMPRESSOR_REST, next).await {
                    Ok(message) => message,
                    Err(_) => {
                        deflater.release();
                        crate::allocator::trim_soon();
                        continue;
                    }
                },
            };
            let Some(message) = message else { break };
            closing = matches!(message, Message::Close(_));
            if let (Some(meter), Message::Text(_) | Message::Binary(_)) = (&meter_out, &message) {
                meter.count(Counter::WebsocketMessagesOut, 1);
            }
            let message = match deflater.as_mut() {
                Some(deflater) => deflater.encode(message),
                None => message,
            };
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        // Later sends fail at once (the app sees the socket closed) while we wait below.
        drop(out_rx);
        let _ = sink.close().await;
        drop(sink);
        if closing {
            // A client that never answers our close must not hold the connection forever.
            tokio::time::sleep(CLOSE_TIMEOUT).await;
            reader_abort.abort();
        }
    });
    Ok(Arc::new(WsChannel {
        outgoing: out_tx,
        incoming: Mutex::new(Some(in_rx)),
        closed: Mutex::new(None),
        failure_close,
    }))
}
