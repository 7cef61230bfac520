//! `tokenctl audit report`, text and JSON, on a SQLite file and on DynamoDB (moto), over an
//! audit trail written through the store ports with times relative to now.

use std::path::Path;
use std::process::{Command, Output};

use time::{Duration, OffsetDateTime};
use token_service::audit::AuditRecord;
use token_service::clients::{Client, ClientSecret, ClientStatus};
use token_service::store::aws::{AwsResources, DynamoDbAuditLog, DynamoDbClientStore};
use token_service::store::sqlite::SqliteStore;
use token_service::store::{AuditLog, ClientAdmin};

use crate::support::moto;
use crate::support::stores::random_resources;

const NEW_IP: &str = "203.0.113.7";
const SPRAYER_IP: &str = "198.51.100.66";

fn client(id: &str, now: OffsetDateTime) -> Client {
    Client {
        client_id: id.to_owned(),
        name: id.to_owned(),
        status: ClientStatus::Active,
        scopes: vec!["read".to_owned()],
        default_scopes: vec!["read".to_owned()],
        audiences: vec!["https://api.test/".to_owned()],
        default_audience: "https://api.test/".to_owned(),
        token_ttl: None,
        rate_limit: None,
        secrets: Vec::new(),
        auth_method: Default::default(),
        keys: Vec::new(),
        claims: Default::default(),
        dpop_bound: false,
        created_at: now - Duration::days(30),
        updated_at: now - Duration::days(30),
        version: 1,
    }
}

fn record(id: &str, at: OffsetDateTime, outcome: &str, ip: &str) -> AuditRecord {
    AuditRecord {
        client_id: id.to_owned(),
        timestamp: at,
        request_id: token_service::encoding::random_b64url(9),
        outcome: outcome.to_owned(),
        jti: None,
        scope: None,
        audience: None,
        source_ip: Some(ip.to_owned()),
        user_agent: Some("report-cli-test".to_owned()),
        actor: None,
        action: None,
        fields: Vec::new(),
        auth_method: None,
        dpop_jkt: None,
        expires_at: (at + Duration::days(90)).unix_timestamp(),
    }
}

/// Two clients used daily from their own addresses; today one of them also from a new one,
/// and one address fails against both and against an id that is a pasted secret.
async fn write_trail(clients: &dyn ClientAdmin, audit: &dyn AuditLog) -> String {
    let now = OffsetDateTime::now_utc();
    let pasted = ClientSecret::generate().expose().to_owned();
    for id in ["roamer", "steady"] {
        clients.create_client(&client(id, now)).await.unwrap();
    }
    let mut records = Vec::new();
    for day in 1..=3 {
        let at = now - Duration::days(day) - Duration::hours(1);
        records.push(record("steady", at, "issued", "10.0.0.1"));
        records.push(record("roamer", at, "issued", "10.0.0.2"));
    }
    let at = now - Duration::hours(1);
    records.push(record("steady", at, "issued", "10.0.0.1"));
    records.push(record("roamer", at, "issued", "10.0.0.2"));
    records.push(record("roamer", at, "issued", NEW_IP));
    for id in ["steady", "roamer", pasted.as_str()] {
        records.push(record(id, at, "invalid_client", SPRAYER_IP));
    }
    for r in &records {
        audit.append(r).await.unwrap();
    }
    pasted
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("tokenctl runs");
    assert!(
        out.status.success(),
        "tokenctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The report's JSON: the findings expected from [`write_trail`], read by one query per client
/// and the failure index, which also reaches the failure under the pasted secret, redacted.
fn check_json(out: &Output, pasted: &str) {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(pasted), "a secret in the report: {text}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    for key in [
        "period",
        "baseline",
        "options",
        "findings",
        "clients",
        "unknown_clients",
        "reads",
    ] {
        assert!(keys.contains(&key), "{key} missing: {report}");
    }
    let findings = &report["findings"];
    assert_eq!(
        findings["new_addresses"],
        serde_json::json!([{"client_id": "roamer", "address": NEW_IP, "issued": 1}])
    );
    assert_eq!(findings["volume_jumps"], serde_json::json!([]));
    assert_eq!(findings["disabled_tried"], serde_json::json!([]));
    let spraying = &findings["spraying"][0];
    assert_eq!(spraying["address"], SPRAYER_IP);
    assert_eq!(spraying["failures"], 3);
    let clients = report["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 2);
    assert_eq!(clients[0]["client_id"], "roamer", "ordered by id");
    let steady = &clients[1];
    assert_eq!(steady["client_id"], "steady");
    assert_eq!(steady["status"], "active");
    assert_eq!(steady["issued"], 1);
    assert_eq!(steady["failed"], 1);
    assert_eq!(steady["by_outcome"]["invalid_client"], 1);
    assert_eq!(steady["baseline_requests"], 3);
    assert_eq!(steady["baseline_average"], 3.0 / 7.0);
    assert_eq!(
        spraying["client_ids"],
        serde_json::json!(["roamer", "steady"])
    );
    assert_eq!(spraying["unknown_ids"], 1);
    assert_eq!(
        spraying["unknown_examples"],
        serde_json::json!(["[redacted]"])
    );
    assert_eq!(report["unknown_clients"][0]["client_id"], "[redacted]");
    assert_eq!(report["options"]["include_unknown"], true);
    assert_eq!(report["reads"]["audit_queries"], 2);
    assert_eq!(report["reads"]["audit_scans"], 0);
    assert!(report["reads"]["failure_queries"].as_u64().unwrap() >= 1);
}

fn sqlite_tokenctl(db: &Path, args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_tokenctl"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("TOKEN_BACKEND"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_report_on_sqlite_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("report.db");
    let pasted = {
        let store = SqliteStore::open(&db).unwrap();
        write_trail(&store, &store).await
    };
    let args = [
        "audit",
        "report",
        "--since",
        "24h",
        "--spray-min-clients",
        "2",
    ];
    let json = sqlite_tokenctl(&db, &[&args[..], &["--json"]].concat());
    check_json(&json, &pasted);
    // The flag of the Scan-reading report is still accepted: it warns and changes nothing.
    let old = sqlite_tokenctl(&db, &[&args[..], &["--json", "--include-unknown"]].concat());
    check_json(&old, &pasted);
    let warning = String::from_utf8_lossy(&old.stderr);
    assert!(
        warning.contains("--include-unknown is no longer needed"),
        "{warning}"
    );

    let text = sqlite_tokenctl(&db, &args);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(!text.contains(&pasted), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("audit report "), "{text}");
    assert_eq!(lines[1], "findings:");
    assert_eq!(
        lines[2],
        format!("  new address      roamer from {NEW_IP} (1 tokens)")
    );
    assert_eq!(
        lines[3],
        format!(
            "  spraying         {SPRAYER_IP} failed 3 times against 2 client ids: \
             roamer steady; 1 unknown ids: [redacted]"
        )
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["steady", "active", "1", "1", "0", "0.4"]),
        "{text}"
    );
    assert!(
        lines
            .contains(&"read: 1 client list, 2 audit queries, 1 failure-index queries, 14 records"),
        "{text}"
    );
}

fn aws_tokenctl(names: &AwsResources, args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_tokenctl"))
        .args(args)
        .env("TOKEN_BACKEND", "aws")
        .env("AWS_ENDPOINT_URL", moto::endpoint())
        .env("AWS_REGION", moto::REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env("TOKEN_CLIENTS_TABLE", &names.clients_table)
        .env("TOKEN_AUDIT_TABLE", &names.audit_table)
        .env("TOKEN_PUBLIC_KEYS_TABLE", &names.public_keys_table)
        .env("TOKEN_RATE_LIMITS_TABLE", &names.rate_limits_table)
        .env("TOKEN_ASSERTION_IDS_TABLE", &names.assertion_ids_table)
        .env("TOKEN_SECRET_INDEX_TABLE", &names.secret_index_table)
        .env("TOKEN_KEY_SECRET_ID", &names.key_secret_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_report_on_dynamodb_in_json() {
    let sdk = moto::sdk_config().await;
    let names = random_resources();
    token_service::store::aws::create_resources(&sdk, &names)
        .await
        .unwrap();
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let pasted = write_trail(
        &DynamoDbClientStore::new(db.clone(), &names.clients_table, &names.secret_index_table),
        &DynamoDbAuditLog::new(db, &names.audit_table),
    )
    .await;
    let args = [
        "audit",
        "report",
        "--since",
        "24h",
        "--spray-min-clients",
        "2",
        "--json",
    ];
    check_json(&aws_tokenctl(&names, &args), &pasted);
}
