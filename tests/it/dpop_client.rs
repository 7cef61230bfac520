//! End to end with an independent DPoP client library: the `token-server` binary on a free
//! port, a DPoP-bound client registered with `tokenctl clients create --dpop-bound`, and
//! requests-oauth2client (installed into `.venv` by `make venv-authlib`, pinned in
//! infra/requirements-authlib.txt) getting a `DPoP` token whose `cnf.jkt` is its key's
//! thumbprint, with nonces off and with `TOKEN_DPOP_NONCE=required`.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::support::local_server::{LocalServer, text, tokenctl, venv_python};

const SCRIPT: &str = "tests/python/dpop_client.py";

/// Runs the client library against `base` with a key of `alg`; its JSON answer.
fn dpop_token(python: &Path, base: &str, secret: &str, alg: &str) -> serde_json::Value {
    let out = Command::new(python)
        .args([SCRIPT, "token", base, "dpop-lib", secret, alg])
        .output()
        .expect("python starts");
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn a_dpop_client_library_gets_a_token_bound_to_its_key_with_and_without_nonces() {
    let python = venv_python("requests_oauth2client", "requests-oauth2client");
    for nonce in ["off", "required"] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("server.db");
        let server = LocalServer::start(&db, &[("TOKEN_DPOP_NONCE", nonce)]);
        let base = &server.base;
        let out = tokenctl(
            &db,
            &[
                "clients",
                "create",
                "--id",
                "dpop-lib",
                "--name",
                "DPoP client",
                "--scope",
                "api.read",
                "--audience",
                "https://api.example.com",
                "--dpop-bound",
                "--json",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let secret = created["client_secret"].as_str().unwrap().to_owned();
        let out = tokenctl(&db, &["clients", "show", "dpop-lib", "--json"]);
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(shown["dpop_bound"], true, "{}", text(&out));

        for alg in ["ES256", "RS256", "PS256", "EdDSA"] {
            let got = dpop_token(&python, base, &secret, alg);
            assert_eq!(got["token_type"], "DPoP", "{nonce} {alg}: {got}");
            let token = claims(got["access_token"].as_str().unwrap());
            assert_eq!(token["cnf"]["jkt"], got["jkt"], "{nonce} {alg}: {token}");
            assert_eq!(token["client_id"], "dpop-lib");
            // Under required nonces the library was asked for one and kept it.
            assert_eq!(got["nonce"].is_string(), nonce == "required", "{got}");
        }
    }
}
