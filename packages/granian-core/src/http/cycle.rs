//! The request cycle every interface shares: the app gets a responder and the request's
//! state, and the connection waits for the response, answering 500 when none comes.

use std::future::Future;
use std::sync::Arc;

use http::{Response, StatusCode};
use tokio::sync::oneshot;

use super::body::ResponseBody;
use super::response::{error_response, Responder};
use super::state::{DisconnectGuard, RequestState};

/// Runs one request: `start` hands the request to the app (on whatever thread serves it)
/// at once, which answers through the responder; the future returned waits for that answer.
/// A responder dropped unanswered gives a 500. The request's state tells the app when its
/// client goes away, until the response body is fully handed over. (Started before the
/// future is made so the request's parts are not carried in it: it stays small.)
pub fn exchange(start: impl FnOnce(Responder, Arc<RequestState>)) -> impl Future<Output = Response<ResponseBody>> {
    let (responder, answer) = oneshot::channel();
    let state = Arc::new(RequestState::new());
    let guard = DisconnectGuard(state.clone());
    start(responder, state);
    async move {
        match answer.await {
            Ok(mut response) => {
                response.body_mut().watch(guard);
                response
            }
            Err(_) => {
                guard.0.complete();
                error_response(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::response;
    use http::HeaderMap;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a test runtime")
            .block_on(future)
    }

    #[test]
    fn the_app_answer_is_the_response() {
        let answered = block_on(exchange(|responder, _| {
            let _ = responder.send(response(StatusCode::CREATED, HeaderMap::new(), ResponseBody::empty()));
        }));
        assert_eq!(answered.status(), StatusCode::CREATED);
    }

    #[test]
    fn a_responder_dropped_unanswered_is_a_500_and_no_disconnect() {
        let mut seen = None;
        let answered = block_on(exchange(|responder, state| {
            drop(responder);
            seen = Some(state);
        }));
        assert_eq!(answered.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let state = seen.expect("start ran");
        assert!(state.is_completed());
        assert!(!state.is_disconnected());
    }

    #[test]
    fn a_whole_body_completes_the_request_when_handed_over() {
        let mut seen = None;
        let answered = block_on(exchange(|responder, state| {
            seen = Some(state);
            let _ = responder.send(response(StatusCode::OK, HeaderMap::new(), ResponseBody::empty()));
        }));
        assert_eq!(answered.status(), StatusCode::OK);
        assert!(seen.expect("start ran").is_completed());
    }
}
