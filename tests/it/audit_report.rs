//! The audit report on both backends (SQLite, and DynamoDB on moto), over real token requests
//! made with a manual clock: a client used from a new address, a password-spraying address, a
//! volume jump and a disabled client still tried each show up; a quiet client does not.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use token_service::admin::{Admin, NewClient};
use token_service::audit::report::{self, DisabledTried, NewAddress, Report, ReportOptions};
use token_service::clients::{ClientSecret, ClientStatus};
use token_service::clock::{Clock, ManualClock};
use token_service::config::ServiceConfig;
use token_service::issue::{RequestMeta, TokenService};
use token_service::key_cache::KeyCache;
use token_service::oauth::request::RawRequest;

use crate::support::stores::Stores;

const QUIET_IP: &str = "10.0.0.1";
const ROAMER_IP: &str = "10.0.0.2";
const ROAMER_NEW_IP: &str = "203.0.113.7";
const BURST_IP: &str = "10.0.0.3";
const OLD_IP: &str = "10.0.0.9";
const SPRAYER_IP: &str = "198.51.100.66";

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
        let config = Arc::new(ServiceConfig::for_tests());
        let admin = Admin {
            clients: s.clients.clone(),
            audit: s.audit.clone(),
            keys: s.keys.clone(),
            public_keys: s.public_keys.clone(),
            config: config.clone(),
            clock: clock.clone(),
            actor: "report-test".to_owned(),
        };
        s.rotate_keys(config.schedule, clock.clone()).await;
        let keys = KeyCache::new(
            s.keys.clone(),
            clock.clone(),
            config.schedule,
            std::time::Duration::from_secs(300),
            std::time::Duration::from_secs(3600),
        );
        let service = TokenService::new(
            config,
            s.clients.clone(),
            s.audit.clone(),
            s.limits.clone(),
            keys,
            clock.clone(),
        );
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
        };
        let meta = RequestMeta {
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
    // Only clients are queried: the unknown id `ghost` is out of reach.
    assert_eq!(f.spraying[0].client_ids, ["t1", "t2", "t3"]);
    assert_eq!(f.spraying[0].failures, 3);
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

    assert_eq!(report.unknown_clients, None);
    assert_eq!(report.reads.client_list, 1);
    assert_eq!(report.reads.audit_queries, 7, "one query per client");
    assert_eq!(report.reads.audit_scans, 0);
    assert_eq!(report.period.until, w.clock.now());
}

async fn include_unknown_reads_every_id_in_one_scan(s: &Stores) {
    let (w, _) = scenario(s).await;
    let all = report::build(
        s.clients.as_ref(),
        s.audit.as_ref(),
        w.clock.as_ref(),
        &ReportOptions {
            include_unknown: true,
            ..options()
        },
    )
    .await
    .unwrap();
    assert_eq!((all.reads.audit_queries, all.reads.audit_scans), (0, 1));
    assert_eq!(
        all.findings.spraying[0].client_ids,
        ["ghost", "t1", "t2", "t3"]
    );
    let unknown = all.unknown_clients.as_ref().unwrap();
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(unknown[0].client_id, "ghost");
    assert_eq!((unknown[0].counts.failed, unknown[0].addresses), (1, 1));
    // The same clients and findings otherwise.
    let by_queries = report::build(
        s.clients.as_ref(),
        s.audit.as_ref(),
        w.clock.as_ref(),
        &options(),
    )
    .await
    .unwrap();
    assert_eq!(all.clients, by_queries.clients);
    assert_eq!(
        all.findings.new_addresses,
        by_queries.findings.new_addresses
    );
    assert_eq!(all.findings.volume_jumps, by_queries.findings.volume_jumps);
    assert_eq!(
        all.findings.disabled_tried,
        by_queries.findings.disabled_tried
    );
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
    include_unknown_reads_every_id_in_one_scan,
);
