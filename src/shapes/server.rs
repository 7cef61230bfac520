//! The embedded shape's HTTP/1.1 server: the shared router behind connection bounds, so that
//! slow or idle clients cannot hold the server's sockets or memory.
//!
//! - At most [`Limits::max_connections`] connections are served at once; past that, new ones
//!   wait in the kernel's accept queue until one closes.
//! - A request's headers must arrive within [`Limits::header_read`], counted from when the
//!   connection starts waiting for that request: the same bound closes an idle keep-alive
//!   connection (hyper starts the timer as soon as it waits for the next request).
//! - A request's body must arrive within [`Limits::body_read`] of its headers; past it the
//!   answer is `408` and the connection closes. Bodies are capped at the token endpoint's
//!   limit plus one byte before the router sees them, which keeps its `413` as it was.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::oauth::request::MAX_BODY_BYTES;

/// The connection bounds of the embedded server (`token-server` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time for a request's headers, and for an idle keep-alive connection's next request.
    pub header_read: Duration,
    /// Time for a request's body after its headers.
    pub body_read: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(10),
        }
    }
}

/// How long a graceful shutdown waits for open connections to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets the
/// requests in flight finish (for at most `SHUTDOWN_GRACE`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let router = router.layer(middleware::from_fn_with_state(limits.body_read, read_body));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A connection that failed before it was accepted (reset, out of descriptors):
                // the next one may succeed; back off briefly so an exhausted table can drain.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if slots.available_permits() == 0 {
            metrics::counter!("embedded_connections_saturated").increment(1);
        }
        let service = router.clone().layer(axum::Extension(ConnectInfo(peer)));
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stopping.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
        // Finished connections are reaped as the server goes, so the set stays small.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
    Ok(())
}

/// Reads a request's body within `deadline`, at most the token endpoint's limit plus one byte,
/// and hands the router the bytes read; `408` (connection closed) when the body is late.
async fn read_body(
    axum::extract::State(deadline): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(deadline, capped(body, MAX_BODY_BYTES + 1)).await;
    match read {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        // The client broke the body off (a reset, a malformed chunk): nothing to answer to.
        Ok(Err(())) => close(
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        ),
        Err(_) => {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "request body not received in time; closing the connection"
            );
            close(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            )
        }
    }
}

/// The body's bytes, stopping once more than `cap` have arrived (the router refuses those).
async fn capped(mut body: Body, cap: usize) -> Result<Bytes, ()> {
    let mut bytes = Vec::new();
    while bytes.len() < cap {
        match body.frame().await {
            None => break,
            Some(Err(_)) => return Err(()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
        }
    }
    Ok(Bytes::from(bytes))
}

/// An answer that ends the connection: its request was not read whole.
fn close(status: StatusCode, description: &'static str) -> Response {
    let body = serde_json::json!({"error": "invalid_request", "error_description": description});
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
