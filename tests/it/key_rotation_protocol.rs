//! The Secrets Manager rotation protocol of the signing-key secret, step by step and with
//! retries of every step, against Secrets Manager and DynamoDB on the moto server.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use token_service::clock::{Clock as _, ManualClock};
use token_service::config::ServiceConfig;
use token_service::encoding::random_b64url;
use token_service::keys::KeySet;
use token_service::store::aws::protocol::{RotationError, RotationProtocol, Step, VersionedSecret};
use token_service::store::aws::{
    DynamoDbPublicKeyStore, SecretsManagerKeyStore, SecretsManagerVersions, create_resources,
};
use token_service::store::{KeyStore, PublicKeyStore};

use crate::support::moto;
use crate::support::stores::random_resources;

const STEPS: [Step; 4] = [
    Step::CreateSecret,
    Step::SetSecret,
    Step::TestSecret,
    Step::FinishSecret,
];

struct Fixture {
    rotation: RotationProtocol,
    versions: Arc<SecretsManagerVersions>,
    keys: SecretsManagerKeyStore,
    public: Arc<DynamoDbPublicKeyStore>,
    clock: Arc<ManualClock>,
}

async fn fixture() -> Fixture {
    let sdk = moto::sdk_config().await;
    let names = random_resources();
    create_resources(&sdk, &names).await.unwrap();
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let versions = Arc::new(SecretsManagerVersions::new(
        sm.clone(),
        &names.key_secret_id,
    ));
    let public = Arc::new(DynamoDbPublicKeyStore::new(db, &names.public_keys_table));
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    Fixture {
        rotation: RotationProtocol {
            secret: versions.clone(),
            public_keys: public.clone(),
            schedule: ServiceConfig::for_tests().schedule,
            alg: ServiceConfig::for_tests().signing_alg,
            clock: clock.clone(),
        },
        versions,
        keys: SecretsManagerKeyStore::new(sm, &names.key_secret_id),
        public,
        clock,
    }
}

fn token() -> String {
    // Secrets Manager version ids are 32 to 64 characters.
    random_b64url(24)
}

async fn stages(f: &Fixture, version: &str) -> Vec<String> {
    f.versions
        .versions()
        .await
        .unwrap()
        .into_iter()
        .find(|(id, _)| id == version)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

/// Runs every step twice, as Secrets Manager may retry any of them.
async fn rotate_with_retries(f: &Fixture, token: &str) {
    for step in STEPS {
        f.rotation.run(step, token).await.unwrap();
        f.rotation
            .run(step, token)
            .await
            .unwrap_or_else(|e| panic!("retry of {step:?} failed: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_rotation_after_deploy_creates_a_key_that_signs_at_once() {
    let f = fixture().await;
    assert!(f.keys.load_key_set().await.unwrap().keys.is_empty());
    let t1 = token();
    rotate_with_retries(&f, &t1).await;
    assert!(stages(&f, &t1).await.contains(&"AWSCURRENT".to_owned()));
    let set = f.keys.load_key_set().await.unwrap();
    assert_eq!(set.keys.len(), 1, "retries created no second key");
    assert_eq!(set.keys[0].activates_at, f.clock.now());
    let published = f.public.public_keys().await.unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].kid, set.keys[0].kid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_rotation_prepublishes_the_new_key_and_keeps_the_signing_one() {
    let f = fixture().await;
    let t1 = token();
    rotate_with_retries(&f, &t1).await;
    let first = f.keys.load_key_set().await.unwrap().keys[0].clone();

    f.clock.advance(Duration::days(30));
    let t2 = token();
    // Step by step: nothing the token function reads changes before finishSecret.
    f.rotation.run(Step::CreateSecret, &t2).await.unwrap();
    assert!(stages(&f, &t2).await.contains(&"AWSPENDING".to_owned()));
    assert_eq!(
        f.keys.load_key_set().await.unwrap().keys,
        vec![first.clone()]
    );
    f.rotation.run(Step::CreateSecret, &t2).await.unwrap();
    f.rotation.run(Step::SetSecret, &t2).await.unwrap();
    let published = f.public.public_keys().await.unwrap();
    assert_eq!(
        published.len(),
        2,
        "the new key is published before it is current"
    );
    f.rotation.run(Step::SetSecret, &t2).await.unwrap();
    f.rotation.run(Step::TestSecret, &t2).await.unwrap();
    assert_eq!(
        f.keys.load_key_set().await.unwrap().keys,
        vec![first.clone()]
    );
    f.rotation.run(Step::FinishSecret, &t2).await.unwrap();
    f.rotation.run(Step::FinishSecret, &t2).await.unwrap();

    let set = f.keys.load_key_set().await.unwrap();
    assert_eq!(set.keys.len(), 2);
    assert_eq!(set.keys[0], first);
    let new = &set.keys[1];
    assert_eq!(
        new.activates_at,
        f.clock.now() + ServiceConfig::for_tests().schedule.prepublication
    );
    assert!(stages(&f, &t2).await.contains(&"AWSCURRENT".to_owned()));
    assert!(!stages(&f, &t1).await.contains(&"AWSCURRENT".to_owned()));
    // A step for a version that is current already does nothing.
    for step in STEPS {
        f.rotation.run(step, &t2).await.unwrap();
    }
    assert_eq!(f.keys.load_key_set().await.unwrap(), set);

    // Once the first key has retired, the next rotation drops it from the secret and the table.
    f.clock.advance(Duration::days(30));
    rotate_with_retries(&f, &token()).await;
    let kids: Vec<String> = f
        .keys
        .load_key_set()
        .await
        .unwrap()
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids.len(), 2);
    assert!(!kids.contains(&first.kid));
    let published: Vec<String> = f
        .public
        .public_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kid)
        .collect();
    assert!(!published.contains(&first.kid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_retried_step_never_activates_a_key_sooner_than_prepublication_after_it_appeared() {
    let f = fixture().await;
    rotate_with_retries(&f, &token()).await;
    let before: Vec<String> = f
        .public
        .public_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kid)
        .collect();
    f.clock.advance(Duration::days(30));
    let t = token();
    let mut appeared = None;
    let mut new_kid: Option<String> = None;
    for step in STEPS {
        f.rotation.run(step, &t).await.unwrap();
        if new_kid.is_none() {
            // The pending set's new key, once createSecret stored it.
            if let Some(text) = f.versions.value_of_version(&t).await.unwrap() {
                let set = KeySet::from_json(&text).unwrap();
                new_kid = set
                    .keys
                    .iter()
                    .map(|k| k.kid.clone())
                    .find(|k| !before.contains(k));
            }
        }
        let published = f.public.public_keys().await.unwrap();
        if appeared.is_none()
            && new_kid
                .as_ref()
                .is_some_and(|k| published.iter().any(|r| &r.kid == k))
        {
            appeared = Some(f.clock.now());
        }
        // Secrets Manager retries a failed step later: here, every next step runs 5 h later.
        f.clock.advance(Duration::hours(5));
    }
    let set = f.keys.load_key_set().await.unwrap();
    let new = set
        .keys
        .iter()
        .find(|k| Some(&k.kid) == new_kid.as_ref())
        .unwrap();
    let appeared = appeared.expect("the new key was published");
    let prepublication = ServiceConfig::for_tests().schedule.prepublication;
    assert!(
        new.activates_at >= appeared + prepublication,
        "the key appeared at {appeared} and signs from {}",
        new.activates_at
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_out_of_order_or_for_other_versions_fail_clearly() {
    let f = fixture().await;
    let t = token();
    let err = f.rotation.run(Step::SetSecret, &t).await.unwrap_err();
    assert!(matches!(err, RotationError::NotPending(_)), "{err}");
    f.rotation.run(Step::CreateSecret, &t).await.unwrap();
    // testSecret on a table that lost the pending key: it is not published.
    f.public.replace_public_keys(&[]).await.unwrap();
    let err = f.rotation.run(Step::TestSecret, &t).await.unwrap_err();
    assert!(matches!(err, RotationError::TestFailed { .. }), "{err}");
    assert!(!err.to_string().contains("PRIVATE"), "{err}");
    assert!(matches!(
        "rotateEverything".parse::<Step>(),
        Err(RotationError::UnknownStep(_))
    ));
    f.rotation.run(Step::SetSecret, &t).await.unwrap();
    f.rotation.run(Step::TestSecret, &t).await.unwrap();
    f.rotation.run(Step::FinishSecret, &t).await.unwrap();
    let later = token();
    rotate_with_retries(&f, &later).await;
    // The first version is no longer current nor pending: a stray retry for it is refused.
    let err = f.rotation.run(Step::CreateSecret, &t).await.unwrap_err();
    assert!(matches!(err, RotationError::NotPending(_)), "{err}");
}

/// A rotation stuck after `setSecret` (its Lambda failing, throttled, or its secret policy
/// wrong) leaves the token function signing with `AWSCURRENT`: that key must stay in the JWKS
/// however long the rotation stays pending, and retire on time once it finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_stuck_after_set_secret_never_unpublishes_the_key_that_signs() {
    let f = fixture().await;
    rotate_with_retries(&f, &token()).await;
    f.clock.advance(Duration::days(30));
    let stuck = token();
    f.rotation.run(Step::CreateSecret, &stuck).await.unwrap();
    f.rotation.run(Step::SetSecret, &stuck).await.unwrap();
    let schedule = ServiceConfig::for_tests().schedule;
    f.clock
        .advance(schedule.prepublication + schedule.retirement + Duration::hours(1));
    let now = f.clock.now();
    let current = f.keys.load_key_set().await.unwrap();
    let signer = schedule
        .signing_key(&current.keys, now)
        .unwrap()
        .kid
        .clone();
    let published = |records: &[token_service::keys::PublicKeyRecord], at| {
        token_service::keys::jwk::jwks(records, &schedule, at)
            .keys
            .into_iter()
            .filter_map(|k| k.common.key_id)
            .collect::<Vec<_>>()
    };
    let records = f.public.public_keys().await.unwrap();
    assert!(
        published(&records, now).contains(&signer),
        "the signer left the JWKS"
    );
    let pending: Vec<_> = records.iter().filter(|r| r.pending).collect();
    assert_eq!(pending.len(), 1, "the new key is published as pending");

    // The rotation finishes late: the new key takes over from then, and the old one stays
    // published until every signer has loaded the new set and its last tokens expired.
    f.rotation.run(Step::TestSecret, &stuck).await.unwrap();
    f.rotation.run(Step::FinishSecret, &stuck).await.unwrap();
    f.rotation.run(Step::FinishSecret, &stuck).await.unwrap();
    let records = f.public.public_keys().await.unwrap();
    assert!(records.iter().all(|r| !r.pending));
    let retired = now + schedule.signer_refresh + schedule.retirement;
    assert!(published(&records, retired - Duration::seconds(1)).contains(&signer));
    assert!(!published(&records, retired).contains(&signer));
}
