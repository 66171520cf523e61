//! The `granian._granian` extension module: registers classes and functions, nothing else.

mod access_writer;
mod allocator;
mod app;
mod asgi;
mod awaitable;
mod blocking;
mod bridge;
mod convert;
mod files;
mod handoff;
mod http;
mod http3;
mod log;
mod log_time;
mod metrics;
mod net;
mod rsgi;
mod runner;
mod runtime;
mod settings;
mod systemd;
mod task;
mod tls;
mod worker;
mod ws;
mod wsgi;

use pyo3::prelude::*;

#[pymodule]
fn _granian(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let _ = pyo3_log::try_init();
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Whether this interpreter build has a GIL at all (false on free-threaded builds, even
    // while the GIL is re-enabled at run time); test suites read it to skip thread tests.
    let gil_disabled = py
        .import("sysconfig")?
        .call_method1("get_config_var", ("Py_GIL_DISABLED",))?
        .is_truthy()?;
    m.add("BUILD_GIL", !gil_disabled)?;
    m.add_class::<bridge::LoopBridge>()?;
    m.add_class::<awaitable::Ready>()?;
    m.add_class::<task::RustTask>()?;
    m.add_class::<net::SocketHolder>()?;
    m.add_class::<worker::Worker>()?;
    m.add_class::<metrics::exporter::MetricsExporter>()?;
    m.add_function(wrap_pyfunction!(worker::check_tls, m)?)?;
    m.add_function(wrap_pyfunction!(worker::check_access_log_format, m)?)?;
    m.add_function(wrap_pyfunction!(systemd::systemd_notify, m)?)?;
    m.add_function(wrap_pyfunction!(systemd::systemd_watchdog_interval, m)?)?;
    m.add_function(wrap_pyfunction!(systemd::systemd_listen_fds, m)?)?;
    m.add_class::<rsgi::scope::Scope>()?;
    m.add_class::<rsgi::scope::Headers>()?;
    m.add_class::<rsgi::http::HttpProtocol>()?;
    m.add_class::<rsgi::http::StreamTransport>()?;
    m.add_class::<rsgi::ws::WsProtocol>()?;
    m.add_class::<rsgi::ws::WsTransport>()?;
    m.add_class::<rsgi::ws::WsMessage>()?;
    m.add_class::<asgi::http::HttpReceive>()?;
    m.add_class::<asgi::http::HttpSend>()?;
    m.add_class::<asgi::ws::WsReceive>()?;
    m.add_class::<asgi::ws::WsSend>()?;
    m.add_class::<wsgi::http::StartResponse>()?;
    m.add_class::<wsgi::http::Write>()?;
    m.add_class::<wsgi::file_wrapper::FileWrapper>()?;
    m.add_class::<wsgi::input::WsgiInput>()?;
    m.add("ProtocolError", py.get_type::<rsgi::errors::ProtocolError>())?;
    m.add("ProtocolClosed", py.get_type::<rsgi::errors::ProtocolClosed>())?;
    Ok(())
}
