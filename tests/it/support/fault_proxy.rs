//! A TCP proxy between the SDK clients and moto that breaks the requests of one AWS service on
//! demand: it stalls them (reads, never answers), drops the connection, or answers `500` with
//! an AWS-style JSON error body. The fault is switched at run time; requests of other services,
//! and all requests in [`Fault::Pass`], go through to moto unchanged.
//!
//! It works per HTTP/1.1 request, not per connection: the SDK keeps connections alive, so a
//! fault switched on must also catch the next request on a connection opened before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does with a request of a faulty service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it to moto and its answer back.
    Pass,
    /// Read it and never answer, keeping the connection open.
    Stall,
    /// Close the connection without an answer.
    Drop,
    /// Answer `500` with the service's JSON error body, then close.
    Http500,
}

/// The AWS service a request is for, read from its `X-Amz-Target` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `DynamoDB_20120810.*`.
    DynamoDb,
    /// `secretsmanager.*`.
    SecretsManager,
}

impl Service {
    fn of(target: &str) -> Option<Self> {
        if target.starts_with("DynamoDB_") {
            Some(Self::DynamoDb)
        } else if target.starts_with("secretsmanager.") {
            Some(Self::SecretsManager)
        } else {
            None
        }
    }

    /// The service's own error type for an internal failure, and its JSON protocol version.
    fn internal_error(self) -> (&'static str, &'static str) {
        match self {
            Self::DynamoDb => ("InternalServerError", "1.0"),
            Self::SecretsManager => ("InternalServiceError", "1.1"),
        }
    }
}

#[derive(Default)]
struct State {
    faults: Mutex<HashMap<Service, Fault>>,
    /// Requests that met a fault other than `Pass`.
    faulted: AtomicUsize,
}

impl State {
    fn fault(&self, service: Option<Service>) -> Fault {
        let faults = self.faults.lock().unwrap();
        service
            .and_then(|s| faults.get(&s).copied())
            .unwrap_or(Fault::Pass)
    }
}

/// A running proxy on a free 127.0.0.1 port; it stops when dropped.
pub struct FaultProxy {
    url: String,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`), passing everything through.
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let state = Arc::new(State::default());
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            let mut connections = Tasks(Vec::new());
            while let Ok((client, _)) = listener.accept().await {
                connections.0.retain(|c| !c.is_finished());
                let task = tokio::spawn(serve(client, upstream.clone(), shared.clone()));
                connections.0.push(task);
            }
        });
        Self { url, state, accept }
    }

    /// The proxy's URL, for the SDK's endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Applies `fault` to every following request of `service`.
    pub fn set(&self, service: Service, fault: Fault) {
        self.state.faults.lock().unwrap().insert(service, fault);
    }

    /// Passes every service through again.
    pub fn clear(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// How many requests met a fault so far.
    pub fn faulted(&self) -> usize {
        self.state.faulted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The connections' tasks, stopped with the proxy (a stalled one would wait for its client).
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

/// Aborts the task that copies moto's answers back when the client connection ends.
struct Upstream {
    writer: OwnedWriteHalf,
    copy_back: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.copy_back.abort();
    }
}

async fn serve(client: TcpStream, upstream: String, state: Arc<State>) {
    let (mut reader, writer) = client.into_split();
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let mut buffer = Vec::new();
    let mut moto: Option<Upstream> = None;
    while let Some((request, service)) = read_request(&mut reader, &mut buffer).await {
        let fault = state.fault(service);
        if fault != Fault::Pass {
            state.faulted.fetch_add(1, Ordering::SeqCst);
        }
        match (fault, service) {
            (Fault::Stall, _) => continue,
            (Fault::Drop, _) => return,
            (Fault::Http500, Some(service)) => {
                let _ = writer
                    .lock()
                    .await
                    .write_all(&internal_error(service))
                    .await;
                return;
            }
            _ => {}
        }
        if moto.is_none() {
            let Ok(stream) = TcpStream::connect(&upstream).await else {
                return;
            };
            let (from_moto, to_moto) = stream.into_split();
            moto = Some(Upstream {
                writer: to_moto,
                copy_back: tokio::spawn(copy_back(from_moto, writer.clone())),
            });
        }
        let to_moto = &mut moto.as_mut().expect("connected").writer;
        if to_moto.write_all(&request).await.is_err() {
            return;
        }
    }
}

async fn copy_back(mut from: OwnedReadHalf, to: Arc<tokio::sync::Mutex<OwnedWriteHalf>>) {
    let mut chunk = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut chunk).await {
        if n == 0 || to.lock().await.write_all(&chunk[..n]).await.is_err() {
            break;
        }
    }
    // moto closed its side: close the client's too, as a direct connection would.
    let _ = to.lock().await.shutdown().await;
}

/// Reads one whole request (headers and a `Content-Length` body) from the client; `None` once
/// the client closed the connection.
async fn read_request(
    reader: &mut OwnedReadHalf,
    buffer: &mut Vec<u8>,
) -> Option<(Vec<u8>, Option<Service>)> {
    loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length: usize = header(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let request: Vec<u8> = buffer.drain(..end + 4 + length).collect();
                let service = header(&head, "x-amz-target").and_then(|t| Service::of(&t));
                return Some((request, service));
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// A `500` as the service sends it: its JSON protocol's content type, `__type` and message.
fn internal_error(service: Service) -> Vec<u8> {
    let (error_type, json_version) = service.internal_error();
    let body = format!(r#"{{"__type":"{error_type}","message":"injected by the fault proxy"}}"#);
    format!(
        "HTTP/1.1 500 Internal Server Error\r\n\
         Content-Type: application/x-amz-json-{json_version}\r\n\
         x-amzn-RequestId: fault-proxy\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
