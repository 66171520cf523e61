//! The native half of a worker: settings from Python, runtimes started per interface,
//! shutdown and join.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::access_writer::AccessWriter;
use crate::app::{AppContext, ListenerInfo, LoopHandler};
use crate::asgi::scope::AsgiShared;
use crate::blocking::BlockingPool;
use crate::bridge::LoopBridge;
use crate::files::StaticFiles;
use crate::http::activity::{Timers, DRAIN_GRACE};
use crate::http::limits::BodyLimits;
use crate::http::server::{build, AccessLog, Handler, Http1Settings, Http2Settings, HttpMode, ServerContext};
use crate::http3::{Http3Listener, Http3Settings};
use crate::log::AccessFormat;
use crate::metrics::meter::Meter;
use crate::net::{Listener, SocketHolder};
use crate::runner::LoopHandles;
use crate::runtime::{start, RuntimeConfig};
use crate::settings::{MetricsOptions, StaticOptions, WorkerSettings};
use crate::tls::{server_cert_pem, server_config, TlsSettings};
use crate::ws::WsSettings;
use crate::wsgi::scope::WsgiShared;
use crate::wsgi::WsgiHandler;
use crate::{asgi, rsgi};

/// Checks an access log format, for a clear error before serving.
#[pyfunction]
pub fn check_access_log_format(format: &str) -> PyResult<()> {
    AccessFormat::parse(format).map(|_| ()).map_err(PyValueError::new_err)
}

/// Builds the TLS configuration once to report a bad file or password before serving.
#[pyfunction]
pub fn check_tls(tls: TlsSettings) -> PyResult<()> {
    server_config(&tls.with_alpn(HttpMode::Auto.alpn()))
        .map(|_| ())
        .map_err(PyValueError::new_err)
}

#[pyclass(frozen, module = "granian._granian")]
pub struct Worker {
    runtime: RuntimeConfig,
    http_mode: HttpMode,
    http1: Http1Settings,
    http2: Http2Settings,
    tls: Option<(TlsAcceptor, Arc<str>)>,
    /// With `--http3`: the TLS settings QUIC is served with, and its own.
    http3: Option<(TlsSettings, Http3Settings)>,
    websockets: bool,
    rust_tasks: bool,
    statics: Option<StaticFiles>,
    access_format: Option<AccessFormat>,
    meter: Option<Meter>,
    limits: BodyLimits,
    ws_settings: WsSettings,
    shutdown: CancellationToken,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pool: Mutex<Option<BlockingPool>>,
}

/// Where finished access lines go: straight to stdout while `granian.access` has its
/// default handler, else to that logger on the event loop.
fn access_emitter(bridge: &LoopBridge) -> PyResult<Box<dyn Fn(String) + Send + Sync>> {
    let (direct_fd, logger) = Python::attach(|py| -> PyResult<(Option<i32>, Py<PyAny>)> {
        let log = py.import("granian.log")?;
        Ok((
            log.call_method0("direct_access_fd")?.extract()?,
            log.getattr("access_logger")?.unbind(),
        ))
    })?;
    if let Some(fd) = direct_fd {
        let writer = AccessWriter::new(fd)?;
        return Ok(Box::new(move |line| writer.push(&line)));
    }
    let logger = Arc::new(logger);
    let queue = bridge.queue.clone();
    Ok(Box::new(move |line| {
        let logger = logger.clone();
        queue.schedule(Box::new(move |py| {
            let _ = logger.bind(py).call_method1("info", (line,));
        }));
    }))
}

impl Worker {
    /// What the requests of one async listener share.
    fn app_context(
        &self,
        listener: &Listener,
        bridge: &LoopBridge,
        app: Py<PyAny>,
        event_loop: &Bound<'_, PyAny>,
        logger: Py<PyAny>,
    ) -> PyResult<Arc<AppContext>> {
        Ok(Arc::new(AppContext {
            app,
            handles: LoopHandles::new(event_loop, self.rust_tasks)?,
            logger,
            bridge: bridge.queue.clone(),
            listener: Arc::new(ListenerInfo::new(listener.server_address(), self.scheme())),
            meter: self.meter.clone(),
            ws_settings: self.ws_settings,
        }))
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn launch<H: Handler>(
        &self,
        listener: Listener,
        bridge: &LoopBridge,
        handler: Arc<H>,
        on_stopped: Py<PyAny>,
    ) -> PyResult<()> {
        let access = match &self.access_format {
            Some(format) => Some(AccessLog {
                format: format.clone(),
                emit: access_emitter(bridge)?,
            }),
            None => None,
        };
        let http3 = match &self.http3 {
            Some((tls, settings)) => {
                let addr = listener
                    .tcp_address()
                    .ok_or_else(|| PyValueError::new_err("--http3: HTTP/3 needs a TCP listener (not --uds)"))?;
                Some(Http3Listener::bind(addr, tls, *settings).map_err(PyValueError::new_err)?)
            }
            None => None,
        };
        let server = ServerContext {
            builder: build(self.http_mode, &self.http1, &self.http2, handler.takes_websockets()),
            scheme: self.scheme(),
            statics: self.statics.clone(),
            access,
            meter: self.meter.clone(),
            timers: Timers {
                header_read: self.http1.header_read_timeout,
                keep_alive: self.http1.keep_alive_timeout,
                drain_grace: DRAIN_GRACE,
            },
            limits: self.limits,
            alt_svc: http3.as_ref().and_then(Http3Listener::alt_svc),
        };
        if let Some(meter) = &self.meter {
            bridge.queue.meter(meter.clone());
        }
        let queue = bridge.queue.clone();
        let on_stopped = Arc::new(on_stopped);
        let notify = Box::new(move || {
            let callback = on_stopped.clone();
            queue.schedule(Box::new(move |py| {
                if let Err(err) = callback.bind(py).call0() {
                    err.print(py);
                }
            }));
        });
        let threads = start(
            &self.runtime,
            listener,
            handler,
            server,
            self.tls.clone(),
            http3,
            self.shutdown.clone(),
            notify,
        )
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the runtime: {e}")))?;
        self.threads
            .lock()
            .map_err(|_| PyRuntimeError::new_err("worker lock poisoned"))?
            .extend(threads);
        Ok(())
    }
}

#[pymethods]
impl Worker {
    #[new]
    fn new(py: Python<'_>, settings: WorkerSettings) -> PyResult<Self> {
        crate::allocator::tune();
        let http_mode = settings.http_mode()?;
        let tls = match &settings.tls {
            Some(tls) => {
                let tls = tls.with_alpn(http_mode.alpn());
                let acceptor = TlsAcceptor::from(server_config(&tls).map_err(PyValueError::new_err)?);
                let cert: Arc<str> = server_cert_pem(&tls).map_err(PyValueError::new_err)?.into();
                Some((acceptor, cert))
            }
            None => None,
        };
        let access_format = match &settings.access_log_format {
            Some(format) => {
                let format = AccessFormat::parse(format).map_err(PyValueError::new_err)?;
                Some(
                    format
                        .with_utc_offset(local_utc_offset(py)?)
                        .with_json(settings.json_logs()?),
                )
            }
            None => None,
        };
        Ok(Self {
            runtime: settings.runtime()?,
            http_mode,
            http1: Http1Settings::from(&settings.http1),
            http2: Http2Settings::from(&settings.http2),
            tls,
            http3: match (settings.http3_settings()?, &settings.tls) {
                (Some(http3), Some(tls)) => Some((tls.clone(), http3)),
                _ => None,
            },
            websockets: settings.websockets,
            rust_tasks: settings.rust_tasks()?,
            statics: settings.statics.as_ref().map(StaticOptions::static_files).transpose()?,
            access_format,
            meter: settings.metrics.as_ref().map(MetricsOptions::meter).transpose()?,
            limits: settings.body_limits()?,
            ws_settings: settings.ws_settings()?,
            shutdown: CancellationToken::new(),
            threads: Mutex::new(Vec::new()),
            pool: Mutex::new(None),
        })
    }

    /// Starts serving an RSGI app: `on_stopped` is called on the loop once a shutdown
    /// completed.
    #[pyo3(signature = (socket, bridge, app, event_loop, logger, on_stopped))]
    fn serve_rsgi(
        &self,
        socket: &SocketHolder,
        bridge: &LoopBridge,
        app: Py<PyAny>,
        event_loop: Bound<'_, PyAny>,
        logger: Py<PyAny>,
        on_stopped: Py<PyAny>,
    ) -> PyResult<()> {
        let listener = socket.take()?;
        let ctx = self.app_context(&listener, bridge, app, &event_loop, logger)?;
        self.launch(
            listener,
            bridge,
            Arc::new(LoopHandler {
                ctx,
                shared: (),
                websockets: self.websockets,
                start_http: rsgi::http::start,
                start_websocket: rsgi::ws::start,
            }),
            on_stopped,
        )
    }

    /// Starts serving an ASGI app; `state` is the lifespan state copied into each scope.
    #[pyo3(signature = (socket, bridge, app, event_loop, logger, on_stopped, state, root_path))]
    #[allow(clippy::too_many_arguments)]
    fn serve_asgi(
        &self,
        py: Python<'_>,
        socket: &SocketHolder,
        bridge: &LoopBridge,
        app: Py<PyAny>,
        event_loop: Bound<'_, PyAny>,
        logger: Py<PyAny>,
        on_stopped: Py<PyAny>,
        state: Option<Py<PyDict>>,
        root_path: String,
    ) -> PyResult<()> {
        let listener = socket.take()?;
        let ctx = self.app_context(&listener, bridge, app, &event_loop, logger)?;
        let shared = AsgiShared::new(py, &ctx.listener, state, root_path)?;
        self.launch(
            listener,
            bridge,
            Arc::new(LoopHandler {
                ctx,
                shared,
                websockets: self.websockets,
                start_http: asgi::http::start,
                start_websocket: asgi::ws::start,
            }),
            on_stopped,
        )
    }

    /// Starts serving a WSGI app on a pool of up to `blocking_threads` threads.
    #[pyo3(signature = (socket, bridge, app, logger, on_stopped, blocking_threads, blocking_idle_timeout, script_name, multiprocess))]
    #[allow(clippy::too_many_arguments)]
    fn serve_wsgi(
        &self,
        py: Python<'_>,
        socket: &SocketHolder,
        bridge: &LoopBridge,
        app: Py<PyAny>,
        logger: Py<PyAny>,
        on_stopped: Py<PyAny>,
        blocking_threads: usize,
        blocking_idle_timeout: u64,
        script_name: String,
        multiprocess: bool,
    ) -> PyResult<()> {
        let listener = socket.take()?;
        // Pool threads hold the GIL from job to job and let it go only while idle.
        let pool = BlockingPool::with_hooks(
            blocking_threads,
            Duration::from_secs(blocking_idle_timeout),
            Arc::new(|body: &mut dyn FnMut()| Python::attach(|_| body())),
            Arc::new(|body: &mut dyn FnMut()| {
                // SAFETY: pool threads run inside `Python::attach` (the hook above), so this
                // thread holds the GIL here; the body only waits on a condvar and touches no
                // Python object while the GIL is out.
                let saved = unsafe { pyo3::ffi::PyEval_SaveThread() };
                body();
                // SAFETY: `saved` is this thread's state, released just above.
                unsafe { pyo3::ffi::PyEval_RestoreThread(saved) };
            }),
        );
        if let Some(meter) = &self.meter {
            pool.meter(meter.clone());
        }
        *self
            .pool
            .lock()
            .map_err(|_| PyRuntimeError::new_err("worker lock poisoned"))? = Some(pool.clone());
        let shared = Arc::new(WsgiShared {
            app,
            logger,
            errors: py.import("sys")?.getattr("stderr")?.unbind(),
            script_name,
            multiprocess,
            listener: Arc::new(ListenerInfo::new(listener.server_address(), self.scheme())),
            pool,
            meter: self.meter.clone(),
        });
        self.launch(listener, bridge, Arc::new(WsgiHandler { shared }), on_stopped)
    }

    /// Stops accepting; open connections finish their in-flight requests, then close.
    fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits for the runtime threads to exit, without holding the GIL.
    fn join(&self, py: Python<'_>) {
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        py.detach(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        if let Some(pool) = self.pool.lock().ok().and_then(|mut p| p.take()) {
            pool.stop();
        }
    }
}

/// Seconds east of UTC here and now (from the C library through Python's `time`, which
/// knows the system's time zone rules).
fn local_utc_offset(py: Python<'_>) -> PyResult<i64> {
    py.import("time")?
        .call_method0("localtime")?
        .getattr("tm_gmtoff")?
        .extract()
}
