//! `tokenctl` against a SQLite file, driven as a user would: the binary, its exit codes and its
//! JSON output.

use std::path::Path;

use crate::support::local_server::tokenctl;

fn json(db: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = tokenctl(db, &all);
    assert!(
        out.status.success(),
        "tokenctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[test]
fn clients_lifecycle_with_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ctl.db");
    let created = json(
        &db,
        &[
            "clients",
            "create",
            "--name",
            "Billing",
            "--scope",
            "billing.read billing.write",
            "--default-scope",
            "billing.read",
            "--audience",
            "https://billing.example.com",
            "--ttl",
            "300",
        ],
    );
    let id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert!(token_service::clients::secret::looks_like_secret(&secret));
    assert!(created["secret_id"].as_str().unwrap().starts_with("sec_"));

    let shown = json(&db, &["clients", "show", &id]);
    assert_eq!(shown["name"], "Billing");
    assert_eq!(shown["status"], "active");
    assert_eq!(
        shown["scopes"],
        serde_json::json!(["billing.read", "billing.write"])
    );
    assert_eq!(shown["default_scopes"], serde_json::json!(["billing.read"]));
    assert_eq!(shown["default_audience"], "https://billing.example.com");
    assert_eq!(shown["token_ttl"], 300);
    assert_eq!(shown["version"], 1);
    let text = shown.to_string();
    assert!(!text.contains(&secret) && !text.contains("hash"), "{text}");

    let disabled = json(&db, &["clients", "disable", &id]);
    assert_eq!(disabled["status"], "disabled");
    assert_eq!(disabled["version"], 2);
    assert_eq!(json(&db, &["clients", "enable", &id])["status"], "active");

    let added = json(&db, &["secrets", "add", &id, "--expires-in", "30d"]);
    assert_ne!(added["client_secret"], secret.as_str());
    assert!(added["expires_at"].is_string());
    let sid = added["secret_id"].as_str().unwrap();
    let revoked = json(&db, &["secrets", "revoke", &id, sid]);
    assert_eq!(revoked["secrets"].as_array().unwrap().len(), 1);

    let list = json(&db, &["clients", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);

    let audit = json(&db, &["audit", "--client", &id]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "secret.revoke",
            "secret.add",
            "client.enable",
            "client.disable",
            "client.create"
        ]
    );
    let everything = audit.to_string();
    assert!(!everything.contains(&secret));
}

#[test]
fn keys_rotate_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let first = json(&db, &["keys", "rotate"]);
    assert_eq!(first.as_array().unwrap().len(), 1);
    assert_eq!(first[0]["signing"], true, "the first key signs at once");
    let second = json(&db, &["keys", "rotate"]);
    let keys = second.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k["signing"] == true).count(), 1);
    assert!(keys.iter().all(|k| k["published"] == true));
    assert_eq!(json(&db, &["keys", "list"]), second);
    assert!(keys.iter().all(|k| k["alg"] == "RS256"), "{second}");

    // A new algorithm takes effect with the next rotation; the keys in the set keep theirs.
    let out = tokenctl(&db, &["--signing-alg", "ES256", "keys", "rotate", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let third: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Listed by kid; ordered here by creation.
    let created = |k: &serde_json::Value| {
        let text = k["created_at"].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let mut by_age: Vec<_> = third.as_array().unwrap().iter().collect();
    by_age.sort_by_key(|k| created(k));
    let algs: Vec<_> = by_age.iter().map(|k| &k["alg"]).collect();
    assert_eq!(algs, ["RS256", "RS256", "ES256"], "{third}");
    assert_eq!(
        by_age[2]["signing"], false,
        "the new key waits for its activation"
    );
    let listing = String::from_utf8(tokenctl(&db, &["keys", "list"]).stdout).unwrap();
    assert!(listing.starts_with("KID"), "{listing}");
    assert_eq!(listing.matches(" ES256 ").count(), 1, "{listing}");
    assert_eq!(listing.matches(" RS256 ").count(), 2, "{listing}");
}

#[test]
fn bad_input_fails_with_a_clear_message_and_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bad.db");
    let cases: &[&[&str]] = &[
        &["clients", "show", "nobody"],
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--scope",
            "a",
            "--audience",
            "not-a-uri",
        ],
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--scope",
            "a\"b",
            "--audience",
            "https://a",
        ],
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--id",
            "has space",
            "--scope",
            "a",
            "--audience",
            "https://a",
        ],
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--scope",
            "a",
            "--audience",
            "https://a",
            "--ttl",
            "999999",
        ],
        &["secrets", "add", "nobody"],
        &["audit", "--since", "yesterday"],
    ];
    for args in cases {
        let out = tokenctl(&db, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("tokenctl: ") || err.contains("error:"),
            "{args:?}: {err}"
        );
    }
    let dup = [
        "clients",
        "create",
        "--name",
        "x",
        "--id",
        "dup",
        "--scope",
        "a",
        "--audience",
        "https://a",
    ];
    assert!(tokenctl(&db, &dup).status.success());
    let again = tokenctl(&db, &dup);
    assert!(!again.status.success(), "creation never overwrites");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn clients_update_changes_policy_and_records_the_fields() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("upd.db");
    let id = json(
        &db,
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--scope",
            "a b",
            "--audience",
            "https://a",
        ],
    )["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let updated = json(
        &db,
        &[
            "clients",
            "update",
            &id,
            "--scope",
            "a b c",
            "--default-scope",
            "c",
            "--audience",
            "https://a https://b",
            "--default-audience",
            "https://b",
            "--ttl",
            "60",
            "--rate-limit",
            "5",
        ],
    );
    assert_eq!(updated["scopes"], serde_json::json!(["a", "b", "c"]));
    assert_eq!(updated["default_scopes"], serde_json::json!(["c"]));
    assert_eq!(updated["default_audience"], "https://b");
    assert_eq!(updated["token_ttl"], 60);
    assert_eq!(updated["rate_limit"], 5);
    assert_eq!(updated["version"], 2);
    let reset = json(
        &db,
        &[
            "clients",
            "update",
            &id,
            "--ttl",
            "default",
            "--rate-limit",
            "default",
        ],
    );
    assert!(reset["token_ttl"].is_null() && reset["rate_limit"].is_null());

    // An update that breaks the policy is refused and changes nothing.
    let bad = tokenctl(
        &db,
        &[
            "clients",
            "update",
            &id,
            "--default-audience",
            "https://zzz",
        ],
    );
    assert!(!bad.status.success());
    assert_eq!(json(&db, &["clients", "show", &id])["version"], 3);

    let audit = json(
        &db,
        &[
            "audit",
            "--client",
            &id,
            "--outcome",
            "admin",
            "--limit",
            "1",
        ],
    );
    assert_eq!(audit[0]["action"], "client.update");
    assert_eq!(
        audit[0]["fields"],
        serde_json::json!(["token_ttl", "rate_limit"])
    );

    // DPoP binding (RFC 9449 §5.2) is switched on and off, each a new version, recorded.
    let bound = json(&db, &["clients", "update", &id, "--dpop-bound", "true"]);
    assert_eq!(
        (bound["dpop_bound"].clone(), bound["version"].clone()),
        (true.into(), 4.into())
    );
    let audit = json(
        &db,
        &[
            "audit",
            "--client",
            &id,
            "--outcome",
            "admin",
            "--limit",
            "1",
        ],
    );
    assert_eq!(audit[0]["fields"], serde_json::json!(["dpop_bound"]));
    let unbound = json(&db, &["clients", "update", &id, "--dpop-bound", "false"]);
    assert_eq!(unbound["dpop_bound"], false);
    let not_a_bool = tokenctl(&db, &["clients", "update", &id, "--dpop-bound", "yes"]);
    assert!(!not_a_bool.status.success());
}

#[test]
fn clients_stats_counts_outcomes_from_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stats.db");
    let created = json(
        &db,
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--scope",
            "a",
            "--audience",
            "https://a",
            "--rate-limit",
            "2",
        ],
    );
    let id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    json(&db, &["keys", "rotate"]);
    // Four requests through the token service on the same file: 2 issued, 1 limited, 1 failed.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let embedded = token_service::shapes::embedded::Embedded::open(
            &db,
            token_service::config::ServiceConfig::for_tests(),
            std::sync::Arc::new(token_service::clock::SystemClock),
        )
        .unwrap();
        let service = embedded.token_service();
        for s in [secret.as_str(), secret.as_str(), secret.as_str(), "wrong"] {
            let auth = basic(&id, s);
            let raw = token_service::oauth::request::RawRequest {
                content_type: Some("application/x-www-form-urlencoded"),
                authorization: Some(&auth),
                query: None,
                body: b"grant_type=client_credentials",
                dpop: None,
            };
            let _ = service.handle(raw, &Default::default()).await;
        }
    });
    let stats = json(&db, &["clients", "stats", &id, "--since", "1h"]);
    assert_eq!(stats["client_id"], id.as_str());
    // Unless the minute turned between the requests, exactly 2 were issued.
    let (issued, limited) = (
        stats["issued"].as_u64().unwrap(),
        stats["limited"].as_u64().unwrap(),
    );
    assert_eq!(issued + limited, 3, "{stats}");
    assert!(issued >= 2, "{stats}");
    assert_eq!(stats["failed"], 1, "{stats}");
    assert_eq!(stats["by_outcome"]["invalid_client"], 1);
}

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

#[test]
fn secrets_rotate_and_clients_delete() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rot.db");
    let created = json(
        &db,
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--scope",
            "a",
            "--audience",
            "https://a",
        ],
    );
    let id = created["client_id"].as_str().unwrap().to_owned();
    let rotated = json(&db, &["secrets", "rotate", &id, "--grace", "1h"]);
    assert!(token_service::clients::secret::looks_like_secret(
        rotated["client_secret"].as_str().unwrap()
    ));
    let secrets = rotated["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2);
    let old = secrets
        .iter()
        .find(|s| s["secret_id"] == created["secret_id"])
        .unwrap();
    assert!(old["expires_at"].is_string(), "the old secret now expires");
    let cut = json(&db, &["secrets", "rotate", &id, "--grace", "0"]);
    assert_eq!(cut["secrets"].as_array().unwrap().len(), 1);
    assert_eq!(json(&db, &["clients", "delete", &id])["deleted"], true);
    assert!(!tokenctl(&db, &["clients", "show", &id]).status.success());
    let audit = json(&db, &["audit", "--client", &id, "--limit", "1"]);
    assert_eq!(audit[0]["action"], "client.delete");
}

#[test]
fn a_client_id_starting_with_a_hyphen_is_not_read_as_an_option() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hyphen.db");
    json(
        &db,
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--id=-lead",
            "--scope",
            "a",
            "--audience",
            "https://a",
        ],
    );
    assert_eq!(
        json(&db, &["clients", "show", "-lead"])["client_id"],
        "-lead"
    );
    assert_eq!(
        json(&db, &["clients", "disable", "-lead"])["status"],
        "disabled"
    );
}

#[test]
fn a_client_id_shaped_like_a_secret_is_refused_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("secret-id.db");
    // Such an id is treated as a leaked secret on the token path: never looked up, never
    // recorded. A client created under it could never authenticate.
    let secret = token_service::clients::secret::ClientSecret::generate();
    let id = format!("--id={}", secret.expose());
    let args = [
        "clients",
        "create",
        "--name",
        "x",
        &id,
        "--scope",
        "a",
        "--audience",
        "https://a",
    ];
    let out = tokenctl(&db, &args);
    assert!(!out.status.success(), "a secret-shaped id was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must not look like a client secret"), "{err}");
    assert!(
        !err.contains(secret.expose()),
        "the error repeats the secret"
    );
    let listed = json(&db, &["clients", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
}

/// The digest of a secret as the index holds it, looked up through the store.
fn indexed(db: &Path, secret: &str) -> Option<String> {
    use token_service::store::SecretIndex;
    let store = token_service::store::sqlite::SqliteStore::open(db).unwrap();
    let hash = token_service::clients::SecretHash::of(secret.as_bytes());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(store.find_secret(&hash))
        .unwrap()
        .map(|found| format!("{} {}", found.client_id, found.secret_id))
}

#[test]
fn secrets_reindex_fills_the_index_for_secrets_stored_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reindex.db");
    let mut secrets = Vec::new();
    for name in ["one", "two"] {
        let created = json(
            &db,
            &[
                "clients",
                "create",
                "--id",
                name,
                "--name",
                name,
                "--scope",
                "a",
                "--audience",
                "https://a",
            ],
        );
        let secret = created["client_secret"].as_str().unwrap().to_owned();
        let expected = format!("{name} {}", created["secret_id"].as_str().unwrap());
        assert_eq!(indexed(&db, &secret).as_deref(), Some(expected.as_str()));
        secrets.push((secret, expected));
    }
    // As a file written before the index existed: the entries are missing.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM secret_index", []).unwrap();
    drop(conn);
    assert_eq!(indexed(&db, &secrets[0].0), None);

    assert_eq!(json(&db, &["secrets", "reindex"])["indexed"], 2);
    for (secret, expected) in &secrets {
        assert_eq!(indexed(&db, secret).as_deref(), Some(expected.as_str()));
    }
    let audit = json(&db, &["audit", "--client", "-", "--limit", "1"]);
    assert_eq!(audit[0]["action"], "secrets.reindex");
}

#[test]
fn upgrading_the_file_indexes_the_secrets_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("upgrade.db");
    let created = json(
        &db,
        &[
            "clients",
            "create",
            "--id",
            "old",
            "--name",
            "old",
            "--scope",
            "a",
            "--audience",
            "https://a",
        ],
    );
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    // Back to the schema before the index (the sixth migration): the upgrade on the next open
    // builds it.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("DROP TABLE secret_index; PRAGMA user_version = 5;")
        .unwrap();
    drop(conn);
    let expected = format!("old {}", created["secret_id"].as_str().unwrap());
    assert_eq!(indexed(&db, &secret).as_deref(), Some(expected.as_str()));
}
