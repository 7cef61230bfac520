//! End to end with an independent client library: the `token-server` binary on a free port, a
//! `private_key_jwt` client registered with `tokenctl` from a public JWK, and Authlib's
//! `PrivateKeyJWT` (installed into `.venv` by `make test`, pinned in
//! infra/requirements-authlib.txt) getting a token and verifying it against the JWKS.

use std::path::Path;
use std::process::Command;

use crate::support::local_server::{LocalServer, text, tokenctl, venv_python};

const SCRIPT: &str = "tests/python/authlib_private_key_jwt.py";

#[test]
fn authlib_gets_a_token_with_a_private_key_and_verifies_it() {
    let python = venv_python("authlib, joserfc, requests", "Authlib");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let keys = dir.path().to_str().unwrap();
    let mut keygen = Command::new(&python);
    keygen.args([SCRIPT, "keygen", keys]);
    let out = keygen.output().expect("python starts");
    assert!(out.status.success(), "{}", text(&out));
    let server = LocalServer::start(&db, &[]);
    let base = &server.base;

    // A private key handed over is refused with a clear message and nothing is created.
    let pem = std::fs::read_to_string(dir.path().join("private.pem")).unwrap();
    assert!(pem.contains("PRIVATE KEY"));
    let private_jwk = dir.path().join("private.jwk.json");
    let public: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("public.jwk.json")).unwrap())
            .unwrap();
    let mut private = public.clone();
    private["d"] = "AQAB".into();
    std::fs::write(&private_jwk, private.to_string()).unwrap();
    let create = |jwk: &Path| {
        tokenctl(
            &db,
            &[
                "clients",
                "create",
                "--id",
                "authlib",
                "--name",
                "Authlib client",
                "--scope",
                "api.read",
                "--audience",
                "https://api.example.com",
                "--auth",
                "private_key_jwt",
                "--jwk",
                jwk.to_str().unwrap(),
                "--json",
            ],
        )
    };
    let out = create(&private_jwk);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("register the public key only"),
        "{}",
        text(&out)
    );
    let out = tokenctl(&db, &["clients", "show", "authlib"]);
    assert!(!out.status.success(), "{}", text(&out));

    let out = create(&dir.path().join("public.jwk.json"));
    assert!(out.status.success(), "{}", text(&out));
    let client: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(client["auth_method"], "private_key_jwt");
    assert_eq!(client["secrets"], serde_json::json!([]));
    let kid = client["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(kid.len(), 43, "an RFC 7638 SHA-256 thumbprint: {kid}");
    assert!(client["keys"][0]["jwk"].get("d").is_none());

    let mut token = Command::new(&python);
    token.args([
        SCRIPT,
        "token",
        base,
        "authlib",
        dir.path().join("private.pem").to_str().unwrap(),
    ]);
    let out = token.output().expect("python starts");
    assert!(out.status.success(), "{}", text(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["token"]["token_type"], "Bearer");
    assert_eq!(got["token"]["scope"], "api.read");
    assert_eq!(got["header"]["typ"], "at+jwt");
    assert_eq!(got["claims"]["client_id"], "authlib");
    assert_eq!(got["claims"]["aud"], "https://api.example.com");

    // `clients keys list` shows the key; the audit trail names the method.
    let out = tokenctl(&db, &["clients", "keys", "list", "authlib"]);
    assert!(
        out.status.success() && text(&out).contains(&kid),
        "{}",
        text(&out)
    );
    let out = tokenctl(&db, &["audit", "--client", "authlib", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let issued: Vec<_> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "issued")
        .collect();
    assert_eq!(issued.len(), 1, "{records}");
    assert_eq!(issued[0]["fields"], serde_json::json!(["private_key_jwt"]));
    assert_eq!(issued[0]["auth_method"], "private_key_jwt", "{records}");
    // The text view names the method of each issued token too.
    let out = tokenctl(&db, &["audit", "--client", "authlib"]);
    let listing = text(&out);
    assert!(
        listing
            .lines()
            .any(|l| l.contains(" issued ") && l.contains("auth=private_key_jwt")),
        "{listing}"
    );
}
