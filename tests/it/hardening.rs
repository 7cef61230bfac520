//! The edges of the embedded shape: the source address behind proxies (repeated
//! `X-Forwarded-For` lines, IPv4-mapped peers, CIDR ranges, hops with ports), failure counting
//! per IPv6 /64, `Host` on HTTP/1.1 over a real socket, and client ids that are secrets.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use time::OffsetDateTime;
use token_service::clock::ManualClock;
use token_service::config::ServiceConfig;
use token_service::shapes::embedded::Embedded;
use token_service::store::AuditLog as _;
use tower::ServiceExt as _;

use crate::support::stack::{FORM, Stack, basic_header};

const GRANT: &str = "grant_type=client_credentials";

/// An embedded stack that believes `X-Forwarded-For` from `trusted`.
fn proxied(dir: &tempfile::TempDir, trusted: &[&str]) -> Embedded {
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    Embedded::open(dir.path().join("t.db"), ServiceConfig::for_tests(), clock)
        .expect("open store")
        .with_trusted_proxies(trusted.iter().map(|s| s.parse().expect("proxy")).collect())
}

/// Sends a wrong-secret request from the socket peer `peer` with these `X-Forwarded-For`
/// lines, and returns the source address the audit trail recorded for it.
async fn recorded_source(
    trusted: &[&str],
    peer: &str,
    forwarded_for: &[impl AsRef<[u8]>],
) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = proxied(&dir, trusted);
    let mut builder = Request::post("/oauth/token")
        .header("host", "token.test")
        .header("content-type", FORM)
        .header("authorization", basic_header("nobody", "wrong"));
    for line in forwarded_for {
        let line = axum::http::HeaderValue::from_bytes(line.as_ref()).expect("a header value");
        builder = builder.header("x-forwarded-for", line);
    }
    let mut request = builder.body(Body::from(GRANT)).unwrap();
    let peer: SocketAddr = peer.parse().expect("peer");
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = embedded.router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 401);
    let records = embedded.store.query(&Default::default()).await.unwrap();
    assert_eq!(records.len(), 1);
    records[0].source_ip.clone().expect("a source address")
}

#[tokio::test]
async fn repeated_forwarded_for_lines_are_read_as_one_list() {
    // The client sent a forged line; the trusted proxy appended the one it saw.
    let source =
        recorded_source(&["10.0.0.1"], "10.0.0.1:5000", &["6.6.6.6", "198.51.100.1"]).await;
    assert_eq!(source, "198.51.100.1");
}

#[tokio::test]
async fn an_ipv4_mapped_peer_matches_its_trusted_ipv4_address() {
    // A dual-stack `[::]` listener reports IPv4 peers as ::ffff:a.b.c.d.
    let source = recorded_source(&["10.0.0.1"], "[::ffff:10.0.0.1]:5000", &["198.51.100.1"]).await;
    assert_eq!(source, "198.51.100.1");
}

#[tokio::test]
async fn trusted_proxies_may_be_cidr_ranges() {
    let source = recorded_source(
        &["10.0.0.0/8"],
        "10.20.30.40:5000",
        &["198.51.100.1, 10.9.9.9"],
    )
    .await;
    assert_eq!(source, "198.51.100.1");
}

#[tokio::test]
async fn a_hop_with_a_port_is_its_address_and_not_the_proxy() {
    let source = recorded_source(&["10.0.0.1"], "10.0.0.1:5000", &["198.51.100.1:4711"]).await;
    assert_eq!(source, "198.51.100.1");
}

#[tokio::test]
async fn an_unknown_hop_stops_the_walk_at_the_last_trusted_hop() {
    let source = recorded_source(
        &["10.0.0.1", "10.0.0.2"],
        "10.0.0.1:5000",
        &["6.6.6.6, unknown", "10.0.0.2"],
    )
    .await;
    assert_eq!(source, "10.0.0.2");
}

#[tokio::test]
async fn a_hop_that_is_not_ascii_does_not_hide_the_hop_the_proxy_appended() {
    // The client wrote a byte that is no visible ASCII; the trusted proxy appended the address
    // it saw, on the same line. Only the client's own hop is unreadable.
    let line: &[u8] = b"6.6.6.6\xff, 198.51.100.1";
    let source = recorded_source(&["10.0.0.1"], "10.0.0.1:5000", &[line]).await;
    assert_eq!(source, "198.51.100.1");
    // An unreadable hop next to the proxy stops the walk there, as `unknown` does.
    let line: &[u8] = b"198.51.100.1, \xfe\xff";
    let source = recorded_source(&["10.0.0.1"], "10.0.0.1:5000", &[line]).await;
    assert_eq!(source, "10.0.0.1");
}

/// Moves the manual clock to the start of the next minute, so that a test's requests share
/// one window.
fn start_of_minute(s: &Stack) {
    let now = token_service::clock::Clock::now(s.clock.as_ref());
    let floor = now
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    s.clock.set(floor + time::Duration::minutes(1));
}

#[tokio::test]
async fn failures_from_ipv6_sources_count_per_64() {
    let mut config = ServiceConfig::for_tests();
    config.limits.fail_per_ip = 2;
    let s = Stack::with_config(config).await;
    start_of_minute(&s);
    for (ip, id) in [("2001:db8:1:2::1", "a"), ("2001:db8:1:2::2", "b")] {
        s.basic_from(ip, id, "x", GRANT)
            .await
            .assert_error(401, "invalid_client");
    }
    // A third address of the same /64 is the same host as far as the limit goes.
    let r = s.basic_from("2001:db8:1:2:abcd::3", "c", "x", GRANT).await;
    r.assert_error(429, "temporarily_unavailable");
    // The neighbouring /64 has its own budget, and IPv4 sources are unaffected.
    for ip in ["2001:db8:1:3::1", "203.0.113.9"] {
        s.basic_from(ip, "d", "x", GRANT)
            .await
            .assert_error(401, "invalid_client");
    }
    // The audit trail keeps the full address.
    let records = s.audit().await;
    assert_eq!(
        records[2].source_ip.as_deref(),
        Some("2001:db8:1:2:abcd::3")
    );
}

/// A token server on a free loopback port, served exactly as `token-server` serves it.
async fn serve(dir: &tempfile::TempDir) -> SocketAddr {
    let embedded = proxied(dir, &[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = embedded
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Writes `head` and a wrong-credentials token request body to the server; the raw answer.
async fn raw_exchange(addr: SocketAddr, head: &str) -> String {
    let request = format!(
        "{head}Content-Type: {FORM}\r\nAuthorization: {}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{GRANT}",
        basic_header("nobody", "wrong"),
        GRANT.len()
    );
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http11_request_without_exactly_one_host_is_400() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(&dir).await;
    for head in [
        "POST /oauth/token HTTP/1.1\r\n",
        "POST /oauth/token HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n",
    ] {
        let answer = raw_exchange(addr, head).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(json["error"], "invalid_request", "{answer}");
        assert!(json["error_description"].is_string());
    }
    // With its Host, the same request reaches the token endpoint; HTTP/1.0 needs none.
    for head in [
        "POST /oauth/token HTTP/1.1\r\nHost: token.test\r\n",
        "POST /oauth/token HTTP/1.0\r\n",
    ] {
        let answer = raw_exchange(addr, head).await;
        assert!(answer.contains(" 401 "), "{head:?}: {answer}");
    }
}

#[tokio::test]
async fn a_client_id_that_is_a_secret_is_recorded_as_a_dash() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    // Id and secret swapped, in either authentication method, and a request refused while
    // it is parsed: none may leave the secret in the audit trail.
    s.basic(&secret, "svc", GRANT)
        .await
        .assert_error(401, "invalid_client");
    let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let post = format!("{GRANT}&client_id={encoded}&client_secret=svc");
    s.token(&[("content-type", FORM)], &post)
        .await
        .assert_error(401, "invalid_client");
    s.basic(&secret, "svc", "grant_type=password")
        .await
        .assert_error(400, "unsupported_grant_type");
    let records: Vec<_> = s
        .audit()
        .await
        .into_iter()
        .filter(|r| r.action.is_none())
        .collect();
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_eq!(r.client_id, "-");
        assert!(!format!("{r:?}").contains(&secret), "{r:?}");
    }
    // An id that merely starts like a secret is a client id like any other.
    s.basic("tks_not_a_secret", "x", GRANT)
        .await
        .assert_error(401, "invalid_client");
    assert_eq!(s.audit().await[0].client_id, "tks_not_a_secret");
}

/// A secret pasted as the `client_id` of a client assertion reaches neither the log nor the
/// audit trail: the refusal's log line names no client.
#[tokio::test]
async fn a_secret_shaped_client_id_with_an_assertion_never_reaches_the_log() {
    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let logs = Sink::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let post = format!(
        "{GRANT}&client_id={encoded}&client_assertion_type=\
         urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
         &client_assertion=eyJhbGciOiJFUzI1NiJ9.e30.c2ln"
    );
    s.token(&[("content-type", FORM)], &post)
        .await
        .assert_error(401, "invalid_client");
    let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("client assertion refused"), "{log}");
    assert!(!log.contains(&secret), "{log}");
    let records = s.audit().await;
    assert!(records.iter().all(|r| !format!("{r:?}").contains(&secret)));
}
