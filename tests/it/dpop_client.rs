//! End to end with an independent DPoP client library: the `token-server` binary on a free
//! port, a DPoP-bound client registered with `tokenctl clients create --dpop-bound`, and
//! requests-oauth2client (installed into `.venv` by `make venv-authlib`, pinned in
//! infra/requirements-authlib.txt) getting a `DPoP` token whose `cnf.jkt` is its key's
//! thumbprint, with nonces off and with `TOKEN_DPOP_NONCE=required`.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const SCRIPT: &str = "tests/python/dpop_client.py";

fn python() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = path.exists()
        && Command::new(&path)
            .args(["-c", "import requests_oauth2client"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with requests-oauth2client is missing: run `make venv-authlib` (or `make test`)",
        path.display()
    );
    path
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The server, stopped (and waited for) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(db: &Path, nonce: &str) -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_token-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--db")
        .arg(db)
        .env_remove("TOKEN_ISSUER")
        .env("TOKEN_DPOP_NONCE", nonce)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("token-server starts");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.starts_with("Listening on") {
            return (server, format!("http://127.0.0.1:{port}"));
        }
        assert!(Instant::now() < deadline, "token-server did not start");
    }
    panic!("token-server exited before listening");
}

fn tokenctl(db: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenctl"));
    cmd.arg("--db")
        .arg(db)
        .args(args)
        .env_remove("TOKEN_BACKEND");
    cmd.output().expect("tokenctl starts")
}

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
    let python = python();
    for nonce in ["off", "required"] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("server.db");
        let (_server, base) = start_server(&db, nonce);
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
            let got = dpop_token(&python, &base, &secret, alg);
            assert_eq!(got["token_type"], "DPoP", "{nonce} {alg}: {got}");
            let token = claims(got["access_token"].as_str().unwrap());
            assert_eq!(token["cnf"]["jkt"], got["jkt"], "{nonce} {alg}: {token}");
            assert_eq!(token["client_id"], "dpop-lib");
            // Under required nonces the library was asked for one and kept it.
            assert_eq!(got["nonce"].is_string(), nonce == "required", "{got}");
        }
    }
}
