//! A small API that accepts the issuer's tokens, bearer or DPoP-bound, and requires `api.read`:
//!
//! ```text
//! ISSUER=http://127.0.0.1:9000 AUDIENCE=https://api.example \
//! EXTERNAL_URL=http://127.0.0.1:8080 \
//!   cargo run -p token-verifier --features axum --example protected_api
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/orders
//! ```
//!
//! `EXTERNAL_URL` is the base URL clients use (for DPoP `htu`); `LISTEN` the address to bind
//! (default 127.0.0.1:8080).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use token_verifier::axum::RequireScope;
use token_verifier::{Config, VerifiedToken, Verifier};

/// Answers the caller's client id, scopes and extra claims.
async fn orders(token: VerifiedToken) -> Json<Value> {
    Json(json!({
        "client_id": token.client_id,
        "scopes": token.scopes,
        "bound_to_key": token.key_thumbprint.is_some(),
        "claims": token.extra_claims(),
    }))
}

fn env(name: &str, default: Option<&str>) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .or(default.map(str::to_owned))
        .ok_or(format!("set {name}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = env("ISSUER", None)?;
    let listen = env("LISTEN", Some("127.0.0.1:8080"))?;
    let mut config = Config::new(&issuer, env("AUDIENCE", None)?, "");
    config = config.with_external_url(env("EXTERNAL_URL", Some(&format!("http://{listen}")))?);
    // Reads the issuer's metadata for its jwks_uri, then fetches the keys before serving.
    let verifier = Verifier::discover_with(config).await?;
    verifier.hydrate().await?;

    let app = Router::new()
        .route("/orders", get(orders))
        .layer(RequireScope::new(verifier, "api.read"));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{listen}/orders");
    axum::serve(listener, app).await?;
    Ok(())
}
