//! Per-client extra token claims on SQLite and on DynamoDB (moto): set, changed and removed
//! through admin and through `tokenctl`, refused whole with nothing written, audited by field
//! name, and carried typed by every token of the client, after the registered claims.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};
use time::OffsetDateTime;
use token_service::admin::{Admin, AdminError, ClientUpdate, NewClient};
use token_service::audit::AuditQuery;
use token_service::clients::claims::{ClaimError, ClaimsEdit, RESERVED_CLAIMS};
use token_service::clients::{ClientSpecError, ExtraClaims};
use token_service::clock::{Clock, ManualClock};
use token_service::config::ServiceConfig;
use token_service::issue::RequestContext;
use token_service::oauth::request::RawRequest;
use token_service::store::aws::{AwsResources, create_resources};

use crate::support::moto;
use crate::support::stores::{Stores, random_resources};

const AUDIENCE: &str = "https://api.test/";

fn object(value: Value) -> ExtraClaims {
    value.as_object().expect("an object").clone()
}

fn admin(s: &Stores, clock: Arc<dyn Clock>) -> Admin {
    s.admin(&ServiceConfig::for_tests(), clock, "claims-test")
}

fn spec(id: &str, claims: ExtraClaims) -> NewClient {
    NewClient {
        client_id: Some(id.to_owned()),
        name: id.to_owned(),
        scopes: vec!["read".to_owned()],
        audiences: vec![AUDIENCE.to_owned()],
        claims,
        ..NewClient::default()
    }
}

/// The management records of `client_id`, newest first: `(action, fields)`.
async fn admin_records(s: &Stores, client_id: &str) -> Vec<(String, Vec<String>)> {
    let query = AuditQuery {
        client_id: Some(client_id.to_owned()),
        outcome: Some("admin".to_owned()),
        limit: 100,
        ..Default::default()
    };
    let records = s.audit.query(&query).await.expect("audit query");
    records
        .into_iter()
        .map(|r| (r.action.unwrap_or_default(), r.fields))
        .collect()
}

fn set(name: &str, value: Value) -> ClaimsEdit {
    ClaimsEdit {
        set: vec![(name.to_owned(), value)],
        ..Default::default()
    }
}

async fn update(admin: &Admin, id: &str, claims: ClaimsEdit) -> Result<ExtraClaims, AdminError> {
    let update = ClientUpdate {
        claims,
        ..Default::default()
    };
    Ok(admin.update_client(id, update).await?.claims)
}

async fn claims_are_set_changed_and_removed_and_each_change_is_audited(s: &Stores) {
    let admin = admin(s, Arc::new(ManualClock::new(OffsetDateTime::now_utc())));
    let first = object(json!({"tenant": "acme", "seats": 25}));
    admin.create_client(spec("c", first.clone())).await.unwrap();
    assert_eq!(
        s.other_clients
            .get_client("c")
            .await
            .unwrap()
            .unwrap()
            .claims,
        first
    );

    let got = update(&admin, "c", set("plan", json!("pro")))
        .await
        .unwrap();
    assert_eq!(
        Value::Object(got),
        json!({"tenant": "acme", "seats": 25, "plan": "pro"})
    );
    let got = update(&admin, "c", set("seats", json!(30))).await.unwrap();
    assert_eq!(got["seats"], 30, "a number stays a number");
    let remove = ClaimsEdit {
        remove: vec!["plan".to_owned()],
        ..Default::default()
    };
    let got = update(&admin, "c", remove).await.unwrap();
    assert_eq!(Value::Object(got), json!({"tenant": "acme", "seats": 30}));
    let replace = ClaimsEdit {
        replace: Some(object(json!({"org": {"id": 7, "regions": ["eu", "us"]}}))),
        ..Default::default()
    };
    update(&admin, "c", replace).await.unwrap();
    let stored = s.other_clients.get_client("c").await.unwrap().unwrap();
    assert_eq!(
        Value::Object(stored.claims),
        json!({"org": {"id": 7, "regions": ["eu", "us"]}})
    );
    let clear = ClaimsEdit {
        replace: Some(ExtraClaims::new()),
        ..Default::default()
    };
    assert!(update(&admin, "c", clear).await.unwrap().is_empty());
    assert_eq!(stored.version, 5);

    // Records of one instant come back in any order.
    let mut records = admin_records(s, "c").await;
    records.sort();
    let claims = vec!["claims".to_owned()];
    let mut expected = vec![("client.create".to_owned(), claims.clone())];
    expected.extend(std::iter::repeat_n(("client.update".to_owned(), claims), 5));
    assert_eq!(records, expected);
    let text = format!("{records:?}");
    assert!(
        !text.contains("acme"),
        "field names only, never values: {text}"
    );
}

async fn refused_claims_write_nothing(s: &Stores) {
    let admin = admin(s, Arc::new(ManualClock::new(OffsetDateTime::now_utc())));
    admin
        .create_client(spec("c", object(json!({"tenant": "acme"}))))
        .await
        .unwrap();
    let before = s.clients.get_client("c").await.unwrap().unwrap();
    let long_name = "n".repeat(65);
    let five_deep = json!({"a": {"b": {"c": {"d": {"e": 1}}}}});
    let mut edits: Vec<(String, ClaimsEdit, ClaimError)> = RESERVED_CLAIMS
        .iter()
        .map(|name| {
            let e = ClaimError::Reserved((*name).to_owned());
            (format!("reserved {name}"), set(name, json!("x")), e)
        })
        .collect();
    edits.extend([
        (
            "long name".to_owned(),
            set(&long_name, json!(1)),
            ClaimError::InvalidName(long_name.clone()),
        ),
        (
            "non-ASCII name".to_owned(),
            set("región", json!(1)),
            ClaimError::InvalidName("región".to_owned()),
        ),
        (
            "control character".to_owned(),
            set("a\u{7}", json!(1)),
            ClaimError::InvalidName("a\u{7}".to_owned()),
        ),
        (
            "over 1 KiB".to_owned(),
            set("big", json!("x".repeat(1100))),
            // {"big":"…"} around the value, plus the existing {"tenant":"acme"} member.
            ClaimError::TooLarge(1100 + 10 + 16),
        ),
        (
            "five levels".to_owned(),
            set("deep", five_deep),
            ClaimError::TooDeep("deep".to_owned()),
        ),
        (
            "remove a missing claim".to_owned(),
            ClaimsEdit {
                remove: vec!["nope".to_owned()],
                ..Default::default()
            },
            ClaimError::NoSuchClaim("nope".to_owned()),
        ),
    ]);
    for (case, edit, expected) in edits {
        let err = update(&admin, "c", edit).await.unwrap_err();
        assert!(
            matches!(&err, AdminError::Spec(ClientSpecError::Claims(e)) if *e == expected),
            "{case}: {err}"
        );
    }
    // A refused creation stores no client.
    let err = admin
        .create_client(spec("d", object(json!({"iss": "https://evil.test"}))))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"iss\""), "{err}");
    assert_eq!(s.clients.get_client("d").await.unwrap(), None);
    assert_eq!(s.clients.get_client("c").await.unwrap().unwrap(), before);
    let records = admin_records(s, "c").await;
    assert_eq!(records.len(), 1, "only the creation: {records:?}");
    assert!(admin_records(s, "d").await.is_empty());
}

/// The keys of a JSON object in the order they appear in the text.
fn key_order(json_text: &[u8]) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    serde_json::from_slice::<Keys>(json_text)
        .expect("a JSON object")
        .0
}

/// A token for `id`, its payload verified against the published JWKS (the algorithm from the
/// JWK, issuer, audience, expiry), and the payload's raw JSON.
async fn token_for(
    s: &Stores,
    clock: Arc<ManualClock>,
    id: &str,
    secret: &str,
) -> (Value, Vec<u8>) {
    let config = ServiceConfig::for_tests();
    let service = s.token_service(&config, clock.clone());
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let raw = RawRequest {
        content_type: Some("application/x-www-form-urlencoded"),
        authorization: Some(&auth),
        query: None,
        body: b"grant_type=client_credentials",
        dpop: None,
    };
    let meta = RequestContext {
        request_id: "claims".to_owned(),
        source_ip: Some("192.0.2.9".to_owned()),
        user_agent: None,
    };
    let issued = service.handle(raw, &meta).await.expect("a token");
    let token = issued.access_token;
    let jwks = crate::support::resource_server::published(s, &config, clock.now()).await;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let jwk = jwks.find(&kid).expect("published kid");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[config.issuer.as_str()]);
    v.set_audience(&[AUDIENCE]);
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &v)
        .expect("the token verifies")
        .claims;
    let payload = token.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    (claims, raw)
}

async fn tokens_carry_the_claims_typed_and_others_keep_todays_layout(s: &Stores) {
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    s.rotate_keys(ServiceConfig::for_tests().schedule, clock.clone())
        .await;
    let admin = admin(s, clock.clone());
    let extra = json!({
        "tenant": "acme",
        "seats": 25,
        "ratio": 0.5,
        "beta": true,
        "none": null,
        "org": {"id": 7, "regions": ["eu", "us"]},
    });
    let (_, secret) = admin
        .create_client(spec("rich", object(extra.clone())))
        .await
        .unwrap();
    let (_, plain_secret) = admin
        .create_client(spec("plain", ExtraClaims::new()))
        .await
        .unwrap();

    let (claims, raw) = token_for(s, clock.clone(), "rich", secret.expose()).await;
    for (name, value) in extra.as_object().unwrap() {
        assert_eq!(&claims[name], value, "{name} arrives with its JSON type");
    }
    assert_eq!(claims["client_id"], "rich");
    let registered = [
        "iss",
        "sub",
        "client_id",
        "aud",
        "iat",
        "nbf",
        "exp",
        "jti",
        "scope",
    ];
    let order = key_order(&raw);
    assert_eq!(
        order[..9],
        registered,
        "registered claims first, in today's order"
    );
    assert_eq!(
        order[9..],
        ["beta", "none", "org", "ratio", "seats", "tenant"]
    );

    let (claims, raw) = token_for(s, clock, "plain", plain_secret.expose()).await;
    assert_eq!(
        key_order(&raw),
        registered,
        "exactly today's claims, in today's order"
    );
    assert_eq!(claims["client_id"], "plain");
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&crate::support::stores::sqlite().await).await;
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&crate::support::stores::aws().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    claims_are_set_changed_and_removed_and_each_change_is_audited,
    refused_claims_write_nothing,
    tokens_carry_the_claims_typed_and_others_keep_todays_layout,
);

/// `tokenctl` on one backend, as an operator runs it.
enum Cli {
    Sqlite(tempfile::TempDir),
    Aws(AwsResources),
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenctl"));
        command.env_remove("AWS_PROFILE");
        match self {
            Self::Sqlite(dir) => command
                .env("TOKEN_BACKEND", "sqlite")
                .arg("--db")
                .arg(dir.path().join("cli.db")),
            Self::Aws(names) => command
                .env("TOKEN_BACKEND", "aws")
                .env("AWS_ENDPOINT_URL", moto::endpoint())
                .env("AWS_REGION", moto::REGION)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("TOKEN_CLIENTS_TABLE", &names.clients_table)
                .env("TOKEN_AUDIT_TABLE", &names.audit_table)
                .env("TOKEN_PUBLIC_KEYS_TABLE", &names.public_keys_table)
                .env("TOKEN_RATE_LIMITS_TABLE", &names.rate_limits_table)
                .env("TOKEN_ASSERTION_IDS_TABLE", &names.assertion_ids_table)
                .env("TOKEN_SECRET_INDEX_TABLE", &names.secret_index_table)
                .env("TOKEN_KEY_SECRET_ID", &names.key_secret_id),
        };
        command.args(args).output().expect("tokenctl runs")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "tokenctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    fn file(&self, dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn cli_manages_claims(cli: &Cli) {
    let files = tempfile::tempdir().unwrap();
    let doc = cli.file(
        &files,
        "c.json",
        r#"{"seats": 25, "org": {"id": 7, "eu": true}}"#,
    );
    let create = [
        "clients",
        "create",
        "--id",
        "t1",
        "--name",
        "T1",
        "--scope",
        "api.read",
        "--audience",
        "https://api.example.com",
        "--claim",
        "tenant=acme",
        "--claims-json",
    ];
    let mut args = create.to_vec();
    args.push(doc.to_str().unwrap());
    cli.json(&args);
    let shown = cli.json(&["clients", "show", "t1"]);
    assert_eq!(
        shown["claims"],
        json!({"tenant": "acme", "seats": 25, "org": {"id": 7, "eu": true}})
    );
    let text = cli.run(&["clients", "show", "t1"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("claim:            seats = 25"), "{text}");
    assert!(
        text.contains("claim:            tenant = \"acme\""),
        "{text}"
    );

    // --claim sets one name and keeps the rest; --remove-claim removes one.
    let updated = cli.json(&[
        "clients",
        "update",
        "t1",
        "--claim",
        "tenant=beta",
        "--claim",
        "plan=a=b",
    ]);
    assert_eq!(
        updated["claims"],
        json!({"tenant": "beta", "plan": "a=b", "seats": 25, "org": {"id": 7, "eu": true}})
    );
    let updated = cli.json(&["clients", "update", "t1", "--remove-claim", "org"]);
    assert_eq!(
        updated["claims"],
        json!({"tenant": "beta", "plan": "a=b", "seats": 25})
    );
    // --claims-json replaces the whole set.
    let other = cli.file(
        &files,
        "d.json",
        r#"{"region": "eu-west-1", "limits": [1, 2.5]}"#,
    );
    let updated = cli.json(&[
        "clients",
        "update",
        "t1",
        "--claims-json",
        other.to_str().unwrap(),
    ]);
    assert_eq!(
        updated["claims"],
        json!({"region": "eu-west-1", "limits": [1, 2.5]})
    );
    assert_eq!(updated["version"], 4);

    // Refused: a clear message, a failing exit status, and nothing written.
    let before = cli.json(&["clients", "show", "t1"]);
    let audit_before = cli.json(&["audit", "--admin", "--client", "t1"]);
    let deep = cli.file(&files, "deep.json", r#"{"x": [[[[[1]]]]]}"#);
    let list = cli.file(&files, "list.json", "[1, 2]");
    let big = format!("big={}", "x".repeat(1100));
    let long = format!("{}=1", "n".repeat(65));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--claim", "iss=https://evil.test"],
            "registered claim name",
        ),
        (vec!["--claim", "scope=admin"], "registered claim name"),
        (vec!["--claim", "may_act=x"], "registered claim name"),
        (
            vec!["--claim", &long],
            "must be 1 to 64 bytes of printable ASCII",
        ),
        (
            vec!["--claim", "née=x"],
            "must be 1 to 64 bytes of printable ASCII",
        ),
        (
            vec!["--claim", "two words=x"],
            "must be 1 to 64 bytes of printable ASCII",
        ),
        (vec!["--claim", &big], "at most 1024 are allowed"),
        (
            vec!["--claims-json", deep.to_str().unwrap()],
            "deeper than 4 levels",
        ),
        (
            vec!["--claims-json", list.to_str().unwrap()],
            "must be a JSON object",
        ),
        (vec!["--claim", "novalue"], "NAME=VALUE"),
        (vec!["--remove-claim", "absent"], "has no claim \"absent\""),
        (
            vec!["--claim", "ok=1", "--claim", "sub=x"],
            "registered claim name",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["clients", "update", "t1"];
        args.extend(flags.iter().copied());
        let out = cli.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} succeeded");
        assert!(err.contains(message), "{flags:?}: {err}");
    }
    let mut args = create.to_vec();
    args[3] = "t2";
    args.pop();
    args.extend(["--claim", "aud=https://evil.test"]);
    assert!(!cli.run(&args).status.success());
    assert!(
        !cli.run(&["clients", "show", "t2"]).status.success(),
        "no client t2"
    );
    assert_eq!(cli.json(&["clients", "show", "t1"]), before);
    assert_eq!(
        cli.json(&["audit", "--admin", "--client", "t1"]),
        audit_before
    );

    let audit = cli.json(&["audit", "--admin", "--client", "t1"]);
    let entries: Vec<(&str, Vec<&str>)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let fields = r["fields"].as_array().map_or(Vec::new(), |f| {
                f.iter().map(|v| v.as_str().unwrap()).collect()
            });
            (r["action"].as_str().unwrap(), fields)
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("client.update", vec!["claims"]),
            ("client.update", vec!["claims"]),
            ("client.update", vec!["claims"]),
            ("client.create", vec!["claims"]),
        ]
    );
}

#[test]
fn tokenctl_manages_claims_on_sqlite() {
    cli_manages_claims(&Cli::Sqlite(tempfile::tempdir().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenctl_manages_claims_on_dynamodb() {
    let names = random_resources();
    create_resources(&moto::sdk_config().await, &names)
        .await
        .expect("create the tables and the secret");
    let cli = Cli::Aws(names);
    tokio::task::spawn_blocking(move || cli_manages_claims(&cli))
        .await
        .unwrap();
}
