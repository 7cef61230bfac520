//! The audit report on both backends (SQLite, and DynamoDB on moto), over real token requests
//! made with a manual clock: a client used from a new address, a password-spraying address
//! (against clients' ids or unknown ones), a volume jump and a disabled client still tried each
//! show up; a quiet client does not. On DynamoDB the report reads no Scan of the audit table.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use token_service::admin::{Admin, NewClient};
use token_service::audit::report::{self, DisabledTried, NewAddress, Report, ReportOptions};
use token_service::clients::{ClientSecret, ClientStatus};
use token_service::clock::{Clock, ManualClock};
use token_service::config::ServiceConfig;
use token_service::issue::{RequestContext, TokenService};
use token_service::oauth::request::RawRequest;

use crate::support::stores::Stores;

const QUIET_IP: &str = "10.0.0.1";
const ROAMER_IP: &str = "10.0.0.2";
const ROAMER_NEW_IP: &str = "203.0.113.7";
const BURST_IP: &str = "10.0.0.3";
const OLD_IP: &str = "10.0.0.9";
const SPRAYER_IP: &str = "198.51.100.66";
const GUESSER_IP: &str = "198.51.100.99";

/// A report over hours, with a three-hour baseline and small thresholds for small numbers.
fn options() -> ReportOptions {
    ReportOptions {
        baseline_periods: 3,
        jump_min: 5,
        ..ReportOptions::new(Duration::hours(1))
    }
}

struct World {
    clock: Arc<ManualClock>,
    admin: Admin,
    service: TokenService,
    secrets: std::collections::HashMap<&'static str, String>,
}

impl World {
    async fn new(s: &Stores, start: OffsetDateTime) -> Self {
        let clock = Arc::new(ManualClock::new(start));
        let config = ServiceConfig::for_tests();
        let admin = s.admin(&config, clock.clone(), "report-test");
        s.rotate_keys(config.schedule, clock.clone()).await;
        let service = s.token_service(&config, clock.clone());
        let mut secrets = std::collections::HashMap::new();
        for id in ["quiet", "roamer", "burst", "old", "t1", "t2", "t3"] {
            let (_, secret) = admin
                .create_client(NewClient {
                    client_id: Some(id.to_owned()),
                    name: id.to_owned(),
                    scopes: vec!["read".to_owned()],
                    audiences: vec!["https://api.test/".to_owned()],
                    ..NewClient::default()
                })
                .await
                .unwrap();
            secrets.insert(id, secret.expose().to_owned());
        }
        Self {
            clock,
            admin,
            service,
            secrets,
        }
    }

    /// One token request from `ip`, one minute after the previous one (so no rate limit
    /// window fills up); with the client's secret, or a wrong one.
    async fn ask(&self, id: &str, ip: &str, right_secret: bool) {
        use base64::Engine as _;
        self.clock.advance(Duration::minutes(1));
        let secret = match self.secrets.get(id) {
            Some(s) if right_secret => s.clone(),
            _ => ClientSecret::generate().expose().to_owned(),
        };
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
            request_id: token_service::encoding::random_b64url(9),
            source_ip: Some(ip.to_owned()),
            user_agent: Some("report-test".to_owned()),
        };
        let _ = self.service.handle(raw, &meta).await;
    }

    async fn times(&self, n: usize, id: &str, ip: &str) {
        for _ in 0..n {
            self.ask(id, ip, true).await;
        }
    }
}

/// Three quiet baseline hours, then an hour with every kind of suspicious use; the report is
/// made at the end of that hour.
async fn scenario(s: &Stores) -> (World, Report) {
    // Whole minutes in the past: records keep a realistic expiry, and the service's rate-limit
    // windows follow the manual clock.
    let now = OffsetDateTime::now_utc();
    let start = now
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap()
        - Duration::hours(5);
    let w = World::new(s, start).await;
    let hour_start = |h: i64| start + Duration::minutes(1) + Duration::hours(h);
    for h in 0..3 {
        w.clock.set(hour_start(h));
        w.times(2, "quiet", QUIET_IP).await;
        w.times(2, "roamer", ROAMER_IP).await;
        w.times(1, "burst", BURST_IP).await;
        w.times(1, "old", OLD_IP).await;
    }
    // The reported hour.
    w.clock.set(hour_start(3));
    w.times(1, "old", OLD_IP).await;
    w.clock.advance(Duration::seconds(30));
    w.admin
        .set_status("old", ClientStatus::Disabled)
        .await
        .unwrap();
    w.times(2, "quiet", QUIET_IP).await;
    w.times(1, "roamer", ROAMER_IP).await;
    w.times(1, "roamer", ROAMER_NEW_IP).await;
    w.times(8, "burst", BURST_IP).await;
    w.times(2, "old", OLD_IP).await;
    for id in ["t1", "t2", "t3", "ghost"] {
        w.ask(id, SPRAYER_IP, false).await;
    }
    w.clock.set(hour_start(4) - Duration::minutes(1));
    let report = report::build(
        s.clients.as_ref(),
        s.audit.as_ref(),
        w.clock.as_ref(),
        &options(),
    )
    .await
    .unwrap();
    (w, report)
}

fn mentions(report: &Report, id: &str) -> bool {
    let f = &report.findings;
    f.new_addresses.iter().any(|n| n.client_id == id)
        || f.spraying
            .iter()
            .any(|s| s.client_ids.iter().any(|c| c == id))
        || f.volume_jumps.iter().any(|j| j.client_id == id)
        || f.disabled_tried.iter().any(|d| d.client_id == id)
}

async fn each_kind_of_suspicious_use_shows_up_and_a_quiet_client_does_not(s: &Stores) {
    let (w, report) = scenario(s).await;
    let f = &report.findings;
    assert_eq!(
        f.new_addresses,
        [NewAddress {
            client_id: "roamer".to_owned(),
            address: ROAMER_NEW_IP.to_owned(),
            issued: 1,
        }]
    );
    assert_eq!(f.spraying.len(), 1, "{f:?}");
    assert_eq!(f.spraying[0].address, SPRAYER_IP);
    assert_eq!(f.spraying[0].client_ids, ["t1", "t2", "t3"]);
    // The unknown id is read through the failure index, without asking for it.
    assert_eq!(f.spraying[0].unknown_ids, 1);
    assert_eq!(f.spraying[0].unknown_examples, ["ghost"]);
    assert_eq!(f.spraying[0].failures, 4);
    let jumps: Vec<_> = f
        .volume_jumps
        .iter()
        .map(|j| (j.client_id.as_str(), j.requests))
        .collect();
    assert_eq!(jumps, [("burst", 8)]);
    assert_eq!(f.volume_jumps[0].baseline_average, 1.0);
    // The request before the client was disabled does not count.
    assert_eq!(
        f.disabled_tried,
        [DisabledTried {
            client_id: "old".to_owned(),
            requests: 2,
            addresses: vec![OLD_IP.to_owned()],
        }]
    );
    assert!(!mentions(&report, "quiet"), "{f:?}");

    let quiet = report
        .clients
        .iter()
        .find(|c| c.client_id == "quiet")
        .unwrap();
    assert_eq!((quiet.counts.issued, quiet.counts.failed), (2, 0));
    assert_eq!(quiet.baseline_requests, 6);
    assert_eq!(quiet.baseline_average, Some(2.0));
    let old = report
        .clients
        .iter()
        .find(|c| c.client_id == "old")
        .unwrap();
    assert_eq!((old.counts.issued, old.counts.failed), (1, 2));
    let t1 = report.clients.iter().find(|c| c.client_id == "t1").unwrap();
    assert_eq!(t1.counts.by_outcome.get("invalid_client"), Some(&1));

    let unknown = &report.unknown_clients;
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(unknown[0].client_id, "ghost");
    assert_eq!((unknown[0].counts.failed, unknown[0].addresses), (1, 1));
    assert_eq!(report.reads.client_list, 1);
    assert_eq!(report.reads.audit_queries, 7, "one query per client");
    assert_eq!(report.reads.audit_scans, 0);
    assert!(report.reads.failure_queries >= 1, "{:?}", report.reads);
    assert_eq!(report.period.until, w.clock.now());
}

/// An address guessing six ids that are no client, one a minute, and another address failing
/// once against a client; the report with no option but the period is made at the hour's end.
async fn guesses_then_report(s: &Stores) -> (World, Report) {
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::hours(2);
    let w = World::new(s, start).await;
    for i in 0..6 {
        w.ask(&format!("guess-{i}"), GUESSER_IP, false).await;
    }
    w.ask("t1", QUIET_IP, false).await;
    w.clock.advance(Duration::minutes(30));
    let report = report::build(
        s.clients.as_ref(),
        s.audit.as_ref(),
        w.clock.as_ref(),
        &ReportOptions::new(Duration::hours(1)),
    )
    .await
    .unwrap();
    (w, report)
}

async fn an_address_trying_unknown_ids_is_named_by_the_default_report(s: &Stores) {
    let (_, report) = guesses_then_report(s).await;
    // Read as JSON: what `tokenctl audit report --json` prints.
    let json = serde_json::to_value(&report).unwrap();
    let spraying = json["findings"]["spraying"].as_array().unwrap();
    let named: Vec<&serde_json::Value> = spraying
        .iter()
        .filter(|s| s["address"] == GUESSER_IP)
        .collect();
    assert_eq!(named.len(), 1, "the guessing address is named: {json}");
    assert_eq!(named[0]["failures"], 6);
    assert_eq!(named[0]["unknown_ids"], 6);
    assert_eq!(named[0]["client_ids"], serde_json::json!([]));
    assert_eq!(
        named[0]["unknown_examples"],
        serde_json::json!(["guess-0", "guess-1", "guess-2", "guess-3", "guess-4"]),
        "a few shown, all counted"
    );
    assert_eq!(spraying.len(), 1, "one failure is no spraying: {json}");
    // A client's failure is reported on its line as before.
    let t1 = report.clients.iter().find(|c| c.client_id == "t1").unwrap();
    assert_eq!((t1.counts.failed, t1.counts.issued), (1, 0));
    let unknown: Vec<&str> = report
        .unknown_clients
        .iter()
        .map(|u| u.client_id.as_str())
        .collect();
    assert_eq!(
        unknown,
        [
            "guess-0", "guess-1", "guess-2", "guess-3", "guess-4", "guess-5"
        ]
    );
    assert_eq!(json["options"]["include_unknown"], true);
    assert_eq!(report.reads.audit_scans, 0);
}

/// Runs each behaviour above once per backend: `sqlite::<name>` and `aws::<name>`.
macro_rules! both_backends {
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

both_backends!(
    each_kind_of_suspicious_use_shows_up_and_a_quiet_client_does_not,
    an_address_trying_unknown_ids_is_named_by_the_default_report,
);

/// Refusals written straight to the audit trail: `guesses` unknown ids tried from
/// [`GUESSER_IP`], one every `every`, starting at `from`, and one failure of client `steady`.
async fn write_guesses(
    audit: &dyn token_service::store::AuditLog,
    from: OffsetDateTime,
    every: Duration,
    guesses: usize,
) {
    use token_service::audit::{AuditRecord, INVALID_CLIENT};
    let meta = |ip: &str| RequestContext {
        request_id: token_service::encoding::random_b64url(9),
        source_ip: Some(ip.to_owned()),
        user_agent: Some("report-test".to_owned()),
    };
    let retention = Duration::days(90);
    for i in 0..guesses {
        let at = from + every * i as i32;
        let id = format!("guess-{i}");
        let record =
            AuditRecord::for_request(Some(&id), INVALID_CLIENT, &meta(GUESSER_IP), at, retention);
        audit.append(&record).await.unwrap();
    }
    let record = AuditRecord::for_request(
        Some("steady"),
        INVALID_CLIENT,
        &meta(QUIET_IP),
        from,
        retention,
    );
    audit.append(&record).await.unwrap();
}

/// A client created a month before `now`, as the store holds it.
fn client(id: &str, now: OffsetDateTime) -> token_service::clients::Client {
    token_service::clients::Client {
        client_id: id.to_owned(),
        name: id.to_owned(),
        status: ClientStatus::Active,
        scopes: vec!["read".to_owned()],
        default_scopes: vec!["read".to_owned()],
        audiences: vec!["https://api.test/".to_owned()],
        default_audience: "https://api.test/".to_owned(),
        token_ttl: None,
        rate_limit: None,
        secrets: Vec::new(),
        auth_method: Default::default(),
        keys: Vec::new(),
        claims: Default::default(),
        dpop_bound: false,
        created_at: now - Duration::days(30),
        updated_at: now - Duration::days(30),
        version: 1,
    }
}

mod dynamodb {
    //! What the report costs on DynamoDB, counted by an SDK interceptor, and how it treats
    //! records written before the failure index existed.

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
    use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
    use aws_sdk_dynamodb::operation::query::QueryInput;
    use aws_sdk_dynamodb::operation::scan::ScanInput;
    use aws_smithy_runtime_api::box_error::BoxError;
    use time::{Duration, OffsetDateTime};
    use token_service::audit::report::{self, ReportOptions};
    use token_service::clock::ManualClock;
    use token_service::store::ClientAdmin;
    use token_service::store::aws::{
        AwsResources, DynamoDbAuditLog, DynamoDbClientStore, FAILURES_INDEX, create_resources,
    };

    use super::{GUESSER_IP, write_guesses};
    use crate::support::moto;
    use crate::support::stores::random_resources;

    /// One DynamoDB call: operation, table, index.
    type Call = (String, String, Option<String>);

    /// Every call of the client it is on.
    #[derive(Debug, Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Call>>>);

    impl Intercept for Calls {
        fn name(&self) -> &'static str {
            "RecordDynamoDbCalls"
        }

        fn read_before_serialization(
            &self,
            ctx: &BeforeSerializationInterceptorContextRef<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            let input = ctx.input();
            let call = if let Some(q) = input.downcast_ref::<QueryInput>() {
                let table = q.table_name().unwrap_or_default().to_owned();
                ("Query".to_owned(), table, q.index_name().map(str::to_owned))
            } else if let Some(s) = input.downcast_ref::<ScanInput>() {
                let table = s.table_name().unwrap_or_default().to_owned();
                ("Scan".to_owned(), table, None)
            } else {
                ("other".to_owned(), String::new(), None)
            };
            self.0.lock().unwrap().push(call);
            Ok(())
        }
    }

    impl Calls {
        /// Calls by (operation, table, index).
        fn counted(&self) -> BTreeMap<Call, usize> {
            let mut counts = BTreeMap::new();
            for call in self.0.lock().unwrap().iter() {
                *counts.entry(call.clone()).or_default() += 1;
            }
            counts
        }
    }

    /// Fresh tables, a client `steady` (and `other`), and the stores on an SDK client whose
    /// calls are recorded.
    async fn setup(
        now: OffsetDateTime,
    ) -> (AwsResources, DynamoDbClientStore, DynamoDbAuditLog, Calls) {
        let sdk = moto::sdk_config().await;
        let names = random_resources();
        create_resources(&sdk, &names).await.unwrap();
        let calls = Calls::default();
        let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build();
        let db = aws_sdk_dynamodb::Client::from_conf(conf);
        let clients =
            DynamoDbClientStore::new(db.clone(), &names.clients_table, &names.secret_index_table);
        for id in ["steady", "other"] {
            clients
                .create_client(&super::client(id, now))
                .await
                .unwrap();
        }
        let audit = DynamoDbAuditLog::new(db, &names.audit_table);
        (names, clients, audit, calls)
    }

    /// Half past an hour, an hour ago.
    fn half_past() -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_time(time::Time::from_hms(now.hour(), 30, 0).unwrap()) - Duration::hours(1)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_report_scans_no_audit_table_and_queries_the_index_once_an_hour() {
        let now = half_past();
        let (names, clients, audit, calls) = setup(now).await;
        // Six guesses over the last three hours, one every 25 minutes.
        write_guesses(
            &audit,
            now - Duration::minutes(170),
            Duration::minutes(25),
            6,
        )
        .await;
        calls.0.lock().unwrap().clear();
        let report = report::build(
            &clients,
            &audit,
            &ManualClock::new(now),
            &ReportOptions::new(Duration::hours(3)),
        )
        .await
        .unwrap();
        let spraying = &report.findings.spraying;
        assert_eq!(spraying.len(), 1, "{spraying:?}");
        assert_eq!(
            (spraying[0].address.as_str(), spraying[0].unknown_ids),
            (GUESSER_IP, 6)
        );
        // From hh:30 three hours back: four hours' partitions, one page each.
        let key = |op: &str, table: &str, index: Option<&str>| {
            (op.to_owned(), table.to_owned(), index.map(str::to_owned))
        };
        let expected = BTreeMap::from([
            (key("Scan", &names.clients_table, None), 1),
            (key("Query", &names.audit_table, None), 2),
            (key("Query", &names.audit_table, Some(FAILURES_INDEX)), 4),
        ]);
        assert_eq!(calls.counted(), expected);
        assert_eq!(report.reads.failure_queries, 4);
        assert_eq!(report.reads.audit_queries, 2);
        assert_eq!(
            report.reads.records,
            7 + 1,
            "7 refusals from the index, steady's own"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_from_before_the_index_count_only_in_their_clients_partitions() {
        let now = half_past();
        let (names, clients, audit, _) = setup(now).await;
        write_guesses(&audit, now - Duration::minutes(20), Duration::minutes(1), 6).await;
        // As written before `failure_hour` existed: without it, so outside the index.
        let db = aws_sdk_dynamodb::Client::new(&moto::sdk_config().await);
        let items = db
            .scan()
            .table_name(&names.audit_table)
            .send()
            .await
            .unwrap();
        assert_eq!(items.items().len(), 7);
        for item in items.items() {
            assert!(item.contains_key("failure_hour"), "{item:?}");
            db.update_item()
                .table_name(&names.audit_table)
                .key("client_id", item["client_id"].clone())
                .key("sk", item["sk"].clone())
                .update_expression("REMOVE failure_hour")
                .send()
                .await
                .unwrap();
        }
        let report = report::build(
            &clients,
            &audit,
            &ManualClock::new(now),
            &ReportOptions::new(Duration::hours(1)),
        )
        .await
        .unwrap();
        let steady = report
            .clients
            .iter()
            .find(|c| c.client_id == "steady")
            .unwrap();
        assert_eq!(steady.counts.failed, 1, "read from the client's partition");
        assert!(report.findings.spraying.is_empty(), "{report:?}");
        assert!(report.unknown_clients.is_empty(), "{report:?}");
    }
}

mod sqlite_upgrade {
    //! A SQLite file from before the failure index: the migration builds the index over the
    //! rows already there, so their refusals are found like new ones.

    use time::Duration;
    use token_service::audit::report::{self, ReportOptions};
    use token_service::clock::ManualClock;
    use token_service::store::ClientAdmin;
    use token_service::store::sqlite::SqliteStore;

    use super::{GUESSER_IP, write_guesses};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refusals_written_before_the_index_are_found_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let now = time::OffsetDateTime::now_utc();
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .create_client(&super::client("steady", now))
                .await
                .unwrap();
            write_guesses(&store, now - Duration::minutes(20), Duration::minutes(1), 6).await;
        }
        // Back to the schema before the index (the fourth migration), as a file of an earlier
        // version is: the index and the migrations after it (the DPoP nonce secret, the secret
        // index) undone.
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "DROP TABLE secret_index; DROP TABLE service_secrets;
             DROP INDEX audit_failures_by_time; PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(old);
        let store = SqliteStore::open(&path).unwrap();
        let report = report::build(
            &store,
            &store,
            &ManualClock::new(now),
            &ReportOptions::new(Duration::hours(1)),
        )
        .await
        .unwrap();
        let spraying = &report.findings.spraying;
        assert_eq!(spraying.len(), 1, "{spraying:?}");
        assert_eq!(
            (spraying[0].address.as_str(), spraying[0].unknown_ids),
            (GUESSER_IP, 6)
        );
        assert_eq!(report.reads.failure_queries, 1);
    }
}
