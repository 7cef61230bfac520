//! The `token-server` and `tokenctl` binaries as a user runs them, for the end-to-end tests
//! with independent client libraries: a server on a free loopback port over a SQLite file,
//! the command line on the same file, and the `.venv` Python that carries the libraries.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `token-server` process, stopped (and waited for) when dropped.
pub struct LocalServer {
    child: Child,
    /// Where it listens, `http://127.0.0.1:<port>`; also its issuer.
    pub base: String,
}

impl LocalServer {
    /// Starts the server on `db` with `env` added to its environment, and waits (30 s at
    /// most) until it listens.
    pub fn start(db: &Path, env: &[(&str, &str)]) -> Self {
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
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("token-server starts");
        let stdout = child.stdout.take().unwrap();
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("Listening on") {
                return server;
            }
            assert!(Instant::now() < deadline, "token-server did not start");
        }
        panic!("token-server exited before listening");
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tokenctl --db <db> <args>` on the embedded backend.
pub fn tokenctl(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenctl"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("TOKEN_BACKEND")
        .output()
        .expect("tokenctl starts")
}

/// The `.venv` Python, after checking that it imports `modules` (the client library `what`
/// of a test); the failure says how to install it.
pub fn venv_python(modules: &str, what: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = path.exists()
        && Command::new(&path)
            .args(["-c", &format!("import {modules}")])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with {what} is missing: run `make venv-authlib` (or `make test`, which installs it)",
        path.display()
    );
    path
}

/// A finished command's status and output, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
