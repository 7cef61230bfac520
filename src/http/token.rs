//! `POST /oauth/token`: reads the HTTP request into a [`RawRequest`] and answers with the
//! service's result; every other method gets `405` with `Allow: POST`. When DPoP nonces are
//! required, a token and a `use_dpop_nonce` refusal carry a fresh one in `DPoP-Nonce` (RFC 9449
//! §8).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};

use super::FrontContext;
use super::error::{HttpError, no_store};
use crate::encoding::random_b64url;
use crate::issue::{RequestContext, TokenService};
use crate::oauth::OAuthError;
use crate::oauth::request::{MAX_BODY_BYTES, RawRequest};
use crate::store::Expected;

pub(super) fn routes(service: Arc<TokenService>) -> Router {
    Router::new()
        .route(super::TOKEN_PATH, post(token).fallback(not_post))
        .with_state(service)
}

fn meta(ctx: Option<Extension<FrontContext>>, headers: &HeaderMap) -> RequestContext {
    let ctx = ctx.map(|Extension(c)| c).unwrap_or_default();
    RequestContext {
        request_id: ctx.request_id.unwrap_or_else(|| random_b64url(12)),
        source_ip: ctx.source_ip,
        user_agent: headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    }
}

/// The proof header of RFC 9449 §4.1.
static DPOP: HeaderName = HeaderName::from_static("dpop");

/// The nonce header of RFC 9449 §8.1.
static DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    // A header that is not visible ASCII is treated like a malformed one: "" fails every check.
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

/// The token route. `under_way` is there when the shape's store gathers the writes of requests
/// under way (the embedded SQLite writer): the request counts itself from the moment its body is
/// in, so that a client slow to send its body never holds a batch back.
async fn token(
    State(service): State<Arc<TokenService>>,
    ctx: Option<Extension<FrontContext>>,
    under_way: Option<Extension<Expected>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let meta = meta(ctx, &parts.headers);
    let declared_too_large = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let body = match declared_too_large {
        true => None,
        false => axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES)
            .await
            .ok(),
    };
    let Some(body) = body else {
        return turn_away(&service, HttpError::PayloadTooLarge, &meta).await;
    };
    let _under_way = under_way.map(|Extension(expected)| expected.enter());
    if parts.headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        let error = OAuthError::InvalidRequest("more than one Authorization header");
        return match service.reject(error.clone(), &meta).await {
            None => error.into_response(),
            Some(answer) => answer.into_response(),
        };
    }
    let raw = RawRequest {
        content_type: header_str(&parts.headers, header::CONTENT_TYPE),
        authorization: header_str(&parts.headers, header::AUTHORIZATION),
        query: parts.uri.query(),
        body: &body,
        dpop: match parts.headers.get_all(&DPOP).iter().count() {
            0 => None,
            1 => header_str(&parts.headers, DPOP.clone()).map(Ok),
            _ => Some(Err(())),
        },
    };
    let (mut response, asks_nonce) = match service.handle(raw, &meta).await {
        Ok(issued) => {
            let mut response = Json(issued).into_response();
            no_store(&mut response);
            (response, true)
        }
        Err(error) => {
            let asks = error == OAuthError::UseDpopNonce.into();
            (error.into_response(), asks)
        }
    };
    let nonce = match asks_nonce {
        true => service.dpop_nonce().await,
        false => None,
    };
    if let Some(value) = nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(DPOP_NONCE.clone(), value);
    }
    response
}

async fn not_post(
    State(service): State<Arc<TokenService>>,
    ctx: Option<Extension<FrontContext>>,
    headers: HeaderMap,
) -> Response {
    let meta = meta(ctx, &headers);
    turn_away(&service, HttpError::MethodNotAllowed, &meta).await
}

/// Answers a request the front turns away with `status`, once the service counted and
/// recorded it: a `429` past the source's budget or a `503` from a failed audit write stands
/// instead.
async fn turn_away(service: &TokenService, status: HttpError, meta: &RequestContext) -> Response {
    match service.reject(status.recorded_as(), meta).await {
        None => status.into_response(),
        Some(answer) => answer.into_response(),
    }
}
