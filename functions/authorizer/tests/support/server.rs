//! A loopback issuer for the tests: its metadata (RFC 8414 and OpenID discovery) and its JWKS
//! over plain HTTP/1.1, one request per connection; and listeners that refuse or stall.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The issuer; stops serving when dropped.
pub struct Issuer {
    /// `http://127.0.0.1:<port>`, the issuer identifier.
    pub url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    jwks_fetches: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Issuer {
    /// Serves `keys` (public JWKs) from a free loopback port.
    pub async fn start(keys: Vec<Value>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let keys = Arc::new(Mutex::new(keys));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let (k, f, u) = (keys.clone(), jwks_fetches.clone(), url.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (k, f, u) = (k.clone(), f.clone(), u.clone());
                tokio::spawn(async move { serve(stream, &u, &k, &f).await });
            }
        });
        Self {
            url,
            keys,
            jwks_fetches,
            task,
        }
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    #[allow(dead_code)]
    pub fn publish(&self, keys: Vec<Value>) {
        *self.keys.lock().unwrap() = keys;
    }
}

async fn serve(mut stream: TcpStream, url: &str, keys: &Mutex<Vec<Value>>, fetches: &AtomicUsize) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    // One request head of at most 16 KiB; the tests send no body.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&request);
    let path = head.split_whitespace().nth(1).unwrap_or_default();
    let (status, body) = match path {
        "/.well-known/jwks.json" => {
            fetches.fetch_add(1, Ordering::SeqCst);
            ("200 OK", json!({"keys": *keys.lock().unwrap()}))
        }
        "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server" => (
            "200 OK",
            json!({
                "issuer": url,
                "jwks_uri": format!("{url}/.well-known/jwks.json"),
                "token_endpoint": format!("{url}/oauth/token"),
            }),
        ),
        _ => ("404 Not Found", json!({"error": "not_found"})),
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nCache-Control: public, max-age=300\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A loopback address where nothing listens: connections are refused.
pub async fn refusing_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

/// A listener that accepts connections and never answers; stops when dropped.
pub struct Stall {
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for Stall {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stall {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Self { url, task }
    }
}
