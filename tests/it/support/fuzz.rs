//! Generators, the expected behaviour and the checks shared by the property tests of the
//! router (`fuzz_router.rs`) and of the Lambda events (`fuzz_lambda.rs`).
//!
//! A case is a short sequence of requests from one source address in one fresh rate-limit
//! window (the manual clock moves one minute per case), against a refusal budget of
//! [`BUDGET`]: small, so that most cases also run into the cut-off.

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use serde_json::Value;
use token_service::audit::AuditRecord;
use token_service::config::ServiceConfig;

/// The client the cases may name, with its real secret.
pub const CLIENT: &str = "svc";
/// Refused requests per source and window in the tested configuration.
pub const BUDGET: u32 = 3;
/// The token endpoint's path.
pub const TOKEN_PATH: &str = "/oauth/token";
/// Every `error` code the service may answer with (RFC 6749 §5.2, RFC 8707 §2, §4.1.2.1).
pub const CODES: [&str; 6] = [
    "invalid_request",
    "invalid_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "temporarily_unavailable",
];

/// What both harnesses run on: one SQLite stack with [`CLIENT`] and its secret, a runtime, and
/// a manual clock that gives each case a minute no case had before.
pub struct Stage {
    pub rt: tokio::runtime::Runtime,
    pub stack: super::stack::Stack,
    pub secret: String,
    pub seen: Seen,
    first_minute: time::OffsetDateTime,
    next_case: std::sync::atomic::AtomicI64,
}

impl Stage {
    /// The stack with [`config`], its clock at the start of the next minute.
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let stack = rt.block_on(super::stack::Stack::with_config(config()));
        let (_, secret) = rt.block_on(stack.client(CLIENT));
        let now = time::OffsetDateTime::now_utc();
        let first_minute = now
            .replace_second(0)
            .unwrap()
            .replace_nanosecond(0)
            .unwrap()
            + time::Duration::minutes(1);
        Self {
            rt,
            stack,
            secret,
            seen: Seen::default(),
            first_minute,
            next_case: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Moves the clock to the start of a minute no case had before: its number and start.
    pub fn next_minute(&self) -> (i64, time::OffsetDateTime) {
        let case = self
            .next_case
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let start = self.first_minute + time::Duration::minutes(case);
        self.stack.clock.set(start);
        (case, start)
    }
}

/// The service configuration under test: defaults, with a budget of [`BUDGET`].
pub fn config() -> ServiceConfig {
    let mut config = ServiceConfig::for_tests();
    config.limits.refusal_budget = BUDGET;
    config
}

/// `cases` unless `PROPTEST_CASES` asks for more (or fewer): the bounded run in `make test`,
/// a long one on request.
pub fn runner_config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        // A failure is turned into a named regression test by hand, not a file.
        failure_persistence: None,
        ..Config::default()
    }
}

/// A client id a case may present.
#[derive(Debug, Clone)]
pub enum Id {
    /// [`CLIENT`].
    Real,
    /// A well-formed id that names no client.
    Unknown,
    /// The real secret, sent as the id (id and secret swapped).
    TheSecret,
    /// Anything.
    Text(String),
}

/// A secret a case may present.
#[derive(Debug, Clone)]
pub enum Secret {
    /// The client's real secret.
    Real,
    /// The real secret with a byte more.
    RealPlusNul,
    /// A secret of the right form that is not the client's.
    Wrong,
    /// Any bytes.
    Bytes(Vec<u8>),
}

/// An `Authorization` header.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Basic` with id and secret form-urlencoded before base64 (RFC 6749 §2.3.1), or not.
    Basic {
        id: Id,
        secret: Secret,
        urlencoded: bool,
    },
    /// `Basic` and any text (malformed base64, no colon, ...).
    BasicText(String),
    /// Another scheme, or a differently spelt one.
    Scheme(String, String),
    /// Any bytes.
    Bytes(Vec<u8>),
}

/// A form parameter's value.
#[derive(Debug, Clone)]
pub enum Param {
    Text(String),
    Id(Id),
    Secret(Secret),
    Bytes(Vec<u8>),
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// `name=value` pairs, each form-urlencoded.
    Form(Vec<(String, Param)>),
    /// Any bytes.
    Bytes(Vec<u8>),
    /// A valid request padded past 8 KiB.
    Large(usize),
}

/// One structured request.
#[derive(Debug, Clone)]
pub struct Structured {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<Vec<u8>>,
    pub auth: Vec<Auth>,
    pub content_length: Option<String>,
    pub user_agent: Option<Vec<u8>>,
    pub body: Body,
}

/// The values a case resolves its placeholders with.
pub struct Resolve<'a> {
    pub secret: &'a str,
}

impl Resolve<'_> {
    pub fn id(&self, id: &Id) -> String {
        match id {
            Id::Real => CLIENT.to_owned(),
            Id::Unknown => "nobody-here".to_owned(),
            Id::TheSecret => self.secret.to_owned(),
            Id::Text(t) => t.clone(),
        }
    }

    pub fn secret(&self, secret: &Secret) -> Vec<u8> {
        match secret {
            Secret::Real => self.secret.as_bytes().to_vec(),
            Secret::RealPlusNul => [self.secret.as_bytes(), b"\0"].concat(),
            Secret::Wrong => b"tks_wrongwrongwrongwrongwrongwrongwrongwrongwro000000".to_vec(),
            Secret::Bytes(b) => b.clone(),
        }
    }

    /// The header's bytes.
    pub fn auth(&self, auth: &Auth) -> Vec<u8> {
        match auth {
            Auth::Basic {
                id,
                secret,
                urlencoded,
            } => {
                let (id, secret) = (self.id(id).into_bytes(), self.secret(secret));
                let pair = if *urlencoded {
                    format!("{}:{}", encode(&id), encode(&secret)).into_bytes()
                } else {
                    [id.as_slice(), b":", secret.as_slice()].concat()
                };
                format!("Basic {}", STANDARD.encode(pair)).into_bytes()
            }
            Auth::BasicText(t) => format!("Basic {t}").into_bytes(),
            Auth::Scheme(s, rest) => format!("{s} {rest}").into_bytes(),
            Auth::Bytes(b) => b.clone(),
        }
    }

    fn value(&self, value: &Param) -> Vec<u8> {
        match value {
            Param::Text(t) => t.clone().into_bytes(),
            Param::Id(id) => self.id(id).into_bytes(),
            Param::Secret(s) => self.secret(s),
            Param::Bytes(b) => b.clone(),
        }
    }

    /// The body's bytes.
    pub fn body(&self, body: &Body) -> Vec<u8> {
        match body {
            Body::Form(pairs) => pairs
                .iter()
                .map(|(name, value)| {
                    format!("{}={}", encode(name.as_bytes()), encode(&self.value(value)))
                })
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes(),
            Body::Bytes(b) => b.clone(),
            Body::Large(extra) => {
                let mut body = b"grant_type=client_credentials&pad=".to_vec();
                body.resize(8 * 1024 + extra, b'x');
                body
            }
        }
    }
}

fn encode(bytes: &[u8]) -> String {
    form_urlencoded::byte_serialize(bytes).collect()
}

impl Structured {
    /// Whether the request presents the real id and the real secret together: the only
    /// requests that may get a token.
    pub fn has_real_credentials(&self) -> bool {
        let basic = self.auth.iter().any(|a| {
            matches!(
                a,
                Auth::Basic {
                    id: Id::Real,
                    secret: Secret::Real,
                    urlencoded: _
                }
            )
        });
        let posted = match &self.body {
            Body::Form(pairs) => {
                pairs
                    .iter()
                    .any(|(n, v)| n == "client_id" && matches!(v, Param::Id(Id::Real)))
                    && pairs.iter().any(|(n, v)| {
                        n == "client_secret" && matches!(v, Param::Secret(Secret::Real))
                    })
            }
            _ => false,
        };
        basic || posted
    }

    /// Whether the router sends it to the token endpoint (and so audits it).
    pub fn is_token_request(&self) -> bool {
        self.path == TOKEN_PATH
    }
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        4 => Just(Id::Real),
        1 => Just(Id::Unknown),
        1 => Just(Id::TheSecret),
        1 => any::<String>().prop_map(Id::Text),
    ]
}

fn secret() -> impl Strategy<Value = Secret> {
    prop_oneof![
        4 => Just(Secret::Real),
        1 => Just(Secret::RealPlusNul),
        1 => Just(Secret::Wrong),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Secret::Bytes),
    ]
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        6 => (id(), secret(), prop::bool::weighted(0.8)).prop_map(|(id, secret, urlencoded)| {
            Auth::Basic { id, secret, urlencoded }
        }),
        1 => "[ -~]{0,30}".prop_map(Auth::BasicText),
        1 => (
            prop::sample::select(vec!["basic", "BASIC", "Bearer", "Digest", ""]),
            "[ -~]{0,20}"
        )
            .prop_map(|(s, r)| Auth::Scheme(s.to_owned(), r)),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Auth::Bytes),
    ]
}

fn param() -> impl Strategy<Value = (String, Param)> {
    let text = |options: Vec<&'static str>| {
        prop_oneof![
            4 => prop::sample::select(options).prop_map(|s| Param::Text(s.to_owned())),
            1 => any::<String>().prop_map(Param::Text),
        ]
    };
    prop_oneof![
        4 => text(vec!["client_credentials", "password", "CLIENT_CREDENTIALS", ""])
            .prop_map(|v| ("grant_type".to_owned(), v)),
        2 => text(vec!["a", "api.read", "a b", "a\"", "nope"]).prop_map(|v| ("scope".to_owned(), v)),
        2 => text(vec![
            "https://api.example.com",
            "https://other.example.com",
            "not a uri",
            "https://x/#frag",
        ])
        .prop_map(|v| ("resource".to_owned(), v)),
        2 => id().prop_map(|i| ("client_id".to_owned(), Param::Id(i))),
        2 => secret().prop_map(|s| ("client_secret".to_owned(), Param::Secret(s))),
        1 => (any::<String>(), prop::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(n, v)| (n, Param::Bytes(v))),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        8 => prop::collection::vec(param(), 0..6).prop_map(Body::Form),
        2 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Body::Bytes),
        1 => (1usize..64).prop_map(Body::Large),
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => Just("POST".to_owned()),
        1 => prop::sample::select(vec!["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
            .prop_map(str::to_owned),
        1 => "[A-Z]{1,8}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => Just(TOKEN_PATH.to_owned()),
        1 => prop::sample::select(vec![
            "/oauth/token/",
            "/OAUTH/TOKEN",
            "/",
            "/.well-known/jwks.json",
            "/.well-known/oauth-authorization-server",
        ])
        .prop_map(str::to_owned),
        1 => "/[a-zA-Z0-9/._~-]{0,20}",
    ]
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        8 => Just(Some(b"application/x-www-form-urlencoded".to_vec())),
        2 => prop::sample::select(vec![
            "application/x-www-form-urlencoded; charset=UTF-8",
            "APPLICATION/X-WWW-FORM-URLENCODED;charset=\"utf-8\"",
            "application/x-www-form-urlencoded; charset=latin1",
            "application/json",
            "text/plain",
            "",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => Just(None),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ]
}

/// Arbitrary structured requests, most of them aimed at the token endpoint with a form body.
pub fn structured() -> impl Strategy<Value = Structured> {
    let auths = prop_oneof![
        8 => auth().prop_map(|a| vec![a]),
        2 => Just(Vec::new()),
        1 => prop::collection::vec(auth(), 2..3),
    ];
    let content_length = prop_oneof![
        8 => Just(None),
        1 => prop::sample::select(vec!["9000", "0", "abc", "-1", "18446744073709551616"])
            .prop_map(|s| Some(s.to_owned())),
    ];
    let query = prop_oneof![
        8 => Just(None),
        1 => "[a-zA-Z0-9=&_.%-]{0,20}".prop_map(Some),
    ];
    (
        method(),
        path(),
        query,
        content_type(),
        auths,
        content_length,
        prop::option::weighted(0.5, prop::collection::vec(any::<u8>(), 0..60)),
        body(),
    )
        .prop_map(
            |(method, path, query, content_type, auth, content_length, user_agent, body)| {
                Structured {
                    method,
                    path,
                    query,
                    content_type,
                    auth,
                    content_length,
                    user_agent,
                    body,
                }
            },
        )
}

/// A case: a few requests from one source (`None`: no known address).
pub fn case() -> impl Strategy<Value = (Option<String>, Vec<Structured>)> {
    let source = prop_oneof![
        4 => any::<[u8; 4]>().prop_map(|b| Some(std::net::Ipv4Addr::from(b).to_string())),
        2 => any::<[u16; 8]>().prop_map(|s| Some(std::net::Ipv6Addr::from(s).to_string())),
        1 => Just(None),
    ];
    let request = prop_oneof![
        9 => structured(),
        1 => well_formed(),
    ];
    (source, prop::collection::vec(request, 1..6))
}

/// A request the service must answer with a token (unless a limit says otherwise): arbitrary
/// requests are rarely all correct at once, and a bounded run must still cover `200`.
fn well_formed() -> impl Strategy<Value = Structured> {
    let scope = prop::option::of(prop::sample::select(vec!["api.read", "api.write"]));
    (scope, prop::bool::ANY).prop_map(|(scope, urlencoded)| {
        let mut form = vec![(
            "grant_type".to_owned(),
            Param::Text("client_credentials".to_owned()),
        )];
        if let Some(scope) = scope {
            form.push(("scope".to_owned(), Param::Text(scope.to_owned())));
        }
        Structured {
            method: "POST".to_owned(),
            path: TOKEN_PATH.to_owned(),
            query: None,
            content_type: Some(b"application/x-www-form-urlencoded".to_vec()),
            auth: vec![Auth::Basic {
                id: Id::Real,
                secret: Secret::Real,
                urlencoded,
            }],
            content_length: None,
            user_agent: None,
            body: Body::Form(form),
        }
    })
}

/// An answer as the checks see it.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The budget as the service must apply it, request by request.
#[derive(Debug, Default)]
pub struct Model {
    refused: u32,
    cut_off_recorded: bool,
}

impl Model {
    /// Checks one answer against the expected behaviour; the number of audit records the
    /// request must have left.
    pub fn answer(
        &mut self,
        request: &Structured,
        answer: &Answer,
        real_secret: &str,
    ) -> Result<usize, TestCaseError> {
        check_answer(request, answer, real_secret)?;
        let status = answer.status.as_u16();
        if !request.is_token_request() {
            prop_assert!(
                matches!(status, 200 | 404 | 405),
                "{status} from {}",
                request.path
            );
            return Ok(0);
        }
        if self.refused >= BUDGET {
            prop_assert_eq!(status, 429, "a source over its budget gets 429");
            let records = usize::from(!self.cut_off_recorded);
            self.cut_off_recorded = true;
            return Ok(records);
        }
        if (400..500).contains(&status) {
            self.refused += 1;
        }
        Ok(1)
    }
}

/// What every answer must be: no 5xx but 503; on every 4xx and 5xx a JSON OAuth error body
/// with a known code and a fixed description, `no-store`; a token only for the real
/// credentials, issued to the real client.
pub fn check_answer(
    request: &Structured,
    answer: &Answer,
    real_secret: &str,
) -> Result<(), TestCaseError> {
    let status = answer.status.as_u16();
    prop_assert!(status < 500 || status == 503, "status {}", status);
    let text = String::from_utf8_lossy(&answer.body);
    prop_assert!(!text.contains(real_secret), "the secret echoed: {}", text);
    if request.method == "HEAD" {
        // RFC 9110 §9.3.2: the answer to HEAD has the headers of the GET answer and no body.
        prop_assert!(answer.body.is_empty());
        return Ok(());
    }
    if status >= 400 {
        let json = error_body(answer)?;
        let code = json["error"].as_str().unwrap_or_default();
        match status {
            401 => {
                prop_assert_eq!(code, "invalid_client");
                prop_assert!(answer.headers.contains_key(header::WWW_AUTHENTICATE));
            }
            429 | 503 => {
                prop_assert_eq!(code, "temporarily_unavailable");
                prop_assert!(answer.headers.contains_key(header::RETRY_AFTER));
            }
            _ => {}
        }
        return Ok(());
    }
    let token = serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|json| json["access_token"].as_str().map(str::to_owned));
    if !request.is_token_request() {
        prop_assert!(token.is_none(), "a token from {}", request.path);
        return Ok(());
    }
    prop_assert_eq!(status, 200);
    let Some(token) = token else {
        return Err(TestCaseError::fail("a 200 without a token"));
    };
    prop_assert!(
        request.has_real_credentials(),
        "a token without the real credentials"
    );
    prop_assert_eq!(subject(&token), CLIENT);
    prop_assert_eq!(
        answer
            .headers
            .get(header::CACHE_CONTROL)
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    Ok(())
}

/// The JSON OAuth error body of a 4xx or 5xx answer, checked.
pub fn error_body(answer: &Answer) -> Result<Value, TestCaseError> {
    let content_type = answer
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    prop_assert!(
        content_type.starts_with(b"application/json"),
        "{} with content type {:?}",
        answer.status,
        String::from_utf8_lossy(&content_type)
    );
    let json: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| TestCaseError::fail(format!("{}: not JSON ({e})", answer.status)))?;
    let code = json["error"].as_str().unwrap_or_default();
    prop_assert!(CODES.contains(&code), "unknown error code in {}", json);
    prop_assert!(json["error_description"].is_string(), "{}", json);
    prop_assert!(json.get("access_token").is_none());
    if answer.status == StatusCode::METHOD_NOT_ALLOWED {
        prop_assert!(answer.headers.contains_key(header::ALLOW));
    }
    Ok(json)
}

/// The `sub` claim of a JWT, read without verifying (the integration tests verify tokens).
fn subject(token: &str) -> String {
    token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .and_then(|claims| claims["sub"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Checks the audit records of a case: exactly the expected number per request id, none for
/// a request id the case did not send, and no secret in any of them.
pub fn check_records(
    records: &[AuditRecord],
    expected: &[(String, usize)],
    real_secret: &str,
) -> Result<(), TestCaseError> {
    for (request_id, count) in expected {
        let found = records
            .iter()
            .filter(|r| &r.request_id == request_id)
            .count();
        prop_assert_eq!(found, *count, "audit records of {}", request_id);
    }
    prop_assert_eq!(
        records.len(),
        expected.iter().map(|(_, c)| c).sum::<usize>(),
        "records of requests the case did not send"
    );
    for record in records {
        prop_assert!(
            !format!("{record:?}").contains(real_secret),
            "a secret in the audit trail: {:?}",
            record.request_id
        );
    }
    Ok(())
}

/// The statuses a run saw, to show that the generators reach every kind of answer (a fuzzer
/// that only ever got `400` would pass every check and test nothing).
#[derive(Debug, Default)]
pub struct Seen(std::sync::Mutex<std::collections::BTreeMap<u16, usize>>);

impl Seen {
    pub fn add(&self, status: StatusCode) {
        *self.0.lock().unwrap().entry(status.as_u16()).or_default() += 1;
    }

    /// Panics unless every status in `expected` was seen at least once.
    pub fn assert_reached(&self, expected: &[u16]) {
        let seen = self.0.lock().unwrap();
        for status in expected {
            assert!(
                seen.contains_key(status),
                "no {status} in the run: {seen:?}"
            );
        }
    }
}
