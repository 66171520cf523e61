//! permessage-deflate (RFC 7692): choosing among the client's offers, and compressing the
//! messages we send. Incoming compressed frames are inflated below tungstenite, in
//! [`super::inflate_io`], because tungstenite refuses frames with RSV1 set.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};
use http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_EXTENSIONS};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// The tail every compressed message ends with once flushed; RFC 7692 has it taken off
/// before sending and put back before inflating.
pub const FLUSH_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// The largest LZ77 window: what each side uses unless told otherwise.
const MAX_WINDOW_BITS: u8 = 15;
/// The window we ask the client to keep to when it lets us choose (`client_max_window_bits`),
/// and the most we compress with: 4 KiB holds a few messages back, and keeps each side's
/// zlib state small enough that many websockets stay in cache (a client compressing with
/// 32 KiB windows for 64 websockets spent three times the CPU per message, measured).
const PREFERRED_WINDOW_BITS: u8 = 12;
/// zlib cannot make a raw deflate stream with a 256-byte window (it widens 8 to 9), so an
/// offer that holds the server to 8 is declined rather than answered with a lie.
const MIN_SERVER_WINDOW_BITS: u8 = 9;
/// Compression level. Measured with zlib-rs on JSON messages with the context kept: level 1
/// compresses about 600 MB/s to 17 % of the size, level 6 (zlib's default) about 65 MB/s to
/// 15 % (10 % on 60 KiB messages). A server compresses every message it sends: speed wins.
const LEVEL: u32 = 1;

/// What was agreed with the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// We start every message with an empty window (`server_no_context_takeover`).
    pub server_no_context_takeover: bool,
    /// The client starts every message with an empty window (`client_no_context_takeover`):
    /// our inflater is reset between messages.
    pub client_no_context_takeover: bool,
    /// The largest window we may compress with (`server_max_window_bits`, 15 when not asked
    /// for less); we use at most [`PREFERRED_WINDOW_BITS`] of it.
    pub server_window_bits: u8,
    /// The window the client compresses with: what we answered to its `client_max_window_bits`,
    /// else 15.
    pub client_window_bits: u8,
    /// Whether we answered `client_max_window_bits`.
    pub client_window_answered: bool,
}

impl Default for DeflateParams {
    /// What an offer without parameters agrees to: both contexts kept, 15-bit windows.
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_window_bits: MAX_WINDOW_BITS,
            client_window_bits: MAX_WINDOW_BITS,
            client_window_answered: false,
        }
    }
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` answer for these parameters.
    pub fn response_header(&self, asked_server_window: bool) -> HeaderValue {
        let mut value = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            value.push_str("; client_no_context_takeover");
        }
        if asked_server_window {
            value.push_str(&format!("; server_max_window_bits={}", self.server_window_bits));
        }
        if self.client_window_answered {
            value.push_str(&format!("; client_max_window_bits={}", self.client_window_bits));
        }
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("permessage-deflate"))
    }
}

/// The first permessage-deflate offer in `headers` we can honour, with the answer to send
/// back; None when the client offered none we can take (the websocket then runs
/// uncompressed). Offers are tried in the client's order of preference (RFC 7692 5.1).
pub fn negotiate(headers: &HeaderMap) -> Option<(DeflateParams, HeaderValue)> {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|offer| {
            let (params, asked_server_window) = accept_offer(offer)?;
            Some((params, params.response_header(asked_server_window)))
        })
}

/// The parameters for one offer (`permessage-deflate; name[=value]; ...`), and whether it
/// named the server's window; None when it is another extension or one we must decline
/// (an unknown or repeated parameter, a value out of range).
fn accept_offer(offer: &str) -> Option<(DeflateParams, bool)> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut params = DeflateParams::default();
    let mut seen = Vec::with_capacity(4);
    let mut asked_server_window = false;
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (part, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => params.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => params.client_no_context_takeover = true,
            ("server_max_window_bits", Some(bits)) => {
                let bits = window_bits(bits)?;
                if bits < MIN_SERVER_WINDOW_BITS {
                    return None;
                }
                params.server_window_bits = bits;
                asked_server_window = true;
            }
            // The client lets us choose its window (up to the value it names, if any).
            ("client_max_window_bits", value) => {
                let most = match value {
                    Some(bits) => window_bits(bits)?,
                    None => MAX_WINDOW_BITS,
                };
                params.client_window_bits = most.min(PREFERRED_WINDOW_BITS);
                params.client_window_answered = true;
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some((params, asked_server_window))
}

/// A window size parameter: 8 to 15, digits only (RFC 7692 7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) || value.starts_with('0') {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=MAX_WINDOW_BITS).contains(&bits).then_some(bits)
}

/// Compresses the data messages we send. The zlib state (about 300 KiB with zlib-rs, most of
/// it a fixed hash table) is made with the first message and can be let go at any time: a
/// fresh compressor's output is still a valid continuation for the client, which only loses
/// references back into earlier messages. So a websocket at rest keeps none.
pub struct Deflater {
    params: DeflateParams,
    compress: Option<Compress>,
}

impl DeflateParams {
    /// The window our inflater needs: the client's, and never under 9 (zlib compresses with 9
    /// when told 8, so a client on zlib that agreed to 8 sends 9).
    pub fn inflate_window_bits(&self) -> u8 {
        self.client_window_bits.max(9)
    }
}

impl Deflater {
    pub fn new(params: DeflateParams) -> Self {
        Self { params, compress: None }
    }

    /// Whether the compressor holds its state (since the last [`Self::release`]).
    pub fn holds_state(&self) -> bool {
        self.compress.is_some()
    }

    /// Frees the compressor's state; the next message starts a new one.
    pub fn release(&mut self) {
        self.compress = None;
    }

    /// `message` as it goes on the wire: a text or binary message becomes one compressed
    /// frame with RSV1 set; control messages pass as they are.
    pub fn encode(&mut self, message: Message) -> Message {
        let (payload, data): (Bytes, Data) = match message {
            Message::Text(text) => (text.into(), Data::Text),
            Message::Binary(data) => (data, Data::Binary),
            other => return other,
        };
        let mut frame = Frame::message(self.compress(&payload), OpCode::Data(data), true);
        frame.header_mut().rsv1 = true;
        Message::Frame(frame)
    }

    fn compress(&mut self, payload: &[u8]) -> Vec<u8> {
        let bits = self.params.server_window_bits.min(PREFERRED_WINDOW_BITS);
        let compress = self
            .compress
            .get_or_insert_with(|| Compress::new_with_window_bits(Compression::new(LEVEL), false, bits));
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let start_in = compress.total_in();
        loop {
            let consumed = (compress.total_in() - start_in) as usize;
            let status = compress.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync);
            // Done once all input is in and the flush found room to finish (zlib fills the
            // output completely only when it has more to write).
            let finished = (compress.total_in() - start_in) as usize == payload.len() && out.len() < out.capacity();
            if finished || !matches!(status, Ok(Status::Ok | Status::BufError)) {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&FLUSH_TAIL) {
            out.truncate(out.len() - FLUSH_TAIL.len());
        }
        // Nothing new to flush (an empty message) makes zlib write nothing; the message is
        // then an empty stored block, whose length fields the receiver's tail supplies.
        if out.is_empty() {
            out.push(0x00);
        }
        if self.params.server_no_context_takeover {
            compress.reset();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn offer(value: &str) -> Option<(DeflateParams, String)> {
        let mut headers = HeaderMap::new();
        headers.insert(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(value).unwrap());
        negotiate(&headers).map(|(params, answer)| (params, answer.to_str().unwrap().to_owned()))
    }

    #[test]
    fn default_offer_of_browsers_and_websockets() {
        let (params, answer) = offer("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(answer, "permessage-deflate; client_max_window_bits=12");
        assert_eq!((params.server_window_bits, params.client_window_bits), (15, 12));
        let (params, answer) = offer("permessage-deflate; client_max_window_bits=10").unwrap();
        assert_eq!(answer, "permessage-deflate; client_max_window_bits=10");
        assert_eq!(params.inflate_window_bits(), 10);
        let (params, answer) = offer("permessage-deflate").unwrap();
        assert_eq!(answer, "permessage-deflate");
        assert_eq!(params.inflate_window_bits(), 15);
        assert!(!params.server_no_context_takeover && !params.client_no_context_takeover);
    }

    #[test]
    fn parameters_are_answered() {
        let (params, answer) = offer(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
        )
        .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        );
        assert_eq!(params.server_window_bits, 10);
    }

    #[test]
    fn the_first_acceptable_offer_wins() {
        let (params, answer) =
            offer("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, permessage-deflate; server_no_context_takeover")
                .unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
        assert!(params.server_no_context_takeover);
    }

    #[test]
    fn bad_offers_are_declined() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=07",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; unknown",
            "other-extension",
        ] {
            assert_eq!(offer(bad), None, "{bad}");
        }
        assert_eq!(negotiate(&HeaderMap::new()), None);
    }

    fn inflate(decompress: &mut Decompress, payload: &[u8]) -> Vec<u8> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&FLUSH_TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        decompress
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    fn payload_of(message: Message) -> Vec<u8> {
        let Message::Frame(frame) = message else {
            panic!("not a frame")
        };
        assert!(frame.header().rsv1 && frame.header().is_final);
        frame.into_payload().to_vec()
    }

    #[test]
    fn messages_round_trip_with_and_without_context() {
        for (no_context, bits) in [(false, 15), (true, 15), (false, 9), (true, 9)] {
            let mut deflater = Deflater::new(DeflateParams {
                server_no_context_takeover: no_context,
                server_window_bits: bits,
                ..DeflateParams::default()
            });
            let mut decompress = Decompress::new_with_window_bits(false, 15);
            let text: String = (0..40)
                .map(|i| format!("{{\"id\": {i}, \"v\": {}}}", i * i * 31 % 997))
                .collect();
            let mut sizes = vec![];
            for _ in 0..3 {
                let wire = payload_of(deflater.encode(Message::Text(text.clone().into())));
                sizes.push(wire.len());
                if no_context {
                    decompress.reset(false);
                }
                assert_eq!(inflate(&mut decompress, &wire), text.as_bytes());
            }
            // With the context kept (and a window that holds the last message), a repeated
            // message costs a few bytes.
            assert_eq!(sizes[1] < sizes[0] / 4, !no_context && bits >= 12, "{sizes:?}");
            let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let wire = payload_of(deflater.encode(Message::Binary(big.clone().into())));
            if no_context {
                decompress.reset(false);
            }
            assert_eq!(inflate(&mut decompress, &wire), big);
            for _ in 0..2 {
                let empty = payload_of(deflater.encode(Message::Binary(Bytes::new())));
                if no_context {
                    decompress.reset(false);
                }
                assert_eq!(inflate(&mut decompress, &empty), b"");
            }
            // The inflater is still in step after empty messages.
            let wire = payload_of(deflater.encode(Message::Text("after".into())));
            if no_context {
                decompress.reset(false);
            }
            assert_eq!(inflate(&mut decompress, &wire), b"after");
        }
    }

    #[test]
    fn a_released_compressor_stays_readable_by_the_same_inflater() {
        let mut deflater = Deflater::new(DeflateParams::default());
        let mut decompress = Decompress::new_with_window_bits(false, 15);
        for (i, text) in ["first message", "second message", "first message"]
            .into_iter()
            .enumerate()
        {
            if i == 1 {
                deflater.release();
                assert!(!deflater.holds_state());
            }
            let wire = payload_of(deflater.encode(Message::Text(text.into())));
            assert_eq!(inflate(&mut decompress, &wire), text.as_bytes());
            assert!(deflater.holds_state());
        }
    }

    #[test]
    fn control_messages_pass() {
        let mut deflater = Deflater::new(DeflateParams::default());
        assert!(matches!(deflater.encode(Message::Ping(Bytes::new())), Message::Ping(_)));
    }
}
