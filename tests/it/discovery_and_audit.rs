//! JWKS and RFC 8414 metadata, the audit trail of token requests, and failing closed when a
//! store fails.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use token_service::audit::{AuditQuery, AuditRecord, Failures};
use token_service::clients::Client;
use token_service::clock::Clock as _;
use token_service::config::ServiceConfig;
use token_service::http::token_routes;
use token_service::issue::TokenService;
use token_service::key_cache::KeyCache;
use token_service::store::{AuditLog, ClientReader, StoreError};

use crate::support::stack::{self, AUDIENCE, FORM, Stack, basic_header, verify};

const GRANT: &str = "grant_type=client_credentials";
const ISSUER: &str = "https://issuer.test";

#[tokio::test]
async fn jwks_publishes_public_members_only_and_is_cacheable() {
    let s = Stack::new().await;
    let reply = s
        .send(
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), Some("public, max-age=300"));
    let keys = reply.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = keys[0].as_object().unwrap();
    let mut members: Vec<&str> = key.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"]);
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    // 2048-bit modulus: 256 bytes -> 342 base64url characters.
    assert_eq!(key["n"].as_str().unwrap().len(), 342);
}

#[tokio::test]
async fn metadata_follows_rfc8414() {
    let s = Stack::new().await;
    s.client("svc").await;
    let reply = s
        .send(
            Request::get("/.well-known/oauth-authorization-server")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("cache-control")
            .unwrap()
            .starts_with("public, max-age=")
    );
    let m = &reply.json;
    assert_eq!(m["issuer"], ISSUER);
    assert_eq!(m["token_endpoint"], format!("{ISSUER}/oauth/token"));
    assert_eq!(m["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
    assert_eq!(
        m["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
    assert_eq!(
        m["token_endpoint_auth_methods_supported"],
        serde_json::json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ])
    );
    assert_eq!(
        m["token_endpoint_auth_signing_alg_values_supported"],
        serde_json::json!(["RS256", "PS256", "ES256", "EdDSA"])
    );
    // RFC 9449 §5.1: every proof algorithm, EdDSA under both its names.
    assert_eq!(
        m["dpop_signing_alg_values_supported"],
        serde_json::json!(["ES256", "EdDSA", "Ed25519", "RS256", "PS256"])
    );
    assert_eq!(
        m["scopes_supported"],
        serde_json::json!(["api.read", "api.write"])
    );
    assert_eq!(m["response_types_supported"], serde_json::json!([]));
}

#[tokio::test]
async fn discovery_routes_refuse_other_methods() {
    let s = Stack::new().await;
    for uri in [
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ] {
        let r = s
            .send(Request::post(uri).body(Body::empty()).unwrap())
            .await;
        assert_eq!(r.status, 405);
        assert!(r.header("allow").unwrap().contains("GET"));
    }
}

#[tokio::test]
async fn rotated_key_is_published_before_it_signs() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let first_kid = s.jwks().await.keys[0].common.key_id.clone().unwrap();
    s.admin().rotate_keys().await.unwrap();
    let jwks = s.jwks().await;
    assert_eq!(jwks.keys.len(), 2, "the new key is published at once");
    // Until the pre-publication delay passes, the old key still signs.
    let token = s.basic("svc", &secret, GRANT).await.json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(first_kid.as_str()));
    // After it (and a key cache refresh), the new key signs, and both stay published.
    s.clock
        .advance(s.embedded.config.schedule.prepublication + time::Duration::seconds(1));
    let token = s.basic("svc", &secret, GRANT).await.json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    assert_ne!(kid, first_kid);
    let jwks = s.jwks().await;
    assert_eq!(jwks.keys.len(), 2);
    assert!(jwks.find(&kid).is_some());
}

#[tokio::test]
async fn every_request_leaves_exactly_one_audit_record_without_secrets() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let ok = s.basic("svc", &secret, GRANT).await;
    let token = ok.json["access_token"].as_str().unwrap().to_owned();
    s.basic("svc", "tks_wrong", GRANT).await;
    s.basic("svc", &secret, &format!("{GRANT}&scope=admin"))
        .await;
    s.token(&[("content-type", FORM)], GRANT).await;
    s.send(Request::get("/oauth/token").body(Body::empty()).unwrap())
        .await;

    let records = s.audit().await;
    let token_records: Vec<&AuditRecord> = records.iter().filter(|r| r.action.is_none()).collect();
    let outcomes: Vec<&str> = token_records.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "invalid_request",
            "invalid_client",
            "invalid_scope",
            "invalid_client",
            "issued"
        ],
        "newest first"
    );
    let issued = token_records.last().unwrap();
    let claims = verify(&token, &s.jwks().await, ISSUER, AUDIENCE).unwrap();
    assert_eq!(issued.client_id, "svc");
    assert_eq!(issued.jti.as_deref(), Some(claims.jti.as_str()));
    assert_eq!(issued.scope.as_deref(), Some("api.read"));
    assert_eq!(issued.audience.as_deref(), Some(AUDIENCE));
    assert_eq!(token_records[0].client_id, "-");
    assert_eq!(token_records[1].client_id, "-", "no credentials: no client");
    assert!(issued.expires_at > s.clock.now().unix_timestamp() + 89 * 86_400);

    let everything = serde_json::to_string(&records).unwrap();
    let hash = token_service::clients::SecretHash::of(secret.as_bytes());
    for needle in [secret.as_str(), token.as_str(), hash.as_str(), "tks_wrong"] {
        assert!(!everything.contains(needle), "audit trail holds a secret");
    }
}

#[tokio::test]
async fn audit_query_filters_by_client_and_outcome() {
    let s = Stack::new().await;
    let (_, a) = s.client("a").await;
    let (_, b) = s.client("b").await;
    s.basic("a", &a, GRANT).await;
    s.basic("a", "x", GRANT).await;
    s.basic("b", &b, GRANT).await;
    let q = AuditQuery {
        client_id: Some("a".into()),
        outcome: Some("issued".into()),
        ..Default::default()
    };
    let found = s.embedded.store.query(&q).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].client_id, "a");
}

struct FailingAudit;

#[async_trait]
impl AuditLog for FailingAudit {
    async fn append(&self, _: &AuditRecord) -> Result<(), StoreError> {
        Err(StoreError::Backend(
            "disk I/O error at /var/secret/path".into(),
        ))
    }
    async fn query(&self, _: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn failures(
        &self,
        _: time::OffsetDateTime,
        _: time::OffsetDateTime,
    ) -> Result<Failures, StoreError> {
        Ok(Failures::default())
    }
}

struct FailingClients;

#[async_trait]
impl ClientReader for FailingClients {
    async fn get_client(&self, _: &str) -> Result<Option<Client>, StoreError> {
        Err(StoreError::Backend(
            "connection refused: internal-db:5432".into(),
        ))
    }
}

fn service(s: &Stack, clients: Arc<dyn ClientReader>, audit: Arc<dyn AuditLog>) -> axum::Router {
    let keys = KeyCache::new(
        s.embedded.store.clone(),
        s.clock.clone(),
        s.embedded.config.schedule,
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(600),
    );
    token_routes(Arc::new(TokenService::new(
        Arc::new(ServiceConfig::for_tests()),
        clients,
        audit,
        s.embedded.store.clone(),
        keys,
        s.clock.clone(),
    )))
}

async fn post(router: axum::Router, auth: &str, body: &str) -> stack::Reply {
    let s = Stack {
        router,
        ..Stack::new().await
    };
    s.token(&[("content-type", FORM), ("authorization", auth)], body)
        .await
}

#[tokio::test]
async fn failed_audit_write_means_503_and_no_token() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let router = service(&s, s.embedded.store.clone(), Arc::new(FailingAudit));
    let auth = basic_header("svc", &secret);
    for body in [GRANT, "grant_type=password"] {
        let r = post(router.clone(), &auth, body).await;
        r.assert_error(503, "temporarily_unavailable");
        assert!(r.header("retry-after").is_some());
        assert!(!r.text.contains("disk") && !r.text.contains("secret/path"));
    }
}

#[tokio::test]
async fn failing_client_store_means_503_without_internal_text() {
    let s = Stack::new().await;
    let router = service(&s, Arc::new(FailingClients), s.embedded.store.clone());
    let r = post(router, &basic_header("svc", "x"), GRANT).await;
    r.assert_error(503, "temporarily_unavailable");
    assert!(!r.text.contains("5432") && !r.text.contains("refused"));
    let outcomes: Vec<String> = s.audit().await.into_iter().map(|r| r.outcome).collect();
    assert!(outcomes.contains(&"temporarily_unavailable".to_owned()));
}

#[tokio::test]
async fn no_signing_key_means_503() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = token_service::shapes::embedded::Embedded::open(
        dir.path().join("nokey.db"),
        ServiceConfig::for_tests(),
        Arc::new(token_service::clock::SystemClock),
    )
    .unwrap();
    let (_, secret) = embedded
        .admin("t")
        .create_client(token_service::admin::NewClient {
            client_id: Some("svc".into()),
            name: "s".into(),
            scopes: vec!["a".into()],
            audiences: vec![AUDIENCE.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let r = post(
        embedded.router(),
        &basic_header("svc", secret.expose()),
        GRANT,
    )
    .await;
    r.assert_error(503, "temporarily_unavailable");
}
