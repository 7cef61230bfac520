//! API Gateway's HTTP API JWT authorizer, emulated step by step as AWS documents it
//! (`infra/apigw_jwt_authorizer.py`), against a `token-server` on 127.0.0.1: it finds the keys
//! through `{issuer}/.well-known/openid-configuration`, authorizes an RS256 token with its
//! client's extra claims, denies a wrong issuer, audience, scope, time or signature, and denies
//! every ES256 token (the authorizer takes RSA only: the documented limitation).

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

const AUDIENCE: &str = "https://api.example.com";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A `token-server` on a free loopback port, with its own database; killed when dropped.
struct Server {
    child: Child,
    base: String,
    db: PathBuf,
    secret: String,
}

impl Server {
    /// Starts the server with `TOKEN_SIGNING_ALG=alg` and waits (at most 60 s) until it
    /// listens; the demo client's secret is read from what it prints.
    fn start(dir: &Path, alg: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let db = dir.join(format!("{alg}.db"));
        let log = std::fs::File::create(dir.join(format!("{alg}.log"))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_token-server"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(&db)
            .env_remove("TOKEN_ISSUER")
            .env("TOKEN_SIGNING_ALG", alg)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("token-server starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            db,
            secret: String::new(),
        };
        let mut seen = Vec::new();
        loop {
            let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) else {
                panic!("token-server did not start; output: {seen:?}");
            };
            if let Some(secret) = line.strip_prefix("client_secret:") {
                server.secret = secret.trim().to_owned();
            }
            let listening = line.starts_with("Listening on");
            seen.push(line);
            if listening {
                assert!(!server.secret.is_empty(), "no secret printed: {seen:?}");
                return server;
            }
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into()
    }

    /// A token of the demo client.
    fn token(&self) -> String {
        use base64::Engine as _;
        let pair = format!("demo:{}", self.secret);
        let basic = base64::engine::general_purpose::STANDARD.encode(pair);
        let mut response = Self::agent()
            .post(format!("{}/oauth/token", self.base))
            .header("Authorization", format!("Basic {basic}"))
            .content_type("application/x-www-form-urlencoded")
            .send("grant_type=client_credentials")
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).expect("JSON");
        body["access_token"].as_str().unwrap().to_owned()
    }

    fn jwks_text(&self) -> String {
        Self::agent()
            .get(format!("{}/.well-known/jwks.json", self.base))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// `tokenctl` on the server's database (SQLite in WAL mode: both may use it at once).
    fn tokenctl(&self, args: &[&str]) {
        let out = Command::new(env!("CARGO_BIN_EXE_tokenctl"))
            .arg("--db")
            .arg(&self.db)
            .env("TOKEN_BACKEND", "sqlite")
            .args(args)
            .output()
            .expect("tokenctl runs");
        assert!(
            out.status.success(),
            "tokenctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The project's Python with PyJWT (`make venv-authlib`, which `make test` runs).
fn python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import jwt, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with PyJWT is missing: run `make venv-authlib` (or `make test`)",
        python.display()
    );
    python
}

/// The emulated authorizer's verdict: exit status and the JSON it prints.
fn authorizer(
    issuer: &str,
    audience: &str,
    scopes: &[&str],
    now: Option<i64>,
    token: &str,
) -> (bool, Value) {
    let mut command = Command::new(python());
    command
        .arg(root().join("infra/apigw_jwt_authorizer.py"))
        .args([
            "--issuer",
            issuer,
            "--audience",
            "https://other.example.com",
        ])
        .args(["--audience", audience]);
    for scope in scopes {
        command.args(["--scope", scope]);
    }
    if let Some(now) = now {
        command.args(["--now", &now.to_string()]);
    }
    let out: Output = command.arg(token).output().expect("python runs");
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no verdict: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.success(),
        verdict["isAuthorized"] == true,
        "{verdict}"
    );
    (out.status.success(), verdict)
}

/// `tests/python/pyjwt_verify.py`: PyJWT as a resource server uses it (any of our algorithms).
fn pyjwt_verify(token: &str, jwks: &str, issuer: &str) -> Value {
    let mut child = Command::new(python())
        .arg(root().join("tests/python/pyjwt_verify.py"))
        .args([issuer, AUDIENCE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    write!(child.stdin.take().unwrap(), "{token}\n{jwks}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyJWT refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn denied_because(verdict: (bool, Value), reason: &str) {
    let (authorized, verdict) = verdict;
    assert!(!authorized, "authorized: {verdict}");
    let said = verdict["reason"].as_str().unwrap_or_default();
    assert!(said.contains(reason), "reason {said:?} lacks {reason:?}");
}

#[test]
fn an_rs256_token_passes_the_native_authorizer_steps_with_its_claims() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "RS256");
    let claims_file = dir.path().join("claims.json");
    std::fs::write(&claims_file, r#"{"seats": 25, "org": {"id": 7}}"#).unwrap();
    server.tokenctl(&[
        "clients",
        "update",
        "demo",
        "--claim",
        "tenant=acme",
        "--claims-json",
        claims_file.to_str().unwrap(),
    ]);
    let token = server.token();
    let issuer = server.base.as_str();

    let (authorized, verdict) = authorizer(issuer, AUDIENCE, &["api.read"], None, &token);
    assert!(authorized, "{verdict}");
    let claims = &verdict["claims"];
    assert_eq!(claims["client_id"], "demo");
    assert_eq!(claims["iss"], issuer);
    assert_eq!(
        (&claims["tenant"], &claims["seats"], &claims["org"]),
        (&json!("acme"), &json!(25), &json!({"id": 7})),
        "extra claims arrive typed"
    );
    // The identity source may carry the Bearer prefix.
    let bearer = format!("Bearer {token}");
    assert!(authorizer(issuer, AUDIENCE, &["api.read"], None, &bearer).0);
    // PyJWT, as any resource server, verifies the same token with its claims.
    let verified = pyjwt_verify(&token, &server.jwks_text(), issuer);
    assert_eq!(verified["alg"], "RS256");
    assert_eq!(verified["claims"]["seats"], 25);

    // Each documented check can deny.
    let other_issuer = issuer.replace("127.0.0.1", "localhost");
    denied_because(
        authorizer(&other_issuer, AUDIENCE, &[], None, &token),
        "iss",
    );
    denied_because(
        authorizer(issuer, "https://elsewhere.example.com", &[], None, &token),
        "aud",
    );
    denied_because(
        authorizer(issuer, AUDIENCE, &["api.write"], None, &token),
        "scopes",
    );
    let exp = claims["exp"].as_i64().unwrap();
    let nbf = claims["nbf"].as_i64().unwrap();
    denied_because(authorizer(issuer, AUDIENCE, &[], Some(exp), &token), "exp");
    denied_because(
        authorizer(issuer, AUDIENCE, &[], Some(nbf - 1), &token),
        "nbf",
    );
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let other = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{signed}.{other}{}", &signature[1..]);
    denied_because(
        authorizer(issuer, AUDIENCE, &[], None, &forged),
        "signature",
    );
    // An issuer without the discovery document: no keys can be found.
    let no_discovery = format!("{issuer}/nowhere");
    denied_because(
        authorizer(&no_discovery, AUDIENCE, &[], None, &token),
        "cannot fetch",
    );
}

#[test]
fn an_es256_token_is_denied_by_the_native_authorizer_yet_valid() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "ES256");
    let token = server.token();
    let issuer = server.base.as_str();
    denied_because(
        authorizer(issuer, AUDIENCE, &["api.read"], None, &token),
        "only RSA-based algorithms",
    );
    // The token itself is good: PyJWT verifies it with the algorithm of its JWK.
    let verified = pyjwt_verify(&token, &server.jwks_text(), issuer);
    assert_eq!(verified["alg"], "ES256");
    assert_eq!(verified["claims"]["client_id"], "demo");
}
