//! What the requests of an event-loop interface (RSGI, ASGI) share within a worker, and the
//! request cycle on the loop: each request is handed to the loop thread, where the
//! interface starts the app.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bridge::{resolve, BridgeQueue};
use crate::http::body::ResponseBody;
use crate::http::cycle::exchange;
use crate::http::limits::IncomingBody;
use crate::http::response::ResponseSlot;
use crate::http::server::Handler;
use crate::http::state::RequestState;
use crate::http::stream::StreamSlot;
use crate::metrics::meter::Meter;
use crate::runner::LoopHandles;
use crate::task::Finisher;
use crate::ws::{take_upgrade, WsSettings, WsUpgrade};

/// Values fixed for the life of a listener, shared by every request it serves.
pub struct ListenerInfo {
    pub ip: String,
    pub port: u16,
    pub server: String,
    pub scheme: &'static str,
}

impl ListenerInfo {
    pub fn new((ip, port): (String, u16), scheme: &'static str) -> Self {
        Self {
            server: format!("{ip}:{port}"),
            ip,
            port,
            scheme,
        }
    }
}

pub struct AppContext {
    pub app: Py<PyAny>,
    pub handles: LoopHandles,
    pub logger: Py<PyAny>,
    pub bridge: Arc<BridgeQueue>,
    pub listener: Arc<ListenerInfo>,
    /// With `--metrics`: where request bodies and websocket messages are counted.
    pub meter: Option<Meter>,
    pub ws_settings: WsSettings,
}

impl AppContext {
    pub fn log_error(&self, py: Python<'_>, message: &str) {
        let _ = self.logger.bind(py).call_method1("error", (message,));
    }

    pub fn log_debug(&self, py: Python<'_>, message: &str) {
        let _ = self.logger.bind(py).call_method1("debug", (message,));
    }

    /// Logs on `_granian` with the full traceback of `err`.
    pub fn log_app_error(&self, py: Python<'_>, message: &str, err: &PyErr) {
        log_exception(self.logger.bind(py), message, err);
    }

    /// Calls the app with the arguments `prepare` builds and runs what it returns as a task,
    /// whose end the finisher hears. When that fails (the app raised at once), the error is
    /// logged and `failed` runs.
    pub fn start_app<'py, A>(
        &self,
        py: Python<'py>,
        prepare: impl FnOnce() -> PyResult<(A, Finisher)>,
        failed: impl FnOnce(),
    ) where
        A: pyo3::call::PyCallArgs<'py>,
    {
        let started = prepare().and_then(|(args, finished)| {
            let coro = self.app.bind(py).call1(args)?;
            self.handles.spawn(&coro, finished)
        });
        if let Err(err) = started {
            self.log_app_error(py, "Application callable raised an exception", &err);
            failed();
        }
    }

    /// Reports how an app's coroutine ended: `true` when it raised (or was cancelled), after
    /// logging the error; cancellation is only worth a debug line.
    pub fn report_app_end(&self, py: Python<'_>, error: Option<PyErr>) -> bool {
        match error {
            Some(err) if err.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>(py) => {
                self.log_debug(py, "the application task was cancelled");
                true
            }
            Some(err) => {
                self.log_app_error(py, "Application callable raised an exception", &err);
                true
            }
            None => false,
        }
    }

    /// The end of an HTTP request's app: a body still streaming is cut (`cut_stream`) or
    /// ended. `true` when the request was never answered: the caller answers 500 (logged here
    /// unless the app raised, which was logged already, or the client left).
    #[must_use]
    pub fn settle(
        &self,
        py: Python<'_>,
        request: &RequestState,
        response: &ResponseSlot,
        stream: &StreamSlot,
        cut_stream: bool,
        raised: bool,
    ) -> bool {
        if cut_stream {
            // A stream cut by an error must not look complete to the client.
            stream.abort();
        } else {
            stream.close();
        }
        let unanswered = response.is_pending();
        if unanswered && !raised && !request.is_disconnected() {
            self.log_error(py, "Application returned without sending a response: answering 500");
        }
        unanswered
    }

    /// A future for the app, resolved with `value` when the client goes away (and, with
    /// `on_complete`, once the response was fully handed over); `None` when that already
    /// happened.
    pub fn disconnect_future(
        &self,
        py: Python<'_>,
        request: &RequestState,
        value: Py<PyAny>,
        on_complete: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let future = self.handles.future(py)?.unbind();
        let reply = future.clone_ref(py);
        let bridge = self.bridge.clone();
        let watching = request.watch(
            on_complete,
            Box::new(move || resolve(&bridge, reply, move |_| Ok(value))),
        );
        Ok(watching.then_some(future))
    }

    /// A future for the app, resolved on the loop with what `reply` makes of the outcome of
    /// `work`, which runs on `runtime`.
    pub fn future_from<T: Send + 'static>(
        &self,
        py: Python<'_>,
        runtime: &tokio::runtime::Handle,
        work: impl Future<Output = T> + Send + 'static,
        reply: impl FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
    ) -> PyResult<Py<PyAny>> {
        let future = self.handles.future(py)?.unbind();
        let target = future.clone_ref(py);
        let bridge = self.bridge.clone();
        runtime.spawn(async move {
            let outcome = work.await;
            resolve(&bridge, target, move |py| reply(py, outcome));
        });
        Ok(future)
    }

    /// A future resolved with None once `work` (run on `runtime`) gives `true`: a full
    /// queue took a message, a stream has room again; with what `otherwise` gives when it
    /// gives `false` (the client went away).
    pub fn when_done(
        &self,
        py: Python<'_>,
        runtime: &tokio::runtime::Handle,
        work: impl Future<Output = bool> + Send + 'static,
        otherwise: fn(Python<'_>) -> PyResult<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.future_from(
            py,
            runtime,
            work,
            move |py, done| if done { Ok(py.None()) } else { otherwise(py) },
        )
    }
}

/// Logs `message` on `logger` at error level with the full traceback of `err`.
pub fn log_exception(logger: &Bound<'_, PyAny>, message: &str, err: &PyErr) {
    let py = logger.py();
    let exc_info = (err.get_type(py), err.value(py), err.traceback(py));
    let kwargs = PyDict::new(py);
    let _ = kwargs.set_item("exc_info", exc_info);
    let _ = logger.call_method("error", (message,), Some(&kwargs));
}

/// What an interface gets to serve one request: the request, where the answer goes, the
/// request's state, and the runtime its connection lives on.
pub struct Call {
    pub req: Request<IncomingBody>,
    pub peer: SocketAddr,
    pub response: ResponseSlot,
    pub state: Arc<RequestState>,
    pub runtime: tokio::runtime::Handle,
}

/// How an interface starts its app for an HTTP request, and for a websocket upgrade; `S` is
/// what the interface's requests share besides the context.
pub type StartHttp<S> = fn(Python<'_>, &Arc<AppContext>, &S, Call);
pub type StartWebsocket<S> = fn(Python<'_>, &Arc<AppContext>, &S, Call, WsUpgrade);

/// The handler of an interface whose apps run on the event loop (RSGI, ASGI): each request
/// goes through the shared cycle and is handed to the loop thread, where the interface
/// builds what the app sees and starts it.
pub struct LoopHandler<S> {
    pub ctx: Arc<AppContext>,
    pub shared: S,
    /// Whether websocket upgrades go to the app (else they are plain requests).
    pub websockets: bool,
    pub start_http: StartHttp<S>,
    pub start_websocket: StartWebsocket<S>,
}

impl<S: Send + Sync + 'static> Handler for LoopHandler<S> {
    fn takes_websockets(&self) -> bool {
        self.websockets
    }

    // Not an async fn: the request is handed to the loop when this is called, and the future
    // returned holds only the wait for the answer.
    fn handle(
        self: Arc<Self>,
        mut req: Request<IncomingBody>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<ResponseBody>> + Send {
        let upgrade = match self.websockets {
            true => take_upgrade(&mut req, self.ctx.meter.as_ref(), self.ctx.ws_settings),
            false => None,
        };
        let runtime = tokio::runtime::Handle::current();
        exchange(move |responder, state| {
            let bridge = self.ctx.bridge.clone();
            bridge.clone().schedule(Box::new(move |py| {
                let response = match upgrade {
                    // The 101 leaves at once: the websocket's traffic follows it.
                    Some(_) => ResponseSlot::new(responder),
                    None => ResponseSlot::batched(responder, bridge, runtime.clone()),
                };
                let call = Call {
                    req,
                    peer,
                    response,
                    state,
                    runtime,
                };
                match upgrade {
                    Some(upgrade) => (self.start_websocket)(py, &self.ctx, &self.shared, call, upgrade),
                    None => (self.start_http)(py, &self.ctx, &self.shared, call),
                }
            }))
        })
    }
}
