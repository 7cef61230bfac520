//! Secrets Manager's part of `RotateSecret`, for tests on moto.
//!
//! moto 5.2.5 cannot run a rotation Lambda here (it invokes functions in Docker). Called
//! without a rotation function, its `RotateSecret` adds a version with no value and labels it
//! `AWSCURRENT` at once, so the key set would read empty; with one, it fails invoking it. This
//! HTTP front of moto therefore answers `RotateSecret` for the key secret itself, as Secrets
//! Manager does: it answers with the new version id and then runs the rotation function's
//! four steps (the real `store::aws::protocol` code, with the function's own settings) for
//! that version in the background, straight against moto. Every other request goes through
//! to moto unchanged, and its `X-Amz-Target` is recorded, so a test can check what the caller
//! did itself.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};
use token_service::clock::SystemClock;
use token_service::encoding::random_b64url;
use token_service::keys::Schedule;
use token_service::store::aws::protocol::RotationProtocol;
use token_service::store::aws::{AwsResources, DynamoDbPublicKeyStore, SecretsManagerVersions};
use tokio::task::JoinHandle;

use super::moto;

/// What the rotation function does when Secrets Manager invokes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Runs the four steps.
    Rotates,
    /// Never finishes (a function that fails at every attempt).
    Fails,
}

struct Front {
    rotation: Arc<RotationProtocol>,
    function: Function,
    key_secret_id: String,
    /// The operation of every request passed through to moto (`X-Amz-Target`, or `sts.` and
    /// the query protocol's `Action`).
    passed: Mutex<Vec<String>>,
    /// Version ids of the rotations started.
    started: Mutex<Vec<String>>,
    agent: ureq::Agent,
}

/// The running front; stops when dropped.
pub struct RotationFront {
    url: String,
    front: Arc<Front>,
    server: JoinHandle<()>,
}

impl RotationFront {
    /// Starts a front of moto for the stack `names`, whose rotation function rotates with
    /// `schedule` (the stack's settings) or fails.
    pub async fn start(names: &AwsResources, schedule: Schedule, function: Function) -> Self {
        let sdk = moto::sdk_config().await;
        let rotation = Arc::new(RotationProtocol {
            secret: Arc::new(SecretsManagerVersions::new(
                aws_sdk_secretsmanager::Client::new(&sdk),
                &names.key_secret_id,
            )),
            public_keys: Arc::new(DynamoDbPublicKeyStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                &names.public_keys_table,
            )),
            schedule,
            alg: token_service::keys::SigningAlg::default(),
            clock: Arc::new(SystemClock),
        });
        let front = Arc::new(Front {
            rotation,
            function,
            key_secret_id: names.key_secret_id.clone(),
            passed: Mutex::default(),
            started: Mutex::default(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(std::time::Duration::from_secs(30)))
                .build()
                .into(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(front.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, front, server }
    }

    /// The URL to use as `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The operations passed through to moto, e.g. `secretsmanager.DescribeSecret`.
    pub fn passed(&self) -> Vec<String> {
        self.front.passed.lock().unwrap().clone()
    }

    /// The versions of the rotations started with `RotateSecret`.
    pub fn started(&self) -> Vec<String> {
        self.front.started.lock().unwrap().clone()
    }
}

impl Drop for RotationFront {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(State(front): State<Arc<Front>>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap();
    // JSON protocols name the operation in `X-Amz-Target`; the query protocol (STS) in the
    // form body's `Action`.
    let target = match parts.headers.get("x-amz-target") {
        Some(v) => v.to_str().unwrap_or_default().to_owned(),
        None => form_urlencoded::parse(&body)
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| format!("sts.{v}"))
            .unwrap_or_default(),
    };
    if target == "secretsmanager.RotateSecret" {
        return rotate(&front, &body);
    }
    front.passed.lock().unwrap().push(target);
    let front = front.clone();
    tokio::task::spawn_blocking(move || forward(&front.agent, parts, body.to_vec()))
        .await
        .unwrap()
}

/// Answers `RotateSecret` and runs the function for the new version in the background.
fn rotate(front: &Arc<Front>, body: &[u8]) -> Response<Body> {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap();
    let secret = request["SecretId"].as_str().unwrap_or_default();
    assert_eq!(
        secret, front.key_secret_id,
        "RotateSecret names the key secret"
    );
    let version = request["ClientRequestToken"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| random_b64url(24));
    front.started.lock().unwrap().push(version.clone());
    if front.function == Function::Rotates {
        let (rotation, version) = (front.rotation.clone(), version.clone());
        tokio::spawn(async move {
            rotation
                .run_all(&version)
                .await
                .expect("the rotation function's steps succeed");
        });
    }
    let answer = serde_json::json!({
        "ARN": format!("arn:aws:secretsmanager:{}:123456789012:secret:{secret}-AbCdEf", moto::REGION),
        "Name": secret,
        "VersionId": version,
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Body::from(answer.to_string()))
        .unwrap()
}

/// Sends the request to moto and its answer back.
fn forward(
    agent: &ureq::Agent,
    parts: axum::http::request::Parts,
    body: Vec<u8>,
) -> Response<Body> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = ureq::http::Request::builder()
        .method(parts.method.as_str())
        .uri(format!("{}{path}", moto::endpoint()));
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = agent
        .run(request.body(body).unwrap())
        .expect("moto answers");
    let (head, mut body) = answer.into_parts();
    let mut response = Response::builder().status(head.status.as_u16());
    for (name, value) in &head.headers {
        if !matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    response
        .body(Body::from(body.read_to_vec().unwrap()))
        .unwrap()
}
