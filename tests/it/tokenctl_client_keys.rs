//! `tokenctl clients create --auth private_key_jwt` and `tokenctl clients keys add|remove|list`
//! on a SQLite file: a client rotates its key (two keys live at once), and a private key is
//! refused with a clear message.

use std::process::Output;

use crate::support::local_server::tokenctl;

const EC: &str = r#"{"kty":"EC","crv":"P-256","x":"NGtiPoNjHZVpYTNDThdNa1MWYp4EsA9-WYAgsCFNffQ","y":"umRhVxz7u9gFwr6AgYn0si9Qsk5exXIArbKHZS7fz3E"}"#;
const ED: &str = r#"{"kty":"OKP","crv":"Ed25519","kid":"next","x":"i5TOBqK74x3fV7S7Yvrte1HO9KH0Jm9UT4SndS8Fu2c"}"#;

fn ok_json(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kids(keys: &serde_json::Value) -> Vec<&str> {
    keys.as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect()
}

#[test]
fn a_key_client_rotates_its_key_through_tokenctl() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ec, ed) = (file("ec.json", EC), file("ed.json", ED));
    let base = [
        "clients",
        "create",
        "--id",
        "svc",
        "--name",
        "svc",
        "--scope",
        "read",
        "--audience",
        "https://api.test/",
    ];
    // --auth private_key_jwt needs --jwk; --jwk needs --auth private_key_jwt.
    let mut args = base.to_vec();
    args.extend(["--auth", "private_key_jwt"]);
    let out = tokenctl(&db, &args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --jwk"));
    let mut args = base.to_vec();
    args.extend(["--jwk", &ec]);
    assert!(!tokenctl(&db, &args).status.success());

    let mut args = base.to_vec();
    args.extend(["--auth", "private_key_jwt", "--jwk", &ec, "--json"]);
    let client = ok_json(tokenctl(&db, &args));
    assert_eq!(client["auth_method"], "private_key_jwt");
    let first = kids(&client["keys"])[0].to_owned();

    let keys = ok_json(tokenctl(
        &db,
        &["clients", "keys", "add", "svc", "--jwk", &ed, "--json"],
    ));
    assert_eq!(kids(&keys), [first.as_str(), "next"]);
    let keys = ok_json(tokenctl(
        &db,
        &["clients", "keys", "remove", "svc", &first, "--json"],
    ));
    assert_eq!(kids(&keys), ["next"]);
    let keys = ok_json(tokenctl(&db, &["clients", "keys", "list", "svc", "--json"]));
    assert_eq!(kids(&keys), ["next"]);

    // A private key is refused and not stored; a secret client has no keys to add.
    let private = file(
        "private.json",
        &EC.replace("\"kty\"", "\"d\":\"AQAB\",\"kty\""),
    );
    let out = tokenctl(&db, &["clients", "keys", "add", "svc", "--jwk", &private]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("register the public key only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = ok_json(tokenctl(&db, &["clients", "keys", "list", "svc", "--json"]));
    assert_eq!(kids(&keys), ["next"]);
    let mut args = base.to_vec();
    args[3] = "sec";
    assert!(tokenctl(&db, &args).status.success());
    assert!(
        !tokenctl(&db, &["clients", "keys", "add", "sec", "--jwk", &ec])
            .status
            .success()
    );
    // Audited admin actions.
    let audit = ok_json(tokenctl(
        &db,
        &["audit", "--client", "svc", "--admin", "--json"],
    ));
    let mut actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    actions.sort();
    assert_eq!(actions, ["client.create", "key.add", "key.remove"]);
}

/// One public key at most once per client: the same key under another `kid` would stay
/// trusted after its first `kid` is removed.
#[test]
fn the_same_key_under_another_kid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let ec = file("ec.json", EC);
    let again = file(
        "again.json",
        &EC.replace("\"kty\"", "\"kid\":\"other\",\"kty\""),
    );
    let create = [
        "clients",
        "create",
        "--id",
        "svc",
        "--name",
        "svc",
        "--scope",
        "read",
        "--audience",
        "https://api.test/",
        "--auth",
        "private_key_jwt",
        "--jwk",
        &ec,
        "--json",
    ];
    let client = ok_json(tokenctl(&db, &create));
    let first = kids(&client["keys"])[0].to_owned();
    let out = tokenctl(&db, &["clients", "keys", "add", "svc", "--jwk", &again]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("each key once"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = ok_json(tokenctl(&db, &["clients", "keys", "list", "svc", "--json"]));
    assert_eq!(kids(&keys), [first.as_str()], "nothing was written");
}
