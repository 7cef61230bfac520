//! Fuzzing on stable Rust: property tests that send arbitrary structured requests (methods,
//! paths, headers, `Basic` headers, form bodies, arbitrary bytes in each) through the whole
//! embedded router on a SQLite store, and arbitrary bytes over a socket to the running server.
//!
//! Every answer: no panic, no 5xx but 503, a JSON OAuth error body on every 4xx, a token only
//! for the real credentials; every token request leaves exactly one audit record, except the
//! `429`s of a source past its refusal budget's cut-off, which leave none (see `refusal.rs`).
//!
//! `make test` runs a bounded number of cases; a long run:
//! `PROPTEST_CASES=100000 cargo test --release --test it fuzz_router::`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, header};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use token_service::audit::AuditQuery;
use token_service::http::FrontContext;
use token_service::store::AuditLog as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt as _;

use crate::support::fuzz::{self, Answer, CLIENT, Model, Resolve, Stage, Structured};
use crate::support::stack::{self, Stack};

/// Cases of the bounded run (each up to five requests).
const STRUCTURED_CASES: u32 = 3000;
/// Cases of the bounded socket run (one connection each).
const RAW_CASES: u32 = 1000;

/// One embedded stack for all cases; each case gets its own minute on the manual clock.
struct Harness {
    stage: Stage,
}

impl std::ops::Deref for Harness {
    type Target = Stage;
    fn deref(&self) -> &Stage {
        &self.stage
    }
}

impl Harness {
    fn new() -> Self {
        let stage = Stage::new();
        Self { stage }
    }

    /// The request as the router gets it, or `None` when the method or URI cannot be sent.
    fn request(
        &self,
        r: &Structured,
        source: Option<&str>,
        request_id: &str,
    ) -> Option<Request<Body>> {
        let resolve = Resolve {
            secret: &self.secret,
        };
        let uri = match &r.query {
            Some(q) => format!("{}?{q}", r.path),
            None => r.path.clone(),
        };
        let mut request = Request::builder()
            .method(Method::from_bytes(r.method.as_bytes()).ok()?)
            .uri(uri)
            .body(Body::from(resolve.body(&r.body)))
            .ok()?;
        let h = request.headers_mut();
        // A value that is no valid header value cannot be sent over HTTP: left out.
        let value = |bytes: &[u8]| HeaderValue::from_bytes(bytes).ok();
        if let Some(v) = r.content_type.as_deref().and_then(value) {
            h.insert(header::CONTENT_TYPE, v);
        }
        for auth in &r.auth {
            if let Some(v) = value(&resolve.auth(auth)) {
                h.append(header::AUTHORIZATION, v);
            }
        }
        if let Some(v) = r
            .content_length
            .as_deref()
            .map(str::as_bytes)
            .and_then(value)
        {
            h.insert(header::CONTENT_LENGTH, v);
        }
        if let Some(v) = r.user_agent.as_deref().and_then(value) {
            h.insert(header::USER_AGENT, v);
        }
        request.extensions_mut().insert(FrontContext {
            request_id: Some(request_id.to_owned()),
            source_ip: source.map(str::to_owned),
        });
        Some(request)
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self
            .stack
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.to_vec(),
        }
    }

    /// Sends a case's requests in its own minute, checks every answer, then its audit records.
    fn run(&self, source: Option<&str>, requests: &[Structured]) -> Result<(), TestCaseError> {
        let (case, start) = self.next_minute();
        self.rt.block_on(async {
            let mut model = Model::default();
            let mut expected = Vec::new();
            for (i, r) in requests.iter().enumerate() {
                let request_id = format!("fuzz-{case}-{i}");
                let Some(request) = self.request(r, source, &request_id) else {
                    continue;
                };
                let answer = self.send(request).await;
                self.seen.add(answer.status);
                expected.push((request_id, model.answer(r, &answer, &self.secret)?));
            }
            let records = self
                .stack
                .embedded
                .store
                .query(&AuditQuery {
                    since: Some(start),
                    until: Some(start + time::Duration::minutes(1)),
                    ..Default::default()
                })
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            fuzz::check_records(&records, &expected, &self.secret)
        })
    }
}

#[test]
fn structured_requests_through_the_router_keep_every_promise() {
    let h = Harness::new();
    let mut runner = TestRunner::new(fuzz::runner_config(STRUCTURED_CASES));
    let result = runner.run(&fuzz::case(), |(source, requests)| {
        h.run(source.as_deref(), &requests)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    h.seen.assert_reached(&[200, 400, 401, 404, 405, 413, 429]);
}

/// Raw bytes for one connection: anything, a request line with arbitrary header lines and
/// body, or a valid token request with bytes changed.
fn raw_request() -> impl Strategy<Value = Vec<u8>> {
    let valid = b"POST /oauth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n\r\ngrant_type=client_credentials".to_vec();
    let header_line = ("[A-Za-z-]{1,16}", prop::collection::vec(any::<u8>(), 0..30))
        .prop_map(|(name, value)| [name.as_bytes(), b": ", &value, b"\r\n"].concat());
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..300),
        2 => (
            prop::collection::vec(header_line, 0..6),
            prop::collection::vec(any::<u8>(), 0..100),
        )
            .prop_map(|(lines, body)| {
                [&b"POST /oauth/token HTTP/1.1\r\n"[..], &lines.concat(), b"\r\n", &body].concat()
            }),
        2 => prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4).prop_map(
            move |edits| {
                let mut bytes = valid.clone();
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                bytes
            }
        ),
    ]
}

/// Writes `bytes` on a fresh connection, closes the sending side, reads the answer (bounded).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may close before reading everything: a failed write is an answer too.
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let mut bounded = stream.take(1 << 16);
    let _ = tokio::time::timeout(Duration::from_secs(10), bounded.read_to_end(&mut answer)).await;
    answer
}

/// Writes a complete request that asks the server to close the connection after its answer,
/// and reads that answer (bounded). The sending side stays open: hyper, without HTTP/1
/// half-close support, drops a request still being answered once it reads the client's EOF.
async fn ask(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send the request");
    let mut answer = Vec::new();
    let mut bounded = stream.take(1 << 16);
    let _ = tokio::time::timeout(Duration::from_secs(10), bounded.read_to_end(&mut answer)).await;
    answer
}

/// Checks what came back on a socket: no 5xx but 503; a 4xx from the router carries a JSON
/// OAuth error body. The HTTP parser's own refusals (hyper's `400` on a malformed request
/// line or header, with an empty body) are the only 4xx without one.
fn check_raw_answer(answer: &[u8]) -> Result<(), TestCaseError> {
    if answer.is_empty() {
        return Ok(()); // closed without an answer: allowed for bytes that are not HTTP
    }
    let text = String::from_utf8_lossy(answer);
    let status: u16 = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| TestCaseError::fail(format!("not an HTTP answer: {text:?}")))?;
    prop_assert!(status < 500 || status == 503, "status {}", status);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head = head.to_ascii_lowercase();
    // Only the first answer: hyper may answer bytes after a complete request as a second one.
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(rest.len());
    let body = rest.get(..length).unwrap_or(rest);
    if status >= 400 {
        if head.contains("content-type: application/json") {
            let json: serde_json::Value = serde_json::from_str(body)
                .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text:?}")))?;
            let code = json["error"].as_str().unwrap_or_default();
            prop_assert!(fuzz::CODES.contains(&code), "{}", json);
        } else {
            prop_assert!(
                head.contains("content-length: 0") && body.is_empty(),
                "a {} with a body that is not JSON: {:?}",
                status,
                text
            );
        }
    }
    prop_assert!(
        !text.contains("access_token"),
        "a token for bytes without credentials"
    );
    Ok(())
}

#[test]
fn arbitrary_bytes_on_a_socket_never_break_the_server() {
    let h = Harness::new();
    let listener =
        h.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = h
        .stack
        .router
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = h.rt.spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    let mut runner = TestRunner::new(fuzz::runner_config(RAW_CASES));
    let result = runner.run(&raw_request(), |bytes| {
        h.next_minute();
        let answer = h.rt.block_on(exchange(addr, &bytes));
        check_raw_answer(&answer)
    });
    // Still serving: a valid request after all of them.
    let valid = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: {}\r\nContent-Length: 29\r\nConnection: close\r\n\r\ngrant_type=client_credentials",
        stack::basic_header(CLIENT, &h.secret)
    );
    h.next_minute();
    let answer = h.rt.block_on(ask(addr, valid.as_bytes()));
    server.abort();
    if let Err(e) = result {
        panic!("{e}");
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

/// Found by `structured_requests_through_the_router_keep_every_promise`: a path the router
/// does not know got axum's `404` with an empty body. Now a JSON error body, like every other
/// refusal, and no audit record (it is no token request).
#[tokio::test]
async fn an_unknown_path_gets_a_json_404_and_no_audit_record() {
    let stack = Stack::new().await;
    for path in [
        "/",
        "/oauth/token/",
        "/OAUTH/TOKEN",
        "/.well-known/",
        "/x%2F",
    ] {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, stack::FORM)
            .body(Body::from("grant_type=client_credentials"))
            .unwrap();
        let reply = stack.send(request).await;
        reply.assert_error(404, "invalid_request");
        assert_eq!(reply.json["error_description"], "no such endpoint");
    }
    let requests = stack
        .audit()
        .await
        .into_iter()
        .filter(|r| r.action.is_none());
    assert_eq!(requests.count(), 0);
}
