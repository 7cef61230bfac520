//! What the authorizer reads of API Gateway's event (HTTP API, REQUEST authorizer, payload
//! format 2.0): the credentials and, for DPoP (RFC 9449 §4.3), the request's method and URL.

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;

/// The event API Gateway sends an HTTP API Lambda authorizer.
pub type Event = ApiGatewayV2CustomAuthorizerV2Request;

/// Why an event cannot be read; each is logged by its [`EventError::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The authorizer is configured for payload format 1.0: its answer would be misread.
    #[error("the event is not payload format 2.0")]
    NotPayloadV2,
    /// A credential header is not visible ASCII.
    #[error("a credential header is not visible ASCII")]
    UnreadableHeader,
    /// More than one `Authorization` header (RFC 6750 §2: one method, one token).
    #[error("more than one Authorization header")]
    RepeatedAuthorization,
}

impl EventError {
    /// The reason logged for the refusal.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotPayloadV2 => "not_payload_v2",
            Self::UnreadableHeader => "unreadable_header",
            Self::RepeatedAuthorization => "repeated_authorization",
        }
    }
}

/// The parts of the API request the token and its proof are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    /// The HTTP method, the proof's `htm`.
    pub method: String,
    /// `https://{domainName}{rawPath}`, the proof's `htu` (see [`target_uri`]).
    pub url: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Each `DPoP` header value.
    pub dpop: Vec<String>,
    /// API Gateway's request id, for the log line.
    pub request_id: Option<String>,
}

impl ApiRequest {
    /// Reads the event. API Gateway lower-cases header names and joins the values of a
    /// repeated header with commas; a JWT has no comma, so the `DPoP` value is split back
    /// into the proofs the client sent (more than one is refused, RFC 9449 §4.3 check 1).
    pub fn from_event(event: &Event) -> Result<Self, EventError> {
        if event.version.as_deref() != Some("2.0") {
            return Err(EventError::NotPayloadV2);
        }
        let mut authorization = event.headers.get_all("authorization").iter();
        let first = authorization.next();
        if authorization.next().is_some() {
            return Err(EventError::RepeatedAuthorization);
        }
        let authorization = first
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| EventError::UnreadableHeader)?;
        let mut dpop = Vec::new();
        for value in event.headers.get_all("dpop") {
            let value = value.to_str().map_err(|_| EventError::UnreadableHeader)?;
            dpop.extend(value.split(',').map(|proof| proof.trim().to_owned()));
        }
        let context = &event.request_context;
        Ok(Self {
            method: context.http.method.as_str().to_owned(),
            url: target_uri(
                context.domain_name.as_deref().unwrap_or_default(),
                event.raw_path.as_deref().unwrap_or_default(),
            ),
            authorization,
            dpop,
            request_id: context.request_id.clone(),
        })
    }
}

/// The URL the client called, as a DPoP proof's `htu` names it (RFC 9449 §4.2: the target URI
/// without query and fragment).
///
/// - `https`: an HTTP API listens on HTTPS only, on the default port.
/// - `domainName`: the host the client connected to as API Gateway saw it, the custom domain
///   when there is one (a Host header does not decide it: API Gateway routes by the TLS name).
/// - `rawPath`: the path as the client sent it, before API Gateway decodes it or matches a
///   route; it keeps the stage name (`/prod/...` on a named stage) and a custom domain's API
///   mapping key, which the client also had in its URL. The route key or `path parameters`
///   would drop them and never match the proof.
///
/// The query (`rawQueryString`) is left out, as the proof's `htu` leaves it out.
pub fn target_uri(domain_name: &str, raw_path: &str) -> String {
    let path = if raw_path.starts_with('/') {
        raw_path
    } else {
        "/"
    };
    format!("https://{domain_name}{path}")
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn event(headers: serde_json::Value) -> Event {
        serde_json::from_value(json!({
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": "arn:aws:execute-api:eu-west-1:123456789012:abcdef123/prod/GET/orders",
            "identitySource": ["Bearer x"],
            "routeKey": "GET /orders",
            "rawPath": "/prod/orders/42",
            "rawQueryString": "expand=items",
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abcdef123",
                "domainName": "api.example.com",
                "domainPrefix": "api",
                "http": {"method": "GET", "path": "/prod/orders/42", "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.7", "userAgent": "test"},
                "requestId": "req-1",
                "routeKey": "GET /orders",
                "stage": "prod",
                "time": "06/Dec/2026:11:00:00 +0000",
                "timeEpoch": 1796554800000_i64
            }
        }))
        .unwrap()
    }

    #[test]
    fn method_url_and_credentials_are_read() {
        let r = ApiRequest::from_event(&event(json!({
            "authorization": "DPoP abc.def.ghi",
            "dpop": "proof.jwt.sig"
        })))
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.url, "https://api.example.com/prod/orders/42");
        assert_eq!(r.authorization.as_deref(), Some("DPoP abc.def.ghi"));
        assert_eq!(r.dpop, ["proof.jwt.sig"]);
        assert_eq!(r.request_id.as_deref(), Some("req-1"));
    }

    #[test]
    fn joined_dpop_headers_are_split_back_into_proofs() {
        let r = ApiRequest::from_event(&event(json!({"dpop": "a.b.c,d.e.f"}))).unwrap();
        assert_eq!(r.dpop, ["a.b.c", "d.e.f"]);
        assert_eq!(r.authorization, None);
    }

    #[test]
    fn a_payload_v1_event_is_refused() {
        let mut e = event(json!({"authorization": "Bearer x"}));
        e.version = Some("1.0".into());
        assert_eq!(ApiRequest::from_event(&e), Err(EventError::NotPayloadV2));
    }

    #[test]
    fn a_non_ascii_credential_is_refused() {
        let mut e = event(json!({}));
        e.headers.insert(
            "authorization",
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert_eq!(
            ApiRequest::from_event(&e),
            Err(EventError::UnreadableHeader)
        );
    }

    #[test]
    fn a_repeated_authorization_header_is_refused() {
        let mut e = event(json!({"authorization": "Bearer a"}));
        e.headers
            .append("authorization", HeaderValue::from_static("Bearer b"));
        assert_eq!(
            ApiRequest::from_event(&e),
            Err(EventError::RepeatedAuthorization)
        );
    }

    #[test]
    fn the_target_uri_has_no_query_and_always_a_path() {
        assert_eq!(
            target_uri("id.execute-api.eu-west-1.amazonaws.com", "/orders"),
            "https://id.execute-api.eu-west-1.amazonaws.com/orders"
        );
        assert_eq!(
            target_uri("api.example.com", ""),
            "https://api.example.com/"
        );
    }
}
