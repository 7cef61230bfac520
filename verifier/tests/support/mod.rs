//! What the verifier tests share: an issuer on 127.0.0.1 (JWKS and metadata over real HTTP,
//! counting its hits), signing keys made with aws-lc-rs, and tokens and DPoP proofs signed
//! with them.
#![allow(dead_code)] // each test crate uses its own part of this module

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256,
};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use token_verifier::Config;

/// The API the test tokens are for.
pub const AUDIENCE: &str = "https://api.example";

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

enum Pair {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A signing key with its `kid` and the JOSE algorithm it signs with.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: &'static str,
    pair: Arc<Pair>,
}

impl TestKey {
    /// An RSA-2048 key. Generation is slow in debug builds, so a test binary makes at most two
    /// (`n` = 0 or 1) and shares them.
    pub fn rsa(kid: &str, n: usize) -> Self {
        static PAIRS: OnceLock<[Arc<Pair>; 2]> = OnceLock::new();
        let pairs = PAIRS.get_or_init(|| {
            [(), ()].map(|()| {
                Arc::new(Pair::Rsa(
                    aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap(),
                ))
            })
        });
        Self {
            kid: kid.into(),
            alg: "RS256",
            pair: pairs[n].clone(),
        }
    }

    pub fn ec(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self {
            kid: kid.into(),
            alg: "ES256",
            pair: Arc::new(Pair::Ec(pair)),
        }
    }

    pub fn ed(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            alg: "EdDSA",
            pair: Arc::new(Pair::Ed(Ed25519KeyPair::generate().unwrap())),
        }
    }

    /// The same key signing under another algorithm name (PS256 for RSA, Ed25519 for EdDSA).
    pub fn with_alg(mut self, alg: &'static str) -> Self {
        self.alg = alg;
        self
    }

    /// The public members only (RFC 7518 §6, RFC 8037 §2), no `kid` or `alg`.
    pub fn public_members(&self) -> Value {
        match &*self.pair {
            Pair::Rsa(p) => {
                let c: PublicKeyComponents<Vec<u8>> = p.public_key().into();
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Pair::Ec(p) => {
                let point = p.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
            Pair::Ed(p) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(p.public_key().as_ref())})
            }
        }
    }

    /// The JWK as a JWKS publishes it.
    pub fn jwk(&self) -> Value {
        let mut jwk = self.public_members();
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(self.alg);
        jwk
    }

    /// The RFC 7638 SHA-256 thumbprint, computed here from the required members in
    /// lexicographic order (RFC 7638 §3.2), independently of the crate under test.
    pub fn thumbprint(&self) -> String {
        let m = self.public_members();
        let canonical = match m["kty"].as_str().unwrap() {
            "RSA" => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                s(&m["e"]),
                s(&m["n"])
            ),
            "EC" => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                s(&m["x"]),
                s(&m["y"])
            ),
            _ => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, s(&m["x"])),
        };
        b64(digest(&SHA256, canonical.as_bytes()).as_ref())
    }

    /// `header.claims.signature`, signed with this key (RFC 7515 §3.1).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let signature = match &*self.pair {
            Pair::Rsa(p) => {
                let padding = if self.alg == "PS256" {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(padding, &rng, message.as_bytes(), &mut sig).unwrap();
                sig
            }
            Pair::Ec(p) => p.sign(&rng, message.as_bytes()).unwrap().as_ref().to_vec(),
            Pair::Ed(p) => p.sign(message.as_bytes()).as_ref().to_vec(),
        };
        format!("{message}.{}", b64(&signature))
    }

    /// An access token as the service issues it: `typ: at+jwt`, this key's `kid` and `alg`.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({"alg": self.alg, "typ": "at+jwt", "kid": self.kid}),
            claims,
        )
    }

    /// A DPoP proof (RFC 9449 §4.2) for `method` and `url`, bound to `token` through `ath`.
    pub fn proof(&self, method: &str, url: &str, token: &str) -> String {
        self.proof_with(json!({}), method, url, token)
    }

    /// A DPoP proof whose claims are overridden by `over` (a `null` removes a claim).
    pub fn proof_with(&self, over: Value, method: &str, url: &str, token: &str) -> String {
        let mut claims = json!({
            "jti": format!("{:x}", rand_u64()), "htm": method, "htu": url, "iat": now(),
            "ath": b64(digest(&SHA256, token.as_bytes()).as_ref()),
        });
        merge(&mut claims, over);
        self.sign(
            &json!({"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_members()}),
            &claims,
        )
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Sets each member of `over` in `target`; `null` removes it.
pub fn merge(target: &mut Value, over: Value) {
    for (k, v) in over.as_object().unwrap().clone() {
        if v.is_null() {
            target.as_object_mut().unwrap().remove(&k);
        } else {
            target[k] = v;
        }
    }
}

/// Valid access-token claims of `issuer`, changed by `over`.
pub fn claims(issuer: &str, over: Value) -> Value {
    let mut c = json!({
        "iss": issuer, "sub": "client-1", "client_id": "client-1", "aud": AUDIENCE,
        "iat": now(), "nbf": now(), "exp": now() + 600, "jti": format!("{:x}", rand_u64()),
        "scope": "api.read orders.write",
    });
    merge(&mut c, over);
    c
}

#[derive(Default)]
struct Served {
    jwks: Mutex<Value>,
    cache_control: Mutex<Option<String>>,
    jwks_hits: AtomicUsize,
    /// Answer the JWKS with 500 (an outage of the issuer).
    failing: std::sync::atomic::AtomicBool,
    /// The RFC 8414 and OpenID documents; `None` answers 404.
    oauth_metadata: Mutex<Option<Value>>,
    openid_metadata: Mutex<Option<Value>>,
}

/// An issuer on 127.0.0.1: `/.well-known/jwks.json`, `/.well-known/oauth-authorization-server`
/// and `/.well-known/openid-configuration`, served by axum over real HTTP.
pub struct Issuer {
    pub url: String,
    served: Arc<Served>,
}

impl Issuer {
    pub async fn start(keys: &[&TestKey]) -> Self {
        let served = Arc::new(Served::default());
        let app = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .route(
                "/.well-known/oauth-authorization-server",
                get(oauth_metadata),
            )
            .route("/.well-known/openid-configuration", get(openid_metadata))
            .with_state(served.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let issuer = Self {
            url: format!("http://{addr}"),
            served,
        };
        issuer.publish(keys);
        let metadata = json!({"issuer": issuer.url, "jwks_uri": issuer.jwks_uri()});
        *issuer.served.oauth_metadata.lock().unwrap() = Some(metadata.clone());
        *issuer.served.openid_metadata.lock().unwrap() = Some(metadata);
        issuer
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// Settings for this issuer and [`AUDIENCE`], every bound at its default.
    pub fn config(&self) -> Config {
        Config::new(&self.url, AUDIENCE, self.jwks_uri())
    }

    pub fn publish(&self, keys: &[&TestKey]) {
        let keys: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
        *self.served.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    pub fn set_cache_control(&self, value: Option<&str>) {
        *self.served.cache_control.lock().unwrap() = value.map(str::to_owned);
    }

    pub fn set_oauth_metadata(&self, doc: Option<Value>) {
        *self.served.oauth_metadata.lock().unwrap() = doc;
    }

    pub fn set_openid_metadata(&self, doc: Option<Value>) {
        *self.served.openid_metadata.lock().unwrap() = doc;
    }

    /// Makes the JWKS answer 500 (true) or serve again (false).
    pub fn set_failing(&self, failing: bool) {
        self.served.failing.store(failing, Ordering::SeqCst);
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_hits(&self) -> usize {
        self.served.jwks_hits.load(Ordering::SeqCst)
    }
}

async fn jwks(State(s): State<Arc<Served>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(cc) = s.cache_control.lock().unwrap().clone() {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_str(&cc).unwrap());
    }
    let body = s.jwks.lock().unwrap().to_string();
    (headers, body).into_response()
}

async fn oauth_metadata(State(s): State<Arc<Served>>) -> Response {
    document(s.oauth_metadata.lock().unwrap().clone())
}

async fn openid_metadata(State(s): State<Arc<Served>>) -> Response {
    document(s.openid_metadata.lock().unwrap().clone())
}

fn document(doc: Option<Value>) -> Response {
    match doc {
        Some(doc) => axum::Json(doc).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A raw TCP server on 127.0.0.1 that answers every connection with `head` (bytes written as
/// given) and then `body_len` bytes of JSON-ish filler, or stalls after `head` when
/// `body_len` is `None`. Returns its base URL and a counter of connections whose body write
/// failed because the client went away.
pub async fn raw_server(head: &'static str, body_len: Option<usize>) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cut_off = Arc::new(AtomicUsize::new(0));
    let counter = cut_off.clone();
    tokio::spawn(async move {
        // Bounded: a test makes a handful of connections.
        for _ in 0..16 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                match body_len {
                    None => tokio::time::sleep(std::time::Duration::from_secs(30)).await,
                    Some(len) => {
                        let chunk = vec![b' '; 64 * 1024];
                        let mut written = 0;
                        while written < len {
                            if socket.write_all(&chunk).await.is_err() {
                                counter.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            written += chunk.len();
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), cut_off)
}
