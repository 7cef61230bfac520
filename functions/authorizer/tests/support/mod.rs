//! What the authorizer's fixture tests share: keys and tokens, the loopback issuer, and the
//! fixture events with the request's credentials filled in.

#![allow(dead_code)]

pub mod keys;
pub mod server;

use std::time::{SystemTime, UNIX_EPOCH};

use authorizer::Event;
use serde_json::{Value, json};

/// The API's identifier, as `AUTHORIZER_AUDIENCE` sets it.
pub const AUDIENCE: &str = "https://orders.example.com";

/// The client the test tokens are issued to.
pub const CLIENT: &str = "svc-orders";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims the service puts in a token (DESIGN.md "Access token"), with per-client extra
/// claims of several JSON types.
pub fn access_claims(issuer: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer,
        "sub": CLIENT,
        "client_id": CLIENT,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": keys::random_id(),
        "scope": "orders.read orders.write",
        "tenant": "acme",
        "seats": 42,
        "plan": {"tier": "gold", "regions": ["eu", "us"]},
    })
}

/// The fixture event `name` (tests/fixtures/) with its `{{authorization}}` and `{{dpop}}`
/// placeholders replaced (JSON-escaped, so any header value can be tried).
pub fn fixture(name: &str, authorization: &str, dpop: &str) -> Event {
    let text = fixture_text(name, authorization, dpop);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The text of [`fixture`], not yet read as an event.
pub fn fixture_text(name: &str, authorization: &str, dpop: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let escaped = |v: &str| {
        let quoted = Value::from(v).to_string();
        quoted[1..quoted.len() - 1].to_owned()
    };
    text.replace("{{authorization}}", &escaped(authorization))
        .replace("{{dpop}}", &escaped(dpop))
}
