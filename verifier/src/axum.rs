//! axum integration: a tower layer that lets through only requests with a valid token (and
//! scope), and [`VerifiedToken`] as an extractor. Refusals answer as RFC 6750 §3 and
//! RFC 9449 §7.1 say: `401` with `WWW-Authenticate: Bearer error="invalid_token"` (or a
//! `DPoP algs="..."` challenge), `403` with `error="insufficient_scope", scope="..."`.
//!
//! The DPoP `htu` is built from [`Config::external_url`](crate::Config::external_url) plus the
//! request's path: behind a proxy or load balancer the `Host` header and scheme the API sees
//! are not what the client used, and a client-chosen `Host` must not decide which URL a proof
//! is checked against. Without that setting, DPoP requests are refused (`500`) and bearer
//! requests work as usual.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::error::{Error, Scheme};
use crate::request::HttpRequestParts;
use crate::token::VerifiedToken;
use crate::verifier::Verifier;

/// A layer that verifies the request's token and, if set, requires a scope; the verified
/// token is then in the request extensions, where the [`VerifiedToken`] extractor finds it.
///
/// ```no_run
/// # use axum::{Router, routing::get};
/// # use token_verifier::{Config, Verifier, VerifiedToken, axum::RequireScope};
/// # let verifier = Verifier::new(Config::new("https://auth.example", "https://api.example", "https://auth.example/.well-known/jwks.json"));
/// let app: Router = Router::new()
///     .route("/orders", get(|token: VerifiedToken| async move { token.client_id }))
///     .layer(RequireScope::new(verifier, "api.read"));
/// ```
#[derive(Clone)]
pub struct RequireScope {
    inner: Arc<Guard>,
}

struct Guard {
    verifier: Verifier,
    scope: Option<String>,
    realm: Option<String>,
}

impl RequireScope {
    /// Lets through requests whose token verifies and carries `scope`.
    pub fn new(verifier: Verifier, scope: impl Into<String>) -> Self {
        Self::with(verifier, Some(scope.into()), None)
    }

    /// Lets through requests whose token verifies, whatever its scopes.
    pub fn any_scope(verifier: Verifier) -> Self {
        Self::with(verifier, None, None)
    }

    /// Names a `realm` in the challenges (RFC 6750 §3).
    pub fn realm(self, realm: impl Into<String>) -> Self {
        let g = &self.inner;
        Self::with(g.verifier.clone(), g.scope.clone(), Some(realm.into()))
    }

    fn with(verifier: Verifier, scope: Option<String>, realm: Option<String>) -> Self {
        Self {
            inner: Arc::new(Guard {
                verifier,
                scope,
                realm,
            }),
        }
    }
}

impl<S> Layer<S> for RequireScope {
    type Service = RequireScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopeService {
            inner,
            guard: self.inner.clone(),
        }
    }
}

/// The service [`RequireScope`] wraps around a route or router.
#[derive(Clone)]
pub struct RequireScopeService<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S> Service<Request> for RequireScopeService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let checked = match verify_parts(&guard.verifier, &parts).await {
                Ok(token) => match &guard.scope {
                    Some(scope) => token.require_scope(scope).map(|()| token),
                    None => Ok(token),
                },
                Err(e) => Err(e),
            };
            match checked {
                Ok(token) => {
                    parts.extensions.insert(token);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(error) => Ok(Rejection {
                    scheme: presented(&parts),
                    error,
                    realm: guard.realm.clone(),
                }
                .into_response()),
            }
        })
    }
}

/// A refused request, answered with its status and challenge.
#[derive(Debug)]
pub struct Rejection {
    /// Why.
    pub error: Error,
    /// The scheme the client presented its token with, if any.
    pub scheme: Option<Scheme>,
    /// The realm to name in the challenge.
    pub realm: Option<String>,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        let headers = response.headers_mut();
        let realm = self.realm.as_deref();
        let mut challenges = vec![
            self.error
                .www_authenticate(self.error.challenge_scheme(self.scheme), realm),
        ];
        if self.error == Error::MissingToken {
            // Either scheme would do (RFC 9449 §7.1): say both.
            challenges.push(self.error.www_authenticate(Scheme::DPoP, realm));
        }
        if status == StatusCode::INTERNAL_SERVER_ERROR || status == StatusCode::SERVICE_UNAVAILABLE
        {
            challenges.clear();
        }
        for challenge in challenges {
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.append(header::WWW_AUTHENTICATE, value);
            }
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The verified token of the request: the one [`RequireScope`] put in the extensions, else
/// verified here with a [`Verifier`] found in the extensions (`Extension(verifier)` layer).
impl<S: Send + Sync> FromRequestParts<S> for VerifiedToken {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(token) = parts.extensions.get::<VerifiedToken>() {
            return Ok(token.clone());
        }
        let rejection = |error| Rejection {
            scheme: presented(parts),
            error,
            realm: None,
        };
        let verifier = parts
            .extensions
            .get::<Verifier>()
            .cloned()
            .ok_or_else(|| rejection(Error::Misconfigured("no Verifier in the extensions")))?;
        verify_parts(&verifier, parts).await.map_err(rejection)
    }
}

fn presented(parts: &Parts) -> Option<Scheme> {
    let authorization = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    HttpRequestParts {
        method: "",
        url: "",
        authorization: Some(authorization),
        dpop: &[],
    }
    .scheme()
}

/// Reads the request as [`HttpRequestParts`] and verifies it.
async fn verify_parts(verifier: &Verifier, parts: &Parts) -> Result<VerifiedToken, Error> {
    let mut authorization = parts.headers.get_all(header::AUTHORIZATION).iter();
    let (first, second) = (authorization.next(), authorization.next());
    if second.is_some() {
        return Err(Error::InvalidRequest("more than one Authorization header"));
    }
    let authorization = first
        .map(|v| v.to_str())
        .transpose()
        .map_err(|_| Error::InvalidRequest("Authorization is not ASCII"))?;
    let dpop = parts
        .headers
        .get_all("dpop")
        .iter()
        .map(|v| v.to_str())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Error::InvalidDpopProof("DPoP header is not ASCII"))?;
    let mut request = HttpRequestParts {
        method: parts.method.as_str(),
        url: "",
        authorization,
        dpop: &dpop,
    };
    let url;
    match &verifier.config().external_url {
        Some(base) => {
            url = external_url(base, parts);
            request.url = &url;
        }
        None if request.scheme() == Some(Scheme::DPoP) => {
            return Err(Error::Misconfigured(
                "DPoP needs Config::external_url to know the request URL",
            ));
        }
        None => {}
    }
    verifier.verify_request(&request).await
}

/// The URL the client reached: the configured base and the request's path (the query does
/// not take part in `htu`, RFC 9449 §4.3).
fn external_url(base: &str, parts: &Parts) -> String {
    format!("{}{}", base.trim_end_matches('/'), parts.uri.path())
}
