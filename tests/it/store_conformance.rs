//! Store conformance: the same behaviour, test for test, from the SQLite adapter, from the
//! embedded shape's set (SQLite with the in-memory rate limits) and from the AWS adapters
//! (DynamoDB and Secrets Manager on a local moto server, see `support/moto.rs`).

use std::sync::Arc;

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use token_service::admin::{Admin, NewClient};
use token_service::audit::{AuditQuery, AuditRecord, NO_CLIENT};
use token_service::clients::{Client, ClientSecret, ClientStatus, StoredSecret};
use token_service::clock::{Clock, ManualClock};
use token_service::config::ServiceConfig;
use token_service::issue::{RequestContext, TokenService};
use token_service::key_cache::KeyCache;
use token_service::keys::{KeyEntry, KeySet, SIGNING_ALGS, jwk};
use token_service::oauth::OAuthError;
use token_service::oauth::request::RawRequest;
use token_service::refusal::Refused;
use token_service::store::rotation::KeySetSwap;
use token_service::store::{IndexedSecret, StoreError};

use crate::support::stores::Stores;

/// An instant with sub-millisecond digits, so round trips must keep full precision.
const T0: OffsetDateTime = datetime!(2026-03-04 05:06:07.123456789 UTC);

fn secret(id: &str, expires_at: Option<OffsetDateTime>) -> StoredSecret {
    StoredSecret {
        secret_id: id.to_owned(),
        hash: ClientSecret::generate().hash(),
        created_at: T0,
        expires_at,
    }
}

fn client(id: &str) -> Client {
    Client {
        client_id: id.to_owned(),
        name: format!("{id} service"),
        status: ClientStatus::Active,
        scopes: vec!["read".to_owned(), "write".to_owned()],
        default_scopes: vec!["read".to_owned()],
        audiences: vec![
            "https://api.test/".to_owned(),
            "https://other.test/".to_owned(),
        ],
        default_audience: "https://api.test/".to_owned(),
        token_ttl: Some(600),
        rate_limit: Some(120),
        secrets: vec![
            secret("s1", None),
            secret("s2", Some(T0 + Duration::days(7))),
        ],
        auth_method: Default::default(),
        keys: Vec::new(),
        claims: Default::default(),
        dpop_bound: false,
        created_at: T0,
        updated_at: T0 + Duration::seconds(1),
        version: 1,
    }
}

fn next_version(mut c: Client) -> Client {
    c.version += 1;
    c.updated_at += Duration::seconds(1);
    c
}

async fn create_get_list_round_trip(s: &Stores) {
    let full = client("alpha");
    let bare = Client {
        token_ttl: None,
        scopes: Vec::new(),
        default_scopes: Vec::new(),
        secrets: Vec::new(),
        ..client("Zulu.bare-1")
    };
    s.clients.create_client(&full).await.unwrap();
    s.clients.create_client(&bare).await.unwrap();
    assert_eq!(
        s.clients.get_client("alpha").await.unwrap(),
        Some(full.clone())
    );
    assert_eq!(
        s.clients.get_client("Zulu.bare-1").await.unwrap(),
        Some(bare.clone())
    );
    assert_eq!(s.clients.get_client("nobody").await.unwrap(), None);
    // Ordered by id, byte order: upper case before lower case.
    assert_eq!(s.clients.list_clients().await.unwrap(), vec![bare, full]);
}

async fn an_empty_client_id_is_simply_absent(s: &Stores) {
    s.audit
        .append(&record("a", T0, "r1", "issued"))
        .await
        .unwrap();
    assert_eq!(s.clients.get_client("").await.unwrap(), None);
    let err = s
        .clients
        .update_client(&next_version(client("")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let q = AuditQuery {
        client_id: Some(String::new()),
        ..AuditQuery::default()
    };
    assert_eq!(s.audit.query(&q).await.unwrap(), Vec::new());
}

async fn create_never_overwrites(s: &Stores) {
    let original = client("taken");
    s.clients.create_client(&original).await.unwrap();
    let intruder = Client {
        name: "impostor".to_owned(),
        secrets: vec![secret("evil", None)],
        ..client("taken")
    };
    let err = s.clients.create_client(&intruder).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert_eq!(s.clients.get_client("taken").await.unwrap(), Some(original));
}

async fn update_is_optimistically_locked(s: &Stores) {
    let v1 = client("locked");
    s.clients.create_client(&v1).await.unwrap();
    let mut v2 = next_version(v1.clone());
    v2.name = "renamed".to_owned();
    s.clients.update_client(&v2).await.unwrap();
    assert_eq!(
        s.clients.get_client("locked").await.unwrap(),
        Some(v2.clone())
    );

    // Written from the stale version 1 again: someone else's change would be lost.
    let stale = Client {
        name: "stale".to_owned(),
        ..next_version(v1.clone())
    };
    let err = s.clients.update_client(&stale).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // Skipping versions is a conflict too.
    let mut skipped = v2.clone();
    skipped.version = 5;
    let err = s.clients.update_client(&skipped).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        s.clients.get_client("locked").await.unwrap(),
        Some(v2.clone())
    );

    let missing = next_version(client("ghost"));
    let err = s.clients.update_client(&missing).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(s.clients.get_client("ghost").await.unwrap(), None);

    let v3 = next_version(v2);
    s.clients.update_client(&v3).await.unwrap();
    assert_eq!(
        s.clients
            .get_client("locked")
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
}

async fn concurrent_updates_from_one_version_have_one_winner(s: &Stores) {
    s.clients.create_client(&client("contended")).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 {
                s.clients.clone()
            } else {
                s.other_clients.clone()
            };
            let mut change = next_version(client("contended"));
            change.name = format!("writer {i}");
            tokio::spawn(async move { (change.name.clone(), store.update_client(&change).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (name, Ok(())) => winners.push(name),
            (_, Err(StoreError::Conflict(_))) => {}
            (_, Err(e)) => panic!("an update failed otherwise than by conflict: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = s.clients.get_client("contended").await.unwrap().unwrap();
    assert_eq!((stored.name, stored.version), (winners[0].clone(), 2));
}

async fn disabling_is_seen_at_once(s: &Stores) {
    let active = client("switch");
    s.clients.create_client(&active).await.unwrap();
    // The other handle reads first, as a token function would have before the change.
    assert!(
        s.other_clients
            .get_client("switch")
            .await
            .unwrap()
            .unwrap()
            .is_active()
    );
    let disabled = Client {
        status: ClientStatus::Disabled,
        ..next_version(active)
    };
    s.clients.update_client(&disabled).await.unwrap();
    let seen = s.other_clients.get_client("switch").await.unwrap().unwrap();
    assert_eq!(seen.status, ClientStatus::Disabled);
}

fn record(client_id: &str, at: OffsetDateTime, request_id: &str, outcome: &str) -> AuditRecord {
    AuditRecord {
        client_id: client_id.to_owned(),
        timestamp: at,
        request_id: request_id.to_owned(),
        outcome: outcome.to_owned(),
        jti: None,
        scope: None,
        audience: None,
        source_ip: Some("192.0.2.7".to_owned()),
        user_agent: None,
        actor: None,
        action: None,
        fields: Vec::new(),
        auth_method: None,
        dpop_jkt: None,
        expires_at: (at + Duration::days(90)).unix_timestamp(),
    }
}

fn ids(records: &[AuditRecord]) -> Vec<&str> {
    records.iter().map(|r| r.request_id.as_str()).collect()
}

/// Five records of three partitions, in whole milliseconds from `base`.
fn audit_fixture(base: OffsetDateTime) -> Vec<AuditRecord> {
    let at = |ms: i64| base + Duration::milliseconds(ms);
    let issued = AuditRecord {
        jti: Some("jti-1".to_owned()),
        scope: Some("read write".to_owned()),
        audience: Some("https://api.test/ https://other.test/".to_owned()),
        user_agent: Some("curl/8.0".to_owned()),
        auth_method: Some("client_secret_basic".to_owned()),
        ..record("a", at(0), "r1", "issued")
    };
    vec![
        issued,
        record(NO_CLIENT, at(500), "r2", "invalid_request"),
        record("a", at(1000), "r3", "invalid_scope"),
        record("b", at(1500), "r4", "issued"),
        record("a", at(2000), "r5", "issued"),
    ]
}

async fn audit_query_filters_newest_first(s: &Stores) {
    let base = datetime!(2026-03-04 05:06:07 UTC);
    let all = audit_fixture(base);
    for r in &all {
        s.audit.append(r).await.unwrap();
    }
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery::default();
        f(&mut q);
        q
    };
    let run = |q: AuditQuery| {
        let audit = s.audit.clone();
        async move { audit.query(&q).await.unwrap() }
    };
    let everything = run(q(|_| {})).await;
    assert_eq!(ids(&everything), ["r5", "r4", "r3", "r2", "r1"]);
    // Every field reads back as written.
    assert_eq!(everything[4], all[0]);

    let a = run(q(|q| q.client_id = Some("a".to_owned()))).await;
    assert_eq!(ids(&a), ["r5", "r3", "r1"]);
    let none = run(q(|q| q.client_id = Some(NO_CLIENT.to_owned()))).await;
    assert_eq!(ids(&none), ["r2"]);
    let issued = run(q(|q| q.outcome = Some("issued".to_owned()))).await;
    assert_eq!(ids(&issued), ["r5", "r4", "r1"]);
    let a_issued = run(q(|q| {
        q.client_id = Some("a".to_owned());
        q.outcome = Some("issued".to_owned());
    }))
    .await;
    assert_eq!(ids(&a_issued), ["r5", "r1"]);
    // The limit counts matching records, not records read.
    let two_issued = run(q(|q| {
        q.outcome = Some("issued".to_owned());
        q.limit = 2;
    }))
    .await;
    assert_eq!(ids(&two_issued), ["r5", "r4"]);
    let a_scope = run(q(|q| {
        q.client_id = Some("a".to_owned());
        q.outcome = Some("invalid_scope".to_owned());
        q.limit = 1;
    }))
    .await;
    assert_eq!(ids(&a_scope), ["r3"]);
    let two = run(q(|q| q.limit = 2)).await;
    assert_eq!(ids(&two), ["r5", "r4"]);
    let a_one = run(q(|q| {
        q.client_id = Some("a".to_owned());
        q.limit = 1;
    }))
    .await;
    assert_eq!(ids(&a_one), ["r5"]);

    // `since` is inclusive, `until` exclusive, with or without a client.
    let window = |client: Option<&str>, since: i64, until: i64| AuditQuery {
        client_id: client.map(str::to_owned),
        since: Some(base + Duration::milliseconds(since)),
        until: Some(base + Duration::milliseconds(until)),
        ..AuditQuery::default()
    };
    assert_eq!(ids(&run(window(None, 500, 1500)).await), ["r3", "r2"]);
    assert_eq!(ids(&run(window(Some("a"), 1000, 2000)).await), ["r3"]);
    assert_eq!(
        ids(&run(window(Some("a"), 1000, 1000)).await),
        Vec::<&str>::new()
    );
    assert_eq!(ids(&run(window(None, 2000, 0)).await), Vec::<&str>::new());
    let since = AuditQuery {
        since: Some(base + Duration::milliseconds(1500)),
        ..AuditQuery::default()
    };
    assert_eq!(ids(&run(since).await), ["r5", "r4"]);
    let until = AuditQuery {
        client_id: Some("a".to_owned()),
        until: Some(base + Duration::milliseconds(1000)),
        ..AuditQuery::default()
    };
    assert_eq!(ids(&run(until).await), ["r1"]);
}

/// The refusals of a time range under any id, through the failure index: no issued token, no
/// management action; `since` inclusive, `until` exclusive, across hours.
async fn audit_failures_are_read_by_time_under_any_id(s: &Stores) {
    let base = datetime!(2026-03-04 05:59:59 UTC);
    let at = |ms: i64| base + Duration::milliseconds(ms);
    let admin = AuditRecord {
        actor: Some("ops".to_owned()),
        action: Some("client.create".to_owned()),
        ..record("a", at(1100), "adm", "admin")
    };
    let records = [
        record("a", at(0), "f1", "invalid_client"),
        record(NO_CLIENT, at(500), "f2", "invalid_request"),
        record("a", at(600), "i1", "issued"),
        record("ghost", at(1000), "f3", "rate_limited"),
        admin,
        record("b", at(2000), "f4", "invalid_scope"),
        record("ghost", at(3 * 3_600_000), "f5", "invalid_client"),
    ];
    for r in &records {
        s.audit.append(r).await.unwrap();
    }
    let read = |since: OffsetDateTime, until: OffsetDateTime| {
        let audit = s.audit.clone();
        async move {
            let failures = audit.failures(since, until).await.unwrap();
            assert!(failures.queries >= 1 || since == until, "{failures:?}");
            let mut records = failures.records;
            records.sort_by(|a, b| a.request_id.cmp(&b.request_id));
            records
        }
    };
    let first = read(at(0), at(2000)).await;
    assert_eq!(ids(&first), ["f1", "f2", "f3"]);
    let f2 = &first[1];
    assert_eq!(
        (
            f2.client_id.as_str(),
            f2.outcome.as_str(),
            f2.source_ip.as_deref()
        ),
        (NO_CLIENT, "invalid_request", Some("192.0.2.7"))
    );
    assert_eq!(f2.timestamp, at(500));
    let later = read(at(500), at(3 * 3_600_000 + 1)).await;
    assert_eq!(ids(&later), ["f2", "f3", "f4", "f5"]);
    assert!(read(at(500), at(500)).await.is_empty());
}

async fn audit_keeps_admin_fields_and_precision(s: &Stores) {
    let admin = AuditRecord {
        actor: Some("ops@example.test".to_owned()),
        action: Some("secret.add".to_owned()),
        fields: vec!["secrets".to_owned(), "status".to_owned()],
        auth_method: None,
        source_ip: None,
        ..record("c", T0, "adm-1", "admin")
    };
    s.audit.append(&admin).await.unwrap();
    let found = s
        .audit
        .query(&AuditQuery {
            client_id: Some("c".to_owned()),
            outcome: Some("admin".to_owned()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(found, vec![admin]);
}

async fn key_set_is_empty_at_start_and_rotations_round_trip(s: &Stores) {
    assert_eq!(s.keys.load_key_set().await.unwrap(), KeySet::default());
    let clock = Arc::new(ManualClock::new(T0));
    let schedule = ServiceConfig::for_tests().schedule;
    let first = s.rotate_keys(schedule, clock.clone()).await;
    assert_eq!(first.keys.len(), 1);
    assert_eq!(s.keys.load_key_set().await.unwrap(), first);
    clock.advance(Duration::minutes(1));
    let second = s.rotate_keys(schedule, clock.clone()).await;
    assert_eq!(second.keys.len(), 2);
    assert_eq!(second.keys[0], first.keys[0]);
    assert_eq!(s.keys.load_key_set().await.unwrap(), second);
    let mut published = s.public_keys.public_keys().await.unwrap();
    published.sort_by(|a, b| a.kid.cmp(&b.kid));
    let mut expected = second.public_records().unwrap();
    expected.sort_by(|a, b| a.kid.cmp(&b.kid));
    assert_eq!(published, expected, "the public keys are the set's");
}

async fn public_keys_replace_adds_and_removes(s: &Stores) {
    assert_eq!(s.public_keys.public_keys().await.unwrap(), Vec::new());
    // One key of each algorithm: every JWK shape is stored and read back as it was.
    let set = KeySet {
        keys: SIGNING_ALGS
            .into_iter()
            .zip(0..)
            .map(|(alg, i)| KeyEntry::generate(alg, T0, T0 + Duration::hours(i)).unwrap())
            .collect(),
        ..KeySet::default()
    };
    let mut records = set.public_records().unwrap();
    records.sort_by(|a, b| a.kid.cmp(&b.kid));
    s.public_keys
        .replace_public_keys(&records[..2])
        .await
        .unwrap();
    assert_eq!(s.public_keys.public_keys().await.unwrap(), records[..2]);
    s.public_keys
        .replace_public_keys(&records[1..])
        .await
        .unwrap();
    assert_eq!(s.public_keys.public_keys().await.unwrap(), records[1..]);
    s.public_keys.replace_public_keys(&[]).await.unwrap();
    assert_eq!(s.public_keys.public_keys().await.unwrap(), Vec::new());
}

fn admin_over(s: &Stores, clock: Arc<ManualClock>) -> Admin {
    s.admin(&ServiceConfig::for_tests(), clock, "conformance")
}

async fn the_secret_index_follows_every_client_write(s: &Stores) {
    let clock = Arc::new(ManualClock::new(T0));
    let admin = admin_over(s, clock.clone());
    let at = |client: &str, secret: &StoredSecret| {
        Some(IndexedSecret {
            client_id: client.to_owned(),
            secret_id: secret.secret_id.clone(),
        })
    };
    let spec = |id: &str| NewClient {
        client_id: Some(id.to_owned()),
        name: id.to_owned(),
        scopes: vec!["a".to_owned()],
        audiences: vec!["https://api.test/".to_owned()],
        ..NewClient::default()
    };
    let (created, first) = admin.create_client(spec("billing")).await.unwrap();
    assert_eq!(
        s.secrets.find_secret(&first.hash()).await.unwrap(),
        at("billing", &created.secrets[0])
    );
    let unknown = ClientSecret::generate().hash();
    assert_eq!(s.secrets.find_secret(&unknown).await.unwrap(), None);

    clock.advance(Duration::minutes(1));
    let (_, added_stored, added) = admin.add_secret("billing", None).await.unwrap();
    assert_eq!(
        s.secrets.find_secret(&added.hash()).await.unwrap(),
        at("billing", &added_stored)
    );
    // A rotation with a grace period keeps the old secrets (and their entries) until then.
    clock.advance(Duration::minutes(1));
    let (_, graced_stored, graced) = admin
        .rotate_secret("billing", Duration::hours(1))
        .await
        .unwrap();
    assert!(
        s.secrets
            .find_secret(&first.hash())
            .await
            .unwrap()
            .is_some()
    );
    // One without drops them at once, entries too.
    clock.advance(Duration::minutes(1));
    let (_, rotated_stored, rotated) = admin
        .rotate_secret("billing", Duration::ZERO)
        .await
        .unwrap();
    for gone in [&first, &added, &graced] {
        assert_eq!(s.secrets.find_secret(&gone.hash()).await.unwrap(), None);
    }
    assert_eq!(
        s.secrets.find_secret(&rotated.hash()).await.unwrap(),
        at("billing", &rotated_stored)
    );
    assert_ne!(graced_stored.secret_id, rotated_stored.secret_id);

    let (other, other_secret) = admin.create_client(spec("other")).await.unwrap();
    admin
        .revoke_secret("billing", &rotated_stored.secret_id)
        .await
        .unwrap();
    assert_eq!(s.secrets.find_secret(&rotated.hash()).await.unwrap(), None);
    assert_eq!(
        s.secrets.find_secret(&other_secret.hash()).await.unwrap(),
        at("other", &other.secrets[0])
    );
    // A failed (stale) update changes no entry.
    let stale = next_version(admin.client("other").await.unwrap());
    let mut newer = stale.clone();
    newer.secrets.clear();
    s.clients.update_client(&stale).await.unwrap();
    assert!(matches!(
        s.clients.update_client(&newer).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        s.secrets
            .find_secret(&other_secret.hash())
            .await
            .unwrap()
            .is_some()
    );

    admin.delete_client("other").await.unwrap();
    assert_eq!(
        s.secrets.find_secret(&other_secret.hash()).await.unwrap(),
        None
    );

    // Reindexing names exactly the secrets the records hold, and changes nothing else.
    let (_, third) = admin.create_client(spec("third")).await.unwrap();
    assert_eq!(admin.reindex_secrets().await.unwrap(), 1);
    assert!(
        s.secrets
            .find_secret(&third.hash())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(s.secrets.find_secret(&rotated.hash()).await.unwrap(), None);
    assert_eq!(admin.reindex_secrets().await.unwrap(), 1);
}

async fn admin_works_over_the_backend(s: &Stores) {
    let clock = Arc::new(ManualClock::new(T0));
    let config = Arc::new(ServiceConfig::for_tests());
    let admin = Admin {
        clients: s.clients.clone(),
        audit: s.audit.clone(),
        rotation: Arc::new(KeySetSwap::new(
            s.keys.clone(),
            config.signing_alg,
            config.schedule,
            clock.clone(),
        )),
        public_keys: s.public_keys.clone(),
        config: config.clone(),
        clock: clock.clone(),
        actor: "conformance".to_owned(),
    };
    let (created, first_secret) = admin
        .create_client(NewClient {
            client_id: Some("billing".to_owned()),
            name: "Billing".to_owned(),
            scopes: vec!["invoices:read".to_owned()],
            audiences: vec!["https://billing.test/".to_owned()],
            ..NewClient::default()
        })
        .await
        .unwrap();
    assert_eq!(admin.client("billing").await.unwrap(), created);
    assert!(created.secrets[0].hash.matches(&first_secret.hash()));

    clock.advance(Duration::minutes(1));
    let (_, added, _) = admin
        .add_secret("billing", Some(T0 + Duration::days(30)))
        .await
        .unwrap();
    // Each action a minute apart: audit order within one millisecond is backend-specific.
    clock.advance(Duration::minutes(1));
    let revoked = admin
        .revoke_secret("billing", &created.secrets[0].secret_id)
        .await
        .unwrap();
    let stored = s
        .other_clients
        .get_client("billing")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, revoked);
    assert_eq!(stored.secrets, vec![added]);
    assert_eq!(stored.version, 3);

    clock.advance(Duration::minutes(1));
    let first = s.rotate_keys(config.schedule, clock.clone()).await;
    clock.advance(Duration::minutes(1));
    let second = s.rotate_keys(config.schedule, clock.clone()).await;
    assert_eq!(s.keys.load_key_set().await.unwrap(), second);
    let new_kid = &second.keys.last().unwrap().kid;
    let records = s.public_keys.public_keys().await.unwrap();
    let published = jwk::jwks(&records, &config.schedule, clock.now());
    let kids: Vec<_> = published
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert!(
        kids.contains(new_kid),
        "the new key is published before it signs: {kids:?}"
    );
    assert!(
        kids.contains(&first.keys[0].kid),
        "the signing key stays published: {kids:?}"
    );
    let status = admin.key_status().await.unwrap();
    let signing: Vec<_> = status
        .iter()
        .filter(|k| k.signing)
        .map(|k| &k.kid)
        .collect();
    assert_eq!(signing, [&first.keys[0].kid]);

    let trail = s
        .audit
        .query(&AuditQuery {
            outcome: Some("admin".to_owned()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = trail.iter().filter_map(|r| r.action.as_deref()).collect();
    assert_eq!(actions, ["secret.revoke", "secret.add", "client.create"]);
    assert!(
        trail
            .iter()
            .all(|r| r.actor.as_deref() == Some("conformance"))
    );
}

async fn rate_limit_counters_are_exact_under_concurrency(s: &Stores) {
    let expires = T0.unix_timestamp() + 120;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let limits = s.limits.clone();
        tasks.push(tokio::spawn(async move {
            limits.acquire("issue#svc#0", 10, expires).await.unwrap()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += usize::from(t.await.unwrap());
    }
    assert_eq!(granted, 10, "exactly the limit is granted");
    assert_eq!(s.limits.count("issue#svc#0").await.unwrap(), 10);
    assert_eq!(s.limits.count("absent").await.unwrap(), 0);
    s.limits
        .increment("fail-ip#1.2.3.4#0", expires)
        .await
        .unwrap();
    s.limits
        .increment("fail-ip#1.2.3.4#0", expires)
        .await
        .unwrap();
    assert_eq!(s.limits.count("fail-ip#1.2.3.4#0").await.unwrap(), 2);
    // A counter at its limit stays there.
    assert!(!s.limits.acquire("issue#svc#0", 10, expires).await.unwrap());
    assert!(s.limits.acquire("issue#svc#0", 11, expires).await.unwrap());
}

/// The counters of one source and window (its refusals, its failures, those of each client id
/// from it) are counted apart, exactly under concurrency, and read in the order asked.
async fn concurrent_counters_of_one_source_are_exact_each(s: &Stores) {
    let expires = T0.unix_timestamp() + 120;
    let src = "198.51.100.4";
    let limits = [
        (format!("refused#{src}#60"), 7),
        (format!("fail-ip#{src}#60"), 9),
        (format!("fail#a#{src}#60"), 4),
        (format!("fail#b#c#{src}#60"), 5),
        (format!("fail#b#{src}#60"), 3),
    ];
    let mut tasks = Vec::new();
    for round in 0..12 {
        for (i, (key, limit)) in limits.iter().cloned().enumerate() {
            let counters = s.limits.clone();
            tasks.push(tokio::spawn(async move {
                let granted = counters.acquire(&key, limit, expires).await.unwrap();
                (i, round, granted)
            }));
        }
    }
    let mut granted = [0u64; 5];
    for t in tasks {
        let (i, _, ok) = t.await.unwrap();
        granted[i] += u64::from(ok);
    }
    assert_eq!(granted, [7, 9, 4, 5, 3], "exactly each limit is granted");
    let mut keys: Vec<String> = limits.iter().rev().map(|(k, _)| k.clone()).collect();
    keys.extend([
        format!("fail#a#{src}#0"),
        format!("refused#{src}#120"),
        "fail-ip#198.51.100.5#60".to_owned(),
        format!("fail#a#{src}#60"),
        String::new(),
    ]);
    assert_eq!(
        s.limits.counts(&keys).await.unwrap(),
        [3, 5, 4, 9, 7, 0, 0, 0, 4, 0]
    );
    s.limits
        .increment(&format!("fail#b#{src}#60"), expires)
        .await
        .unwrap();
    assert_eq!(
        s.limits.count(&format!("fail#b#{src}#60")).await.unwrap(),
        4
    );
    assert_eq!(
        s.limits.count(&format!("fail#b#c#{src}#60")).await.unwrap(),
        5
    );
    assert_eq!(
        s.limits.count(&format!("refused#{src}#60")).await.unwrap(),
        7
    );
}

async fn delete_is_optimistically_locked(s: &Stores) {
    let c = client("gone");
    s.clients.create_client(&c).await.unwrap();
    let err = s.clients.delete_client("gone", 2).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    s.clients.delete_client("gone", 1).await.unwrap();
    assert_eq!(s.other_clients.get_client("gone").await.unwrap(), None);
    let err = s.clients.delete_client("gone", 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

/// The token service over the backend's ports, with a manual clock.
fn token_service(s: &Stores, clock: Arc<ManualClock>) -> TokenService {
    let config = Arc::new(ServiceConfig::for_tests());
    let keys = KeyCache::new(
        s.keys.clone(),
        clock.clone(),
        config.schedule,
        std::time::Duration::from_secs(300),
        std::time::Duration::from_secs(3600),
    );
    TokenService::new(
        config,
        s.clients.clone(),
        s.audit.clone(),
        s.limits.clone(),
        keys,
        clock,
    )
}

fn admin(s: &Stores, clock: Arc<ManualClock>) -> Admin {
    Admin {
        clients: s.clients.clone(),
        audit: s.audit.clone(),
        rotation: Arc::new(KeySetSwap::new(
            s.keys.clone(),
            ServiceConfig::for_tests().signing_alg,
            ServiceConfig::for_tests().schedule,
            clock.clone(),
        )),
        public_keys: s.public_keys.clone(),
        config: Arc::new(ServiceConfig::for_tests()),
        clock,
        actor: "conformance".to_owned(),
    }
}

async fn ask(service: &TokenService, id: &str, secret: &str) -> Result<(), Refused> {
    ask_from(service, "192.0.2.1", id, secret).await
}

async fn new_client(admin: &Admin, id: &str, rate_limit: Option<u32>) -> String {
    admin
        .create_client(NewClient {
            client_id: Some(id.to_owned()),
            name: id.to_owned(),
            scopes: vec!["read".to_owned()],
            audiences: vec!["https://api.test/".to_owned()],
            rate_limit,
            ..NewClient::default()
        })
        .await
        .unwrap()
        .1
        .expose()
        .to_owned()
}

async fn secret_rotation_honours_the_grace_period(s: &Stores) {
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let admin = admin(s, clock.clone());
    s.rotate_keys(ServiceConfig::for_tests().schedule, clock.clone())
        .await;
    let service = token_service(s, clock.clone());
    let old = new_client(&admin, "svc", None).await;
    let (_, _, new) = admin
        .rotate_secret("svc", Duration::hours(24))
        .await
        .unwrap();
    assert_eq!(ask(&service, "svc", &old).await, Ok(()));
    assert_eq!(ask(&service, "svc", new.expose()).await, Ok(()));
    clock.advance(Duration::hours(24));
    assert_eq!(
        ask(&service, "svc", &old).await,
        Err(Refused::OAuth(OAuthError::InvalidClient))
    );
    assert_eq!(ask(&service, "svc", new.expose()).await, Ok(()));
    // Grace 0 cuts the current secret off at once; the bound on live secrets holds.
    let (client, _, newest) = admin.rotate_secret("svc", Duration::ZERO).await.unwrap();
    assert_eq!(client.secrets.len(), 1);
    assert_eq!(
        ask(&service, "svc", new.expose()).await,
        Err(Refused::OAuth(OAuthError::InvalidClient))
    );
    assert_eq!(ask(&service, "svc", newest.expose()).await, Ok(()));
    admin.add_secret("svc", None).await.unwrap();
    admin.add_secret("svc", None).await.unwrap();
    assert!(
        admin.add_secret("svc", None).await.is_err(),
        "at most 3 live secrets"
    );
    // Disabling acts on the very next request.
    admin
        .set_status("svc", ClientStatus::Disabled)
        .await
        .unwrap();
    assert_eq!(
        ask(&service, "svc", newest.expose()).await,
        Err(Refused::OAuth(OAuthError::InvalidClient))
    );
}

/// A manual clock at the start of the next minute, so that a test's requests share one
/// rate-limit window.
fn next_minute_clock() -> Arc<ManualClock> {
    let now = OffsetDateTime::now_utc();
    let floor = now
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    Arc::new(ManualClock::new(floor + Duration::minutes(1)))
}

async fn concurrent_token_requests_never_exceed_the_issuance_limit(s: &Stores) {
    let clock = next_minute_clock();
    let admin = admin(s, clock.clone());
    s.rotate_keys(ServiceConfig::for_tests().schedule, clock.clone())
        .await;
    let secret = Arc::new(new_client(&admin, "busy", Some(10)).await);
    let service = Arc::new(token_service(s, clock));
    let mut tasks = Vec::new();
    for _ in 0..s.racers {
        let (service, secret) = (service.clone(), secret.clone());
        tasks.push(tokio::spawn(
            async move { ask(&service, "busy", &secret).await },
        ));
    }
    let mut issued = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => issued += 1,
            Err(Refused::RateLimited { retry_after }) => {
                assert!((1..=60).contains(&retry_after));
                limited += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((issued, limited), (10, s.racers - 10));
    let records = s
        .audit
        .query(&AuditQuery {
            client_id: Some("busy".to_owned()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let count = |o: &str| records.iter().filter(|r| r.outcome == o).count();
    assert_eq!(
        (count("issued"), count("rate_limited")),
        (10, s.racers - 10),
        "one record each"
    );
}

async fn ask_from(service: &TokenService, ip: &str, id: &str, secret: &str) -> Result<(), Refused> {
    use base64::Engine as _;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let raw = RawRequest {
        content_type: Some("application/x-www-form-urlencoded"),
        authorization: Some(&auth),
        query: None,
        body: b"grant_type=client_credentials",
        dpop: None,
    };
    let meta = RequestContext {
        request_id: token_service::encoding::random_b64url(9),
        source_ip: Some(ip.to_owned()),
        user_agent: Some("conformance".to_owned()),
    };
    service.handle(raw, &meta).await.map(|_| ())
}

async fn failed_logins_are_limited_per_address_and_every_request_is_audited_once(s: &Stores) {
    let clock = next_minute_clock();
    let admin = admin(s, clock.clone());
    s.rotate_keys(ServiceConfig::for_tests().schedule, clock.clone())
        .await;
    let secret = new_client(&admin, "victim", None).await;
    let service = token_service(s, clock);
    let limit = ServiceConfig::for_tests().limits.fail_per_client_ip;
    let attacker = "203.0.113.66";
    let mut guesses = Vec::new();
    for _ in 0..limit {
        let guess = ClientSecret::generate().expose().to_owned();
        assert_eq!(
            ask_from(&service, attacker, "victim", &guess).await,
            Err(Refused::OAuth(OAuthError::InvalidClient))
        );
        guesses.push(guess);
    }
    // Over the limit, the attacker's address is refused before any secret is checked...
    assert!(matches!(
        ask_from(&service, attacker, "victim", &secret).await,
        Err(Refused::RateLimited {
            retry_after: 1..=60
        })
    ));
    // ...while the client, from its own address, is not affected.
    assert_eq!(
        ask_from(&service, "198.51.100.7", "victim", &secret).await,
        Ok(())
    );

    let records = s
        .audit
        .query(&AuditQuery {
            client_id: Some("victim".to_owned()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let requests: Vec<_> = records.iter().filter(|r| r.action.is_none()).collect();
    assert_eq!(requests.len(), limit as usize + 2, "one record per request");
    let count = |o: &str| requests.iter().filter(|r| r.outcome == o).count();
    assert_eq!(count("invalid_client"), limit as usize);
    assert_eq!(count("rate_limited"), 1);
    assert_eq!(count("issued"), 1);
    let stored = serde_json::to_string(&records).unwrap();
    for needle in guesses.iter().chain([&secret]) {
        assert!(
            !stored.contains(needle.as_str()),
            "an audit record holds a secret"
        );
    }
}

/// Wrong secrets sent in parallel: the failure limit is checked and counted in one atomic step,
/// so no more of them reach `invalid_client` than the limit allows, however they interleave.
async fn concurrent_wrong_secrets_never_exceed_the_failure_limit(s: &Stores) {
    let clock = next_minute_clock();
    let admin = admin(s, clock.clone());
    s.rotate_keys(ServiceConfig::for_tests().schedule, clock.clone())
        .await;
    new_client(&admin, "victim", None).await;
    let service = Arc::new(token_service(s, clock));
    let limit = ServiceConfig::for_tests().limits.fail_per_client_ip as usize;
    let mut tasks = Vec::new();
    for _ in 0..s.racers {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let guess = ClientSecret::generate();
            ask_from(&service, "203.0.113.66", "victim", guess.expose()).await
        }));
    }
    let (mut rejected, mut limited) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Err(Refused::OAuth(OAuthError::InvalidClient)) => rejected += 1,
            Err(Refused::RateLimited { retry_after }) => {
                assert!((1..=60).contains(&retry_after));
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((rejected, limited), (limit, s.racers - limit));
    let records = s
        .audit
        .query(&AuditQuery {
            client_id: Some("victim".to_owned()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let count = |o: &str| records.iter().filter(|r| r.outcome == o).count();
    assert_eq!(
        (count("invalid_client"), count("rate_limited")),
        (limit, s.racers - limit),
        "one record each"
    );
}

/// The in-memory counters' clock: it stands at [`T0`], the earliest instant the tests count
/// at, so no counter expires during a test (expiry is tested in `store::memory`).
fn counters_clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(T0))
}

/// Runs each behaviour above once per backend: `sqlite::<name>`, `embedded::<name>` and
/// `aws::<name>`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&crate::support::stores::sqlite().await).await;
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let clock = super::counters_clock();
                    super::$name(&crate::support::stores::embedded(clock).await).await;
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    // The concurrency tests send many requests at once: on an emulator of their
                    // own, so that other tests' calls do not queue in front of theirs.
                    let stores = match stringify!($name).starts_with("concurrent_") {
                        true => crate::support::stores::aws_alone().await,
                        false => crate::support::stores::aws().await,
                    };
                    super::$name(&stores).await;
                }
            )*
        }
    };
}

conformance!(
    create_get_list_round_trip,
    an_empty_client_id_is_simply_absent,
    create_never_overwrites,
    update_is_optimistically_locked,
    concurrent_updates_from_one_version_have_one_winner,
    disabling_is_seen_at_once,
    audit_query_filters_newest_first,
    audit_failures_are_read_by_time_under_any_id,
    audit_keeps_admin_fields_and_precision,
    key_set_is_empty_at_start_and_rotations_round_trip,
    public_keys_replace_adds_and_removes,
    admin_works_over_the_backend,
    the_secret_index_follows_every_client_write,
    rate_limit_counters_are_exact_under_concurrency,
    concurrent_counters_of_one_source_are_exact_each,
    delete_is_optimistically_locked,
    secret_rotation_honours_the_grace_period,
    concurrent_token_requests_never_exceed_the_issuance_limit,
    failed_logins_are_limited_per_address_and_every_request_is_audited_once,
    concurrent_wrong_secrets_never_exceed_the_failure_limit,
);
