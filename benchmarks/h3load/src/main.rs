//! The HTTP/3 load generator of the benchmark suite: what h2load does for HTTP/2, over QUIC.
//!
//! ```text
//! granian-bench-h3load --connections C --streams S --duration SECS [--warmup SECS] [--threads N]
//!     --ca CA.pem https://127.0.0.1:PORT/PATH
//! ```
//!
//! It opens C QUIC connections, each from a quinn client endpoint of its own (its own UDP socket,
//! so its own source port), keeps S GET requests in flight on each and reads every body whole.
//! Once every connection is up, the warm-up runs (default 0 s), then the measured window of SECS.
//! One JSON object goes to stdout: `rps`, `requests` (responses ended inside the window, non-2xx
//! included), `errors` (requests that failed inside the window: a stream or connection error, or
//! no whole answer within 5 s), `non2xx`, `p50_ms`, `p99_ms` (from sending a request to the end
//! of its body), `bytes` (of the bodies), and `connections`, `connect_errors`, `streams_lost`
//! (streams stopped by their connection's end before the window's). TLS trusts the `--ca` file
//! only, ALPN `h3`. The tokio runtime has N worker threads (default 1, like `h2load -t1`; 1 is a
//! current-thread runtime). Exits 1 when no connection could be made, 2 on a usage error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::client::SendRequest;
use h3::error::StreamError;
use http::{Request, Uri};
use quinn::crypto::rustls::QuicClientConfig;
use tokio::time::{timeout, timeout_at, Instant};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const USAGE: &str = "usage: granian-bench-h3load --connections C --streams S --duration SECS [--warmup SECS] \
                     [--threads N] --ca CA.pem https://HOST:PORT/PATH";

type Sender = SendRequest<h3_quinn::OpenStreams, Bytes>;

struct Options {
    connections: usize,
    streams: usize,
    duration: f64,
    warmup: f64,
    threads: usize,
    ca: String,
    url: Uri,
}

/// What the streams saw inside the window (`lost`: stopped early by their connection's end).
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    non2xx: u64,
    bytes: u64,
    lost: u64,
    first_error: Option<String>,
}

fn usage(problem: &str) -> ! {
    eprintln!("granian-bench-h3load: {problem}\n{USAGE}");
    std::process::exit(2);
}

fn value<T: std::str::FromStr>(name: &str, text: Option<String>, valid: impl Fn(&T) -> bool) -> T {
    let text = text.unwrap_or_else(|| usage(&format!("{name} needs a value")));
    match text.parse() {
        Ok(parsed) if valid(&parsed) => parsed,
        _ => usage(&format!("{name} {text}: not a valid value")),
    }
}

fn parse_args() -> Options {
    let mut o = Options {
        connections: 1,
        streams: 1,
        duration: 10.0,
        warmup: 0.0,
        threads: 1,
        ca: String::new(),
        url: Uri::default(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--connections" => o.connections = value(&arg, args.next(), |n| *n >= 1),
            "--streams" => o.streams = value(&arg, args.next(), |n| *n >= 1),
            "--duration" => o.duration = value(&arg, args.next(), |s: &f64| s.is_finite() && *s > 0.0),
            "--warmup" => o.warmup = value(&arg, args.next(), |s: &f64| s.is_finite() && *s >= 0.0),
            "--threads" => o.threads = value(&arg, args.next(), |n| *n >= 1),
            "--ca" => o.ca = value(&arg, args.next(), |_: &String| true),
            "--version" => {
                println!("granian-bench-h3load {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-h" | "--help" => usage("an HTTP/3 load generator"),
            _ if !arg.starts_with('-') && o.url.host().is_none() => {
                o.url = value("URL", Some(arg), |u: &Uri| {
                    u.scheme_str() == Some("https") && u.host().is_some()
                })
            }
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    if o.ca.is_empty() {
        usage("--ca is needed (the CA that signed the server's certificate)");
    }
    if o.url.host().is_none() {
        usage("no URL");
    }
    o
}

fn client_config(ca: &str) -> Result<quinn::ClientConfig, String> {
    let pem = std::fs::read(ca).map_err(|err| format!("--ca {ca}: {err}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|err| format!("--ca {ca}: {err}"))?;
        roots.add(cert).map_err(|err| format!("--ca {ca}: {err}"))?;
    }
    if roots.is_empty() {
        return Err(format!("--ca {ca}: no certificate in it"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|err| err.to_string())?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// One QUIC connection from an endpoint of its own, with its HTTP/3 driver spawned.
async fn connect(
    addr: SocketAddr,
    host: &str,
    config: quinn::ClientConfig,
) -> Result<(quinn::Endpoint, Sender), String> {
    let any: IpAddr = if addr.is_ipv6() {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let mut endpoint = quinn::Endpoint::client(SocketAddr::new(any, 0)).map_err(|err| format!("UDP socket: {err}"))?;
    endpoint.set_default_client_config(config);
    let connecting = endpoint.connect(addr, host).map_err(|err| err.to_string())?;
    let quic = match timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(connected) => connected.map_err(|err| format!("QUIC: {err}"))?,
        Err(_) => return Err(format!("no QUIC handshake within {CONNECT_TIMEOUT:?}")),
    };
    let (mut driver, sender) = h3::client::new(h3_quinn::Connection::new(quic))
        .await
        .map_err(|err| format!("HTTP/3: {err}"))?;
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    Ok((endpoint, sender))
}

/// One GET, its body read whole: (status, body bytes).
async fn get(sender: &mut Sender, url: &Uri) -> Result<(u16, u64), StreamError> {
    let request = Request::get(url.clone()).body(()).expect("a GET of a parsed URL");
    let mut stream = sender.send_request(request).await?;
    stream.finish().await?;
    let status = stream.recv_response().await?.status().as_u16();
    let mut bytes = 0;
    while let Some(chunk) = stream.recv_data().await? {
        bytes += chunk.remaining() as u64;
    }
    Ok((status, bytes))
}

/// One stream: a request at a time until `end`; what ends inside [start, end) is counted.
async fn stream(mut sender: Sender, url: Uri, start: Instant, end: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < end {
        let sent = Instant::now();
        let outcome = timeout_at((sent + REQUEST_TIMEOUT).min(end), get(&mut sender, &url)).await;
        let done = Instant::now();
        let counted = done >= start && done < end;
        let failure = match outcome {
            Ok(Ok((status, bytes))) if counted => {
                tally.latencies_us.push(done.duration_since(sent).as_micros() as u64);
                tally.bytes += bytes;
                tally.non2xx += u64::from(!(200..300).contains(&status));
                continue;
            }
            Ok(Ok(_)) => continue,
            Ok(Err(err)) => {
                let gone = matches!(
                    err,
                    StreamError::ConnectionError { .. } | StreamError::RemoteClosing { .. }
                );
                tally.lost += u64::from(gone);
                (err.to_string(), gone)
            }
            Err(_) => (format!("no whole answer within {REQUEST_TIMEOUT:?}"), false),
        };
        if counted {
            tally.errors += 1;
            tally.first_error.get_or_insert(failure.0);
        }
        if failure.1 {
            break;
        }
    }
    tally
}

fn percentile_ms(sorted_us: &[u64], fraction: f64) -> String {
    if sorted_us.is_empty() {
        return "null".into();
    }
    let index = (fraction * (sorted_us.len() - 1) as f64).round() as usize;
    format!("{:.3}", sorted_us[index.min(sorted_us.len() - 1)] as f64 / 1000.0)
}

async fn run(options: Options) -> Result<(), String> {
    let config = client_config(&options.ca)?;
    let host = options
        .url
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = options.url.port_u16().unwrap_or(443);
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|err| format!("{host}: {err}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let attempts: Vec<_> = (0..options.connections)
        .map(|_| {
            tokio::spawn({
                let (host, config) = (host.clone(), config.clone());
                async move { connect(addr, &host, config).await }
            })
        })
        .collect();
    let (mut endpoints, mut senders, mut connect_errors) = (Vec::new(), Vec::new(), Vec::new());
    for attempt in attempts {
        match attempt.await.map_err(|err| err.to_string())? {
            Ok((endpoint, sender)) => {
                endpoints.push(endpoint);
                senders.push(sender);
            }
            Err(err) => connect_errors.push(err),
        }
    }
    if senders.is_empty() {
        return Err(format!(
            "no connection could be made to {} ({addr}): {}",
            options.url, connect_errors[0]
        ));
    }
    let start = Instant::now() + Duration::from_secs_f64(options.warmup);
    let end = start + Duration::from_secs_f64(options.duration);
    let mut streams = Vec::new();
    for sender in &senders {
        for _ in 0..options.streams {
            streams.push(tokio::spawn(stream(sender.clone(), options.url.clone(), start, end)));
        }
    }
    drop(senders); // the last stream of a connection to end closes it (H3_NO_ERROR)
    let mut total = Tally::default();
    for each in streams {
        let tally = each.await.map_err(|err| err.to_string())?;
        total.latencies_us.extend(tally.latencies_us);
        (total.errors, total.non2xx) = (total.errors + tally.errors, total.non2xx + tally.non2xx);
        (total.bytes, total.lost) = (total.bytes + tally.bytes, total.lost + tally.lost);
        total.first_error = total.first_error.or(tally.first_error);
    }
    for endpoint in &endpoints {
        endpoint.close(0u32.into(), b"done");
    }
    for endpoint in &endpoints {
        let _ = timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
    if let Some(err) = connect_errors.first().or(total.first_error.as_ref()) {
        eprintln!(
            "granian-bench-h3load: {} connect errors, {} errors; the first: {err}",
            connect_errors.len(),
            total.errors
        );
    }
    total.latencies_us.sort_unstable();
    let requests = total.latencies_us.len();
    println!(
        "{{\"rps\": {:.1}, \"requests\": {requests}, \"errors\": {}, \"non2xx\": {}, \"p50_ms\": {}, \"p99_ms\": {}, \
         \"bytes\": {}, \"connections\": {}, \"connect_errors\": {}, \"streams_lost\": {}, \"seconds\": {}}}",
        requests as f64 / options.duration,
        total.errors,
        total.non2xx,
        percentile_ms(&total.latencies_us, 0.50),
        percentile_ms(&total.latencies_us, 0.99),
        total.bytes,
        endpoints.len(),
        connect_errors.len(),
        total.lost,
        options.duration,
    );
    Ok(())
}

fn main() -> ExitCode {
    let options = parse_args();
    let mut builder = if options.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(options.threads);
        builder
    };
    let runtime = builder.enable_all().build().expect("a tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("granian-bench-h3load: {err}");
            ExitCode::FAILURE
        }
    }
}
