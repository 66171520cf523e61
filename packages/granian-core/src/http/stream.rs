//! Streamed response bodies: the app's end queues data, hyper's end reads it, and the app
//! is held back while too much waits for a slow client.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use tokio::sync::Notify;

pub enum StreamSend {
    Sent,
    /// The client is gone: nothing more reaches it.
    Closed,
    /// Queued, but the client reads slower than the app writes: wait for [`StreamSlot::room`]
    /// before sending more.
    Wait,
}

/// Body data from the app: small pieces are copied into the pending buffer (and merged with
/// their neighbours), large ones are shared.
pub enum Chunk<'a> {
    Copy(&'a [u8]),
    Shared(Bytes),
}

/// How many bytes may wait for the client before the app is held back.
const STREAM_LIMIT: usize = 256 * 1024;
/// Pieces smaller than this are merged into one buffer, written as one frame.
const MERGE_BELOW: usize = 16 * 1024;

/// The app's end of a streamed response body. What the app sends while the connection is
/// still writing the previous data is merged, so the body leaves in as few frames (and
/// syscalls) as the client's pace allows.
#[derive(Clone, Default)]
pub struct StreamSlot(Arc<Pipe>);

#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    /// Writers waiting for the pending data to drop under the limit.
    room: Notify,
}

#[derive(Default)]
struct PipeState {
    /// Older pieces first; `tail` holds the newest small ones.
    queued: VecDeque<Bytes>,
    tail: BytesMut,
    pending: usize,
    /// The app ended the body; `aborted` if it failed mid-response.
    closed: bool,
    aborted: bool,
    /// The body was dropped: the client is gone.
    gone: bool,
    /// Sent after the data, when the app ended the body with trailers.
    trailers: Option<HeaderMap>,
    reader: Option<Waker>,
}

impl StreamSlot {
    /// Opens the stream and returns the end hyper will read from.
    pub fn open(&self) -> StreamReader {
        StreamReader(self.0.clone())
    }

    /// Queues `data` (nothing is queued once the client is gone).
    pub fn send(&self, data: Chunk<'_>) -> StreamSend {
        let Ok(mut state) = self.0.state.lock() else {
            return StreamSend::Closed;
        };
        if state.gone || state.closed {
            return StreamSend::Closed;
        }
        match data {
            Chunk::Copy(piece) if piece.len() < MERGE_BELOW => {
                if piece.is_empty() {
                    return StreamSend::Sent;
                }
                if state.tail.capacity() - state.tail.len() < piece.len() {
                    state.tail.reserve(piece.len().max(MERGE_BELOW));
                }
                state.tail.extend_from_slice(piece);
                state.pending += piece.len();
            }
            other => {
                let data = match other {
                    Chunk::Copy(piece) => Bytes::copy_from_slice(piece),
                    Chunk::Shared(data) => data,
                };
                if data.is_empty() {
                    return StreamSend::Sent;
                }
                if !state.tail.is_empty() {
                    let merged = state.tail.split().freeze();
                    state.queued.push_back(merged);
                }
                state.pending += data.len();
                state.queued.push_back(data);
            }
        }
        let over = state.pending > STREAM_LIMIT;
        let reader = state.reader.take();
        drop(state);
        if let Some(reader) = reader {
            reader.wake();
        }
        if over {
            StreamSend::Wait
        } else {
            StreamSend::Sent
        }
    }

    /// Waits until the pending data is under the limit; `false` if the client went away.
    pub async fn room(self) -> bool {
        loop {
            let notified = self.0.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drain between the two is not missed.
            notified.as_mut().enable();
            match self.0.state.lock() {
                Ok(state) if state.gone => return false,
                Ok(state) if state.pending <= STREAM_LIMIT => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
            notified.await;
        }
    }

    /// Ends the body with an error: the client sees a truncated response, not a complete one.
    pub fn abort(&self) {
        self.end(true, None);
    }

    /// Ends the body: hyper sees its end once the queued data is written.
    pub fn close(&self) {
        self.end(false, None);
    }

    /// Ends the body with trailer fields after its data; false when it had ended already.
    pub fn close_with_trailers(&self, trailers: HeaderMap) -> bool {
        self.end(false, Some(trailers))
    }

    fn end(&self, aborted: bool, trailers: Option<HeaderMap>) -> bool {
        let reader = match self.0.state.lock() {
            Ok(mut state) if !state.closed => {
                state.closed = true;
                state.aborted = aborted;
                state.trailers = trailers;
                state.reader.take()
            }
            _ => return false,
        };
        if let Some(reader) = reader {
            reader.wake();
        }
        true
    }
}

/// Hyper's end of a streamed body.
pub struct StreamReader(Arc<Pipe>);

pub enum StreamRead {
    Data(Bytes),
    /// The trailer fields, after the last data.
    Trailers(HeaderMap),
    End,
    Aborted,
}

impl StreamReader {
    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<StreamRead> {
        let Ok(mut state) = self.0.state.lock() else {
            return Poll::Ready(StreamRead::Aborted);
        };
        let data = match state.queued.pop_front() {
            Some(data) => data,
            None if !state.tail.is_empty() => state.tail.split().freeze(),
            None if state.closed && state.aborted => return Poll::Ready(StreamRead::Aborted),
            None if state.closed => {
                return Poll::Ready(match state.trailers.take() {
                    Some(trailers) => StreamRead::Trailers(trailers),
                    None => StreamRead::End,
                })
            }
            None => {
                state.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
        };
        let was_over = state.pending > STREAM_LIMIT;
        state.pending -= data.len();
        let room = was_over && state.pending <= STREAM_LIMIT;
        drop(state);
        if room {
            self.0.room.notify_waiters();
        }
        Poll::Ready(StreamRead::Data(data))
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.state.lock() {
            state.gone = true;
            state.queued.clear();
            state.tail = BytesMut::new();
        }
        self.0.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn read(reader: &mut StreamReader) -> Poll<StreamRead> {
        reader.poll_read(&mut Context::from_waker(Waker::noop()))
    }

    fn reader_of(slot: &StreamSlot) -> StreamReader {
        slot.open()
    }

    #[test]
    fn small_pieces_leave_merged_in_one_frame() {
        let slot = StreamSlot::default();
        let mut reader = reader_of(&slot);
        assert!(read(&mut reader).is_pending());
        assert!(matches!(slot.send(Chunk::Copy(b"ab")), StreamSend::Sent));
        assert!(matches!(slot.send(Chunk::Copy(b"cd")), StreamSend::Sent));
        match read(&mut reader) {
            Poll::Ready(StreamRead::Data(data)) => assert_eq!(&data[..], b"abcd"),
            _ => panic!("expected the merged data"),
        }
        slot.close();
        assert!(matches!(read(&mut reader), Poll::Ready(StreamRead::End)));
    }

    #[test]
    fn a_writer_past_the_limit_waits_until_the_reader_drains() {
        let slot = StreamSlot::default();
        let mut reader = reader_of(&slot);
        let big = Bytes::from(vec![0u8; STREAM_LIMIT + 1]);
        assert!(matches!(slot.send(Chunk::Shared(big)), StreamSend::Wait));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a test runtime");
        let waiter = slot.clone();
        let room = runtime.spawn(async move { waiter.room().await });
        assert!(matches!(read(&mut reader), Poll::Ready(StreamRead::Data(_))));
        assert!(runtime.block_on(room).expect("the waiter ran"));
    }

    #[test]
    fn nothing_is_queued_once_the_client_is_gone() {
        let slot = StreamSlot::default();
        let reader = reader_of(&slot);
        drop(reader);
        assert!(matches!(slot.send(Chunk::Copy(b"late")), StreamSend::Closed));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a test runtime");
        assert!(!runtime.block_on(slot.room()));
    }

    #[test]
    fn trailers_follow_the_data_then_the_end() {
        let slot = StreamSlot::default();
        let mut reader = reader_of(&slot);
        slot.send(Chunk::Copy(b"body"));
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert!(slot.close_with_trailers(trailers));
        assert!(!slot.close_with_trailers(HeaderMap::new()), "a body ends once");
        assert!(matches!(read(&mut reader), Poll::Ready(StreamRead::Data(_))));
        match read(&mut reader) {
            Poll::Ready(StreamRead::Trailers(t)) => assert_eq!(t["grpc-status"], "0"),
            _ => panic!("expected the trailers"),
        }
        assert!(matches!(read(&mut reader), Poll::Ready(StreamRead::End)));
    }

    #[test]
    fn an_aborted_body_ends_with_an_error_after_its_data() {
        let slot = StreamSlot::default();
        let mut reader = reader_of(&slot);
        slot.send(Chunk::Copy(b"partial"));
        slot.abort();
        assert!(matches!(read(&mut reader), Poll::Ready(StreamRead::Data(_))));
        assert!(matches!(read(&mut reader), Poll::Ready(StreamRead::Aborted)));
    }
}
