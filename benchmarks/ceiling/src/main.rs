//! The no-Python ceiling of the benchmark suite: the least a hyper server does to answer
//! `Hello, world!`, on the same hyper, hyper-util and tokio versions as the server itself.
//!
//! ```text
//! granian-bench-ceiling PORT [THREADS]
//! ```
//!
//! It listens on 127.0.0.1:PORT and speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c),
//! like the server's `--http auto`. THREADS (default 1) sizes the tokio runtime: 1 gives a
//! current-thread runtime, the closest to one worker with one runtime thread.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

const BODY: &[u8] = b"Hello, world!";

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: keep serving the connections we have.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next().map(|arg| arg.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: granian-bench-ceiling PORT [THREADS]");
            std::process::exit(2);
        }
    };
    let threads: usize = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(1).max(1);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    if let Err(err) = runtime.block_on(serve(port)) {
        eprintln!("granian-bench-ceiling: {err}");
        std::process::exit(1);
    }
}
