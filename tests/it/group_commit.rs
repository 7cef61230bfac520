//! Group commit on the embedded shape: the SQLite writer thread commits the audit records of
//! many concurrent requests in one transaction, yet every request still gets exactly one
//! record, readable before its answer; a commit that fails answers every request of its batch
//! `503 temporarily_unavailable` and lets no token out. A request counts as a write under way,
//! which a batch waits for, only once its body is in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::Request;
use tower::ServiceExt as _;

use token_service::admin::NewClient;
use token_service::audit::{AuditQuery, AuditRecord};
use token_service::store::AuditLog as _;

use crate::support::stack::{self, AUDIENCE, FORM, Stack, basic_header};

const GRANT: &str = "grant_type=client_credentials";

async fn client(s: &Stack, id: &str) -> String {
    s.client_with(NewClient {
        client_id: Some(id.into()),
        name: id.into(),
        scopes: vec!["api.read".into()],
        audiences: vec![AUDIENCE.into()],
        rate_limit: Some(10_000),
        ..Default::default()
    })
    .await
    .1
}

/// The token requests' records of a client (not the admin's record of its creation).
async fn records_of(s: &Stack, client_id: &str) -> Vec<AuditRecord> {
    let records = s
        .embedded
        .store
        .query(&AuditQuery {
            client_id: Some(client_id.into()),
            ..Default::default()
        })
        .await
        .expect("audit query");
    records.into_iter().filter(|r| r.actor.is_none()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_tokens_leave_two_hundred_records_each_before_its_answer() {
    let s = Arc::new(Stack::new().await);
    let secret = Arc::new(client(&s, "busy").await);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (s, secret) = (s.clone(), secret.clone());
            tokio::spawn(async move {
                let reply = s.basic("busy", &secret, GRANT).await;
                assert_eq!(reply.status, 200, "{}", reply.text);
                let token = reply.json["access_token"].as_str().expect("a token");
                let jti =
                    stack::verify(token, &s.jwks().await, &s.embedded.config.issuer, AUDIENCE)
                        .expect("a valid token")
                        .jti;
                // Read right after the answer: the record was committed before it.
                let records = records_of(&s, "busy").await;
                let own = records
                    .iter()
                    .filter(|r| r.jti.as_deref() == Some(jti.as_str()))
                    .count();
                assert_eq!(
                    own, 1,
                    "the record of {jti} is readable once its answer is out"
                );
                jti
            })
        })
        .collect();
    let mut jtis = Vec::new();
    for t in tasks {
        jtis.push(t.await.expect("request task"));
    }
    let records = records_of(&s, "busy").await;
    assert_eq!(records.len(), 200, "one record per request");
    assert!(records.iter().all(|r| r.outcome == "issued"));
    let mut recorded: Vec<_> = records.iter().filter_map(|r| r.jti.clone()).collect();
    recorded.sort();
    jtis.sort();
    assert_eq!(recorded, jtis, "each record names its own token");
}

/// Makes every commit that wrote an audit record fail, the way a full disk or a lost file
/// would: a trigger adds a row that breaks a deferred foreign key, which SQLite checks only
/// at `COMMIT`. The statements of the batch succeed; its commit does not.
fn fail_commits_of_audit_records(s: &Stack) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(s.embedded.store.path()).expect("second connection");
    conn.execute_batch(
        "CREATE TABLE commit_guard (id INTEGER PRIMARY KEY);
         CREATE TABLE commit_breaker (
             guard INTEGER REFERENCES commit_guard (id) DEFERRABLE INITIALLY DEFERRED
         );
         CREATE TRIGGER audit_commit_fails AFTER INSERT ON audit
         BEGIN INSERT INTO commit_breaker (guard) VALUES (-1); END;",
    )
    .expect("install the failing trigger");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_commit_answers_every_request_of_its_batch_503_without_a_token() {
    let s = Arc::new(Stack::new().await);
    let secret = Arc::new(client(&s, "unlucky").await);
    let guard = fail_commits_of_audit_records(&s);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (s, secret) = (s.clone(), secret.clone());
            tokio::spawn(async move { s.basic("unlucky", &secret, GRANT).await })
        })
        .collect();
    for t in tasks {
        let reply = t.await.expect("request task");
        reply.assert_error(503, "temporarily_unavailable");
        assert!(
            !reply.text.contains("FOREIGN KEY"),
            "no internal error text"
        );
    }
    assert!(
        records_of(&s, "unlucky").await.is_empty(),
        "nothing of a failed commit is kept"
    );

    // The writer keeps serving once commits succeed again.
    guard
        .execute_batch("DROP TRIGGER audit_commit_fails")
        .expect("drop the trigger");
    let reply = s.basic("unlucky", &secret, GRANT).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let records = records_of(&s, "unlucky").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, "issued");
}

/// A client that sends its body slowly (or never ends it) must not hold the writer: a request
/// is counted as a write under way, which every batch waits for up to its gathering window,
/// only from the moment its body is in until it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_counts_as_a_write_under_way_only_once_its_body_is_in() {
    let s = Stack::new().await;
    let secret = client(&s, "slow").await;
    let under_way = s.embedded.store.expect_writes().clone();
    // One piece of body in flight at a time: a send returns once the previous piece was taken.
    let (mut body, channel) = http_body_util::channel::Channel::<Bytes>::new(1);
    let request = Request::post("/oauth/token")
        .header("content-type", FORM)
        .header("authorization", basic_header("slow", &secret))
        .body(Body::new(channel))
        .unwrap();
    let answer = tokio::spawn(s.router.clone().oneshot(request));
    body.send_data(Bytes::from_static(b"grant_type=client_"))
        .await
        .unwrap();
    body.send_data(Bytes::from_static(b"credentials"))
        .await
        .unwrap();
    // The route took the first piece and waits for the rest.
    assert_eq!(under_way.get(), 0, "not under way while its body is coming");

    // The write lock held from outside keeps the request at its audit write while it is looked at.
    let lock = rusqlite::Connection::open(s.embedded.store.path()).expect("second connection");
    lock.execute_batch("BEGIN IMMEDIATE")
        .expect("the write lock");
    drop(body);
    let give_up = Instant::now() + Duration::from_secs(4);
    while under_way.get() == 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(under_way.get(), 1, "under way once its body is in");
    lock.execute_batch("ROLLBACK").expect("release the lock");

    let response = answer.await.expect("request task").expect("infallible");
    assert_eq!(response.status(), 200);
    assert_eq!(under_way.get(), 0, "nothing under way once answered");
}
