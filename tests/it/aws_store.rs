//! AWS-only behaviour of the store adapters, on moto: the resources `create_resources` makes,
//! the item layout other tools rely on (TTL, sort key), and error texts free of item contents.

use aws_sdk_dynamodb::types::{
    AttributeValue, BillingMode, KeyType, PointInTimeRecoveryStatus, TimeToLiveStatus,
};
use time::macros::datetime;
use token_service::audit::{AuditQuery, AuditRecord};
use token_service::clients::{Client, ClientSecret, ClientStatus, StoredSecret};
use token_service::keys::{KeyEntry, KeySet};
use token_service::store::aws::{
    AwsResources, DynamoDbAuditLog, DynamoDbClientStore, SecretsManagerKeyStore, create_resources,
};
use token_service::store::{AuditLog, ClientAdmin, ClientReader, KeyStore, StoreError};

use crate::support::{moto, stores::random_resources};

fn client_with_secret(id: &str) -> (Client, String) {
    let hash = ClientSecret::generate().hash();
    let text = hash.as_str().to_owned();
    let at = datetime!(2026-01-01 00:00 UTC);
    let client = Client {
        client_id: id.to_owned(),
        name: "n".to_owned(),
        status: ClientStatus::Active,
        scopes: Vec::new(),
        default_scopes: Vec::new(),
        audiences: vec!["https://api.test/".to_owned()],
        default_audience: "https://api.test/".to_owned(),
        token_ttl: None,
        rate_limit: None,
        secrets: vec![StoredSecret {
            secret_id: "s".to_owned(),
            hash,
            created_at: at,
            expires_at: None,
        }],
        auth_method: Default::default(),
        keys: Vec::new(),
        claims: Default::default(),
        dpop_bound: false,
        created_at: at,
        updated_at: at,
        version: 1,
    };
    (client, text)
}

/// Fresh resources in the emulator, its DynamoDB client, and the audit log over their table.
async fn audit_table() -> (aws_sdk_dynamodb::Client, AwsResources, DynamoDbAuditLog) {
    let sdk = moto::sdk_config().await;
    let names = random_resources();
    create_resources(&sdk, &names).await.unwrap();
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let log = DynamoDbAuditLog::new(db.clone(), &names.audit_table);
    (db, names, log)
}

fn backend_text(err: StoreError) -> String {
    match err {
        StoreError::Backend(text) => text,
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_resources_makes_the_template_resources_and_is_idempotent() {
    let sdk = moto::sdk_config().await;
    let names = random_resources();
    create_resources(&sdk, &names).await.unwrap();
    create_resources(&sdk, &names).await.unwrap();

    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let expected = [
        (&names.clients_table, vec![("client_id", KeyType::Hash)]),
        (
            &names.audit_table,
            vec![("client_id", KeyType::Hash), ("sk", KeyType::Range)],
        ),
        (&names.public_keys_table, vec![("kid", KeyType::Hash)]),
    ];
    for (table, keys) in expected {
        let described = db.describe_table().table_name(table).send().await.unwrap();
        let t = described.table().unwrap();
        let schema: Vec<_> = t
            .key_schema()
            .iter()
            .map(|k| (k.attribute_name(), k.key_type().clone()))
            .collect();
        assert_eq!(schema, keys, "{table}");
        let billing = t.billing_mode_summary().and_then(|b| b.billing_mode());
        assert_eq!(billing, Some(&BillingMode::PayPerRequest), "{table}");
        let backups = db
            .describe_continuous_backups()
            .table_name(table)
            .send()
            .await
            .unwrap();
        let pitr = backups
            .continuous_backups_description()
            .and_then(|d| d.point_in_time_recovery_description())
            .and_then(|p| p.point_in_time_recovery_status());
        assert_eq!(pitr, Some(&PointInTimeRecoveryStatus::Enabled), "{table}");
    }
    let ttl = db
        .describe_time_to_live()
        .table_name(&names.audit_table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(ttl.attribute_name(), Some("expires_at"));

    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = sm
        .describe_secret()
        .secret_id(&names.key_secret_id)
        .send()
        .await
        .unwrap();
    assert_eq!(secret.name(), Some(names.key_secret_id.as_str()));
}

#[tokio::test]
async fn audit_items_carry_the_sort_key_and_ttl_attribute() {
    let (db, names, log) = audit_table().await;
    let at = datetime!(2026-05-06 07:08:09.0105 UTC);
    let record = AuditRecord {
        client_id: "c".to_owned(),
        timestamp: at,
        request_id: "req-1".to_owned(),
        outcome: "issued".to_owned(),
        jti: None,
        scope: None,
        audience: None,
        source_ip: None,
        user_agent: None,
        actor: None,
        action: None,
        fields: Vec::new(),
        auth_method: None,
        dpop_jkt: None,
        expires_at: 1_790_000_000,
    };
    log.append(&record).await.unwrap();
    let sk = "2026-05-06T07:08:09.010Z#req-1";
    let item = db
        .get_item()
        .table_name(&names.audit_table)
        .key("client_id", AttributeValue::S("c".to_owned()))
        .key("sk", AttributeValue::S(sk.to_owned()))
        .send()
        .await
        .unwrap();
    let item = item.item().expect("the item under the documented key");
    assert_eq!(
        item.get("expires_at"),
        Some(&AttributeValue::N("1790000000".to_owned()))
    );
    // The same record again would erase the first one: it is refused instead.
    let err = log.append(&record).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
}

#[tokio::test]
async fn issued_tokens_are_found_by_outcome_with_or_without_the_attribute() {
    let (db, names, log) = audit_table().await;
    let at = datetime!(2026-12-06 11:00:00 UTC);
    for (request_id, outcome) in [("new", "issued"), ("refused", "invalid_scope")] {
        let mut record = AuditRecord::for_request(
            Some("c"),
            outcome,
            &Default::default(),
            at,
            time::Duration::days(1),
        );
        record.request_id = request_id.to_owned();
        log.append(&record).await.unwrap();
    }
    // An issued token's item no longer carries `outcome`; one written before does.
    let sk = |request_id: &str| format!("2026-12-06T11:00:00.000Z#{request_id}");
    let new = db
        .get_item()
        .table_name(&names.audit_table)
        .key("client_id", AttributeValue::S("c".to_owned()))
        .key("sk", AttributeValue::S(sk("new")))
        .send()
        .await
        .unwrap();
    assert_eq!(new.item().expect("the item").get("outcome"), None);
    db.put_item()
        .table_name(&names.audit_table)
        .item("client_id", AttributeValue::S("c".to_owned()))
        .item("sk", AttributeValue::S(sk("before")))
        .item("outcome", AttributeValue::S("issued".to_owned()))
        .item("expires_at", AttributeValue::N("1800000000".to_owned()))
        .send()
        .await
        .unwrap();
    let found = |outcome: &str| {
        let log = log.clone();
        let query = AuditQuery {
            client_id: Some("c".to_owned()),
            outcome: Some(outcome.to_owned()),
            ..AuditQuery::default()
        };
        async move {
            let records = log.query(&query).await.unwrap();
            let mut ids: Vec<_> = records
                .into_iter()
                .map(|r| (r.request_id, r.outcome))
                .collect();
            ids.sort();
            ids
        }
    };
    let issued = |id: &str| (id.to_owned(), "issued".to_owned());
    assert_eq!(found("issued").await, [issued("before"), issued("new")]);
    assert_eq!(
        found("invalid_scope").await,
        [("refused".to_owned(), "invalid_scope".to_owned())]
    );
}

#[tokio::test]
async fn unidentified_requests_are_partitioned_per_source_address() {
    let (db, names, log) = audit_table().await;
    let record = |ip: Option<&str>, second: u8, outcome: &str| AuditRecord {
        client_id: "-".to_owned(),
        timestamp: datetime!(2026-05-06 07:08:00 UTC) + time::Duration::seconds(second.into()),
        request_id: format!("req-{second}"),
        outcome: outcome.to_owned(),
        jti: None,
        scope: None,
        audience: None,
        source_ip: ip.map(str::to_owned),
        user_agent: None,
        actor: None,
        action: None,
        fields: Vec::new(),
        auth_method: None,
        dpop_jkt: None,
        expires_at: 1_790_000_000,
    };
    log.append(&record(Some("203.0.113.9"), 1, "invalid_client"))
        .await
        .unwrap();
    log.append(&record(Some("198.51.100.2"), 2, "invalid_request"))
        .await
        .unwrap();
    log.append(&record(None, 3, "invalid_client"))
        .await
        .unwrap();
    let mut named = record(Some("203.0.113.9"), 4, "issued");
    named.client_id = "c".to_owned();
    log.append(&named).await.unwrap();

    // Each address writes to its own partition key, never to one shared by all.
    let items = db
        .scan()
        .table_name(&names.audit_table)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<&str> = items
        .items()
        .iter()
        .map(|i| i["client_id"].as_s().unwrap().as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["- -", "- 198.51.100.2", "- 203.0.113.9", "c"]);

    // They read back, and are queried, as client `-`, newest first, with filters.
    let q = |outcome: Option<&str>| token_service::audit::AuditQuery {
        client_id: Some("-".to_owned()),
        outcome: outcome.map(str::to_owned),
        ..Default::default()
    };
    let all = log.query(&q(None)).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["req-3", "req-2", "req-1"]);
    assert!(all.iter().all(|r| r.client_id == "-"));
    assert_eq!(
        log.query(&q(Some("invalid_client"))).await.unwrap().len(),
        2
    );
    assert_eq!(log.query(&Default::default()).await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_missing_secret_reads_empty_and_the_key_store_never_writes() {
    let sdk = moto::sdk_config().await;
    let names = random_resources();
    let store = SecretsManagerKeyStore::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        &names.key_secret_id,
    );
    assert_eq!(store.load_key_set().await.unwrap(), KeySet::default());
    let now = datetime!(2026-01-01 00:00 UTC);
    let set = KeySet {
        keys: vec![KeyEntry::generate(Default::default(), now, now).unwrap()],
        ..KeySet::default()
    };
    // The rotation function is the secret's only writer.
    let text = backend_text(
        store
            .replace_key_set(&KeySet::default(), &set)
            .await
            .unwrap_err(),
    );
    assert!(text.contains(&names.key_secret_id), "{text}");
    assert!(text.contains("rotation function"), "{text}");
    assert!(!text.contains(&set.keys[0].private_key[..40]), "{text}");
}

#[tokio::test]
async fn errors_name_the_table_but_never_a_secret_hash() {
    let sdk = moto::sdk_config().await;
    let names = random_resources();
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let (client, hash) = client_with_secret("c1");

    let missing = DynamoDbClientStore::new(db.clone(), "no-such-table", "no-such-index");
    let text = backend_text(missing.create_client(&client).await.unwrap_err());
    assert!(text.contains("no-such-table"), "{text}");
    assert!(!text.contains(&hash), "{text}");

    create_resources(&sdk, &names).await.unwrap();
    let mut broken = serde_json::to_string(&client).unwrap();
    broken.truncate(broken.len() - 1);
    db.put_item()
        .table_name(&names.clients_table)
        .item("client_id", AttributeValue::S("c1".to_owned()))
        .item("version", AttributeValue::N("1".to_owned()))
        .item("record", AttributeValue::S(broken))
        .send()
        .await
        .unwrap();
    let store = DynamoDbClientStore::new(db, &names.clients_table, &names.secret_index_table);
    let text = backend_text(store.get_client("c1").await.unwrap_err());
    assert!(
        text.contains("record") && text.contains(&names.clients_table),
        "{text}"
    );
    assert!(!text.contains(&hash), "{text}");
}
