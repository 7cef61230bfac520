//! End to end: the `token-server` binary on a free port, driven over real HTTP exactly as the
//! README tells a user to, including the printed credentials and a restart.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;

use crate::support::stack;

struct Server {
    child: Child,
    base: String,
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// Starts the server and reads its stdout until it listens (at most 30 s).
    fn start(db: &std::path::Path, port: u16) -> (Self, Vec<String>) {
        Self::start_with(db, port, &[])
    }

    /// [`start`](Self::start) with extra environment variables.
    fn start_with(db: &std::path::Path, port: u16, env: &[(&str, &str)]) -> (Self, Vec<String>) {
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(db.with_extension("log"))
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_token-server"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(db)
            .env_remove("TOKEN_ISSUER")
            .env_remove("TOKEN_SIGNING_ALG")
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
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
            lines,
        };
        let mut seen = Vec::new();
        loop {
            match server.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let done = line.starts_with("Listening on");
                    seen.push(line);
                    if done {
                        return (server, seen);
                    }
                }
                Err(_) => {
                    server.stop();
                    panic!("token-server did not start; output: {seen:?}");
                }
            }
        }
    }

    /// Sends SIGTERM and waits for a clean exit (at most 10 s).
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

#[test]
fn first_start_prints_working_credentials_and_a_token_verifies_against_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/server.db");
    let port = free_port();
    let (mut server, output) = Server::start(&db, port);
    let field = |name: &str| {
        output
            .iter()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {name} in {output:?}"))
    };
    assert_eq!(field("client_id:"), "demo");
    let secret = field("client_secret:");
    let curl = output
        .iter()
        .find(|l| l.trim_start().starts_with("curl "))
        .expect("a curl command is printed");
    assert!(curl.contains(&format!("{}/oauth/token", server.base)));
    assert!(curl.contains(&format!("demo:{secret}")));

    let agent = agent();
    let mut response = agent
        .post(format!("{}/oauth/token", server.base))
        .header("Authorization", stack::basic_header("demo", &secret))
        .content_type("application/x-www-form-urlencoded")
        .send("grant_type=client_credentials")
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let body: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();

    let jwks: JwkSet = serde_json::from_str(
        &agent
            .get(format!("{}/.well-known/jwks.json", server.base))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let claims = stack::verify(&token, &jwks, &server.base, stack::AUDIENCE).expect("verifies");
    assert_eq!(claims.client_id, "demo");
    assert_eq!(claims.scope, "api.read");

    // A body declared larger than 8 KiB over real HTTP is refused with 413.
    let big = format!("grant_type=client_credentials&pad={}", "x".repeat(9000));
    let response = agent
        .post(format!("{}/oauth/token", server.base))
        .content_type("application/x-www-form-urlencoded")
        .send(big.as_str())
        .unwrap();
    assert_eq!(response.status(), 413);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the database holds private keys");
    }

    let status = server.stop().expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");

    // The second start reuses the file: no new client, no secret printed again, same key.
    let (mut again, output) = Server::start(&db, port);
    assert!(
        !output.iter().any(|l| l.contains("client_secret")),
        "{output:?}"
    );
    let response = agent
        .post(format!("{}/oauth/token", again.base))
        .header("Authorization", stack::basic_header("demo", &secret))
        .content_type("application/x-www-form-urlencoded")
        .send("grant_type=client_credentials")
        .unwrap();
    assert_eq!(response.status(), 200);
    let audit = token_service::store::sqlite::SqliteStore::open(&db).unwrap();
    let records = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use token_service::store::AuditLog as _;
        audit.query(&Default::default()).await.unwrap()
    });
    let issued: Vec<_> = records.iter().filter(|r| r.outcome == "issued").collect();
    assert_eq!(issued.len(), 2);
    let wrong = agent
        .post(format!("{}/oauth/token", again.base))
        .header(
            "Authorization",
            stack::basic_header("demo", "tks_not_the_secret"),
        )
        .content_type("application/x-www-form-urlencoded")
        .send("grant_type=client_credentials")
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        issued
            .iter()
            .all(|r| r.source_ip.as_deref() == Some("127.0.0.1")),
        "the peer address is audited"
    );
    again.stop();

    // Neither the log lines nor any stored audit record holds a secret, hash or token.
    let log = std::fs::read_to_string(db.with_extension("log")).unwrap();
    assert!(
        log.contains("token request"),
        "the server logged requests: {log}"
    );
    let records = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use token_service::store::AuditLog as _;
        audit.query(&Default::default()).await.unwrap()
    });
    let stored = serde_json::to_string(&records).unwrap();
    let hash = token_service::clients::SecretHash::of(secret.as_bytes());
    for needle in [
        secret.as_str(),
        token.as_str(),
        hash.as_str(),
        "tks_not_the_secret",
    ] {
        assert!(!log.contains(needle), "a log line holds a secret or token");
        assert!(
            !stored.contains(needle),
            "an audit record holds a secret or token"
        );
    }
}

#[test]
fn bad_configuration_stops_the_start_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_token-server"))
        .args(["--listen", "127.0.0.1:0", "--issuer", "ftp://nope"])
        .arg("--db")
        .arg(dir.path().join("x.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOKEN_ISSUER"));

    let out = Command::new(env!("CARGO_BIN_EXE_token-server"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--db")
        .arg(dir.path().join("y.db"))
        .env("TOKEN_SIGNING_ALG", "es256")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TOKEN_SIGNING_ALG") && stderr.contains("RS256, ES256, EdDSA"),
        "{stderr}"
    );
    assert!(!dir.path().join("y.db").exists(), "no key was made");
}

/// PyJWT in `.venv` (installed by `make test` with the Authlib test's tools).
fn python_with_pyjwt() -> std::path::PathBuf {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import jwt, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with PyJWT is missing: run `make venv-authlib` (or `make test`, which installs it)",
        python.display()
    );
    python
}

/// An independent resource-server library's verdict: `tests/python/pyjwt_verify.py`.
fn pyjwt_verify(token: &str, jwks: &str, issuer: &str) -> Result<serde_json::Value, String> {
    use std::io::Write as _;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/pyjwt_verify.py");
    let mut child = Command::new(python_with_pyjwt())
        .arg(script)
        .args([issuer, stack::AUDIENCE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    write!(child.stdin.take().unwrap(), "{token}\n{jwks}").unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// A fresh server (`token-server --db NEW.db`, as bench/load.sh starts it) makes its first key
/// with `TOKEN_SIGNING_ALG` and signs with it; the JWKS publishes that algorithm, and both
/// `jsonwebtoken` and PyJWT verify the token with the algorithm taken from the JWK.
#[test]
fn a_fresh_server_signs_with_the_configured_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["ES256", "EdDSA"] {
        let db = dir.path().join(format!("{alg}.db"));
        let (mut server, output) =
            Server::start_with(&db, free_port(), &[("TOKEN_SIGNING_ALG", alg)]);
        let secret = output
            .iter()
            .find_map(|l| {
                l.strip_prefix("client_secret:")
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no client_secret in {output:?}"));
        let agent = agent();
        let mut response = agent
            .post(format!("{}/oauth/token", server.base))
            .header("Authorization", stack::basic_header("demo", &secret))
            .content_type("application/x-www-form-urlencoded")
            .send("grant_type=client_credentials")
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        let token = body["access_token"].as_str().unwrap().to_owned();
        let text = agent
            .get(format!("{}/.well-known/jwks.json", server.base))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let jwks: JwkSet = serde_json::from_str(&text).unwrap();
        let published: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(published["keys"].as_array().unwrap().len(), 1);
        assert_eq!(published["keys"][0]["alg"], alg);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);
        let claims = stack::verify(&token, &jwks, &server.base, stack::AUDIENCE).expect("verifies");
        assert_eq!(claims.client_id, "demo");
        let verdict = pyjwt_verify(&token, &text, &server.base)
            .unwrap_or_else(|e| panic!("PyJWT refused the {alg} token: {e}"));
        assert_eq!(verdict["alg"], alg);
        assert_eq!(verdict["claims"]["client_id"], "demo");
        // A token with another signature is refused by PyJWT: the check above can fail.
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let other = if signature.starts_with('A') { 'B' } else { 'A' };
        let forged = format!("{signed}.{other}{}", &signature[1..]);
        assert!(
            pyjwt_verify(&forged, &text, &server.base).is_err(),
            "PyJWT accepted a forged {alg} token"
        );
        server.stop();
    }
}

/// `tokenctl keys rotate` on the server's file rotates by the server's timing or not at all:
/// the server records its timing with the key set when it starts, and a rotation by other
/// settings (here the default one-hour token lifetime, against the server's two hours) is
/// refused with both timings named and the key set unchanged, since it could drop a key that
/// still verifies live tokens.
#[test]
fn tokenctl_rotates_keys_by_the_servers_timing_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("timing.db");
    let (mut server, _) = Server::start_with(&db, free_port(), &[("TOKEN_MAX_TTL", "7200")]);
    server.stop();
    let keys = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tokenctl"))
            .arg("--db")
            .arg(&db)
            .args(extra)
            .args(["keys", "list", "--json"])
            .env_remove("TOKEN_MAX_TTL")
            .output()
            .unwrap()
    };
    let before = keys(&[]);
    assert!(before.status.success(), "{before:?}");
    let rotate = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tokenctl"))
            .arg("--db")
            .arg(&db)
            .args(extra)
            .args(["keys", "rotate", "--json"])
            .env_remove("TOKEN_MAX_TTL")
            .output()
            .unwrap()
    };
    let refused = rotate(&[]);
    assert!(!refused.status.success(), "{refused:?}");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("retirement 7260 s") && message.contains("retirement 3660 s"),
        "{message}"
    );
    assert_eq!(keys(&[]).stdout, before.stdout, "nothing changed");
    let rotated = rotate(&["--max-ttl", "7200"]);
    assert!(rotated.status.success(), "{rotated:?}");
    let listed: serde_json::Value = serde_json::from_slice(&keys(&[]).stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}
