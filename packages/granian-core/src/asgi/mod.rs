//! ASGI 3: the scope, HTTP and websocket `receive` / `send`, and the handler that starts an
//! app per request on the event loop. Lifespan runs in Python (`granian.asgi`).

pub mod http;
pub mod messages;
pub mod scope;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use ::http::Request;
use hyper::body::Incoming;
use pyo3::prelude::*;

use crate::app::{AppContext, Call, LoopInterface};
use crate::ws::WsUpgrade;
use scope::AsgiShared;

pub struct AsgiHandler {
    pub ctx: Arc<AppContext>,
    pub shared: AsgiShared,
    pub websockets: bool,
}

impl LoopInterface for AsgiHandler {
    fn context(&self) -> &Arc<AppContext> {
        &self.ctx
    }

    fn websockets(&self) -> bool {
        self.websockets
    }

    fn start_http(&self, py: Python<'_>, req: Request<Incoming>, peer: SocketAddr, call: Call) {
        http::start(py, &self.ctx, &self.shared, req, peer, call);
    }

    fn start_websocket(
        &self,
        py: Python<'_>,
        req: Request<Incoming>,
        peer: SocketAddr,
        call: Call,
        upgrade: WsUpgrade,
    ) {
        ws::start(py, &self.ctx, &self.shared, req, peer, call, upgrade);
    }
}
