//! The flow's decisions against in-memory fakes of the store ports: what is answered, and what
//! the audit trail holds afterwards.

use std::sync::Mutex;

use time::macros::datetime;

use super::*;
use crate::clients::{ClientAuthMethod, ClientSecret, ClientStatus, StoredSecret};
use crate::clock::ManualClock;
use crate::keys::KeySet;
use crate::store::fakes::{Clients, Counters, Keys, Trail};

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00:15 UTC);

struct Fixture {
    service: TokenService,
    trail: Arc<Trail>,
    secret: ClientSecret,
}

fn client(secret: &ClientSecret, rate_limit: Option<u32>) -> Client {
    Client {
        client_id: "svc".to_owned(),
        name: "svc".to_owned(),
        status: ClientStatus::Active,
        scopes: vec!["read".to_owned()],
        default_scopes: vec!["read".to_owned()],
        audiences: vec!["https://api.test/".to_owned()],
        default_audience: "https://api.test/".to_owned(),
        token_ttl: None,
        rate_limit,
        secrets: vec![StoredSecret {
            secret_id: "s1".to_owned(),
            hash: secret.hash(),
            created_at: NOW,
            expires_at: None,
        }],
        auth_method: ClientAuthMethod::ClientSecret,
        keys: Vec::new(),
        claims: Default::default(),
        dpop_bound: false,
        created_at: NOW,
        updated_at: NOW,
        version: 1,
    }
}

/// A service with one client `svc` (allowed `rate_limit` tokens a minute) and a refusal
/// budget of `budget` a source.
fn fixture(rate_limit: Option<u32>, budget: u32) -> Fixture {
    let mut config = ServiceConfig::for_tests();
    config.limits.refusal_budget = budget;
    let secret = ClientSecret::generate();
    let clients = Clients::default();
    let svc = client(&secret, rate_limit);
    clients.0.lock().unwrap().insert(svc.client_id.clone(), svc);
    let clock = Arc::new(ManualClock::new(NOW));
    let set = KeySet::default().rotated(NOW, &config.schedule).unwrap();
    let (ttl, stale) = (config.key_cache, config.key_max_stale);
    let keys = Arc::new(Keys(Mutex::new(set)));
    let keys = KeyCache::new(keys, clock.clone(), config.schedule, ttl, stale);
    let trail = Arc::new(Trail::default());
    let service = TokenService::new(
        Arc::new(config),
        Arc::new(clients),
        trail.clone(),
        Arc::new(Counters::default()),
        keys,
        clock,
    );
    Fixture {
        service,
        trail,
        secret,
    }
}

fn meta() -> RequestContext {
    RequestContext {
        request_id: "r1".to_owned(),
        source_ip: Some("192.0.2.7".to_owned()),
        user_agent: None,
    }
}

impl Fixture {
    /// A client_secret_post request of `client_id` with `secret`.
    async fn ask(&self, client_id: &str, secret: &str) -> Result<TokenResponse, Refused> {
        let body =
            format!("grant_type=client_credentials&client_id={client_id}&client_secret={secret}");
        let raw = RawRequest {
            content_type: Some("application/x-www-form-urlencoded"),
            body: body.as_bytes(),
            ..RawRequest::default()
        };
        self.service.handle(raw, &meta()).await
    }

    async fn ask_as_svc(&self) -> Result<TokenResponse, Refused> {
        self.ask("svc", self.secret.expose()).await
    }

    fn outcomes(&self) -> Vec<(String, String)> {
        let records = self.trail.records.lock().unwrap();
        let pairs = records
            .iter()
            .map(|r| (r.client_id.clone(), r.outcome.clone()));
        pairs.collect()
    }
}

fn pair(client_id: &str, outcome: &str) -> (String, String) {
    (client_id.to_owned(), outcome.to_owned())
}

#[tokio::test]
async fn a_known_client_with_its_secret_gets_a_token_and_one_issued_record() {
    let f = fixture(None, 100);
    let token = f.ask_as_svc().await.unwrap();
    assert_eq!((token.token_type, token.scope.as_str()), ("Bearer", "read"));
    assert_eq!(f.outcomes(), [pair("svc", "issued")]);
    let records = f.trail.records.lock().unwrap();
    assert_eq!(
        records[0].auth_method.as_deref(),
        Some("client_secret_post")
    );
}

#[tokio::test]
async fn unknown_client_is_invalid_client_with_one_audit_record() {
    let f = fixture(None, 100);
    let answer = f.ask("nobody", f.secret.expose()).await;
    assert_eq!(answer, Err(Refused::OAuth(OAuthError::InvalidClient)));
    assert_eq!(f.outcomes(), [pair("nobody", "invalid_client")]);
}

#[tokio::test]
async fn a_client_over_its_issue_limit_is_rate_limited_and_audited_so() {
    let f = fixture(Some(1), 100);
    f.ask_as_svc().await.unwrap();
    let answer = f.ask_as_svc().await;
    // 12:00:15 -> the window ends in 45 s.
    assert_eq!(answer, Err(Refused::RateLimited { retry_after: 45 }));
    assert_eq!(
        f.outcomes(),
        [pair("svc", "issued"), pair("svc", "rate_limited")]
    );
}

#[tokio::test]
async fn a_failing_audit_write_answers_temporarily_unavailable_and_no_token() {
    let f = fixture(None, 100);
    *f.trail.failing.lock().unwrap() = true;
    let answer = f.ask_as_svc().await;
    let unavailable = Refused::OAuth(OAuthError::TemporarilyUnavailable);
    assert_eq!(answer, Err(unavailable.clone()));
    assert!(f.outcomes().is_empty());
    // A refusal whose record cannot be written is answered the same way.
    assert_eq!(f.ask("nobody", "x").await, Err(unavailable));
}

#[tokio::test]
async fn past_the_refusal_budget_the_cut_off_is_audited_once_then_skipped() {
    let f = fixture(None, 2);
    for _ in 0..2 {
        let answer = f.ask("svc", "wrong").await;
        assert_eq!(answer, Err(Refused::OAuth(OAuthError::InvalidClient)));
    }
    for _ in 0..4 {
        let answer = f.ask("svc", "wrong").await;
        assert_eq!(answer, Err(Refused::RateLimited { retry_after: 45 }));
    }
    // Even the right secret waits for the window's end: the source is cut off.
    assert!(matches!(
        f.ask_as_svc().await,
        Err(Refused::RateLimited { .. })
    ));
    assert_eq!(
        f.outcomes(),
        [
            pair("svc", "invalid_client"),
            pair("svc", "invalid_client"),
            pair("-", "rate_limited"),
        ]
    );
}

#[tokio::test]
async fn a_request_the_front_turned_away_is_recorded_and_its_own_answer_stands() {
    let f = fixture(None, 1);
    let error = OAuthError::InvalidRequest("the token endpoint accepts POST only");
    assert_eq!(f.service.reject(error.clone(), &meta()).await, None);
    // The budget is spent: the next one is the audited cut-off, answered 429.
    let answer = f.service.reject(error, &meta()).await;
    assert_eq!(answer, Some(Refused::RateLimited { retry_after: 45 }));
    assert_eq!(
        f.outcomes(),
        [pair("-", "invalid_request"), pair("-", "rate_limited")]
    );
}
