//! RSGI: the scope, the HTTP and websocket protocol objects, and the handler that starts an
//! app per request on the event loop.

pub mod errors;
pub mod http;
pub mod scope;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use ::http::Request;
use hyper::body::Incoming;
use pyo3::prelude::*;

use crate::app::{AppContext, Call, LoopInterface};
use crate::ws::WsUpgrade;

pub struct RsgiHandler {
    pub ctx: Arc<AppContext>,
    pub websockets: bool,
}

impl LoopInterface for RsgiHandler {
    fn context(&self) -> &Arc<AppContext> {
        &self.ctx
    }

    fn websockets(&self) -> bool {
        self.websockets
    }

    fn start_http(&self, py: Python<'_>, req: Request<Incoming>, peer: SocketAddr, call: Call) {
        http::start(py, &self.ctx, req, peer, call);
    }

    fn start_websocket(
        &self,
        py: Python<'_>,
        req: Request<Incoming>,
        peer: SocketAddr,
        call: Call,
        upgrade: WsUpgrade,
    ) {
        ws::start(py, &self.ctx, req, peer, call, upgrade);
    }
}
