//! The `[metrics]` HTTP endpoint: `GET /metrics` (the Prometheus text format) and `GET /healthz`
//! (200 or 503 with the reason). HTTP/1 only, one request a connection; every connection is bounded
//! in number (`max_connections`; more are closed at once), in time from accept to the end of the
//! answer (`request_timeout_secs`) and in the size of its request head (`max_request_bytes`). A
//! request body is never read.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::MetricsSettings;
use crate::daemon::Daemon;
use crate::metrics::health::Health;
use crate::metrics::metrics;

/// Parses `metrics.listen`: an IP address and a port (names are not looked up, so the address
/// served on is the one written).
pub fn parse_listen(listen: &str) -> Result<SocketAddr, String> {
    listen.trim().parse().map_err(|_| {
        format!("`{listen}` is not an IP address and port, e.g. \"127.0.0.1:9464\" or \"[::1]:9464\" (names are not looked up)")
    })
}

/// Binds `metrics.listen`, if set. A failure names the address and the key.
pub async fn bind(settings: &MetricsSettings) -> Result<Option<TcpListener>, String> {
    let Some(listen) = &settings.listen else {
        return Ok(None);
    };
    let addr = parse_listen(listen)?;
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|e| format!("cannot listen on {addr}: {e} (another process on that port?)"))
}

/// Serves `listener` for `daemon` until the process ends.
pub fn spawn(listener: TcpListener, daemon: Arc<Daemon>, settings: &MetricsSettings) {
    let limits = Limits {
        timeout: Duration::from_secs(settings.request_timeout_secs),
        max_head: settings.max_request_bytes,
    };
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let health = Arc::new(Health::new(Duration::from_secs(settings.stalled_after_secs)));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving metrics on http://{addr}/metrics and health on /healthz");
    }
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!("metrics endpoint: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::debug!("metrics endpoint: connection closed, metrics.max_connections are busy");
                continue;
            };
            let (daemon, health) = (Arc::clone(&daemon), Arc::clone(&health));
            tokio::spawn(async move {
                serve_connection(stream, daemon, health, limits).await;
                drop(slot);
            });
        }
    });
}

/// The bounds of one connection.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// From accept to the end of the answer.
    timeout: Duration,
    /// Largest request head buffered.
    max_head: usize,
}

/// Answers one request on `stream`, within `limits`.
async fn serve_connection(stream: tokio::net::TcpStream, daemon: Arc<Daemon>, health: Arc<Health>, limits: Limits) {
    let service = hyper::service::service_fn(move |request| {
        let (daemon, health) = (Arc::clone(&daemon), Arc::clone(&health));
        async move { Ok::<_, Infallible>(answer(&request, &daemon, &health).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.timeout)
        .max_buf_size(limits.max_head)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(limits.timeout, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("metrics endpoint: {e}"),
        Err(_) => tracing::debug!("metrics endpoint: connection over metrics.request_timeout_secs; closed"),
    }
}

/// The answer to one request.
async fn answer(request: &Request<Incoming>, daemon: &Daemon, health: &Health) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    let mut response = match request.uri().path() {
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(metrics().encode())));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(metrics().content_type()),
            );
            r
        }
        "/healthz" => match health.check(daemon).await {
            Ok(word) => plain(StatusCode::OK, format!("{word}\n")),
            Err(why) => plain(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        _ => plain(StatusCode::NOT_FOUND, "not found: try /metrics or /healthz\n".into()),
    };
    if request.method() == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

/// A plain-text answer.
fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_address_and_a_port_only() {
        assert_eq!(parse_listen("127.0.0.1:9464"), Ok("127.0.0.1:9464".parse().unwrap()));
        assert!(parse_listen("[::1]:0").is_ok());
        for bad in ["localhost:9464", "127.0.0.1", ":9464", "http://127.0.0.1:9464", ""] {
            let err = parse_listen(bad).unwrap_err();
            assert!(err.contains("127.0.0.1:9464"), "{bad}: {err}");
        }
    }
}
