//! A moto server (local DynamoDB and Secrets Manager) shared by the tests of one test binary.
//!
//! `TOKEN_TEST_AWS_ENDPOINT` names a running emulator to use instead. Otherwise the first test
//! that asks starts moto from `.venv` (`make venv`), through `infra/moto_serial.py`, which applies
//! one request at a time as DynamoDB applies conditional writes atomically, on a free loopback port, under a
//! shell watchdog that kills it once this test process is gone, so no server outlives the run.
//! Tests share the server and keep apart by using their own random resource names.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// Variable naming an already running emulator (e.g. `http://127.0.0.1:5000`).
pub const ENDPOINT_VAR: &str = "TOKEN_TEST_AWS_ENDPOINT";

/// Region the tests' SDK clients use.
pub const REGION: &str = "eu-west-1";

/// How long moto may take to answer after its start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The watchdog: starts moto, then waits while both this test process and moto live; when the
/// test process is gone (finished, panicked or killed), it stops moto.
const WATCHDOG: &str = r#"
"$MOTO_PYTHON" "$MOTO_SERIAL" 127.0.0.1 "$MOTO_PORT" >"$MOTO_LOG" 2>&1 &
moto=$!
trap 'kill "$moto" 2>/dev/null' EXIT
trap 'exit 0' TERM
while kill -0 "$TEST_PID" 2>/dev/null && kill -0 "$moto" 2>/dev/null; do sleep 0.5; done
"#;

/// The watchdog shell, kept so the process handle lives as long as the test binary.
static SERVER: OnceLock<Mutex<Child>> = OnceLock::new();
static ENDPOINT: OnceLock<String> = OnceLock::new();

/// The emulator's URL, starting moto on first use.
pub fn endpoint() -> &'static str {
    ENDPOINT.get_or_init(|| match std::env::var(ENDPOINT_VAR) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => start_moto(),
    })
}

/// SDK configuration aimed at the emulator, with a fixed region and dummy credentials given
/// explicitly: tests run in parallel and must not change the process environment.
pub async fn sdk_config() -> SdkConfig {
    sdk_config_at(endpoint()).await
}

/// Like [`sdk_config`], aimed at `url` instead (a proxy in front of the emulator).
pub async fn sdk_config_at(url: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

fn moto_server() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    assert!(
        path.is_file(),
        "{} is missing: run `make venv` to install the local AWS emulator (moto), \
         or set {ENDPOINT_VAR} to a running one",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// A moto server of one test's own, stopped when dropped: for a test whose many concurrent
/// requests must not queue behind the other tests' calls in the shared emulator, which
/// answers one call at a time (`infra/moto_serial.py`) while the token flow's decision has a
/// deadline.
pub struct Dedicated {
    watchdog: Child,
    url: String,
}

impl Dedicated {
    /// Starts one.
    pub fn start() -> Self {
        let (watchdog, url, log) = spawn_moto();
        let watchdog = Mutex::new(watchdog);
        wait_until_ready(&url, &watchdog, &log);
        let watchdog = watchdog.into_inner().unwrap();
        Self { watchdog, url }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        // SIGTERM: the watchdog's trap stops moto on its way out.
        let _ = Command::new("kill")
            .arg(self.watchdog.id().to_string())
            .status();
        let _ = self.watchdog.wait();
    }
}

fn start_moto() -> String {
    let (child, url, log) = spawn_moto();
    let child = SERVER.get_or_init(|| Mutex::new(child));
    wait_until_ready(&url, child, &log);
    url
}

/// The watchdog shell with moto behind it, its URL and its log file.
fn spawn_moto() -> (Child, String, PathBuf) {
    let server = moto_server();
    let port = free_port();
    let log = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("moto-{}-{port}.log", std::process::id()));
    let child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .env("MOTO_PYTHON", server.with_file_name("python"))
        .env(
            "MOTO_SERIAL",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/moto_serial.py"),
        )
        .env("MOTO_PORT", port.to_string())
        .env("MOTO_LOG", &log)
        .env("TEST_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the moto watchdog shell");
    (child, format!("http://127.0.0.1:{port}"), log)
}

fn wait_until_ready(url: &str, child: &Mutex<Child>, log: &Path) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let probe = format!("{url}/moto-api/");
    loop {
        if ureq::get(&probe).call().is_ok() {
            return;
        }
        let exited = child.lock().unwrap().try_wait().ok().flatten();
        let log_text = || std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            exited.is_none(),
            "moto exited ({exited:?}) before it answered:\n{}",
            log_text()
        );
        assert!(
            Instant::now() < deadline,
            "moto did not answer {probe} within {READY_TIMEOUT:?}:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
