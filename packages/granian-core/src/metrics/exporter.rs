//! The main process's end of the metrics: the region's slots handed to worker processes,
//! counts of the processes that ended kept (so counters never go back), and the Prometheus
//! text format served on `ADDRESS:PORT/metrics`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::proto::{Bucket, Counter as PCounter, Gauge as PGauge, Histogram as PHistogram};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tokio_util::sync::CancellationToken;

use super::region::{Counter, Gauge, Region, BUCKETS, PROTOCOLS, STATUS_CLASSES};

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Totals of one (protocol, status class) of the duration histogram.
#[derive(Clone, Copy, Default)]
struct Durations {
    buckets: [u64; BUCKETS.len() + 1],
    sum_us: u64,
}

/// What the processes of one worker label added up to, ended ones included.
#[derive(Clone, Default)]
struct Totals {
    counters: [u64; Counter::ALL.len()],
    gauges: [i64; Gauge::ALL.len()],
    lifetime: Duration,
}

#[derive(Default)]
struct Book {
    /// The worker label of each slot in use, and when its process was started.
    slots: Vec<Option<(u32, Instant)>>,
    /// What ended processes counted, by worker label.
    retired: HashMap<u32, Totals>,
    retired_durations: Vec<Durations>,
    spawns: u64,
    respawns_err: u64,
    respawns_lifetime: u64,
    respawns_rss: u64,
    /// The last page rendered, and when: scrapes within the interval get it again.
    cached: Option<(Instant, Bytes)>,
}

struct Shared {
    region: Region,
    book: Mutex<Book>,
    workers: u32,
    interface: String,
    interval: Duration,
}

#[pyclass(frozen, module = "granian._granian")]
pub struct MetricsExporter {
    shared: Arc<Shared>,
    path: PathBuf,
    /// The port bound (the one asked for, or the one the system chose for 0).
    port: u16,
    shutdown: CancellationToken,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[pymethods]
impl MetricsExporter {
    /// Binds `address:port` (an error names the option), creates the region for up to
    /// `capacity` worker processes at once and starts serving.
    #[new]
    #[pyo3(signature = (address, port, workers, interface, interval, capacity))]
    fn new(
        address: &str,
        port: u16,
        workers: u32,
        interface: String,
        interval: f64,
        capacity: usize,
    ) -> PyResult<Self> {
        if !(interval.is_finite() && interval > 0.0) {
            return Err(PyValueError::new_err(
                "metrics_scrape_interval: must be a positive number of seconds",
            ));
        }
        let listener = TcpListener::bind((address, port)).map_err(|err| {
            PyOSError::new_err(format!(
                "metrics_port: cannot bind the metrics exporter to {address}:{port}: {err}"
            ))
        })?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let path = region_path();
        let region = Region::create(&path, capacity)
            .map_err(|err| PyOSError::new_err(format!("cannot create the metrics region {}: {err}", path.display())))?;
        let shared = Arc::new(Shared {
            region,
            book: Mutex::new(Book {
                slots: vec![None; capacity],
                retired_durations: vec![Durations::default(); PROTOCOLS.len() * STATUS_CLASSES.len()],
                ..Book::default()
            }),
            workers,
            interface,
            interval: Duration::from_secs_f64(interval),
        });
        let shutdown = CancellationToken::new();
        let thread = {
            let (shared, shutdown) = (shared.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name("granian-metrics".into())
                .spawn(move || serve(listener, shared, shutdown))?
        };
        Ok(Self {
            shared,
            path,
            port,
            shutdown,
            thread: Mutex::new(Some(thread)),
        })
    }

    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    /// The region's file, for the workers to open.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// A slot for a new process of worker `worker` (its counts start at zero).
    fn claim(&self, worker: u32) -> PyResult<usize> {
        let mut book = self
            .shared
            .book
            .lock()
            .map_err(|_| PyRuntimeError::new_err("metrics lock poisoned"))?;
        let index = book
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or_else(|| PyRuntimeError::new_err("no free metrics slot: too many worker processes at once"))?;
        self.shared.region.slot(index).reset();
        book.slots[index] = Some((worker, Instant::now()));
        book.spawns += 1;
        Ok(index)
    }

    /// The process of `index` ended: what it counted is kept under its worker label, its
    /// gauges go, and the slot is free again.
    fn release(&self, index: usize) -> PyResult<()> {
        let mut book = self
            .shared
            .book
            .lock()
            .map_err(|_| PyRuntimeError::new_err("metrics lock poisoned"))?;
        let Some((worker, started)) = book.slots.get_mut(index).and_then(Option::take) else {
            return Ok(());
        };
        let slot = self.shared.region.slot(index);
        let retired = book.retired.entry(worker).or_default();
        for counter in Counter::ALL {
            retired.counters[counter as usize] += slot.counter(counter).load(Ordering::Relaxed);
        }
        retired.lifetime += started.elapsed();
        for (index, histogram) in slot.durations.iter().flatten().enumerate() {
            let kept = &mut book.retired_durations[index];
            for (total, bucket) in kept.buckets.iter_mut().zip(&histogram.buckets) {
                *total += bucket.load(Ordering::Relaxed);
            }
            kept.sum_us += histogram.sum_us.load(Ordering::Relaxed);
        }
        Ok(())
    }

    /// A worker is being replaced: `reason` is `err` (it died), `lifetime` or `rss`.
    fn respawned(&self, reason: &str) -> PyResult<()> {
        let mut book = self
            .shared
            .book
            .lock()
            .map_err(|_| PyRuntimeError::new_err("metrics lock poisoned"))?;
        match reason {
            "err" => book.respawns_err += 1,
            "lifetime" => book.respawns_lifetime += 1,
            "rss" => book.respawns_rss += 1,
            other => return Err(PyValueError::new_err(format!("unknown respawn reason {other:?}"))),
        }
        Ok(())
    }

    /// The page a scrape gets now (what `/metrics` serves).
    fn render(&self) -> PyResult<String> {
        Ok(String::from_utf8_lossy(&page(&self.shared)).into_owned())
    }

    /// Stops serving and removes the region's file (workers still mapping it keep their copy).
    fn close(&self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for MetricsExporter {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// In shared memory where there is one (`/dev/shm`), else in the temporary directory.
fn region_path() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let dir = if shm.is_dir() { shm } else { std::env::temp_dir() };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    dir.join(format!("granian-metrics-{}-{stamp}", std::process::id()))
}

fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return log::error!("the metrics exporter cannot start: {err}"),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => return log::error!("the metrics exporter cannot listen: {err}"),
        };
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        log::warn!("metrics exporter: accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(answer(&shared, &req)) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    if req.uri().path() != "/metrics" {
        *response.status_mut() = StatusCode::NOT_FOUND;
    } else if req.method() != Method::GET && req.method() != Method::HEAD {
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    } else {
        *response.body_mut() = Full::new(page(shared));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    }
    response
}

/// The page, rendered at most once per scrape interval.
fn page(shared: &Shared) -> Bytes {
    let Ok(mut book) = shared.book.lock() else {
        return Bytes::new();
    };
    if let Some((at, page)) = &book.cached {
        if at.elapsed() < shared.interval {
            return page.clone();
        }
    }
    let families = families(shared, &book);
    let mut text = String::new();
    if let Err(err) = prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
        log::error!("cannot render the metrics: {err}");
    }
    let page = Bytes::from(text);
    book.cached = Some((Instant::now(), page.clone()));
    page
}

/// Every worker label's totals: its ended processes plus the live ones.
fn totals(shared: &Shared, book: &Book) -> Vec<(u32, Totals)> {
    (1..=shared.workers)
        .map(|worker| {
            let mut totals = book.retired.get(&worker).cloned().unwrap_or_default();
            for (index, used) in book.slots.iter().enumerate() {
                let Some((label, started)) = used else { continue };
                if *label != worker {
                    continue;
                }
                let slot = shared.region.slot(index);
                for counter in Counter::ALL {
                    totals.counters[counter as usize] += slot.counter(counter).load(Ordering::Relaxed);
                }
                for gauge in Gauge::ALL {
                    totals.gauges[gauge as usize] += slot.gauge(gauge).load(Ordering::Relaxed);
                }
                totals.lifetime += started.elapsed();
            }
            (worker, totals)
        })
        .collect()
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_owned());
    pair.set_value(value.to_owned());
    pair
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

fn counter(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut metric = Metric::default();
    metric.set_label(labels);
    let mut counter = PCounter::default();
    counter.set_value(value);
    metric.set_counter(counter);
    metric
}

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut metric = Metric::default();
    metric.set_label(labels);
    let mut gauge = PGauge::default();
    gauge.set_value(value);
    metric.set_gauge(gauge);
    metric
}

/// What a per-worker series reports, and how.
enum PerWorker {
    Counter(Counter),
    Gauge(Gauge),
    Lifetime,
}

/// The per-worker series: name, help, value. Those of granian 2.8.7 first, under its names.
const PER_WORKER: [(&str, &str, PerWorker); 18] = [
    (
        "granian_worker_lifetime",
        "Seconds the worker's processes have been running, in all.",
        PerWorker::Lifetime,
    ),
    (
        "granian_connections_active",
        "Connections open now.",
        PerWorker::Gauge(Gauge::ConnectionsActive),
    ),
    (
        "granian_connections_handled",
        "Connections accepted.",
        PerWorker::Counter(Counter::ConnectionsHandled),
    ),
    (
        "granian_connections_err",
        "Connections that ended with an error (TLS or HTTP).",
        PerWorker::Counter(Counter::ConnectionsErr),
    ),
    (
        "granian_requests_handled",
        "Requests answered.",
        PerWorker::Counter(Counter::RequestsHandled),
    ),
    (
        "granian_static_requests_handled",
        "Requests answered from the static files mounts.",
        PerWorker::Counter(Counter::StaticHandled),
    ),
    (
        "granian_static_requests_err",
        "Static file requests answered with an error status.",
        PerWorker::Counter(Counter::StaticErr),
    ),
    (
        "granian_blocking_threads",
        "Threads of the blocking pool (WSGI).",
        PerWorker::Gauge(Gauge::BlockingThreads),
    ),
    (
        "granian_blocking_queue",
        "Work waiting for a blocking thread.",
        PerWorker::Gauge(Gauge::BlockingQueue),
    ),
    (
        "granian_blocking_idle_cumulative",
        "Microseconds the blocking threads waited for work.",
        PerWorker::Counter(Counter::BlockingIdleUs),
    ),
    (
        "granian_blocking_busy_cumulative",
        "Microseconds the blocking threads ran work.",
        PerWorker::Counter(Counter::BlockingBusyUs),
    ),
    (
        "granian_py_wait_cumulative",
        "Microseconds work for Python waited before Python ran it.",
        PerWorker::Counter(Counter::PyWaitUs),
    ),
    (
        "granian_request_body_bytes",
        "Request body bytes read.",
        PerWorker::Counter(Counter::RequestBodyBytes),
    ),
    (
        "granian_response_body_bytes",
        "Response body bytes written.",
        PerWorker::Counter(Counter::ResponseBodyBytes),
    ),
    (
        "granian_static_bytes",
        "Static file bytes served.",
        PerWorker::Counter(Counter::StaticBytes),
    ),
    (
        "granian_tls_handshake_failures",
        "TLS handshakes that failed or timed out.",
        PerWorker::Counter(Counter::TlsHandshakeFailures),
    ),
    (
        "granian_websocket_messages_received",
        "Websocket messages received from clients.",
        PerWorker::Counter(Counter::WebsocketMessagesIn),
    ),
    (
        "granian_websocket_messages_sent",
        "Websocket messages sent to clients.",
        PerWorker::Counter(Counter::WebsocketMessagesOut),
    ),
];

fn families(shared: &Shared, book: &Book) -> Vec<MetricFamily> {
    let mut families = vec![
        family(
            "granian_workers_spawns",
            "Worker processes started.",
            MetricType::COUNTER,
            vec![counter(vec![], book.spawns as f64)],
        ),
        family(
            "granian_workers_respawns_for_err",
            "Workers started again after they died.",
            MetricType::COUNTER,
            vec![counter(vec![], book.respawns_err as f64)],
        ),
        family(
            "granian_workers_respawns_for_lifetime",
            "Workers replaced when they reached their lifetime.",
            MetricType::COUNTER,
            vec![counter(vec![], book.respawns_lifetime as f64)],
        ),
        family(
            "granian_workers_respawns_for_rss",
            "Workers replaced for using too much memory.",
            MetricType::COUNTER,
            vec![counter(vec![], book.respawns_rss as f64)],
        ),
    ];
    let totals = totals(shared, book);
    for (name, help, what) in PER_WORKER {
        let metrics = totals
            .iter()
            .map(|(worker, totals)| {
                let labels = vec![label("worker", &worker.to_string())];
                match what {
                    PerWorker::Counter(c) => counter(labels, totals.counters[c as usize] as f64),
                    PerWorker::Gauge(g) => gauge(labels, totals.gauges[g as usize] as f64),
                    PerWorker::Lifetime => counter(labels, totals.lifetime.as_secs() as f64),
                }
            })
            .collect();
        let kind = if matches!(what, PerWorker::Gauge(_)) {
            MetricType::GAUGE
        } else {
            MetricType::COUNTER
        };
        families.push(family(name, help, kind, metrics));
    }
    let open = totals
        .iter()
        .map(|(_, t)| t.gauges[Gauge::WebsocketsOpen as usize])
        .sum::<i64>();
    families.push(family(
        "granian_websocket_connections",
        "Websocket connections open now.",
        MetricType::GAUGE,
        vec![gauge(vec![], open as f64)],
    ));
    let durations = duration_metrics(shared, book);
    if !durations.is_empty() {
        families.push(family(
            "granian_request_duration_seconds",
            "Time from a request's arrival to its response head, by interface, protocol and status class.",
            MetricType::HISTOGRAM,
            durations,
        ));
    }
    families
}

/// The duration histogram, summed over every process, one series per label set seen.
fn duration_metrics(shared: &Shared, book: &Book) -> Vec<Metric> {
    let mut sums = book.retired_durations.clone();
    for (index, used) in book.slots.iter().enumerate() {
        if used.is_none() {
            continue;
        }
        for (kept, histogram) in sums
            .iter_mut()
            .zip(shared.region.slot(index).durations.iter().flatten())
        {
            for (total, bucket) in kept.buckets.iter_mut().zip(&histogram.buckets) {
                *total += bucket.load(Ordering::Relaxed);
            }
            kept.sum_us += histogram.sum_us.load(Ordering::Relaxed);
        }
    }
    let mut metrics = Vec::new();
    for (index, durations) in sums.iter().enumerate() {
        let count: u64 = durations.buckets.iter().sum();
        if count == 0 {
            continue;
        }
        let (protocol, status) = (
            PROTOCOLS[index / STATUS_CLASSES.len()],
            STATUS_CLASSES[index % STATUS_CLASSES.len()],
        );
        let mut cumulative = 0;
        let buckets = BUCKETS
            .iter()
            .zip(&durations.buckets)
            .map(|(bound, n)| {
                cumulative += n;
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(cumulative);
                bucket
            })
            .collect();
        let mut histogram = PHistogram::default();
        histogram.set_sample_count(count);
        histogram.set_sample_sum(durations.sum_us as f64 / 1e6);
        histogram.set_bucket(buckets);
        let mut metric = Metric::default();
        metric.set_label(vec![
            label("interface", &shared.interface),
            label("protocol", protocol),
            label("status", status),
        ]);
        metric.set_histogram(histogram);
        metrics.push(metric);
    }
    metrics
}
