//! WSGI (PEP 3333): apps run on the blocking pool, one thread per request in progress.

pub mod file_wrapper;
pub mod http;
pub mod input;
pub mod scope;

use std::net::SocketAddr;
use std::sync::Arc;

use ::http::{Request, Response, StatusCode};
use pyo3::prelude::*;

use crate::handoff::Handoff;
use crate::http::body::ResponseBody;
use crate::http::cycle::exchange;
use crate::http::limits::{BodyError, IncomingBody};
use crate::http::response::{error_response, ResponseSlot};
use crate::http::server::Handler;
use input::InputSource;
use scope::WsgiShared;

pub struct WsgiHandler {
    pub shared: Arc<WsgiShared>,
}

impl Handler for WsgiHandler {
    async fn handle(self: Arc<Self>, req: Request<IncomingBody>, peer: SocketAddr) -> Response<ResponseBody> {
        let (parts, incoming) = req.into_parts();
        let body = match InputSource::prefetch(incoming, self.shared.meter.clone()).await {
            Ok(body) => body,
            // Over a limit: the server's refusal stands (see `dispatch`), the app never runs.
            Err(BodyError::Refused(status)) => return error_response(status),
            Err(err) => {
                log::debug!("the client went away while sending the request body: {err}");
                return error_response(StatusCode::BAD_REQUEST);
            }
        };
        let runtime = tokio::runtime::Handle::current();
        exchange(move |responder, _| {
            let shared = self.shared.clone();
            // Made on the runtime's thread: the answer comes back through its hand-off.
            let slot = match Handoff::current() {
                Some(handoff) => ResponseSlot::batched(responder, handoff, runtime.clone()),
                None => ResponseSlot::new(responder),
            };
            self.shared.pool.spawn(Box::new(move || {
                Python::attach(|py| http::run_request(py, &shared, parts, body, peer, slot, runtime));
            }));
        })
        .await
    }
}
