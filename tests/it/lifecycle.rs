//! Client lifecycle on the embedded shape: secret rotation with a grace period, the live-secret
//! bound, deletion, optimistic locking, and the admin audit trail.

use std::sync::Arc;

use time::Duration;
use token_service::admin::{AdminError, ClientUpdate, MAX_LIVE_SECRETS};
use token_service::store::{ClientStore, StoreError};

use crate::support::stack::Stack;

const GRANT: &str = "grant_type=client_credentials";

#[tokio::test]
async fn rotation_keeps_the_old_secret_working_for_the_grace_period_only() {
    let s = Stack::new().await;
    let (_, old) = s.client("svc").await;
    let (_, _, new) = s
        .admin()
        .rotate_secret("svc", Duration::hours(24))
        .await
        .unwrap();
    assert_eq!(s.basic("svc", &old, GRANT).await.status, 200);
    assert_eq!(s.basic("svc", new.expose(), GRANT).await.status, 200);
    s.clock.advance(Duration::hours(24) - Duration::seconds(1));
    assert_eq!(
        s.basic("svc", &old, GRANT).await.status,
        200,
        "inside the grace"
    );
    s.clock.advance(Duration::seconds(1));
    s.basic("svc", &old, GRANT)
        .await
        .assert_error(401, "invalid_client");
    assert_eq!(s.basic("svc", new.expose(), GRANT).await.status, 200);
    // The expired secret is pruned from the record on the next write.
    let after = s.admin().add_secret("svc", None).await.unwrap().0;
    assert_eq!(after.secrets.len(), 2);
}

#[tokio::test]
async fn zero_grace_cuts_the_old_secret_off_at_once() {
    let s = Stack::new().await;
    let (_, old) = s.client("svc").await;
    let (client, _, new) = s
        .admin()
        .rotate_secret("svc", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        client.secrets.len(),
        1,
        "the old secret is gone from the record"
    );
    s.basic("svc", &old, GRANT)
        .await
        .assert_error(401, "invalid_client");
    assert_eq!(s.basic("svc", new.expose(), GRANT).await.status, 200);
}

#[tokio::test]
async fn a_client_holds_a_bounded_number_of_live_secrets() {
    let s = Stack::new().await;
    s.client("svc").await;
    for _ in 1..MAX_LIVE_SECRETS {
        s.admin().add_secret("svc", None).await.unwrap();
    }
    let err = s.admin().add_secret("svc", None).await.unwrap_err();
    assert!(matches!(err, AdminError::TooManySecrets(_)), "{err}");
    let err = s
        .admin()
        .rotate_secret("svc", Duration::hours(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("live secrets"), "{err}");
    // Cutting the old ones off makes room.
    let (client, _, _) = s
        .admin()
        .rotate_secret("svc", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(client.secrets.len(), 1);
}

#[tokio::test]
async fn deleted_client_is_refused_and_its_audit_trail_stays() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    assert_eq!(s.basic("svc", &secret, GRANT).await.status, 200);
    s.admin().delete_client("svc").await.unwrap();
    s.basic("svc", &secret, GRANT)
        .await
        .assert_error(401, "invalid_client");
    let records = s.audit().await;
    assert!(
        records
            .iter()
            .any(|r| r.client_id == "svc" && r.outcome == "issued")
    );
    assert!(
        records
            .iter()
            .any(|r| r.action.as_deref() == Some("client.delete"))
    );
    // The id can be registered again, as a new client.
    assert_eq!(s.client("svc").await.0.version, 1);
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_and_nothing_is_overwritten() {
    let s = Stack::new().await;
    let (client, _) = s.client("svc").await;
    let store = s.embedded.store.clone();
    let mut a = client.clone();
    a.name = "from admin a".into();
    a.version += 1;
    let mut b = client.clone();
    b.name = "from admin b".into();
    b.version += 1;
    store.update_client(&a).await.unwrap();
    let err = store.update_client(&b).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        store.get_client("svc").await.unwrap().unwrap().name,
        "from admin a"
    );
    let err = store
        .delete_client("svc", client.version)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_either_win_or_get_a_conflict() {
    let s = Arc::new(Stack::new().await);
    s.client("svc").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let update = ClientUpdate {
                name: Some(format!("admin {i}")),
                ..Default::default()
            };
            s.admin().update_client("svc", update).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(AdminError::Store(StoreError::Conflict(_))) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(wins >= 1);
    let stored = s.embedded.store.get_client("svc").await.unwrap().unwrap();
    assert_eq!(
        stored.version,
        1 + wins,
        "every win is one version, no lost update"
    );
}

#[tokio::test]
async fn every_management_action_is_audited_with_actor_and_without_secrets() {
    let s = Stack::new().await;
    let (_, first) = s.client("svc").await;
    let admin = s.admin();
    let (_, added, second) = admin.add_secret("svc", None).await.unwrap();
    admin.revoke_secret("svc", &added.secret_id).await.unwrap();
    let (_, _, third) = admin
        .rotate_secret("svc", Duration::hours(1))
        .await
        .unwrap();
    admin
        .set_status("svc", token_service::clients::ClientStatus::Disabled)
        .await
        .unwrap();
    admin
        .update_client(
            "svc",
            ClientUpdate {
                token_ttl: Some(Some(60)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    admin.rotate_keys().await.unwrap();
    admin.delete_client("svc").await.unwrap();
    let records = s.audit().await;
    let actions: Vec<&str> = records.iter().filter_map(|r| r.action.as_deref()).collect();
    assert_eq!(
        actions,
        [
            "client.delete",
            "keys.rotate",
            "client.update",
            "client.disable",
            "secret.rotate",
            "secret.revoke",
            "secret.add",
            "client.create",
            "keys.rotate",
        ]
    );
    assert!(
        records
            .iter()
            .filter(|r| r.action.is_some())
            .all(|r| r.actor.as_deref() == Some("test") && r.outcome == "admin")
    );
    let everything = serde_json::to_string(&records).unwrap();
    for secret in [first.as_str(), second.expose(), third.expose()] {
        assert!(!everything.contains(secret));
    }
}
