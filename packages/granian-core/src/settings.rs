//! The worker's settings as they cross from Python: typed structs read by attribute from
//! the Python settings objects (`granian._native.WorkerSettings` and the `HTTP1Settings`,
//! `HTTP2Settings`, `TLSSettings` and `StaticFilesSettings` it holds), so a field renamed or
//! swapped on one side is an error at start-up, not a silent mix-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::files::{Mount, StaticFiles};
use crate::http::limits::BodyLimits;
use crate::http::server::{Http1Settings, Http2Settings, HttpMode};
use crate::http3::Http3Settings;
use crate::metrics::meter::Meter;
use crate::metrics::region::Region;
use crate::runtime::{RuntimeConfig, RuntimeMode};
use crate::tls::TlsSettings;
use crate::ws::WsSettings;

#[derive(FromPyObject)]
pub struct WorkerSettings {
    pub runtime_mode: String,
    pub runtime_threads: usize,
    pub runtime_blocking_threads: usize,
    pub backpressure: usize,
    pub http_mode: String,
    pub http1: Http1Options,
    pub http2: Http2Options,
    pub tls: Option<TlsSettings>,
    pub statics: Option<StaticOptions>,
    pub access_log_format: Option<String>,
    /// `--log-format`: 'text' or 'json'.
    pub log_format: String,
    pub websockets: bool,
    pub task_impl: String,
    pub metrics: Option<MetricsOptions>,
    pub max_body_size: Option<u64>,
    /// Seconds.
    pub body_read_timeout: Option<f64>,
    pub ws_max_message_size: usize,
    pub ws_max_frame_size: usize,
    /// Seconds; None: off.
    pub ws_ping_interval: Option<f64>,
    pub ws_idle_timeout: Option<f64>,
    /// `--ws-compression`: permessage-deflate when the client offers it.
    pub ws_compression: bool,
    /// `--http3`: QUIC beside TCP; the other `http3_*` fields apply then.
    pub http3: bool,
    /// Seconds.
    pub http3_idle_timeout: f64,
    pub http3_max_concurrent_streams: u32,
    /// One worker only: it binds UDP alone and clients may move to another address.
    pub http3_sole_worker: bool,
}

/// `granian._native.MetricsSettings`: where this worker counts.
#[derive(FromPyObject)]
pub struct MetricsOptions {
    /// The region the main process created.
    pub path: PathBuf,
    /// This process's slot in it.
    pub slot: usize,
}

impl MetricsOptions {
    pub fn meter(&self) -> PyResult<Meter> {
        let region = Region::open(&self.path).map_err(|err| {
            PyValueError::new_err(format!("cannot open the metrics region {}: {err}", self.path.display()))
        })?;
        Meter::new(Arc::new(region), self.slot).map_err(|err| PyValueError::new_err(err.to_string()))
    }
}

/// `granian.http.HTTP1Settings`.
#[derive(FromPyObject)]
pub struct Http1Options {
    /// Milliseconds.
    pub header_read_timeout: u64,
    pub keep_alive: bool,
    pub max_buffer_size: usize,
    pub pipeline_flush: bool,
    /// Milliseconds.
    pub keep_alive_timeout: u64,
}

/// `granian.http.HTTP2Settings`.
#[derive(FromPyObject)]
pub struct Http2Options {
    pub adaptive_window: bool,
    pub initial_connection_window_size: u32,
    pub initial_stream_window_size: u32,
    /// Milliseconds; None turns pings off.
    pub keep_alive_interval: Option<u64>,
    /// Seconds.
    pub keep_alive_timeout: u64,
    pub max_concurrent_streams: u32,
    pub max_frame_size: u32,
    pub max_headers_size: u32,
    pub max_send_buffer_size: usize,
}

#[derive(FromPyObject)]
pub struct StaticOptions {
    /// (URL route, directory) pairs.
    pub mounts: Vec<(String, PathBuf)>,
    /// Seconds; 0 sends no caching headers.
    pub expires: u64,
    pub dir_to_file: Option<String>,
}

impl WorkerSettings {
    pub fn runtime(&self) -> PyResult<RuntimeConfig> {
        let mode = match self.runtime_mode.as_str() {
            "st" => RuntimeMode::St,
            "mt" => RuntimeMode::Mt,
            other => return Err(PyValueError::new_err(format!("unknown runtime mode {other:?}"))),
        };
        Ok(RuntimeConfig {
            mode,
            threads: self.runtime_threads.max(1),
            blocking_threads: self.runtime_blocking_threads.max(1),
            backpressure: self.backpressure.max(1),
        })
    }

    pub fn http_mode(&self) -> PyResult<HttpMode> {
        match self.http_mode.as_str() {
            "auto" => Ok(HttpMode::Auto),
            "1" => Ok(HttpMode::Http1),
            "2" => Ok(HttpMode::Http2),
            other => Err(PyValueError::new_err(format!("unknown HTTP mode {other:?}"))),
        }
    }

    pub fn body_limits(&self) -> PyResult<BodyLimits> {
        Ok(BodyLimits {
            max_size: self.max_body_size,
            read_timeout: seconds("body_read_timeout", self.body_read_timeout)?,
        })
    }

    pub fn ws_settings(&self) -> PyResult<WsSettings> {
        Ok(WsSettings {
            max_message: self.ws_max_message_size.max(1),
            max_frame: self.ws_max_frame_size.max(1),
            ping_interval: seconds("ws_ping_interval", self.ws_ping_interval)?,
            idle_timeout: seconds("ws_idle_timeout", self.ws_idle_timeout)?,
            compression: self.ws_compression,
        })
    }

    /// None unless `--http3`.
    pub fn http3_settings(&self) -> PyResult<Option<Http3Settings>> {
        if !self.http3 {
            return Ok(None);
        }
        if self.tls.is_none() {
            return Err(PyValueError::new_err(
                "--http3: HTTP/3 needs TLS (--ssl-certificate and --ssl-keyfile)",
            ));
        }
        let idle_timeout = seconds("--http3-idle-timeout", Some(self.http3_idle_timeout))?.unwrap_or_default();
        Ok(Some(Http3Settings {
            idle_timeout,
            max_concurrent_streams: self.http3_max_concurrent_streams.max(1),
            sole_worker: self.http3_sole_worker,
            max_headers_size: u64::from(self.http2.max_headers_size),
        }))
    }

    /// Whether access lines are JSON objects (`--log-format json`).
    pub fn json_logs(&self) -> PyResult<bool> {
        match self.log_format.as_str() {
            "text" => Ok(false),
            "json" => Ok(true),
            other => Err(PyValueError::new_err(format!("unknown log format {other:?}"))),
        }
    }

    /// Whether app coroutines run as native tasks (`--task-impl rust`).
    pub fn rust_tasks(&self) -> PyResult<bool> {
        match self.task_impl.as_str() {
            "asyncio" => Ok(false),
            "rust" => Ok(true),
            other => Err(PyValueError::new_err(format!("unknown task implementation {other:?}"))),
        }
    }
}

/// A time in seconds from Python (None: no limit) as a duration; refused unless positive.
fn seconds(option: &str, value: Option<f64>) -> PyResult<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(secs) if secs.is_finite() && secs > 0.0 => Ok(Some(Duration::from_secs_f64(secs))),
        Some(secs) => Err(PyValueError::new_err(format!(
            "{option}: {secs} is not a positive time"
        ))),
    }
}

impl From<&Http1Options> for Http1Settings {
    fn from(options: &Http1Options) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(options.header_read_timeout),
            keep_alive: options.keep_alive,
            keep_alive_timeout: Duration::from_millis(options.keep_alive_timeout),
            max_buffer_size: options.max_buffer_size,
            pipeline_flush: options.pipeline_flush,
        }
    }
}

impl From<&Http2Options> for Http2Settings {
    fn from(options: &Http2Options) -> Self {
        Self {
            adaptive_window: options.adaptive_window,
            initial_connection_window_size: options.initial_connection_window_size,
            initial_stream_window_size: options.initial_stream_window_size,
            keep_alive_interval: options.keep_alive_interval.map(Duration::from_millis),
            keep_alive_timeout: Duration::from_secs(options.keep_alive_timeout),
            max_concurrent_streams: options.max_concurrent_streams,
            max_frame_size: options.max_frame_size,
            max_headers_size: options.max_headers_size,
            max_send_buffer_size: options.max_send_buffer_size,
        }
    }
}

impl StaticOptions {
    pub fn static_files(&self) -> PyResult<StaticFiles> {
        let mut mounts = Vec::new();
        for (route, dir) in &self.mounts {
            let root = dir.canonicalize().ok().filter(|p| p.is_dir()).ok_or_else(|| {
                PyValueError::new_err(format!("--static-path-mount: {} is not a directory", dir.display()))
            })?;
            let route = format!("/{}", route.trim_matches('/'));
            mounts.push(Mount { route, root });
        }
        // The longest route wins when routes nest.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.route.len()));
        Ok(StaticFiles {
            mounts,
            expires: self.expires,
            dir_to_file: self.dir_to_file.clone().filter(|s| !s.is_empty()),
            cache: Default::default(),
        })
    }
}
