//! The embedded server's connection bounds over real sockets on 127.0.0.1: half-sent requests
//! are dropped at their deadline, a late body gets `408`, slow connections do not keep a
//! normal client out, and past the connection limit a new connection waits for a free slot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use token_service::clock::ManualClock;
use token_service::config::ServiceConfig;
use token_service::shapes::embedded::Embedded;
use token_service::shapes::server::{self, Limits};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// When a test stops waiting, rather than hang like an unbounded server would make it.
const GIVE_UP: Duration = Duration::from_secs(20);

/// A server on a free loopback port with `limits`; stops when the returned sender is dropped.
async fn start(limits: Limits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let embedded = Embedded::open(dir.path().join("t.db"), ServiceConfig::for_tests(), clock)
        .expect("open store");
    embedded
        .admin("test")
        .ensure_signing_key()
        .await
        .expect("signing key");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _dir = dir;
        let shutdown = async {
            let _ = stopped.await;
        };
        server::serve(listener, embedded.router(), limits, shutdown)
            .await
            .expect("serve");
    });
    (address, stop)
}

/// Everything the server sends until it closes the connection (or `GIVE_UP`).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(GIVE_UP, stream.read_to_end(&mut answer))
        .await
        .expect("the server closed the connection")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A complete request that the token endpoint answers (a wrong secret: `401`).
const TOKEN_REQUEST: &[u8] = b"POST /oauth/token HTTP/1.1\r\nHost: token.test\r\n\
Content-Type: application/x-www-form-urlencoded\r\nAuthorization: Basic bm9ib2R5Ondyb25n\r\n\
Content-Length: 29\r\nConnection: close\r\n\r\ngrant_type=client_credentials";

fn limits(header_read: u64, body_read: u64, max_connections: usize) -> Limits {
    Limits {
        max_connections,
        header_read: Duration::from_secs(header_read),
        body_read: Duration::from_secs(body_read),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_is_dropped_at_the_header_deadline() {
    let (address, _stop) = start(limits(1, 10, 16)).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST /oauth/token HTTP/1.1\r\nHost: tok")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    // hyper closes the connection without an answer (or with a bare 408) once headers are late.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let (address, _stop) = start(limits(1, 10, 16)).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: token.test\r\n\r\n";
    stream.write_all(request).await.unwrap();
    // The answer, then the server closes the connection left idle.
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_body_is_answered_408_and_the_connection_closes() {
    let (address, _stop) = start(limits(10, 1, 16)).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            b"POST /oauth/token HTTP/1.1\r\nHost: token.test\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n\
              grant_type",
        )
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_request_is_served_while_300_slow_connections_are_open() {
    let (address, _stop) = start(limits(10, 10, 1024)).await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"POST /oauth/token HTTP/1.1\r\nHo")
            .await
            .unwrap();
        slow.push(stream);
    }
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(TOKEN_REQUEST).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    eprintln!(
        "answered in {} ms beside 300 slow connections",
        started.elapsed().as_millis()
    );
    // Still open: the normal request was served beside them, not after them.
    for stream in &slow {
        let mut byte = [0u8; 1];
        assert!(
            stream.try_read(&mut byte).is_err(),
            "a slow connection was answered or closed early"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_limit_a_new_connection_waits_for_a_free_slot() {
    let (address, _stop) = start(limits(30, 10, 1)).await;
    // The one slot is held by a connection that sends nothing (accepted first: the accept
    // queue is first in, first out).
    let holder = TcpStream::connect(address).await.unwrap();
    let mut waiting = TcpStream::connect(address).await.unwrap();
    waiting.write_all(TOKEN_REQUEST).await.unwrap();
    // Not served while the slot is held. (Only a wrong server can fail this; a slow machine
    // makes it pass anyway.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut byte = [0u8; 1];
    assert!(
        matches!(waiting.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the waiting connection was served while the only slot was held"
    );
    // The holder leaves: the waiting connection takes the slot and is served.
    drop(holder);
    let answer = read_to_close(&mut waiting).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}
