//! Key rotation on one SQLite file from several processes at once: `tokenctl keys rotate` in
//! two processes, and the server's first start beside its automatic rotation. Whatever the
//! interleaving, no key is lost, the public keys are exactly the private set's, and a fresh
//! database gets exactly one first key.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use token_service::audit::AuditQuery;
use token_service::store::sqlite::SqliteStore;
use token_service::store::{AuditLog, KeyStore, PublicKeyStore};

use crate::support::local_server::tokenctl;

/// Rotations each of the two processes runs.
const ROTATIONS_EACH: usize = 6;

/// The kid a successful `tokenctl keys rotate` reports adding.
fn added_kid(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let rest = text
        .strip_prefix("added key ")
        .unwrap_or_else(|| panic!("unexpected output: {text}"));
    rest.split_whitespace().next().unwrap().to_owned()
}

/// Runs `keys rotate` `n` times in a row in a thread; returns the kids it reports adding.
fn rotating(db: &Path, n: usize) -> std::thread::JoinHandle<Vec<String>> {
    let db = db.to_owned();
    std::thread::spawn(move || {
        (0..n)
            .map(|_| {
                let out = tokenctl(&db, &["keys", "rotate"]);
                assert!(
                    out.status.success(),
                    "keys rotate failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                added_kid(&out.stdout)
            })
            .collect()
    })
}

async fn key_rotations_audited(store: &SqliteStore) -> usize {
    let records = store
        .query(&AuditQuery {
            outcome: Some("admin".to_owned()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    records
        .iter()
        .filter(|r| r.action.as_deref() == Some("keys.rotate"))
        .count()
}

/// The private set's kids, after checking that the public keys are exactly these.
async fn consistent_kids(store: &SqliteStore) -> BTreeSet<String> {
    let private: BTreeSet<_> = store
        .load_key_set()
        .await
        .unwrap()
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect();
    let public: BTreeSet<_> = store
        .public_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kid)
        .collect();
    assert_eq!(
        public, private,
        "the published keys are exactly the private set's"
    );
    private
}

#[tokio::test]
async fn two_processes_rotating_at_once_lose_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let init = tokenctl(&db, &["keys", "init"]);
    assert!(init.status.success(), "{init:?}");

    let (a, b) = (rotating(&db, ROTATIONS_EACH), rotating(&db, ROTATIONS_EACH));
    let mut added: Vec<String> = a.join().expect("first process");
    added.extend(b.join().expect("second process"));

    let store = SqliteStore::open(&db).unwrap();
    let kids = consistent_kids(&store).await;
    // All rotations ran within the pre-publication delay, so no new key has signed yet and
    // every key is still published: the set keeps the first key and every key added.
    assert_eq!(kids.len(), 1 + 2 * ROTATIONS_EACH, "{kids:?}");
    for kid in &added {
        assert!(
            kids.contains(kid),
            "key {kid} was reported added and is gone"
        );
    }
    assert_eq!(key_rotations_audited(&store).await, 1 + 2 * ROTATIONS_EACH);
}

/// Reads the server's stderr until its automatic rotation reports its first check.
fn wait_for_first_rotation_check(server: &mut Child) -> Vec<String> {
    let stderr = server.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) {
        let done = line.contains("key rotation checked");
        seen.push(line);
        if done {
            return seen;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    panic!("the automatic rotation never reported; server log: {seen:#?}");
}

#[tokio::test]
async fn first_start_with_automatic_rotation_creates_exactly_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");
    let mut server = Command::new(env!("CARGO_BIN_EXE_token-server"))
        .args(["--listen", "127.0.0.1:0", "--key-rotation-interval", "2h"])
        .arg("--db")
        .arg(&db)
        .env_remove("TOKEN_ISSUER")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("token-server starts");
    let log = wait_for_first_rotation_check(&mut server);
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();

    let store = SqliteStore::open(&db).unwrap();
    let kids = consistent_kids(&store).await;
    assert_eq!(kids.len(), 1, "{kids:?}; server log: {log:#?}");
    assert_eq!(key_rotations_audited(&store).await, 1, "{log:#?}");
}
