//! How `ticketbound-local` serves its router over HTTP/1.1, so that whoever can reach its port cannot hold it
//! open, fill its memory, or drive it from a web page.
//!
//! - At most [`Limits::max_connections`] connections at once; one more is answered 503 and closed.
//! - A request's headers must arrive within [`Limits::header_timeout`] (this is also how long an idle
//!   keep-alive connection stays open); its body within [`Limits::body_timeout`] of its headers, or the answer
//!   is 408 and the connection closes.
//! - A body the router did not read (a refusal answered before reading it: 413 on a declared length, 404 for an
//!   unknown webhook connection, 401) is read and discarded, bounded by the same deadline and
//!   [`DRAIN_LIMIT`], so the client that is still sending receives its answer instead of a reset connection.
//!   A 413 closes the connection after it.
//! - `Host` must name this server ([`Origins`]): its listen address, `localhost`, or the public URL. Another
//!   name is answered 421 `misdirected_request`: a web page that rebinds its own DNS name to 127.0.0.1 reaches
//!   the port, but under its own name.
//! - A request that changes something (any method but GET, HEAD and OPTIONS) and carries an `Origin` must come
//!   from this server's own origin: another is answered 403 `cross_origin_request`. Clients that send no
//!   `Origin` (curl, the ticket systems' webhooks) are not browsers and are let through.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header::{
    CONNECTION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, ORIGIN, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// The most of an unread body discarded to deliver an early answer; beyond it the connection is dropped.
pub const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// How long the server gives its connections to finish once asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The server's bounds (flags `--header-timeout`, `--body-timeout`, `--max-connections`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 64,
        }
    }
}

/// The names this server answers to: `(host, port)` pairs a `Host` header may carry, and the origins
/// (`scheme://host:port`) a browser's request may come from.
#[derive(Debug, Clone)]
pub struct Origins {
    hosts: Vec<(String, u16)>,
    origins: Vec<String>,
}

impl Origins {
    /// The listen address, `localhost`, `127.0.0.1` and `[::1]` on its port (the last three only when it
    /// listens on a loopback or every address), and `public` (the URL users and webhooks reach it at).
    pub fn new(listen: SocketAddr, public: Option<&url::Url>) -> Self {
        let port = listen.port();
        let mut hosts = Vec::new();
        let ip = listen.ip();
        if !ip.is_unspecified() {
            hosts.push((host_of_ip(ip), port));
        }
        if ip.is_loopback() || ip.is_unspecified() {
            for name in ["localhost", "127.0.0.1", "[::1]"] {
                hosts.push((name.to_owned(), port));
            }
        }
        let mut origins: Vec<String> = hosts
            .iter()
            .map(|(host, port)| format!("http://{host}:{port}"))
            .collect();
        if let Some(public) = public
            && let (Some(host), Some(port)) = (public.host_str(), public.port_or_known_default())
        {
            hosts.push((host.to_ascii_lowercase(), port));
            origins.push(public.origin().ascii_serialization());
        }
        let mut seen = std::collections::HashSet::new();
        hosts.retain(|h| seen.insert(h.clone()));
        let mut seen = std::collections::HashSet::new();
        origins.retain(|o| seen.insert(o.clone()));
        Self { hosts, origins }
    }

    /// The `host:port` names accepted, for the start-up banner.
    pub fn hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|(host, port)| format!("{host}:{port}"))
            .collect()
    }

    /// Whether a `Host` header names this server (a missing port is port 80, as HTTP has it).
    fn accepts_host(&self, value: &str) -> bool {
        let value = value.trim().to_ascii_lowercase();
        let (host, port) = match value.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => match port.parse::<u16>() {
                Ok(port) => (host.to_owned(), port),
                Err(_) => return false,
            },
            _ => (value.clone(), 80),
        };
        self.hosts.iter().any(|(h, p)| *h == host && *p == port)
    }

    /// Whether an `Origin` header is this server's own (its ports made explicit, as browsers send them only
    /// when not the scheme's default).
    fn accepts_origin(&self, value: &str) -> bool {
        let Ok(url) = url::Url::parse(value.trim()) else {
            return false;
        };
        if url.host_str().is_none() {
            return false; // `null`, `file://`: never this server.
        }
        let serialized = url.origin().ascii_serialization();
        let explicit = match url.port() {
            Some(_) => serialized.clone(),
            None => format!(
                "{serialized}:{}",
                url.port_or_known_default().unwrap_or_default()
            ),
        };
        self.origins
            .iter()
            .any(|own| own.eq_ignore_ascii_case(&serialized) || own.eq_ignore_ascii_case(&explicit))
    }
}

fn host_of_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A §5 error answer, for what is refused before the router sees the request.
fn refusal(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(ticketbound::http::JSON_CSP),
    );
    response
}

/// Judges a request's `Host` and `Origin` before the router: `Some` is the refusal.
fn screen(request: &Request<Incoming>, origins: &Origins) -> Option<Response<Body>> {
    let host = request.headers().get(HOST).and_then(|v| v.to_str().ok());
    if !host.is_some_and(|h| origins.accepts_host(h)) {
        return Some(refusal(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            "this server answers only to its listen address, localhost and its public URL (--public-url); \
             the request's Host names another",
        ));
    }
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if writes
        && let Some(origin) = request.headers().get(ORIGIN)
        && !origin.to_str().is_ok_and(|o| origins.accepts_origin(o))
    {
        return Some(refusal(
            StatusCode::FORBIDDEN,
            "cross_origin_request",
            "a request that changes something is accepted only from this server's own pages",
        ));
    }
    None
}

/// A request body with a deadline: past it, reading fails (and `expired` says so). Dropped unread, it is read
/// and discarded in the background (until its end, the deadline or [`DRAIN_LIMIT`]), so that the connection
/// can deliver the answer already written.
struct GuardedBody {
    inner: Option<Incoming>,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if inner.is_end_stream() {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err("the request body did not arrive in time".into())));
        }
        Pin::new(inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), hyper::body::Body::size_hint)
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if hyper::body::Body::is_end_stream(&body) || self.expired.load(Ordering::SeqCst) {
            return;
        }
        let deadline = self.deadline.deadline();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body, deadline));
        }
    }
}

async fn drain(mut body: Incoming, deadline: Instant) {
    let _ = tokio::time::timeout_at(deadline, async {
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// Answers one request: screened, its body guarded, then the router.
async fn handle(
    router: Router,
    origins: Arc<Origins>,
    body_timeout: Duration,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Some(refused) = screen(&request, &origins) {
        // Nothing of its body is wanted; reading it (bounded) lets the client receive the answer.
        let (_, body) = request.into_parts();
        tokio::spawn(drain(body, Instant::now() + body_timeout));
        return Ok(refused);
    }
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(GuardedBody {
            inner: Some(body),
            deadline: Box::pin(tokio::time::sleep(body_timeout)),
            expired: Arc::clone(&expired),
        })
    });
    let Ok(mut response) = router.oneshot(request).await;
    if expired.load(Ordering::SeqCst) {
        response = refusal(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time",
        );
    }
    if matches!(
        response.status(),
        StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
    ) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// One connection over the cap: answered 503 and closed, after reading (briefly) what it sent.
async fn refuse_busy(mut stream: TcpStream) {
    let body = serde_json::json!({"error": {
        "code": "too_many_connections",
        "message": "the server is at its connection limit; try again shortly",
    }})
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n\
         x-content-type-options: nosniff\r\ncontent-security-policy: {}\r\n\
         content-length: {}\r\n\r\n{body}",
        ticketbound::http::JSON_CSP,
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets open connections finish
/// their request (for at most a few seconds).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    origins: Origins,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let origins = Arc::new(origins);
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "connection refused: at the connection limit"
            );
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        let (router, origins, mut stopping) =
            (router.clone(), Arc::clone(&origins), stopping.clone());
        let body_timeout = limits.body_timeout;
        let service = hyper::service::service_fn(move |request| {
            handle(router.clone(), Arc::clone(&origins), body_timeout, request)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    let _ = stop.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(all)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Origins {
        Origins::new("127.0.0.1:8080".parse().unwrap(), None)
    }

    #[test]
    fn the_listen_address_and_localhost_are_this_server() {
        let origins = local();
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(origins.accepts_host(host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "127.0.0.1",
            "localhost.evil.example:8080",
            "",
        ] {
            assert!(!origins.accepts_host(host), "{host}");
        }
    }

    #[test]
    fn the_public_url_is_this_server_too() {
        let public = url::Url::parse("https://tb.example.com").unwrap();
        let origins = Origins::new("0.0.0.0:8080".parse().unwrap(), Some(&public));
        assert!(origins.accepts_host("tb.example.com:443"));
        assert!(
            !origins.accepts_host("tb.example.com"),
            "port 80 is not 443"
        );
        assert!(origins.accepts_host("localhost:8080"));
        assert!(origins.accepts_origin("https://tb.example.com"));
        assert!(origins.accepts_origin("https://tb.example.com:443"));
        assert!(!origins.accepts_origin("http://tb.example.com"));
    }

    #[test]
    fn only_this_servers_own_origin_may_write() {
        let origins = local();
        assert!(origins.accepts_origin("http://127.0.0.1:8080"));
        assert!(origins.accepts_origin("http://localhost:8080"));
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:8081",
            "https://127.0.0.1:8080",
            "null",
            "file:///",
        ] {
            assert!(!origins.accepts_origin(origin), "{origin}");
        }
    }
}
