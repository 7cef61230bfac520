//! Conformance matrix of `POST /oauth/token` (RFC 6749 §2.3, §3.2, §3.3, §4.4, §5; RFC 8707;
//! RFC 9068), through the real router on a SQLite store.

use axum::body::Body;
use axum::http::Request;
use token_service::admin::NewClient;
use token_service::clients::ClientStatus;
use token_service::config::ServiceConfig;

use crate::support::stack::{self, AUDIENCE, FORM, Stack, basic_header, verify};

const GRANT: &str = "grant_type=client_credentials";
const ISSUER: &str = "https://issuer.test";

#[tokio::test]
async fn basic_auth_issues_a_verifiable_rfc9068_token() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let r = s.basic("svc", &secret, GRANT).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.assert_no_store();
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["expires_in"], 900);
    assert_eq!(r.json["scope"], "api.read");
    let token = r.json["access_token"].as_str().unwrap();
    let claims = verify(token, &s.jwks().await, ISSUER, AUDIENCE).expect("verifies");
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.sub, "svc");
    assert_eq!(claims.client_id, "svc");
    assert_eq!(claims.scope, "api.read");
    assert_eq!(claims.nbf, claims.iat);
    assert_eq!(claims.exp - claims.iat, 900);
    let jti = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &claims.jti,
    )
    .expect("jti is base64url");
    assert!(jti.len() * 8 >= 128, "jti has {} bits", jti.len() * 8);
}

#[tokio::test]
async fn post_auth_issues_a_token() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let body = format!(
        "{GRANT}&client_id=svc&client_secret={}",
        form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>()
    );
    let r = s.token(&[("content-type", FORM)], &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json["access_token"].as_str().unwrap();
    assert!(verify(token, &s.jwks().await, ISSUER, AUDIENCE).is_ok());
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_before_base64() {
    let s = Stack::new().await;
    let (_, secret) = s
        .client_with(NewClient {
            client_id: Some("team:a%b+c".into()),
            name: "odd id".into(),
            scopes: vec!["api.read".into()],
            audiences: vec![AUDIENCE.into()],
            ..Default::default()
        })
        .await;
    // basic_header form-encodes ':' '%' '+' in the id before base64.
    let r = s.basic("team:a%b+c", &secret, GRANT).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The raw (unencoded) id inside Basic splits at its own ':': client `team`, which does not
    // exist, so the client fails to authenticate, as with any other reason (RFC 6749 §5.2).
    let raw = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("team:a%b+c:{secret}")
        )
    );
    let r = s
        .token(&[("content-type", FORM), ("authorization", &raw)], GRANT)
        .await;
    r.assert_error(401, "invalid_client");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic realm=")),
        "{:?}",
        r.headers
    );
}

#[tokio::test]
async fn both_authentication_methods_at_once_is_invalid_request() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let body = format!("{GRANT}&client_id=svc&client_secret={secret}");
    s.basic("svc", &secret, &body)
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn two_authorization_headers_are_invalid_request() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let auth = basic_header("svc", &secret);
    s.token(
        &[
            ("content-type", FORM),
            ("authorization", &auth),
            ("authorization", &auth),
        ],
        GRANT,
    )
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn body_client_id_that_differs_from_basic_is_invalid_request() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    s.basic("svc", &secret, &format!("{GRANT}&client_id=other"))
        .await
        .assert_error(400, "invalid_request");
    // The same id repeated in the body is fine.
    let r = s
        .basic("svc", &secret, &format!("{GRANT}&client_id=svc"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn content_type_other_than_form_is_invalid_request() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let auth = basic_header("svc", &secret);
    for ct in [
        None,
        Some("application/json"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(ct) = ct {
            headers.push(("content-type", ct));
        }
        s.token(&headers, GRANT)
            .await
            .assert_error(400, "invalid_request");
    }
    let ok = s
        .token(
            &[
                ("authorization", &auth),
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=UTF-8",
                ),
            ],
            GRANT,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[tokio::test]
async fn body_over_8_kib_is_413_with_an_oauth_error_body() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    // Requests built here carry no Content-Length: the limit is enforced while reading.
    let body = format!("{GRANT}&pad={}", "x".repeat(8 * 1024));
    s.basic("svc", &secret, &body)
        .await
        .assert_error(413, "invalid_request");
    // A declared Content-Length over the limit is refused before reading.
    let auth = basic_header("svc", &secret);
    s.token(
        &[
            ("content-type", FORM),
            ("authorization", &auth),
            ("content-length", "100000"),
        ],
        GRANT,
    )
    .await
    .assert_error(413, "invalid_request");
    // Exactly at the limit is accepted.
    let exact = format!("{GRANT}&pad={}", "z".repeat(8 * 1024 - GRANT.len() - 5));
    assert_eq!(exact.len(), 8 * 1024);
    assert_eq!(s.basic("svc", &secret, &exact).await.status, 200);
}

#[tokio::test]
async fn repeated_parameter_is_invalid_request_but_resource_may_repeat() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    for body in [
        format!("{GRANT}&{GRANT}"),
        format!("{GRANT}&scope=api.read&scope=api.write"),
        format!("{GRANT}&unknown=1&unknown=2"),
    ] {
        s.basic("svc", &secret, &body)
            .await
            .assert_error(400, "invalid_request");
    }
    let body = format!(
        "{GRANT}&resource=https%3A%2F%2Fapi.example.com&resource=https%3A%2F%2Fother.example.com"
    );
    let r = s.basic("svc", &secret, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn empty_parameter_counts_as_omitted_and_unknown_parameters_are_ignored() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let r = s
        .basic("svc", &secret, &format!("{GRANT}&scope=&foo=bar"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["scope"], "api.read");
}

#[tokio::test]
async fn parameters_in_the_query_string_are_invalid_request() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    for uri in [
        "/oauth/token?grant_type=client_credentials",
        &format!("/oauth/token?client_secret={secret}"),
    ] {
        let request = Request::post(uri)
            .header("content-type", FORM)
            .header("authorization", basic_header("svc", &secret))
            .body(Body::from(GRANT))
            .unwrap();
        s.send(request).await.assert_error(400, "invalid_request");
    }
}

#[tokio::test]
async fn missing_grant_type_is_invalid_request_and_others_are_unsupported() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    s.basic("svc", &secret, "scope=api.read")
        .await
        .assert_error(400, "invalid_request");
    for g in [
        "password",
        "authorization_code",
        "refresh_token",
        "CLIENT_CREDENTIALS",
    ] {
        s.basic("svc", &secret, &format!("grant_type={g}"))
            .await
            .assert_error(400, "unsupported_grant_type");
    }
}

#[tokio::test]
async fn scope_outside_allow_list_is_invalid_scope_never_narrowed() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    s.basic("svc", &secret, &format!("{GRANT}&scope=api.read%20admin"))
        .await
        .assert_error(400, "invalid_scope");
    s.basic(
        "svc",
        &secret,
        &format!("{GRANT}&scope=api.read%20%20api.write"),
    )
    .await
    .assert_error(400, "invalid_scope");
    let r = s
        .basic(
            "svc",
            &secret,
            &format!("{GRANT}&scope=api.write%20api.read"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["scope"], "api.write api.read");
    let claims = verify(
        r.json["access_token"].as_str().unwrap(),
        &s.jwks().await,
        ISSUER,
        AUDIENCE,
    )
    .unwrap();
    assert_eq!(claims.scope, "api.write api.read");
}

#[tokio::test]
async fn omitted_scope_without_defaults_is_invalid_scope() {
    let s = Stack::new().await;
    let (_, secret) = s
        .client_with(NewClient {
            client_id: Some("nodefault".into()),
            name: "n".into(),
            scopes: vec!["a".into()],
            default_scopes: Some(vec![]),
            audiences: vec![AUDIENCE.into()],
            ..Default::default()
        })
        .await;
    s.basic("nodefault", &secret, GRANT)
        .await
        .assert_error(400, "invalid_scope");
    assert_eq!(
        s.basic("nodefault", &secret, &format!("{GRANT}&scope=a"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn resource_outside_allow_list_or_malformed_is_invalid_target() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    for resource in [
        "https%3A%2F%2Fevil.example.com",
        "not-a-uri",
        "https%3A%2F%2Fapi.example.com%23frag",
    ] {
        s.basic("svc", &secret, &format!("{GRANT}&resource={resource}"))
            .await
            .assert_error(400, "invalid_target");
    }
}

#[tokio::test]
async fn audience_is_the_requested_resources_else_the_default() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let jwks = s.jwks().await;
    let r = s
        .basic(
            "svc",
            &secret,
            &format!("{GRANT}&resource=https%3A%2F%2Fother.example.com"),
        )
        .await;
    let token = r.json["access_token"].as_str().unwrap();
    assert!(verify(token, &jwks, ISSUER, "https://other.example.com").is_ok());
    assert!(verify(token, &jwks, ISSUER, AUDIENCE).is_err());
    let both = format!(
        "{GRANT}&resource=https%3A%2F%2Fapi.example.com&resource=https%3A%2F%2Fother.example.com"
    );
    let r = s.basic("svc", &secret, &both).await;
    let claims = verify(
        r.json["access_token"].as_str().unwrap(),
        &jwks,
        ISSUER,
        AUDIENCE,
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&claims.aud).unwrap(),
        serde_json::json!([AUDIENCE, "https://other.example.com"])
    );
}

#[tokio::test]
async fn unknown_client_is_rejected_like_a_wrong_secret() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let wrong = s.basic("svc", "tks_wrong", GRANT).await;
    let unknown = s.basic("nobody", &secret, GRANT).await;
    for r in [&wrong, &unknown] {
        r.assert_error(401, "invalid_client");
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .starts_with("Basic realm=")
        );
    }
    assert_eq!(wrong.text, unknown.text);
    let names = |r: &stack::Reply| {
        let mut v: Vec<String> = r
            .headers
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k != "date")
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&wrong), names(&unknown));
}

#[tokio::test]
async fn secrets_compare_byte_for_byte() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    for variant in [
        format!("{secret}\0"),
        format!("{secret} "),
        format!(" {secret}"),
        secret[..secret.len() - 1].to_owned(),
        secret.to_uppercase(),
    ] {
        s.basic("svc", &variant, GRANT)
            .await
            .assert_error(401, "invalid_client");
    }
    let body = format!("{GRANT}&client_id=svc&client_secret={secret}%00");
    s.token(&[("content-type", FORM)], &body)
        .await
        .assert_error(401, "invalid_client");
}

#[tokio::test]
async fn missing_or_unsupported_client_authentication_is_invalid_client() {
    let s = Stack::new().await;
    s.client("svc").await;
    let r = s.token(&[("content-type", FORM)], GRANT).await;
    r.assert_error(401, "invalid_client");
    assert!(r.header("www-authenticate").is_some());
    s.token(&[("content-type", FORM)], &format!("{GRANT}&client_id=svc"))
        .await
        .assert_error(401, "invalid_client");
    s.token(
        &[("content-type", FORM), ("authorization", "Bearer abc")],
        GRANT,
    )
    .await
    .assert_error(401, "invalid_client");
    s.token(
        &[
            ("content-type", FORM),
            ("authorization", "Basic !!!notbase64"),
        ],
        GRANT,
    )
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn disabled_client_is_refused_on_its_very_next_request() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    assert_eq!(s.basic("svc", &secret, GRANT).await.status, 200);
    s.admin()
        .set_status("svc", ClientStatus::Disabled)
        .await
        .unwrap();
    s.basic("svc", &secret, GRANT)
        .await
        .assert_error(401, "invalid_client");
    s.admin()
        .set_status("svc", ClientStatus::Active)
        .await
        .unwrap();
    assert_eq!(s.basic("svc", &secret, GRANT).await.status, 200);
}

#[tokio::test]
async fn expired_secret_never_authenticates_and_a_second_secret_works() {
    let s = Stack::new().await;
    let (_, first) = s.client("svc").await;
    let expiry = token_service::clock::Clock::now(s.clock.as_ref()) + time::Duration::minutes(10);
    let (_, _, second) = s.admin().add_secret("svc", Some(expiry)).await.unwrap();
    assert_eq!(s.basic("svc", &first, GRANT).await.status, 200);
    assert_eq!(s.basic("svc", second.expose(), GRANT).await.status, 200);
    s.clock.advance(time::Duration::minutes(10));
    s.basic("svc", second.expose(), GRANT)
        .await
        .assert_error(401, "invalid_client");
    assert_eq!(s.basic("svc", &first, GRANT).await.status, 200);
}

#[tokio::test]
async fn lifetime_is_the_client_ttl_capped_by_the_service_maximum() {
    let s = Stack::new().await;
    let (_, secret) = s
        .client_with(NewClient {
            client_id: Some("short".into()),
            name: "s".into(),
            scopes: vec!["a".into()],
            audiences: vec![AUDIENCE.into()],
            token_ttl: Some(120),
            ..Default::default()
        })
        .await;
    let r = s.basic("short", &secret, GRANT).await;
    assert_eq!(r.json["expires_in"], 120);
    let claims = verify(
        r.json["access_token"].as_str().unwrap(),
        &s.jwks().await,
        ISSUER,
        AUDIENCE,
    )
    .unwrap();
    assert_eq!(claims.exp - claims.iat, 120);

    // A client whose ttl exceeds a later-lowered service maximum gets the maximum.
    let (_, long_secret) = s
        .client_with(NewClient {
            client_id: Some("long".into()),
            name: "l".into(),
            scopes: vec!["a".into()],
            audiences: vec![AUDIENCE.into()],
            token_ttl: Some(3000),
            ..Default::default()
        })
        .await;
    let mut lowered = ServiceConfig::for_tests();
    lowered.max_ttl = 600;
    lowered.default_ttl = 300;
    let service = token_service::issue::TokenService::new(
        std::sync::Arc::new(lowered),
        s.embedded.store.clone(),
        s.embedded.store.clone(),
        s.embedded.store.clone(),
        token_service::key_cache::KeyCache::new(
            s.embedded.store.clone(),
            s.clock.clone(),
            s.embedded.config.schedule,
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(3600),
        ),
        s.clock.clone(),
    );
    let auth = basic_header("long", &long_secret);
    let raw = token_service::oauth::request::RawRequest {
        content_type: Some(FORM),
        authorization: Some(&auth),
        query: None,
        body: GRANT.as_bytes(),
        dpop: None,
    };
    let issued = service.handle(raw, &Default::default()).await.unwrap();
    assert_eq!(issued.expires_in, 600);
}

#[tokio::test]
async fn other_methods_get_405_with_allow_post() {
    let s = Stack::new().await;
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let request = Request::builder()
            .method(method)
            .uri("/oauth/token")
            .body(Body::empty())
            .unwrap();
        let r = s.send(request).await;
        r.assert_error(405, "invalid_request");
        assert_eq!(r.header("allow"), Some("POST"));
    }
}

#[tokio::test]
async fn nothing_the_client_sent_is_echoed_back() {
    let s = Stack::new().await;
    let (_, secret) = s.client("svc").await;
    let probe = "%3Cb%3Ezqx%22%27%3C%2Fb%3E";
    for body in [
        format!("{GRANT}&scope={probe}"),
        format!("grant_type={probe}"),
        format!("{GRANT}&resource={probe}"),
    ] {
        let r = s.basic("svc", &secret, &body).await;
        assert_eq!(r.status, 400);
        assert!(!r.text.contains("zqx"), "{}", r.text);
    }
    let r = s.basic("<b>zqx", &secret, GRANT).await;
    assert!(!r.text.contains("zqx"));
}
