//! The socket as tungstenite reads it once permessage-deflate is agreed: compressed frames
//! from the client (RSV1 on a message's first frame) are inflated and handed on as plain
//! fragments of the same message; every other frame passes as it came. tungstenite keeps
//! doing all the rest (masking, fragmentation, UTF-8, control frames, limits).
//!
//! The inflated message reaches tungstenite in fragments of at most [`CHUNK`] bytes, so its
//! message size limit stops a small frame that inflates without end (a "zip bomb") with
//! 1009 after at most the limit, and this layer never holds more than a few chunks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::deflate::{DeflateParams, FLUSH_TAIL};

/// The most inflated bytes handed on in one fragment: fits the 16-bit frame length.
const CHUNK: usize = 16 * 1024;
/// Bytes read from the socket at a time.
const READ_SIZE: usize = 8 * 1024;
const OP_CONTINUATION: u8 = 0x0;
const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV2_RSV3: u8 = 0x30;
const MASKED: u8 = 0x80;

/// The upgraded socket, inflating the client's compressed frames when `inflater` is set.
pub struct WsIo<S> {
    inner: S,
    inflater: Option<Box<FrameInflater>>,
}

impl<S> WsIo<S> {
    /// `deflate`: the permessage-deflate parameters, when agreed; `max_frame` bounds the
    /// compressed frames (with room for deflate's overhead) and the fragments handed on.
    pub fn new(inner: S, deflate: Option<&DeflateParams>, max_frame: usize) -> Self {
        let inflater = deflate.map(|params| Box::new(FrameInflater::new(max_frame, params)));
        Self { inner, inflater }
    }
}

/// Where the reader is in the client's byte stream.
enum State {
    /// Between frames: the next bytes are a frame header.
    Header,
    /// Passing `left` payload bytes of a frame on unchanged.
    Copy { left: u64 },
    /// Inflating a compressed frame: `left` payload bytes still to come, unmasked with `mask`
    /// from position `mask_at`; `last` when the frame ends its message.
    Inflate {
        left: u64,
        mask: [u8; 4],
        mask_at: usize,
        last: bool,
    },
}

/// A compressed message being inflated.
struct Message {
    /// Its opcode (text or binary), given to the first fragment handed on.
    opcode: u8,
    /// Whether a fragment of it was handed on already (the next ones are continuations).
    started: bool,
    /// Whether the flush tail went into the inflater (the last frame's payload is all in).
    tail_fed: bool,
}

struct FrameInflater {
    /// Bytes read from the socket, not yet looked at.
    raw: BytesMut,
    /// Payload of the compressed frame, unmasked, not yet taken by the inflater.
    compressed: BytesMut,
    /// Frames for tungstenite, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    state: State,
    message: Option<Message>,
    /// Made with the first compressed frame.
    decompress: Option<Decompress>,
    /// Where the inflater writes, one chunk.
    inflated: Option<Box<[u8]>>,
    chunk: usize,
    max_frame: u64,
    /// `client_no_context_takeover`: the inflater starts afresh with each message.
    reset_per_message: bool,
    window_bits: u8,
}

impl FrameInflater {
    fn new(max_frame: usize, params: &DeflateParams) -> Self {
        Self {
            raw: BytesMut::new(),
            compressed: BytesMut::new(),
            out: Vec::new(),
            out_at: 0,
            state: State::Header,
            message: None,
            decompress: None,
            inflated: None,
            chunk: CHUNK.min(max_frame.max(1)),
            // Deflate makes data that does not compress larger (zlib's bound for any settings:
            // an eighth and a sixty-fourth more): a frame at the limit before compression must
            // fit. What it inflates to is held to the limits by tungstenite.
            max_frame: (max_frame + max_frame / 8 + max_frame / 64 + 64) as u64,
            reset_per_message: params.client_no_context_takeover,
            window_bits: params.inflate_window_bits(),
        }
    }

    /// The client went quiet: between messages, the buffers go (the inflater's window stays,
    /// the client's next message may refer back into it).
    fn rest(&mut self) {
        if self.message.is_none() && self.raw.is_empty() && self.out_at == self.out.len() {
            self.raw = BytesMut::new();
            self.out = Vec::new();
            self.out_at = 0;
            self.compressed = BytesMut::new();
            self.inflated = None;
        }
    }

    /// Turns what `raw` holds into frames for tungstenite, until `out` holds a chunk or more
    /// is needed from the socket.
    fn process(&mut self) {
        while self.out.len() - self.out_at < self.chunk {
            let progressed = match self.state {
                State::Header => self.header(),
                State::Copy { left } => {
                    let n = left.min(self.raw.len() as u64) as usize;
                    self.out.extend_from_slice(&self.raw[..n]);
                    self.raw.advance(n);
                    self.state = if left == n as u64 {
                        State::Header
                    } else {
                        State::Copy { left: left - n as u64 }
                    };
                    n > 0 || left == 0
                }
                State::Inflate { .. } => self.inflate(),
            };
            if !progressed {
                break;
            }
        }
    }

    /// Reads a frame header from `raw` and picks the frame's state; false when the header is
    /// not all there yet.
    fn header(&mut self) -> bool {
        let raw = &self.raw[..];
        if raw.len() < 2 {
            return false;
        }
        let (first, second) = (raw[0], raw[1]);
        let (length, mut at) = match second & 0x7f {
            126 if raw.len() >= 4 => (u16::from_be_bytes([raw[2], raw[3]]) as u64, 4),
            127 if raw.len() >= 10 => (u64::from_be_bytes(raw[2..10].try_into().unwrap_or_default()), 10),
            126 | 127 => return false,
            short => (short as u64, 2),
        };
        let masked = second & MASKED != 0;
        if masked && raw.len() < at + 4 {
            return false;
        }
        let opcode = first & 0x0f;
        let clean = first & RSV2_RSV3 == 0 && masked && length <= self.max_frame;
        let compressed = match (&self.message, opcode) {
            // A message's first frame says whether the message is compressed.
            (None, 1 | 2) => first & RSV1 != 0 && clean,
            (Some(_), OP_CONTINUATION) => first & RSV1 == 0 && clean,
            _ => false,
        };
        if !compressed {
            // tungstenite judges it: a protocol error (RSV1 where it does not belong, a new
            // message inside a compressed one) is refused there as any other. A compressed
            // frame over the size limit goes on without RSV1 so that it is refused for its size.
            let header_len = at + if masked { 4 } else { 0 };
            let oversized = first & RSV1 != 0 && length > self.max_frame && first & RSV2_RSV3 == 0;
            let start = self.out.len();
            self.out.extend_from_slice(&self.raw[..header_len]);
            if oversized {
                self.out[start] &= !RSV1;
            }
            self.raw.advance(header_len);
            self.state = State::Copy { left: length };
            return true;
        }
        let mask = [raw[at], raw[at + 1], raw[at + 2], raw[at + 3]];
        at += 4;
        self.raw.advance(at);
        if self.message.is_none() {
            self.message = Some(Message {
                opcode,
                started: false,
                tail_fed: false,
            });
        }
        self.state = State::Inflate {
            left: length,
            mask,
            mask_at: 0,
            last: first & FIN != 0,
        };
        true
    }

    /// Moves payload from `raw` into the inflater and hands on what comes out; false when it
    /// needs more from the socket.
    fn inflate(&mut self) -> bool {
        let State::Inflate {
            left,
            mask,
            mask_at,
            last,
        } = self.state
        else {
            return false;
        };
        let n = left.min(self.raw.len() as u64) as usize;
        if n > 0 {
            let mut payload = self.raw.split_to(n);
            unmask(&mut payload, mask, mask_at);
            if self.compressed.is_empty() {
                self.compressed = payload;
            } else {
                self.compressed.extend_from_slice(&payload);
            }
        }
        let left = left - n as u64;
        self.state = State::Inflate {
            left,
            mask,
            mask_at: (mask_at + n) % 4,
            last,
        };
        let Some(message) = self.message.as_mut() else {
            return false;
        };
        if left == 0 && last && !message.tail_fed {
            self.compressed.extend_from_slice(&FLUSH_TAIL);
            message.tail_fed = true;
        }
        let window_bits = self.window_bits;
        let decompress = self
            .decompress
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, window_bits));
        // At most one chunk at a time, into a buffer made once (zlib writes into a slice).
        let chunk = self.chunk;
        let inflated = self.inflated.get_or_insert_with(|| vec![0; chunk].into_boxed_slice());
        let (before_in, before_out) = (decompress.total_in(), decompress.total_out());
        let ok = decompress
            .decompress(&self.compressed, inflated, FlushDecompress::Sync)
            .is_ok();
        let consumed = (decompress.total_in() - before_in) as usize;
        let produced = (decompress.total_out() - before_out) as usize;
        self.compressed.advance(consumed);
        let ended = message.tail_fed && self.compressed.is_empty() && produced < self.chunk;
        if !ok {
            // Not a deflate stream: a frame with RSV2 set makes tungstenite fail the
            // connection with a protocol error (1002), as RFC 7692 asks.
            self.out.extend_from_slice(&[FIN | RSV2_RSV3 | 0x2, MASKED, 0, 0, 0, 0]);
            self.raw.clear();
            self.state = State::Copy { left: u64::MAX };
            return false;
        }
        if produced == 0 && !ended {
            // Waiting for payload; an inflater that took nothing from what it holds is stuck.
            if left == 0 && !message.tail_fed {
                self.state = State::Header;
                return true;
            }
            return n > 0 && consumed > 0;
        }
        let opcode = if message.started {
            OP_CONTINUATION
        } else {
            message.opcode
        };
        message.started = true;
        let fin = if ended { FIN } else { 0 };
        push_fragment(&mut self.out, fin | opcode, &inflated[..produced]);
        if ended {
            self.message = None;
            self.state = State::Header;
            if self.reset_per_message {
                decompress.reset(false);
            }
        } else if left == 0 && !last {
            self.state = State::Header;
        }
        true
    }
}

/// XORs `data` with `mask`, starting `at` bytes into it; four bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4], at: usize) {
    let key = u32::from_ne_bytes([mask[at % 4], mask[(at + 1) % 4], mask[(at + 2) % 4], mask[(at + 3) % 4]]);
    let mut words = data.chunks_exact_mut(4);
    for word in &mut words {
        let value = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]) ^ key;
        word.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, key) in words.into_remainder().iter_mut().zip(key.to_ne_bytes()) {
        *byte ^= key;
    }
}

/// Appends a frame of `payload` as a client would send it: masked, with a zero key so the
/// payload needs no change. `payload` is at most a [`CHUNK`]: a 16-bit length.
fn push_fragment(out: &mut Vec<u8>, first: u8, payload: &[u8]) {
    let len = payload.len();
    if len < 126 {
        out.extend_from_slice(&[first, MASKED | len as u8, 0, 0, 0, 0]);
    } else {
        let [high, low] = (len as u16).to_be_bytes();
        out.extend_from_slice(&[first, MASKED | 126, high, low, 0, 0, 0, 0]);
    }
    out.extend_from_slice(payload);
}

impl<S: AsyncRead + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(inflater) = this.inflater.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        loop {
            let ready = &inflater.out[inflater.out_at..];
            if !ready.is_empty() {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                inflater.out_at += n;
                if inflater.out_at == inflater.out.len() {
                    inflater.out.clear();
                    inflater.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            // What was read before may hold more than the last call handed on.
            inflater.process();
            if inflater.out.len() > inflater.out_at {
                continue;
            }
            inflater.raw.reserve(READ_SIZE);
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut inflater.raw) {
                Poll::Pending => {
                    inflater.rest();
                    return Poll::Pending;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                // The connection ended: tungstenite sees the end, mid-frame or not.
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(_)) => {}
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::tungstenite::{Error, Message as WsMessage};
    use tokio_tungstenite::WebSocketStream;

    /// A client frame: masked with a key that changes the bytes.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(MASKED | n as u8),
            n if n < 65536 => {
                out.push(MASKED | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(MASKED | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn deflate(compress: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 1024);
        compress.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        if out.ends_with(&FLUSH_TAIL) {
            out.truncate(out.len() - 4);
        }
        // An empty message is an empty stored block (RFC 7692 7.2.3.6).
        if out.is_empty() {
            out.push(0x00);
        }
        out
    }

    /// What tungstenite, reading through `WsIo`, makes of `wire` sent in pieces of `piece` bytes.
    async fn read_all(wire: Vec<u8>, piece: usize, max_message: usize) -> Vec<Result<WsMessage, String>> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move {
            for part in wire.chunks(piece) {
                client.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let io = WsIo::new(server, Some(&DeflateParams::default()), max_message);
        let mut socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let mut seen = vec![];
        let _client = writer.await.unwrap();
        while let Ok(Some(message)) = tokio::time::timeout(std::time::Duration::from_millis(200), socket.next()).await {
            let failed = message.is_err();
            seen.push(message.map_err(|err: Error| err.to_string()));
            if failed {
                break;
            }
        }
        seen
    }

    fn messages() -> (Vec<u8>, Vec<WsMessage>) {
        let mut compress = Compress::new_with_window_bits(Compression::default(), false, 15);
        let text: String = (0..3000).map(|i| format!("{{\"n\": {}}}", i % 97)).collect();
        let binary: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = vec![];
        // Compressed text in one frame, twice (the second uses the first as context).
        wire.extend(frame(0x80 | RSV1 | 1, &deflate(&mut compress, text.as_bytes())));
        wire.extend(frame(0x80 | RSV1 | 1, &deflate(&mut compress, text.as_bytes())));
        // A plain message between compressed ones.
        wire.extend(frame(0x80 | 1, b"plain"));
        // Compressed binary in three fragments, a ping between them.
        let packed = deflate(&mut compress, &binary);
        let (a, rest) = packed.split_at(packed.len() / 3);
        let (b, c) = rest.split_at(rest.len() / 2);
        wire.extend(frame(RSV1 | 2, a));
        wire.extend(frame(0x9 | 0x80, b"ping"));
        wire.extend(frame(0, b));
        wire.extend(frame(0x80, c));
        // Two empty compressed messages, then one more to show the inflater kept in step.
        wire.extend(frame(0x80 | RSV1 | 2, &deflate(&mut compress, b"")));
        wire.extend(frame(0x80 | RSV1 | 2, &deflate(&mut compress, b"")));
        wire.extend(frame(0x80 | RSV1 | 1, &deflate(&mut compress, b"after")));
        let expected = vec![
            WsMessage::Text(text.clone().into()),
            WsMessage::Text(text.into()),
            WsMessage::Text("plain".into()),
            WsMessage::Ping("ping".into()),
            WsMessage::Binary(binary.into()),
            WsMessage::Binary(Vec::new().into()),
            WsMessage::Binary(Vec::new().into()),
            WsMessage::Text("after".into()),
        ];
        (wire, expected)
    }

    #[tokio::test]
    async fn compressed_and_plain_frames_read_whole_in_any_pieces() {
        let (wire, expected) = messages();
        for piece in [1, 7, 4096, 1 << 20] {
            let seen = read_all(wire.clone(), piece, 1 << 20).await;
            let seen: Vec<WsMessage> = seen.into_iter().map(Result::unwrap).collect();
            let kinds = |messages: &[WsMessage]| messages.iter().map(|m| (m.len(), m.is_text())).collect::<Vec<_>>();
            assert_eq!(kinds(&seen), kinds(&expected), "pieces of {piece}");
            assert!(seen == expected, "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn an_inflation_bomb_stops_at_the_message_limit() {
        let mut compress = Compress::new_with_window_bits(Compression::best(), false, 15);
        let zeros = vec![0u8; 8 << 20];
        let bomb = deflate(&mut compress, &zeros);
        assert!(bomb.len() < 10_000);
        let seen = read_all(frame(0x80 | RSV1 | 2, &bomb), 4096, 1 << 20).await;
        let last = seen.last().unwrap().as_ref().unwrap_err();
        assert!(last.contains("Space limit exceeded"), "{last}");
    }

    #[tokio::test]
    async fn protocol_errors_reach_tungstenite() {
        for (wire, error) in [
            // RSV1 on a continuation, on a control frame; garbage that does not inflate.
            (
                [frame(RSV1 | 1, b"\x00"), frame(0x80 | RSV1, b"\x00")].concat(),
                "Reserved bits",
            ),
            (frame(0x80 | RSV1 | 0x9, b""), "Reserved bits"),
            (frame(0x80 | RSV1 | 1, b"\xff\xff\xff\xff"), "Reserved bits"),
            // A compressed frame over the frame limit: refused for its size, from its header.
            (
                frame(0x80 | RSV1 | 1, &[0; 1024 + 128 + 16 + 64 + 1]),
                "Space limit exceeded",
            ),
        ] {
            let seen = read_all(wire, 4096, 1024).await;
            let last = seen.last().unwrap().as_ref().unwrap_err();
            assert!(last.contains(error), "{last}");
        }
    }
}
