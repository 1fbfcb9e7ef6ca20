//! `GET /metrics` over HTTP/1.1, served by hyper, bounded: at most [`Limits::connections`]
//! connections at once (the rest wait in the kernel's accept backlog), each with a deadline to
//! send its request head and one for the whole exchange, one request per connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::prometheus_text;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The default listen address: loopback only.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9464";

/// Errors of the metrics endpoint.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// The configured address is neither `off` nor `host:port`.
    #[error("metrics address '{0}' is not 'off' or an IP:port such as 127.0.0.1:9464")]
    BadAddress(String),
    /// The address cannot be bound.
    #[error("metrics address {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Parses a metrics address: `off` (or empty) disables the endpoint.
pub fn parse_address(text: &str) -> Result<Option<SocketAddr>, MetricsError> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| MetricsError::BadAddress(text.to_string()))
}

/// Binds `address`; the caller spawns [`serve`] with the listener.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| MetricsError::Bind { address, source })
}

/// What one client may hold of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub connections: usize,
    /// Time to send the request head.
    pub read_timeout: Duration,
    /// Time for the whole exchange.
    pub exchange_timeout: Duration,
}

impl Limits {
    /// What the plugin uses: a scraper or two, an operator's curl.
    pub const DEFAULT: Limits = Limits {
        connections: 8,
        read_timeout: Duration::from_secs(5),
        exchange_timeout: Duration::from_secs(10),
    };
}

/// Largest request head buffered per connection (hyper's minimum).
const MAX_HEAD_BYTES: usize = 8192;

/// Answers `GET /metrics` with `render()` on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    limits: Limits,
    render: impl Fn() -> String + Send + Sync + 'static,
) {
    let render = Arc::new(render);
    let slots = Arc::new(Semaphore::new(limits.connections));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = respond(&request, || render());
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.read_timeout)
                .keep_alive(false)
                .max_buf_size(MAX_HEAD_BYTES);
            let exchange = builder.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(limits.exchange_timeout, exchange).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(error = %err, "metrics request"),
                Err(_) => tracing::debug!("metrics request: connection timed out"),
            }
        });
    }
}

/// The response to one request: `GET /metrics` the exposition text, `GET /` a pointer, other
/// paths 404, other methods 405.
fn respond<B>(request: &Request<B>, render: impl FnOnce() -> String) -> Response<String> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, prometheus_text::CONTENT_TYPE, render()),
        (&Method::GET, "/") => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "nri-chaos: metrics at /metrics\n".to_string(),
        ),
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; try /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests;
