//! The secret-scanning endpoints of the embedded shape against a stand-in for GitHub's keys
//! document: a local P-256 key pair whose public key a loopback server publishes.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use token_service::admin::NewClient;
use token_service::audit::AuditQuery;
use token_service::clock::SystemClock;
use token_service::config::{ServiceConfig, ServiceSettings};
use token_service::shapes::embedded::Embedded;
use tower::ServiceExt;

use crate::support::stack::basic_header;

fn key_pair() -> EcdsaKeyPair {
    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap()
}

fn pem(pair: &EcdsaKeyPair) -> String {
    let der = pair.public_key().as_der().unwrap();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(der.as_ref())
    )
}

fn sign(pair: &EcdsaKeyPair, body: &[u8]) -> String {
    STANDARD.encode(pair.sign(&SystemRandom::new(), body).unwrap().as_ref())
}

/// A loopback server answering every request with `document` after `delay`, or `500`.
async fn keys_server(document: Option<String>, delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || {
        let document = document.clone();
        async move {
            tokio::time::sleep(delay).await;
            match document {
                Some(d) => (StatusCode::OK, d),
                None => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/meta/public_keys/secret_scanning")
}

fn document(keys: &[(&str, &EcdsaKeyPair)]) -> String {
    let keys: Vec<_> = keys
        .iter()
        .map(|(id, pair)| {
            serde_json::json!({"key_identifier": id, "key": pem(pair), "is_current": true})
        })
        .collect();
    serde_json::json!({ "public_keys": keys }).to_string()
}

struct Stand {
    embedded: Embedded,
    _dir: tempfile::TempDir,
}

fn stand(url: &str, action: &str) -> Stand {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TOKEN_GITHUB_SCANNING_KEYS_URL", url),
        ("TOKEN_LEAKED_SECRET_ACTION", action),
    ];
    let config: ServiceConfig = ServiceSettings::from_lookup(|name| {
        env.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
    .validate(Some("https://issuer.test"))
    .unwrap();
    let embedded = Embedded::open(dir.path().join("s.db"), config, Arc::new(SystemClock)).unwrap();
    Stand {
        embedded,
        _dir: dir,
    }
}

impl Stand {
    async fn client(&self, id: &str) -> (String, String) {
        let (client, secret) = self
            .embedded
            .admin("t")
            .create_client(NewClient {
                client_id: Some(id.into()),
                name: id.into(),
                scopes: vec!["a".into()],
                audiences: vec!["https://api.test/".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        (
            secret.expose().to_owned(),
            client.secrets[0].secret_id.clone(),
        )
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Vec<u8>) {
        let response = self.embedded.router().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, body.to_vec())
    }

    async fn report(&self, body: &[u8], headers: &[(&str, &str)]) -> (StatusCode, Vec<u8>) {
        let mut request = Request::post("/secret-scanning/github");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(body.to_vec())).unwrap())
            .await
    }

    async fn signed(&self, pair: &EcdsaKeyPair, id: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
        let signature = sign(pair, body);
        self.report(
            body,
            &[
                ("github-public-key-identifier", id),
                ("github-public-key-signature", &signature),
            ],
        )
        .await
    }

    async fn token(&self, id: &str, secret: &str) -> StatusCode {
        let request = Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", basic_header(id, secret))
            .body(Body::from("grant_type=client_credentials"))
            .unwrap();
        self.send(request).await.0
    }

    async fn leak_records(&self) -> Vec<String> {
        let records = self
            .embedded
            .store
            .query(&AuditQuery::default())
            .await
            .unwrap();
        records
            .into_iter()
            .filter_map(|r| r.action.filter(|a| a.starts_with("leak.")))
            .collect()
    }
}

fn report_of(tokens: &[&str]) -> Vec<u8> {
    let items: Vec<_> = tokens
        .iter()
        .map(|t| {
            serde_json::json!({"token": t, "type": "token_service_client_secret",
                "url": "https://github.com/o/r/blob/abc/config.env", "source": "commit"})
        })
        .collect();
    serde_json::to_vec(&items).unwrap()
}

use token_service::store::AuditLog as _;

#[tokio::test]
async fn a_signed_report_revokes_that_secret_at_once_and_only_that_one() {
    let pair = key_pair();
    let url = keys_server(Some(document(&[("k1", &pair)])), Duration::ZERO).await;
    let s = stand(&url, "revoke");
    s.embedded.admin("t").ensure_signing_key().await.unwrap();
    let (leaked, leaked_id) = s.client("svc").await;
    let (_, _, other) = s.embedded.admin("t").add_secret("svc", None).await.unwrap();
    let other = other.expose().to_owned();
    assert_eq!(s.token("svc", &leaked).await, StatusCode::OK);

    let not_ours = token_service::clients::ClientSecret::generate();
    let body = report_of(&[&leaked, not_ours.expose(), "ghp_notours"]);
    let (status, answer) = s.signed(&pair, "k1", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.token("svc", &leaked).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.token("svc", &other).await, StatusCode::OK);

    let feedback: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let labels: Vec<_> = feedback
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        labels,
        ["true_positive", "false_positive", "false_positive"]
    );
    let hash: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaked.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(feedback[0]["token_hash"], hash);
    assert_eq!(feedback[0]["token_type"], "token_service_client_secret");
    assert_eq!(s.leak_records().await, ["leak.revoke"]);
    let report = token_service::audit::report::build(
        s.embedded.store.as_ref(),
        s.embedded.store.as_ref(),
        &SystemClock,
        &token_service::audit::report::ReportOptions::new(time::Duration::days(1)),
    )
    .await
    .unwrap();
    let leaks = &report.findings.leaked_secrets;
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    assert_eq!(
        (leaks[0].client_id.as_str(), leaks[0].secret_id.as_str()),
        ("svc", leaked_id.as_str())
    );
    assert_eq!(leaks[0].url, "https://github.com/o/r/blob/abc/config.env");
    assert_eq!(leaks[0].reported_by, "github secret scanning");

    // The same report again changes nothing more.
    let before = s.embedded.admin("t").client("svc").await.unwrap();
    let (status, _) = s.signed(&pair, "k1", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.embedded.admin("t").client("svc").await.unwrap(), before);
    assert_eq!(s.token("svc", &other).await, StatusCode::OK);
}

#[tokio::test]
async fn disable_and_report_actions() {
    let pair = key_pair();
    let url = keys_server(Some(document(&[("k1", &pair)])), Duration::ZERO).await;
    let s = stand(&url, "disable");
    s.embedded.admin("t").ensure_signing_key().await.unwrap();
    let (leaked, _) = s.client("svc").await;
    s.signed(&pair, "k1", &report_of(&[&leaked])).await;
    let client = s.embedded.admin("t").client("svc").await.unwrap();
    assert_eq!(
        client.status,
        token_service::clients::ClientStatus::Disabled
    );
    assert_eq!(client.secrets.len(), 1);

    let s = stand(&url, "report");
    s.embedded.admin("t").ensure_signing_key().await.unwrap();
    let (leaked, _) = s.client("svc").await;
    let before = s.embedded.admin("t").client("svc").await.unwrap();
    let (status, _) = s.signed(&pair, "k1", &report_of(&[&leaked])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.embedded.admin("t").client("svc").await.unwrap(), before);
    assert_eq!(s.token("svc", &leaked).await, StatusCode::OK);
    assert_eq!(s.leak_records().await, ["leak.report"]);
}

#[tokio::test]
async fn bad_reports_change_nothing() {
    let pair = key_pair();
    let other_pair = key_pair();
    let url = keys_server(Some(document(&[("k1", &pair)])), Duration::ZERO).await;
    let s = stand(&url, "revoke");
    s.embedded.admin("t").ensure_signing_key().await.unwrap();
    let (leaked, _) = s.client("svc").await;
    let body = report_of(&[&leaked]);
    let signature = sign(&pair, &body);
    let mut tampered = body.clone();
    tampered[3] ^= 1;

    let unsigned = s.report(&body, &[]).await.0;
    let tampered = s
        .report(
            &tampered,
            &[
                ("github-public-key-identifier", "k1"),
                ("github-public-key-signature", &signature),
            ],
        )
        .await
        .0;
    let unknown_key = s.signed(&pair, "k2", &body).await.0;
    let other_key = s.signed(&other_pair, "k1", &body).await.0;
    let garbage = s
        .report(
            &body,
            &[
                ("github-public-key-identifier", "k1"),
                ("github-public-key-signature", "%%%"),
            ],
        )
        .await
        .0;
    for status in [unsigned, tampered, unknown_key, other_key, garbage] {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        s.signed(&pair, "k1", b"not json").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.signed(&pair, "k1", br#"{"token": "x"}"#).await.0,
        StatusCode::BAD_REQUEST
    );
    let oversized = vec![b' '; 64 * 1024 + 1];
    assert_eq!(
        s.signed(&pair, "k1", &oversized).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let too_many: Vec<&str> = vec!["ghp_x"; 101];
    assert_eq!(
        s.signed(&pair, "k1", &report_of(&too_many)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(s.token("svc", &leaked).await, StatusCode::OK);
    assert!(s.leak_records().await.is_empty());
    // GitLab's route is not served while its keys URL is unset.
    let request = Request::post("/secret-scanning/gitlab")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(s.send(request).await.0, StatusCode::NOT_FOUND);
    // Every answer was audited.
    let answers = s
        .embedded
        .store
        .query(&AuditQuery::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action.as_deref() == Some("scanning.github"))
        .count();
    assert_eq!(answers, 9);
}

#[tokio::test]
async fn a_hundred_matches_in_one_report() {
    let pair = key_pair();
    let url = keys_server(Some(document(&[("k1", &pair)])), Duration::ZERO).await;
    let s = stand(&url, "revoke");
    let mut secrets = Vec::new();
    for i in 0..34 {
        let id = format!("c{i}");
        let (secret, _) = s.client(&id).await;
        secrets.push(secret);
        for _ in 0..2 {
            if secrets.len() < 100 {
                let (_, _, more) = s.embedded.admin("t").add_secret(&id, None).await.unwrap();
                secrets.push(more.expose().to_owned());
            }
        }
    }
    secrets.truncate(100);
    let tokens: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let (status, answer) = s.signed(&pair, "k1", &report_of(&tokens)).await;
    assert_eq!(status, StatusCode::OK);
    let feedback: Vec<serde_json::Value> = serde_json::from_slice(&answer).unwrap();
    assert_eq!(feedback.len(), 100);
    assert!(feedback.iter().all(|f| f["label"] == "true_positive"));
    assert_eq!(s.leak_records().await.len(), 100);
    let left: usize = s
        .embedded
        .admin("t")
        .list_clients()
        .await
        .unwrap()
        .iter()
        .map(|c| c.secrets.len())
        .sum();
    assert_eq!(left, 0, "every reported secret is revoked");
}

#[tokio::test]
async fn a_stalled_or_failing_keys_document_is_bounded_503_and_changes_nothing() {
    let pair = key_pair();
    for url in [
        keys_server(Some(document(&[("k1", &pair)])), Duration::from_secs(30)).await,
        keys_server(None, Duration::ZERO).await,
    ] {
        let s = stand(&url, "revoke");
        s.embedded.admin("t").ensure_signing_key().await.unwrap();
        let (leaked, _) = s.client("svc").await;
        let started = std::time::Instant::now();
        let (status, _) = s.signed(&pair, "k1", &report_of(&[&leaked])).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(s.token("svc", &leaked).await, StatusCode::OK);
        assert!(s.leak_records().await.is_empty());
    }
}

/// The secret-scanning function's shape over moto: client `svc` with two secrets, a signing
/// key, and the alarm topic `topic` when one is given.
struct AwsStand {
    shape: token_service::shapes::aws::AwsShape,
    pair: EcdsaKeyPair,
    leaked: String,
    leaked_id: String,
    other: String,
}

async fn aws_stand(topic: Option<&str>) -> AwsStand {
    use token_service::shapes::aws::AwsShape;
    use token_service::store::aws::create_resources;

    let pair = key_pair();
    let url = keys_server(Some(document(&[("k1", &pair)])), Duration::ZERO).await;
    let names = crate::support::stores::random_resources();
    let sdk = crate::support::moto::sdk_config().await;
    create_resources(&sdk, &names).await.unwrap();
    let mut config = ServiceConfig::for_tests();
    config.scanning.github_keys_url = url;
    let mut shape =
        AwsShape::new(&sdk, names, config, Arc::new(SystemClock)).with_rotation_in_process();
    if let Some(topic) = topic {
        shape = shape.with_alarm_topic(topic);
    }
    let admin = shape.admin("test");
    admin.create_first_key().await.unwrap();
    let (client, leaked) = admin
        .create_client(NewClient {
            client_id: Some("svc".into()),
            name: "svc".into(),
            scopes: vec!["a".into()],
            audiences: vec!["https://api.test/".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, _, other) = admin.add_secret("svc", None).await.unwrap();
    AwsStand {
        shape,
        pair,
        leaked: leaked.expose().to_owned(),
        leaked_id: client.secrets[0].secret_id.clone(),
        other: other.expose().to_owned(),
    }
}

impl AwsStand {
    /// The token function's answer to `svc` with `secret`.
    async fn token(&self, secret: &str) -> StatusCode {
        let router = token_service::shapes::lambda::token_router(self.shape.token_service());
        let request = Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", basic_header("svc", secret))
            .body(Body::from("grant_type=client_credentials"))
            .unwrap();
        router.oneshot(request).await.unwrap().status()
    }

    /// The secret-scanning function's answer to a signed report of the leaked secret.
    async fn report_leak(&self) -> StatusCode {
        let body = report_of(&[&self.leaked]);
        let request = Request::post("/secret-scanning/github")
            .header("github-public-key-identifier", "k1")
            .header("github-public-key-signature", sign(&self.pair, &body))
            .body(Body::from(body))
            .unwrap();
        let router = token_service::shapes::lambda::scanning_router(self.shape.secret_scanning());
        router.oneshot(request).await.unwrap().status()
    }

    async fn leak_actions(&self) -> Vec<String> {
        let trail = self
            .shape
            .admin("test")
            .audit
            .query(&AuditQuery {
                client_id: Some("svc".into()),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        trail
            .into_iter()
            .filter_map(|r| r.action.filter(|a| a.starts_with("leak.")))
            .collect()
    }
}

/// The secret-scanning function's router over DynamoDB (moto): a signed report revokes the
/// secret through the secret index, and the token function refuses it on the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_revokes_a_reported_secret_on_dynamodb() {
    let s = aws_stand(None).await;
    assert_eq!(s.token(&s.leaked).await, StatusCode::OK);
    assert_eq!(s.report_leak().await, StatusCode::OK);
    assert_eq!(s.token(&s.leaked).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.token(&s.other).await, StatusCode::OK);
    assert_eq!(s.leak_actions().await, ["leak.revoke"]);
}

/// What moto's SNS holds as published to `topic_arn`, as (subject, message), read from the
/// emulator's own model data (`/moto-api/data.json`).
fn published(topic_arn: &str) -> Vec<(Option<String>, String)> {
    let url = format!("{}/moto-api/data.json", crate::support::moto::endpoint());
    let text = ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .unwrap();
    let data: serde_json::Value = serde_json::from_str(&text).unwrap();
    let topics = data["sns"]["Topic"].as_array().expect("moto's SNS topics");
    let topic = topics
        .iter()
        .find(|t| t["arn"] == topic_arn)
        .expect("the topic in moto's data");
    topic["sent_notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n[2].as_str().map(str::to_owned),
                n[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// On AWS each leaked secret is published to the alarm topic: one notification naming the
/// client, the secret's id, the URL and the action, never the secret or a digest of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_is_published_to_the_alarm_topic_without_the_secret() {
    let sdk = crate::support::moto::sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let name = format!("test-{}-alarms", token_service::encoding::random_b64url(9));
    let created = sns.create_topic().name(name).send().await.unwrap();
    let topic = created.topic_arn().unwrap().to_owned();
    let s = aws_stand(Some(&topic)).await;
    assert!(published(&topic).is_empty());

    assert_eq!(s.report_leak().await, StatusCode::OK);
    assert_eq!(s.token(&s.leaked).await, StatusCode::UNAUTHORIZED);
    let notes = published(&topic);
    assert_eq!(notes.len(), 1, "{notes:?}");
    let (subject, message) = &notes[0];
    assert_eq!(subject.as_deref(), Some("Leaked client secret: svc"));
    for expected in [
        "GitHub secret scanning",
        "Client: svc",
        &format!("Secret id: {}", s.leaked_id),
        "Found at: https://github.com/o/r/blob/abc/config.env",
        "the secret was revoked",
        "docs/secret-scanning.md",
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.leaked.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    for secret in [&s.leaked, &hex, &b64url] {
        assert!(
            !message.contains(secret.as_str()),
            "the notification holds {secret}"
        );
        assert!(!subject.as_deref().unwrap().contains(secret.as_str()));
    }

    // The same report again: nothing of ours is live, and nothing more is published.
    assert_eq!(s.report_leak().await, StatusCode::OK);
    assert_eq!(published(&topic).len(), 1);
}

/// A topic that cannot be published to (gone, or no permission) costs the notification only:
/// the report is answered, the secret revoked and the leak audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_publish_still_answers_the_report_and_revokes() {
    let missing = format!(
        "arn:aws:sns:{}:123456789012:test-{}-gone",
        crate::support::moto::REGION,
        token_service::encoding::random_b64url(9)
    );
    let s = aws_stand(Some(&missing)).await;
    let started = std::time::Instant::now();
    assert_eq!(s.report_leak().await, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.token(&s.leaked).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.token(&s.other).await, StatusCode::OK);
    assert_eq!(s.leak_actions().await, ["leak.revoke"]);
}

/// GitLab's route, once its keys URL is set: its own headers, `200` without a body, and the
/// same action; GitHub's headers do not authenticate a report there.
#[tokio::test]
async fn a_gitlab_report_is_answered_200_and_revokes() {
    let pair = key_pair();
    let url = keys_server(Some(document(&[("gl1", &pair)])), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServiceConfig::for_tests();
    config.scanning.gitlab_keys_url = Some(url);
    let s = Stand {
        embedded: Embedded::open(dir.path().join("g.db"), config, Arc::new(SystemClock)).unwrap(),
        _dir: dir,
    };
    s.embedded.admin("t").ensure_signing_key().await.unwrap();
    let (leaked, _) = s.client("svc").await;
    let body = report_of(&[&leaked]);
    let signature = sign(&pair, &body);
    let send = |headers: [(&'static str, String); 2]| {
        let mut request = Request::post("/secret-scanning/gitlab");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        s.send(request.body(Body::from(body.clone())).unwrap())
    };
    let (status, _) = send([
        ("github-public-key-identifier", "gl1".to_owned()),
        ("github-public-key-signature", signature.clone()),
    ])
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.token("svc", &leaked).await, StatusCode::OK);
    let (status, answer) = send([
        ("gitlab-public-key-identifier", "gl1".to_owned()),
        ("gitlab-public-key-signature", signature),
    ])
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer.is_empty());
    assert_eq!(s.token("svc", &leaked).await, StatusCode::UNAUTHORIZED);
}
