//! The local token server (embedded shape): SQLite storage, the shared router, on
//! 127.0.0.1:9000 by default. The first start creates a signing key and a `demo` client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use token_service::admin::{NewClient, parse_duration};
use token_service::clock::SystemClock;
use token_service::config::{ServiceSettings, TrustedProxy};
use token_service::shapes::embedded::Embedded;
use token_service::shapes::server::{self, Limits};

/// Serves the OAuth 2.0 token endpoint, JWKS and metadata from a local SQLite file.
#[derive(Debug, Parser)]
#[command(name = "token-server", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TOKEN_LISTEN", default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// SQLite database file (created with mode 0600).
    #[arg(long, env = "TOKEN_DB", default_value = ".data/token-service.db")]
    db: PathBuf,
    /// Reverse proxies (comma-separated addresses or CIDR ranges) whose `X-Forwarded-For`
    /// header names the client; by default the socket peer is the client and the header is
    /// ignored.
    #[arg(long, env = "TOKEN_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<TrustedProxy>,
    /// Rotate the signing key automatically once the newest key is this old (e.g. 30d, 12h);
    /// off by default (rotate by hand with `tokenctl keys rotate`).
    #[arg(long, env = "TOKEN_KEY_ROTATION_INTERVAL")]
    key_rotation_interval: Option<String>,
    /// Connections served at once; more wait in the accept queue.
    #[arg(long, env = "TOKEN_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_connections: u32,
    /// Seconds a connection may take to send a request's headers, counted from when the server
    /// waits for that request (so also how long an idle keep-alive connection stays open).
    #[arg(long, env = "TOKEN_HEADER_READ_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    header_read_timeout: u64,
    /// Seconds a request's body may take after its headers; then `408` and the connection
    /// closes.
    #[arg(long, env = "TOKEN_BODY_READ_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    body_read_timeout: u64,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "TOKEN_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    service: ServiceSettings,
}

const DEMO_CLIENT: &str = "demo";

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// Creates the signing key and the demo client on first start; prints what a user needs.
async fn first_start(embedded: &Embedded) -> Result<(), Box<dyn std::error::Error>> {
    let admin = embedded.admin("token-server");
    if admin.ensure_signing_key().await? {
        tracing::info!("created the first signing key");
    }
    // `tokenctl keys rotate` then rotates by this server's timing or not at all.
    embedded.key_rotation().record_timing().await?;
    if !admin.list_clients().await?.is_empty() {
        return Ok(());
    }
    let (client, secret) = admin
        .create_client(NewClient {
            client_id: Some(DEMO_CLIENT.to_owned()),
            name: "Demo client".to_owned(),
            scopes: vec!["api.read".to_owned()],
            audiences: vec!["https://api.example.com".to_owned()],
            ..Default::default()
        })
        .await?;
    let token_url = embedded.config.token_endpoint();
    // The secret is printed once, to the terminal of whoever started the server; it never
    // reaches the log.
    println!(
        "\nCreated client `{id}` (scope api.read, audience https://api.example.com).\n\
         client_id:     {id}\n\
         client_secret: {secret}\n\
         The secret is shown only now. Get a token with:\n\n  \
         curl -s -u '{id}:{secret}' -d grant_type=client_credentials {token_url}\n",
        id = client.client_id,
        secret = secret.expose(),
    );
    Ok(())
}

/// Drops expired audit records and used assertion ids now and every hour (DynamoDB does this
/// with TTL on the AWS shape); the in-memory rate counters drop their own.
fn prune_expired(embedded: &Embedded) {
    let store = embedded.store.clone();
    let clock = embedded.clock.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            match store.prune_expired(clock.now().unix_timestamp()).await {
                Ok(n) => tracing::debug!(deleted = n, "pruned expired records"),
                Err(e) => tracing::warn!(error = %e, "pruning expired records failed"),
            }
        }
    });
}

/// Checks every minute whether the newest signing key is `interval` old, and rotates then.
fn rotate_automatically(embedded: &Embedded, interval: time::Duration) {
    let admin = embedded.admin("token-server");
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            match admin.rotate_if_due(interval).await {
                Ok(rotated) => {
                    if rotated {
                        tracing::info!("rotated the signing key");
                    }
                    tracing::debug!(rotated, "key rotation checked");
                }
                Err(e) => tracing::error!(error = %e, "automatic key rotation failed"),
            }
        }
    });
}

/// The automatic rotation interval, which must leave a new key time to be published.
fn rotation_interval(
    text: &str,
    embedded: &Embedded,
) -> Result<time::Duration, Box<dyn std::error::Error>> {
    let interval = parse_duration(text)
        .filter(|d| d.is_positive())
        .ok_or("TOKEN_KEY_ROTATION_INTERVAL must be a duration such as 30d or 12h")?;
    if interval <= embedded.config.schedule.prepublication {
        return Err("TOKEN_KEY_ROTATION_INTERVAL must exceed TOKEN_KEY_PREPUBLICATION".into());
    }
    Ok(interval)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.log_json);
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("token-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = args
        .service
        .clone()
        .with_former_variables(|name| std::env::var(name).ok())?
        .validate(Some(&format!("http://{}", args.listen)))?;
    let embedded = Embedded::open(&args.db, config, Arc::new(SystemClock))?
        .with_trusted_proxies(args.trusted_proxies.clone());
    let rotation_interval = args
        .key_rotation_interval
        .as_deref()
        .map(|text| rotation_interval(text, &embedded))
        .transpose()?;
    prune_expired(&embedded);
    // The first key exists before the automatic rotation starts, so that the two never both
    // find the set empty; the store's version check would make the later one back off anyway.
    first_start(&embedded).await?;
    if let Some(interval) = rotation_interval {
        rotate_automatically(&embedded, interval);
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let local = listener.local_addr()?;
    tracing::info!(
        address = %local,
        issuer = %embedded.config.issuer,
        db = %args.db.display(),
        "token-server listening"
    );
    println!(
        "Listening on http://{local} (issuer {})",
        embedded.config.issuer
    );
    let limits = Limits {
        max_connections: args.max_connections as usize,
        header_read: Duration::from_secs(args.header_read_timeout),
        body_read: Duration::from_secs(args.body_read_timeout),
    };
    server::serve(listener, embedded.router(), limits, shutdown_signal()).await?;
    Ok(())
}
