//! Fuzzing the Lambda front on stable Rust: arbitrary structured requests written as API
//! Gateway HTTP API (payload 2.0) events, and arbitrary or damaged event texts, parsed by
//! `lambda_http` and run through the token function's router over a SQLite store.
//!
//! The promises are those of `fuzz_router.rs`; the request id and source address come from
//! the event's `requestContext`, as on AWS. A long run:
//! `PROPTEST_CASES=100000 cargo test --release --all-features --test it fuzz_lambda::`.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::json;
use token_service::audit::AuditQuery;
use token_service::store::AuditLog as _;
use tower::ServiceExt as _;

use crate::support::fuzz::{self, Answer, CLIENT, Model, Resolve, Stage, Structured};

const STRUCTURED_CASES: u32 = 1500;
const TEXT_CASES: u32 = 1000;

struct Harness {
    stage: Stage,
    router: Router,
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
        let router =
            token_service::shapes::lambda::token_router(stage.stack.embedded.token_service());
        Self { stage, router }
    }

    /// The request as API Gateway would hand it to the function: header values as text
    /// (repeated headers joined with commas), a body that is not UTF-8 in base64.
    fn event(&self, r: &Structured, source: Option<&str>, request_id: &str, b64: bool) -> String {
        let resolve = Resolve {
            secret: &self.secret,
        };
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let mut headers = serde_json::Map::new();
        // API Gateway passes on only values that were valid header values.
        let mut add = |name: &str, value: String| {
            if axum::http::HeaderValue::from_str(&value).is_ok() {
                headers.insert(name.into(), value.into());
            }
        };
        if let Some(ct) = &r.content_type {
            add("content-type", text(ct));
        }
        if !r.auth.is_empty() {
            let all: Vec<String> = r.auth.iter().map(|a| text(&resolve.auth(a))).collect();
            add("authorization", all.join(","));
        }
        if let Some(cl) = &r.content_length {
            add("content-length", cl.clone());
        }
        if let Some(ua) = &r.user_agent {
            add("user-agent", text(ua));
        }
        let body = resolve.body(&r.body);
        let (body, encoded) = match String::from_utf8(body) {
            Ok(t) if !b64 => (t, false),
            Ok(t) => (STANDARD.encode(t), true),
            Err(e) => (STANDARD.encode(e.into_bytes()), true),
        };
        let route = format!("{} {}", r.method, r.path);
        json!({
            "version": "2.0",
            "routeKey": route,
            "rawPath": r.path,
            "rawQueryString": r.query.clone().unwrap_or_default(),
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "fuzz",
                "domainName": "fuzz.execute-api.eu-west-1.amazonaws.com",
                "domainPrefix": "fuzz",
                "http": {
                    "method": r.method,
                    "path": r.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source.unwrap_or(""),
                    "userAgent": r.user_agent.as_deref().map(text).unwrap_or_default(),
                },
                "requestId": request_id,
                "routeKey": route,
                "stage": "$default",
                "time": "01/Dec/2026:12:00:00 +0000",
                "timeEpoch": 1796126400000u64,
            },
            "isBase64Encoded": encoded,
            "body": body,
        })
        .to_string()
    }

    async fn call(&self, request: lambda_http::Request) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(axum::body::Body::new(body), 1 << 20)
            .await
            .expect("body");
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.to_vec(),
        }
    }

    fn run(
        &self,
        source: Option<&str>,
        requests: &[(Structured, bool)],
    ) -> Result<(), TestCaseError> {
        let (case, start) = self.next_minute();
        self.rt.block_on(async {
            let mut model = Model::default();
            let mut expected = Vec::new();
            for (i, (r, b64)) in requests.iter().enumerate() {
                let request_id = format!("fuzz-{case}-{i}=");
                let event = self.event(r, source, &request_id, *b64);
                let request = lambda_http::request::from_str(&event).map_err(|e| {
                    TestCaseError::fail(format!("an API Gateway event did not parse: {e}"))
                })?;
                let answer = self.call(request).await;
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

/// A case of [`fuzz::case`], each request's body sent in base64 or not.
fn lambda_case() -> impl Strategy<Value = (Option<String>, Vec<(Structured, bool)>)> {
    fuzz::case().prop_flat_map(|(source, requests)| {
        let n = requests.len();
        (
            Just(source),
            Just(requests),
            prop::collection::vec(prop::bool::weighted(0.2), n),
        )
            .prop_map(|(source, requests, b64)| (source, requests.into_iter().zip(b64).collect()))
    })
}

#[test]
fn structured_events_through_the_token_function_keep_every_promise() {
    let h = Harness::new();
    let mut runner = TestRunner::new(fuzz::runner_config(STRUCTURED_CASES));
    let result = runner.run(&lambda_case(), |(source, requests)| {
        h.run(source.as_deref(), &requests)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    h.seen.assert_reached(&[200, 400, 401, 404, 405, 413, 429]);
}

/// Event texts: anything, or the Basic-auth fixture with bytes changed.
fn event_text(fixture: String) -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>(),
        4 => prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..4).prop_map(
            move |edits| {
                let mut chars: Vec<char> = fixture.chars().collect();
                for (at, c) in edits {
                    let i = at.index(chars.len());
                    chars[i] = c;
                }
                chars.into_iter().collect()
            }
        ),
    ]
}

#[test]
fn arbitrary_and_damaged_event_texts_never_break_the_function() {
    let h = Harness::new();
    let basic = format!("{CLIENT}:{}", h.secret);
    let fixture =
        include_str!("../fixtures/token-basic.json").replace("{{BASIC}}", &STANDARD.encode(basic));
    let parsed = AtomicUsize::new(0);
    let mut runner = TestRunner::new(fuzz::runner_config(TEXT_CASES));
    let result = runner.run(&event_text(fixture), |text| {
        h.next_minute();
        // An event the runtime cannot read never reaches the router (the runtime reports an
        // invocation error); one it can read must be answered like any request.
        let Some(request) = read_event(&text) else {
            return Ok(());
        };
        parsed.fetch_add(1, Ordering::SeqCst);
        let answer = h.rt.block_on(h.call(request));
        let status = answer.status.as_u16();
        prop_assert!(status < 500 || status == 503, "status {}", status);
        // (The answer to a HEAD request has no body.)
        if status >= 400 && !answer.body.is_empty() {
            fuzz::error_body(&answer)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        parsed.load(Ordering::SeqCst) > 0,
        "no damaged event parsed: the run tested nothing"
    );
}

/// The request `lambda_http` reads from an event text, as the function's runtime does; `None`
/// when it refuses the text, with an error or (see the regression tests below) a panic. Such
/// an event never reaches the router; the runtime reports an invocation error.
fn read_event(text: &str) -> Option<lambda_http::Request> {
    quiet_dependency_panics();
    std::panic::catch_unwind(|| lambda_http::request::from_str(text).ok())
        .ok()
        .flatten()
}

/// Keeps the panics of `lambda_http` and `aws_lambda_events` out of the test output (the
/// fuzzer provokes them by the hundred); every other panic is reported as usual.
fn quiet_dependency_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map(|l| l.file()).unwrap_or_default();
            if !(file.contains("lambda_http") || file.contains("aws_lambda_events")) {
                default(info);
            }
        }));
    });
}

/// The fixture with one part of its text replaced.
fn fixture_with(from: &str, to: &str) -> String {
    let fixture = include_str!("../fixtures/token-basic.json");
    assert!(fixture.contains(from), "{from} is in the fixture");
    fixture.replace(from, to)
}

/// Found by `arbitrary_and_damaged_event_texts_never_break_the_function`: `lambda_http` 1.3
/// (`aws_lambda_events` `Body::from_maybe_encoded`, a documented panic) panics on an event
/// whose `isBase64Encoded` body is not base64. No client can cause it (API Gateway encodes
/// the body itself), and the router never sees such an event; this test notices when the
/// dependency stops panicking.
#[test]
fn an_event_whose_base64_body_does_not_decode_is_refused_before_the_router() {
    let event = fixture_with(
        "Z3JhbnRfdHlwZT1jbGllbnRfY3JlZGVudGlhbHMmc2NvcGU9YXBpLnJlYWQ=",
        "*$not base64",
    );
    assert!(read_event(&event).is_none());
    quiet_dependency_panics();
    let read = std::panic::catch_unwind(|| lambda_http::request::from_str(&event).is_ok());
    assert!(read.is_err(), "lambda_http no longer panics here: {read:?}");
}

/// Found by the same property: `lambda_http` 1.3 panics ("failed to build request") on an
/// event whose raw query string makes no valid URI. API Gateway passes on the query of a
/// valid HTTP request line, which has no space.
#[test]
fn an_event_whose_query_is_no_uri_is_refused_before_the_router() {
    let event = fixture_with(r#""rawQueryString": """#, r#""rawQueryString": "a b""#);
    assert!(read_event(&event).is_none());
    quiet_dependency_panics();
    let read = std::panic::catch_unwind(|| lambda_http::request::from_str(&event).is_ok());
    assert!(read.is_err(), "lambda_http no longer panics here: {read:?}");
}

/// Found by `structured_events_through_the_token_function_keep_every_promise`: an event for
/// another route got axum's empty `404`; the token function now answers with a JSON error
/// body too (API Gateway routes no such event to it, but the answer stays well-formed).
#[test]
fn an_event_for_another_route_gets_a_json_404() {
    let h = Harness::new();
    let event = fixture_with(r#""rawPath": "/oauth/token""#, r#""rawPath": "/elsewhere""#);
    let request = read_event(&event).expect("a valid event");
    let answer = h.rt.block_on(h.call(request));
    assert_eq!(answer.status, axum::http::StatusCode::NOT_FOUND);
    let body = fuzz::error_body(&answer).expect("a JSON error body");
    assert_eq!(body["error"], "invalid_request");
}
