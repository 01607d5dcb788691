//! The HTTP side of the endpoint: HTTP/1.1 with hyper, on a current-thread
//! Tokio runtime of the metrics thread's own.
//!
//! Why hyper: it is already in taskscope's tree (tonic serves the viewer
//! with it), so it costs no new crate, and it parses HTTP for us — request
//! line, headers, `Expect`, pipelining — with limits we set. Bounds:
//! - at most [`MAX_CONNECTIONS`] connections at once; one more is closed at once;
//! - one request per connection (no keep-alive: Prometheus reconnects at
//!   each scrape, a TCP handshake on loopback), its headers within
//!   [`HEADER_TIMEOUT`] and at most 8 KiB, the whole connection within
//!   [`CONNECTION_TIMEOUT`];
//! - the figures are read at most once every [`MIN_RENDER_INTERVAL`] per
//!   format: scrapes closer together get the body of the last one, so
//!   however often the endpoint is asked, the registry is read at most
//!   twice a second for each format (the viewer server's publisher reads it
//!   as often).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

use crate::sync::lock;

/// Connections served at once, at most.
pub(crate) const MAX_CONNECTIONS: usize = 4;
/// A request's headers must have arrived within this time.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this time, whatever it is doing.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Scrapes closer together than this get the same figures.
pub(crate) const MIN_RENDER_INTERVAL: Duration = Duration::from_millis(500);

/// The exposition formats, chosen by the request's `Accept` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// OpenMetrics 1.0 text: what Prometheus asks for.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: for everything else (curl, older scrapers).
    Text,
}

impl Format {
    fn of(request: &Request<hyper::body::Incoming>) -> Format {
        let accept = request
            .headers()
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        if accept {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The registry, and the last body rendered in each format.
struct Exposition {
    registry: Registry,
    /// The token scrapes must send (`Authorization: Bearer …`), if any.
    token: Option<String>,
    last: std::sync::Mutex<[Option<(Instant, Bytes)>; 2]>,
}

impl Exposition {
    /// The body in `format`: rendered now, or the last one if it is recent.
    fn body(&self, format: Format) -> Result<Bytes, std::fmt::Error> {
        let i = format as usize;
        let mut last = lock(&self.last);
        if let Some((at, body)) = &last[i]
            && at.elapsed() < MIN_RENDER_INTERVAL
        {
            return Ok(body.clone());
        }
        let mut text = String::with_capacity(16 * 1024);
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &self.registry)?
            }
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?
            }
        }
        let body = Bytes::from(text);
        last[i] = Some((Instant::now(), body.clone()));
        Ok(body)
    }

    fn authorized(&self, request: &Request<hyper::body::Incoming>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let sent = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(sent.as_bytes(), token.as_bytes())
    }
}

/// Equality that takes as long whatever the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn respond(
    exposition: &Exposition,
    request: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "taskscope serves its metrics at /metrics\n",
        );
    }
    let head = request.method() == Method::HEAD;
    if !head && request.method() != Method::GET {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
        response
            .headers_mut()
            .insert("allow", HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if !exposition.authorized(&request) {
        let mut response = text(
            StatusCode::UNAUTHORIZED,
            "this endpoint wants the app's TASKSCOPE_TOKEN as a bearer token\n",
        );
        response
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        return response;
    }
    let format = Format::of(&request);
    let Ok(body) = exposition.body(format) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        );
    };
    let mut response = Response::new(Full::new(if head { Bytes::new() } else { body }));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

/// Serves `listener` until the process ends (the caller's runtime).
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    registry: Registry,
    token: Option<String>,
) {
    let exposition = Arc::new(Exposition {
        registry,
        token,
        last: std::sync::Mutex::new([None, None]),
    });
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, say: try again a little later
                // rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(stream); // over the limit: closed at once
            continue;
        };
        let exposition = Arc::clone(&exposition);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| {
                let response = respond(&exposition, request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(8 * 1024)
                .max_headers(64)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(constant_time_eq(b"", b""));
    }
}
