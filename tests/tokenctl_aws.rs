//! `tokenctl --backend aws` against DynamoDB and Secrets Manager on the moto server, driven as
//! an operator would with the stack's resource names in the environment.

mod support;

use std::process::{Command, Output};

use support::moto;
use support::stores::random_resources;
use token_service::store::aws::{AwsResources, create_resources};

fn tokenctl(names: &AwsResources, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenctl"))
        .args(args)
        .env("TOKEN_BACKEND", "aws")
        .env("AWS_ENDPOINT_URL", moto::endpoint())
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env("TOKEN_CLIENTS_TABLE", &names.clients_table)
        .env("TOKEN_AUDIT_TABLE", &names.audit_table)
        .env("TOKEN_PUBLIC_KEYS_TABLE", &names.public_keys_table)
        .env("TOKEN_RATE_LIMITS_TABLE", &names.rate_limits_table)
        .env("TOKEN_ASSERTION_IDS_TABLE", &names.assertion_ids_table)
        .env("TOKEN_KEY_SECRET_ID", &names.key_secret_id)
        .output()
        .expect("tokenctl runs")
}

fn json(names: &AwsResources, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = tokenctl(names, &all);
    assert!(
        out.status.success(),
        "tokenctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_against_dynamodb_and_secrets_manager() {
    let names = random_resources();
    create_resources(&moto::sdk_config().await, &names)
        .await
        .unwrap();

    let keys = json(&names, &["keys", "init"]);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["signing"], true);
    assert_eq!(json(&names, &["keys", "init"]), keys, "init is idempotent");

    let created = json(
        &names,
        &[
            "clients",
            "create",
            "--name",
            "Billing",
            "--id",
            "billing",
            "--scope",
            "invoices:read",
            "--audience",
            "https://billing.example.com",
        ],
    );
    assert_eq!(created["client_id"], "billing");
    let first = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        json(&names, &["clients", "list"])[0]["client_id"],
        "billing"
    );
    assert_eq!(
        json(&names, &["clients", "disable", "billing"])["status"],
        "disabled"
    );
    assert_eq!(
        json(&names, &["clients", "enable", "billing"])["status"],
        "active"
    );
    let updated = json(
        &names,
        &["clients", "update", "billing", "--rate-limit", "30"],
    );
    assert_eq!(updated["rate_limit"], 30);
    let rotated = json(&names, &["secrets", "rotate", "billing", "--grace", "1h"]);
    assert_ne!(rotated["client_secret"], first.as_str());
    let added = json(&names, &["secrets", "add", "billing"]);
    json(
        &names,
        &[
            "secrets",
            "revoke",
            "billing",
            added["secret_id"].as_str().unwrap(),
        ],
    );
    let rotated_keys = json(&names, &["keys", "rotate"]);
    assert_eq!(rotated_keys.as_array().unwrap().len(), 2);
    assert_eq!(json(&names, &["keys", "list"]), rotated_keys);
    json(&names, &["clients", "stats", "billing"]);

    let admin = json(&names, &["audit", "--admin"]);
    let actions: Vec<&str> = admin
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for action in [
        "keys.rotate",
        "secret.revoke",
        "secret.add",
        "secret.rotate",
        "client.update",
        "client.enable",
        "client.disable",
        "client.create",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    // The acting identity is the caller's principal ARN, from STS.
    assert!(
        admin.as_array().unwrap().iter().all(|r| r["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:"))),
        "{admin}"
    );
    assert!(!admin.to_string().contains(&first));

    assert_eq!(
        json(&names, &["clients", "delete", "billing"])["deleted"],
        true
    );
    assert!(
        !tokenctl(&names, &["clients", "show", "billing"])
            .status
            .success()
    );
}

#[test]
fn a_missing_resource_name_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenctl"))
        .args(["--backend", "aws", "clients", "list"])
        .env_remove("TOKEN_CLIENTS_TABLE")
        .env_remove("TOKEN_BACKEND")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOKEN_CLIENTS_TABLE"));
}
