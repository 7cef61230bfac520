//! The authorizer's answer to API Gateway: a simple response (payload format 2.0) that
//! allows with the caller's identity as the integration's context, or denies with nothing.

use std::collections::BTreeMap;

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerSimpleResponse;
use serde_json::{Map, Value};

/// The simple response with string context values: the integration reads them as
/// `$context.authorizer.<name>` (request parameter mapping) or in the Lambda integration's
/// `requestContext.authorizer.lambda`.
pub type Response = ApiGatewayV2CustomAuthorizerSimpleResponse<BTreeMap<String, String>>;

/// The context key of the token's client (RFC 9068 §2.2 `client_id`).
pub const CLIENT_ID: &str = "client_id";
/// The context key of the token's scopes, space-separated (RFC 6749 §3.3).
pub const SCOPE: &str = "scope";

/// `isAuthorized: true` with `context`.
pub fn allow(context: BTreeMap<String, String>) -> Response {
    let mut response = Response::default();
    response.is_authorized = true;
    response.context = context;
    response
}

/// `isAuthorized: false` and an empty context: a refusal tells the caller nothing (API
/// Gateway answers `403 Forbidden` whatever the reason).
pub fn deny() -> Response {
    Response::default()
}

/// The integration's context: the token's extra claims, then `client_id` and `scope` (which
/// a claim of that name cannot replace). A string claim is passed as it is; any other JSON
/// value as its JSON text (`42`, `true`, `["a","b"]`, `{"k":"v"}`), since API Gateway passes
/// context values on as strings.
pub fn context(
    client_id: &str,
    scopes: &[String],
    extra_claims: &Map<String, Value>,
) -> BTreeMap<String, String> {
    let mut context: BTreeMap<String, String> = extra_claims
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect();
    context.insert(CLIENT_ID.to_owned(), client_id.to_owned());
    context.insert(SCOPE.to_owned(), scopes.join(" "));
    context
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn strings_pass_as_they_are_and_other_values_as_json_text() {
        let extra = claims(json!({
            "tenant": "acme",
            "seats": 42,
            "beta": true,
            "regions": ["eu", "us"],
            "limits": {"rps": 10},
            "none": null,
            "quoted": "say \"hi\"",
        }));
        let c = context("svc", &["a".into(), "b".into()], &extra);
        let expected: BTreeMap<String, String> = [
            ("client_id", "svc"),
            ("scope", "a b"),
            ("tenant", "acme"),
            ("seats", "42"),
            ("beta", "true"),
            ("regions", r#"["eu","us"]"#),
            ("limits", r#"{"rps":10}"#),
            ("none", "null"),
            ("quoted", "say \"hi\""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(c, expected);
    }

    #[test]
    fn a_claim_cannot_pose_as_the_client_or_its_scope() {
        let extra = claims(json!({"client_id": "someone-else", "scope": "admin"}));
        let c = context("svc", &["a".into()], &extra);
        assert_eq!(c["client_id"], "svc");
        assert_eq!(c["scope"], "a");
    }

    #[test]
    fn the_wire_form_is_the_simple_response() {
        let allowed = serde_json::to_value(allow(context("svc", &[], &Map::new()))).unwrap();
        assert_eq!(
            allowed,
            json!({"isAuthorized": true, "context": {"client_id": "svc", "scope": ""}})
        );
        let denied = serde_json::to_value(deny()).unwrap();
        assert_eq!(denied, json!({"isAuthorized": false, "context": {}}));
    }
}
