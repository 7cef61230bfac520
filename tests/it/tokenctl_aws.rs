//! `tokenctl --backend aws` against DynamoDB and Secrets Manager on the moto server, driven as
//! an operator would with the stack's resource names in the environment.

use std::process::{Command, Output};
use std::sync::Arc;

use time::Duration;
use token_service::audit::AuditQuery;
use token_service::clock::SystemClock;
use token_service::config::ServiceConfig;
use token_service::keys::Schedule;
use token_service::shapes::aws::AwsShape;
use token_service::store::aws::{
    AwsResources, DynamoDbPublicKeyStore, SecretsManagerKeyStore, create_resources,
};
use token_service::store::{AuditLog, KeyStore, PublicKeyStore};

use crate::support::moto;
use crate::support::rotation_front::{Function, RotationFront};
use crate::support::stores::random_resources;

fn tokenctl(names: &AwsResources, args: &[&str]) -> Output {
    tokenctl_at(moto::endpoint(), names, args)
}

/// `command` aimed at the stack `names` behind `endpoint`, as an operator would set it up.
fn with_stack<'a>(
    command: &'a mut Command,
    endpoint: &str,
    names: &AwsResources,
) -> &'a mut Command {
    command
        .env("TOKEN_BACKEND", "aws")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env("TOKEN_CLIENTS_TABLE", &names.clients_table)
        .env("TOKEN_AUDIT_TABLE", &names.audit_table)
        .env("TOKEN_PUBLIC_KEYS_TABLE", &names.public_keys_table)
        .env("TOKEN_RATE_LIMITS_TABLE", &names.rate_limits_table)
        .env("TOKEN_ASSERTION_IDS_TABLE", &names.assertion_ids_table)
        .env("TOKEN_SECRET_INDEX_TABLE", &names.secret_index_table)
        .env("TOKEN_KEY_SECRET_ID", &names.key_secret_id)
}

/// `tokenctl` with `AWS_ENDPOINT_URL` set to `endpoint`.
fn tokenctl_at(endpoint: &str, names: &AwsResources, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenctl"));
    command.args(args);
    with_stack(&mut command, endpoint, names)
        .output()
        .expect("tokenctl runs")
}

fn json(names: &AwsResources, args: &[&str]) -> serde_json::Value {
    json_at(moto::endpoint(), names, args)
}

fn json_at(endpoint: &str, names: &AwsResources, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = tokenctl_at(endpoint, names, &all);
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

    let front = RotationFront::start(
        &names,
        ServiceConfig::for_tests().schedule,
        Function::Rotates,
    )
    .await;
    let init = json_at(front.url(), &names, &["keys", "init"]);
    assert_eq!(
        (init["rotated"].clone(), init["keys"].clone()),
        (true.into(), 1.into())
    );
    let again = json_at(front.url(), &names, &["keys", "init"]);
    assert_eq!(again["rotated"], false, "init is idempotent: {again}");
    assert_eq!(again["kid"], init["kid"]);
    let keys = json(&names, &["keys", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["signing"], true);

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
    assert_eq!(updated["dpop_bound"], false);
    let bound = json(
        &names,
        &["clients", "update", "billing", "--dpop-bound", "true"],
    );
    assert_eq!(bound["dpop_bound"], true);
    assert_eq!(
        json(&names, &["clients", "show", "billing"])["dpop_bound"],
        true
    );
    let unbound = json(
        &names,
        &["clients", "update", "billing", "--dpop-bound", "false"],
    );
    assert_eq!(unbound["dpop_bound"], false);
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
    let rotated_keys = json_at(front.url(), &names, &["keys", "rotate"]);
    assert_eq!(rotated_keys["keys"], 2);
    assert_eq!(json(&names, &["keys", "list"]).as_array().unwrap().len(), 2);
    json(&names, &["clients", "stats", "billing"]);

    let admin = json(&names, &["audit", "--admin"]);
    let actions: Vec<&str> = admin
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for action in [
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

/// The stack's rotation function's settings, unlike any local default: a key rotated with
/// them activates 7 h after it was published (the local default would be 1 h).
fn stack_schedule() -> Schedule {
    Schedule {
        prepublication: Duration::hours(7),
        retirement: Duration::hours(2),
        signer_refresh: Duration::minutes(5),
    }
}

/// `tokenctl` on a thread of its own, so that the front keeps serving meanwhile.
async fn tokenctl_beside(front: &RotationFront, names: &AwsResources, args: &[&str]) -> Output {
    let (url, names) = (front.url().to_owned(), names.clone());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenctl"));
        command
            .args(&args)
            // Local settings other than the stack's: the stack's rotation function rotates
            // with its own, whatever the caller's are.
            .env("TOKEN_KEY_PREPUBLICATION", "7200")
            .env("TOKEN_MAX_TTL", "7200");
        with_stack(&mut command, &url, &names)
            .output()
            .expect("tokenctl runs")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_runs_the_stacks_rotation_function_and_waits_for_it() {
    let names = random_resources();
    let sdk = moto::sdk_config().await;
    create_resources(&sdk, &names).await.unwrap();
    let front = RotationFront::start(&names, stack_schedule(), Function::Rotates).await;

    let out = tokenctl_beside(&front, &names, &["keys", "init"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokenctl_beside(&front, &names, &["keys", "rotate", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // Two rotations started, and tokenctl wrote nothing itself: only reads went to moto (and
    // who the caller is, as for every command).
    let started = front.started();
    assert_eq!(started.len(), 2, "{started:?}");
    assert_eq!(view["version_id"], started[1].as_str());
    for op in front.passed() {
        assert!(
            [
                "secretsmanager.DescribeSecret",
                "secretsmanager.GetSecretValue",
                "sts.GetCallerIdentity"
            ]
            .contains(&op.as_str()),
            "tokenctl called {op}"
        );
    }
    // The new version is current when tokenctl returns, and the key it reports is the
    // function's, with the function's pre-publication delay.
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let described = sm
        .describe_secret()
        .secret_id(&names.key_secret_id)
        .send()
        .await
        .unwrap();
    let stages = &described.version_ids_to_stages().unwrap()[&started[1]];
    assert!(stages.contains(&"AWSCURRENT".to_owned()), "{stages:?}");
    let set = SecretsManagerKeyStore::new(sm, &names.key_secret_id)
        .load_key_set()
        .await
        .unwrap();
    assert_eq!(set.keys.len(), 2);
    let new = &set.keys[1];
    assert_eq!(view["kid"], new.kid.as_str());
    assert_eq!(view["keys"], 2);
    assert!(
        new.activates_at - new.created_at >= stack_schedule().prepublication,
        "{new:?}"
    );
    let published = DynamoDbPublicKeyStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &names.public_keys_table,
    )
    .public_keys()
    .await
    .unwrap();
    let mut kids: Vec<_> = published.iter().map(|r| r.kid.clone()).collect();
    kids.sort();
    let mut expected: Vec<_> = set.keys.iter().map(|k| k.kid.clone()).collect();
    expected.sort();
    assert_eq!(kids, expected, "the JWKS holds every key of the set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_does_not_finish_is_reported_after_the_wait() {
    let names = random_resources();
    let sdk = moto::sdk_config().await;
    create_resources(&sdk, &names).await.unwrap();
    let front = RotationFront::start(&names, stack_schedule(), Function::Fails).await;

    let out = tokenctl_beside(&front, &names, &["keys", "rotate", "--wait", "2s"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let started = front.started();
    assert_eq!(started.len(), 1);
    assert!(stderr.contains("did not finish within 2s"), "{stderr}");
    assert!(stderr.contains(&started[0]), "names the version: {stderr}");
    assert!(stderr.contains("rotate-keys function's log"), "{stderr}");
    let set = SecretsManagerKeyStore::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        &names.key_secret_id,
    )
    .load_key_set()
    .await
    .unwrap();
    assert!(set.keys.is_empty(), "nothing changed: {set:?}");
}

/// The kids of the public-keys table, sorted.
async fn published_kids(sdk: &aws_config::SdkConfig, names: &AwsResources) -> Vec<String> {
    let table =
        DynamoDbPublicKeyStore::new(aws_sdk_dynamodb::Client::new(sdk), &names.public_keys_table);
    let mut kids: Vec<_> = table
        .public_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kid)
        .collect();
    kids.sort();
    kids
}

/// `Admin::rotate_keys`, what `tokenctl keys rotate` runs, on the AWS shape: the rotation port
/// runs the rotate-keys function's four steps (here in this process, as moto cannot invoke the
/// function), the set grows by one published key, and the admin writes nothing itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rotates_keys_on_aws_through_the_rotation_port() {
    let names = random_resources();
    let sdk = moto::sdk_config().await;
    create_resources(&sdk, &names).await.unwrap();
    let mut config = ServiceConfig::for_tests();
    config.schedule = stack_schedule();
    let admin = AwsShape::new(&sdk, names.clone(), config, Arc::new(SystemClock))
        .with_rotation_in_process()
        .admin("rotation-port-test");

    let first = admin
        .create_first_key()
        .await
        .unwrap()
        .expect("the set was empty");
    assert_eq!(first.keys.keys.len(), 1);
    assert!(!first.written_here, "the rotation function wrote it");
    assert!(
        admin.create_first_key().await.unwrap().is_none(),
        "a second init changes nothing"
    );
    let rotated = admin.rotate_keys().await.unwrap();
    let version = rotated.version.clone().expect("a secret version");

    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let described = sm
        .describe_secret()
        .secret_id(&names.key_secret_id)
        .send()
        .await
        .unwrap();
    let stages = &described.version_ids_to_stages().unwrap()[&version];
    assert_eq!(stages, &["AWSCURRENT".to_owned()], "the rotation finished");
    let stored = SecretsManagerKeyStore::new(sm, &names.key_secret_id)
        .load_key_set()
        .await
        .unwrap();
    assert_eq!(stored, rotated.keys, "the port reports the set now current");
    assert_eq!(stored.keys.len(), 2);
    assert_eq!(stored.keys[0], first.keys.keys[0], "the first key stays");
    let new = &stored.keys[1];
    assert!(
        new.activates_at - new.created_at >= stack_schedule().prepublication,
        "{new:?}"
    );
    let mut expected: Vec<_> = stored.keys.iter().map(|k| k.kid.clone()).collect();
    expected.sort();
    assert_eq!(published_kids(&sdk, &names).await, expected);
    assert_eq!(admin.key_status().await.unwrap().len(), 2);

    // Only the rotation function writes keys on AWS; the admin records no rotation of its own.
    let audit = token_service::store::aws::DynamoDbAuditLog::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &names.audit_table,
    );
    let records = audit
        .query(&AuditQuery {
            outcome: Some("admin".to_owned()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(records.is_empty(), "{records:?}");
}

/// The same port with Secrets Manager running the function (`RotateSecret`, answered by the
/// front of moto), as a deployed stack does: `Admin::rotate_keys` waits until the version the
/// function made is current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rotates_keys_through_rotate_secret_and_waits() {
    let names = random_resources();
    let sdk = moto::sdk_config().await;
    create_resources(&sdk, &names).await.unwrap();
    let front = RotationFront::start(&names, stack_schedule(), Function::Rotates).await;
    let admin = AwsShape::new(
        &moto::sdk_config_at(front.url()).await,
        names.clone(),
        ServiceConfig::for_tests(),
        Arc::new(SystemClock),
    )
    .admin("rotation-port-test");

    admin
        .create_first_key()
        .await
        .unwrap()
        .expect("the set was empty");
    let rotated = admin.rotate_keys().await.unwrap();
    let started = front.started();
    assert_eq!(started.len(), 2, "{started:?}");
    assert_eq!(rotated.version.as_deref(), Some(started[1].as_str()));
    assert_eq!(rotated.keys.keys.len(), 2);
    let new = rotated.keys.keys.last().unwrap();
    assert!(
        new.activates_at - new.created_at >= stack_schedule().prepublication,
        "the function's settings, not the local ones: {new:?}"
    );
    for op in front.passed() {
        assert!(
            [
                "secretsmanager.DescribeSecret",
                "secretsmanager.GetSecretValue",
                "sts.GetCallerIdentity"
            ]
            .contains(&op.as_str()),
            "the admin called {op}"
        );
    }
}
