//! `POST /secret-scanning/github` and `POST /secret-scanning/gitlab`: leaked-secret reports,
//! read as raw bytes (the signature covers them exactly) and answered as the programs expect.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};

use super::FrontContext;
use super::error::no_store;
use crate::encoding::random_b64url;
use crate::issue::RequestContext;
use crate::scanning::{MAX_BODY, Program, ScanAnswer, SecretScanning, Signed};

pub(super) fn routes(service: Arc<SecretScanning>) -> Router {
    Router::new()
        .route(
            "/secret-scanning/github",
            post(|s, c, r| report(Program::GitHub, s, c, r)),
        )
        .route(
            "/secret-scanning/gitlab",
            post(|s, c, r| report(Program::GitLab, s, c, r)),
        )
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

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = serde_json::json!({ "error": code, "error_description": description });
    let mut response = (status, Json(body)).into_response();
    no_store(&mut response);
    response
}

async fn report(
    program: Program,
    State(service): State<Arc<SecretScanning>>,
    ctx: Option<Extension<FrontContext>>,
    request: Request,
) -> Response {
    if !service.serves(program) {
        return error(StatusCode::NOT_FOUND, "invalid_request", "no such endpoint");
    }
    let (parts, body) = request.into_parts();
    let meta = meta(ctx, &parts.headers);
    let declared_too_large = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY as u64);
    let body = match declared_too_large {
        true => None,
        false => axum::body::to_bytes(Body::new(body), MAX_BODY).await.ok(),
    };
    let (id_header, signature_header) = program.headers();
    let text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let signed = Signed {
        key_id: text(id_header),
        signature: text(signature_header),
    };
    let answer = service
        .handle(program, signed, body.as_deref(), &meta)
        .await;
    match answer {
        ScanAnswer::Accepted(feedback) => match program {
            Program::GitHub => Json(feedback).into_response(),
            Program::GitLab => StatusCode::OK.into_response(),
        },
        ScanAnswer::Unauthenticated => error(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "the report's signature does not verify",
        ),
        ScanAnswer::Malformed => error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the report is not a JSON array of reported tokens",
        ),
        ScanAnswer::TooLarge => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the report is too large",
        ),
        ScanAnswer::RateLimited { retry_after } => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "too many refused requests",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after.into());
            response
        }
        ScanAnswer::Unavailable => {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, 30u64.into());
            response
        }
    }
}
