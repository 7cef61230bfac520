//! The pure part of the audit report: from clients and their records to findings.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    ClientReport, DisabledTried, Findings, LeakedSecret, NewAddress, Reads, Report, ReportOptions,
    Span, Spraying, UNKNOWN_EXAMPLES, UnknownClient, VolumeJump, Window, by_client,
    periods_existed, shown_id,
};
use crate::audit::stats::OutcomeCounts;
use crate::audit::{AuditRecord, INVALID_CLIENT, ISSUED, NO_CLIENT};
use crate::clients::{Client, ClientStatus};

/// The management actions that disable a client: `Admin::set_status`, and a leaked secret
/// under `TOKEN_LEAKED_SECRET_ACTION=disable`.
const DISABLE_ACTIONS: [&str; 2] = ["client.disable", "leak.disable"];

/// The report on `records` (those of the baseline and the period; others are ignored) about
/// `clients`. Records of ids that are no client feed the spraying finding and the unknown ids.
pub fn analyse(
    clients: &[Client],
    records: &[AuditRecord],
    window: Window,
    options: &ReportOptions,
    reads: Reads,
) -> Report {
    let groups = by_client(records);
    let none = Vec::new();
    let mut findings = Findings::default();
    let mut reports = Vec::new();
    for client in clients {
        let own = groups.get(client.client_id.as_str()).unwrap_or(&none);
        let report = client_report(client, own, window, options);
        judge(client, own, &report, window, options, &mut findings);
        reports.push(report);
    }
    reports.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    let known: BTreeSet<&str> = clients.iter().map(|c| c.client_id.as_str()).collect();
    findings.spraying = spraying(records, &known, window, options);
    findings.leaked_secrets = leaked_secrets(records, window);
    let mut unknown: Vec<UnknownClient> = groups
        .iter()
        .filter(|(id, _)| !known.contains(*id))
        .map(|(id, own)| unknown_client(id, own, window))
        .filter(|u| u.counts.requests() > 0)
        .collect();
    // Ordered as shown, like the spraying finding's ids.
    unknown.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    Report {
        period: Span {
            since: window.start,
            until: window.end,
        },
        baseline: Span {
            since: window.baseline_start,
            until: window.start,
        },
        options: options.clone(),
        findings,
        clients: reports,
        unknown_clients: unknown,
        reads,
    }
}

fn client_report(
    client: &Client,
    own: &[&AuditRecord],
    window: Window,
    options: &ReportOptions,
) -> ClientReport {
    let period = own
        .iter()
        .copied()
        .filter(|r| window.in_period(r.timestamp));
    let baseline = OutcomeCounts::of(
        own.iter()
            .copied()
            .filter(|r| window.in_baseline(r.timestamp)),
    );
    let periods = periods_existed(client, window, options);
    ClientReport {
        client_id: client.client_id.clone(),
        status: client.status,
        counts: OutcomeCounts::of(period),
        baseline_requests: baseline.requests(),
        baseline_average: (periods > 0).then(|| baseline.requests() as f64 / f64::from(periods)),
    }
}

/// Adds what is suspicious about one client to `findings`.
fn judge(
    client: &Client,
    own: &[&AuditRecord],
    report: &ClientReport,
    window: Window,
    options: &ReportOptions,
    findings: &mut Findings,
) {
    if client.created_at < window.start {
        findings
            .new_addresses
            .extend(new_addresses(&client.client_id, own, window));
    }
    if let Some(average) = report.baseline_average {
        let requests = report.counts.requests();
        if requests >= options.jump_min && requests as f64 >= options.jump_factor * average {
            findings.volume_jumps.push(VolumeJump {
                client_id: client.client_id.clone(),
                requests,
                baseline_average: average,
            });
        }
    }
    if client.status == ClientStatus::Disabled {
        findings
            .disabled_tried
            .extend(disabled_tried(client, own, window));
    }
}

/// Addresses that got the client tokens in the period and none in the baseline.
fn new_addresses(client_id: &str, own: &[&AuditRecord], window: Window) -> Vec<NewAddress> {
    let issued_from = |keep: &dyn Fn(&AuditRecord) -> bool| {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in own
            .iter()
            .filter(|r| r.is_token_request() && r.outcome == ISSUED && keep(r))
        {
            if let Some(address) = r.source_ip.as_deref() {
                *counts.entry(address).or_insert(0) += 1;
            }
        }
        counts
    };
    let before = issued_from(&|r| window.in_baseline(r.timestamp));
    issued_from(&|r| window.in_period(r.timestamp))
        .into_iter()
        .filter(|(address, _)| !before.contains_key(address))
        .map(|(address, issued)| NewAddress {
            client_id: client_id.to_owned(),
            address: address.to_owned(),
            issued,
        })
        .collect()
}

/// The requests of a disabled client in the period after its last `client.disable` (all of
/// them when it was disabled before the records read begin).
fn disabled_tried(client: &Client, own: &[&AuditRecord], window: Window) -> Option<DisabledTried> {
    let disabled_at = own
        .iter()
        .filter(|r| {
            r.action
                .as_deref()
                .is_some_and(|a| DISABLE_ACTIONS.contains(&a))
        })
        .map(|r| r.timestamp)
        .max();
    let tried: Vec<&AuditRecord> = own
        .iter()
        .copied()
        .filter(|r| r.is_token_request() && window.in_period(r.timestamp))
        .filter(|r| disabled_at.is_none_or(|at| r.timestamp > at))
        .collect();
    if tried.is_empty() {
        return None;
    }
    let addresses: BTreeSet<&str> = tried
        .iter()
        .filter_map(|r| r.source_ip.as_deref())
        .collect();
    Some(DisabledTried {
        client_id: client.client_id.clone(),
        requests: tried.len(),
        addresses: addresses.into_iter().map(str::to_owned).collect(),
    })
}

/// Addresses whose failed authentications in the period named at least
/// `options.spray_min_clients` ids, those of `known` clients and others alike (`-`, no id,
/// does not count as one).
fn spraying(
    records: &[AuditRecord],
    known: &BTreeSet<&str>,
    window: Window,
    options: &ReportOptions,
) -> Vec<Spraying> {
    let mut by_address: BTreeMap<&str, (BTreeSet<&str>, usize)> = BTreeMap::new();
    let failures = records.iter().filter(|r| {
        r.is_token_request() && r.outcome == INVALID_CLIENT && window.in_period(r.timestamp)
    });
    for r in failures {
        let Some(address) = r.source_ip.as_deref() else {
            continue;
        };
        let (ids, count) = by_address.entry(address).or_default();
        *count += 1;
        if r.client_id != NO_CLIENT {
            ids.insert(&r.client_id);
        }
    }
    by_address
        .into_iter()
        .filter(|(_, (ids, _))| ids.len() >= options.spray_min_clients.max(1))
        .map(|(address, (ids, failures))| {
            let (clients, unknown): (Vec<&str>, Vec<&str>) =
                ids.into_iter().partition(|id| known.contains(id));
            // Shown ids can coincide (`[redacted]`): a set, ordered as shown.
            let shown: BTreeSet<String> = unknown.iter().map(|id| shown_id(id)).collect();
            Spraying {
                address: address.to_owned(),
                client_ids: clients.into_iter().map(str::to_owned).collect(),
                unknown_ids: unknown.len(),
                unknown_examples: shown.into_iter().take(UNKNOWN_EXAMPLES).collect(),
                failures,
            }
        })
        .collect()
}

fn unknown_client(client_id: &str, own: &[&AuditRecord], window: Window) -> UnknownClient {
    let period: Vec<&AuditRecord> = own
        .iter()
        .copied()
        .filter(|r| window.in_period(r.timestamp))
        .collect();
    let addresses: BTreeSet<&str> = period
        .iter()
        .filter_map(|r| r.source_ip.as_deref())
        .collect();
    UnknownClient {
        client_id: shown_id(client_id),
        counts: OutcomeCounts::of(period),
        addresses: addresses.len(),
    }
}

/// The `leak.*` records of the period, oldest first.
fn leaked_secrets(records: &[AuditRecord], window: Window) -> Vec<LeakedSecret> {
    let field = |r: &AuditRecord, name: &str| {
        r.fields
            .iter()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("-")
            .to_owned()
    };
    let mut leaks: Vec<LeakedSecret> = records
        .iter()
        .filter(|r| window.in_period(r.timestamp))
        .filter(|r| r.action.as_deref().is_some_and(|a| a.starts_with("leak.")))
        .map(|r| LeakedSecret {
            client_id: r.client_id.clone(),
            at: r.timestamp,
            reported_by: r.actor.clone().unwrap_or_else(|| "-".to_owned()),
            action: r.action.clone().unwrap_or_default(),
            secret_id: field(r, "secret_id"),
            url: field(r, "url"),
        })
        .collect();
    leaks.sort_by(|a, b| (a.at, &a.client_id).cmp(&(b.at, &b.client_id)));
    leaks
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::{Duration, OffsetDateTime};

    const NOW: OffsetDateTime = datetime!(2026-06-10 12:00 UTC);

    fn options() -> ReportOptions {
        ReportOptions {
            baseline_periods: 4,
            jump_min: 4,
            ..ReportOptions::new(Duration::days(1))
        }
    }

    fn client(id: &str, created_at: OffsetDateTime) -> Client {
        Client {
            client_id: id.to_owned(),
            name: id.to_owned(),
            status: ClientStatus::Active,
            scopes: Vec::new(),
            default_scopes: Vec::new(),
            audiences: vec!["https://a.test/".to_owned()],
            default_audience: "https://a.test/".to_owned(),
            token_ttl: None,
            rate_limit: None,
            secrets: Vec::new(),
            auth_method: Default::default(),
            keys: Vec::new(),
            claims: Default::default(),
            dpop_bound: false,
            created_at,
            updated_at: created_at,
            version: 1,
        }
    }

    fn record(id: &str, ago: Duration, outcome: &str, ip: Option<&str>) -> AuditRecord {
        AuditRecord {
            client_id: id.to_owned(),
            timestamp: NOW - ago,
            request_id: "r".to_owned(),
            outcome: outcome.to_owned(),
            jti: None,
            scope: None,
            audience: None,
            source_ip: ip.map(str::to_owned),
            user_agent: None,
            actor: None,
            action: None,
            fields: Vec::new(),
            auth_method: None,
            dpop_jkt: None,
            expires_at: 0,
        }
    }

    fn run(clients: &[Client], records: &[AuditRecord]) -> Report {
        let options = options();
        analyse(
            clients,
            records,
            Window::at(NOW, &options),
            &options,
            Reads::default(),
        )
    }

    #[test]
    fn the_baseline_average_counts_only_the_periods_a_client_existed_in() {
        // Created 36 hours before the period: two of the four baseline days, one in part.
        let young = client("young", NOW - Duration::days(1) - Duration::hours(36));
        let mut records = vec![record(
            "young",
            Duration::hours(30),
            ISSUED,
            Some("10.0.0.1"),
        )];
        records
            .extend((0..4).map(|_| record("young", Duration::hours(2), ISSUED, Some("10.0.0.1"))));
        let report = run(&[young], &records);
        assert_eq!(report.clients[0].baseline_average, Some(0.5));
        assert_eq!(
            report.findings.volume_jumps.len(),
            1,
            "4 >= 3 x 0.5 and >= 4"
        );
        // A client created during the period has no baseline: not judged.
        let newborn = client("newborn", NOW - Duration::hours(3));
        let records: Vec<_> = (0..9)
            .map(|_| record("newborn", Duration::hours(2), ISSUED, Some("10.0.0.9")))
            .collect();
        let report = run(&[newborn], &records);
        assert_eq!(report.clients[0].baseline_average, None);
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }

    #[test]
    fn records_outside_the_window_are_ignored_and_those_without_an_address_only_counted() {
        let old = client("c", NOW - Duration::days(30));
        let records = [
            record("c", Duration::days(6), ISSUED, Some("10.0.0.1")),
            record("c", -Duration::minutes(5), ISSUED, Some("10.0.0.2")),
            record("c", Duration::hours(1), ISSUED, None),
            record("c", Duration::hours(1), INVALID_CLIENT, None),
        ];
        let report = run(&[old], &records);
        let c = &report.clients[0];
        assert_eq!(
            (c.counts.issued, c.counts.failed, c.baseline_requests),
            (1, 1, 0)
        );
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }

    #[test]
    fn an_id_shaped_like_a_secret_is_never_shown() {
        let secret = crate::clients::ClientSecret::generate().expose().to_owned();
        let records: Vec<_> = [secret.as_str(), "a", "b", NO_CLIENT]
            .iter()
            .map(|id| record(id, Duration::hours(1), INVALID_CLIENT, Some("192.0.2.1")))
            .collect();
        let report = run(&[], &records);
        let text = serde_json::to_string(&report).unwrap();
        assert!(!text.contains(&secret), "{text}");
        let spraying = &report.findings.spraying[0];
        assert!(spraying.client_ids.is_empty());
        assert_eq!(spraying.unknown_ids, 3);
        assert_eq!(spraying.unknown_examples, ["[redacted]", "a", "b"]);
        assert_eq!(
            spraying.failures, 4,
            "the request naming no client counts as a failure"
        );
        let unknown: Vec<_> = report
            .unknown_clients
            .into_iter()
            .map(|u| u.client_id)
            .collect();
        assert_eq!(unknown, [NO_CLIENT, "[redacted]", "a", "b"]);
    }

    #[test]
    fn a_spraying_address_counts_every_unknown_id_and_shows_a_few() {
        let known = client("real", NOW - Duration::days(30));
        let mut records: Vec<_> = (0..12)
            .map(|i| {
                let id = format!("guess-{i:02}");
                record(&id, Duration::hours(1), INVALID_CLIENT, Some("192.0.2.9"))
            })
            .collect();
        records.push(record(
            "real",
            Duration::hours(1),
            INVALID_CLIENT,
            Some("192.0.2.9"),
        ));
        // Below the threshold: one unknown id and one client's.
        records.push(record(
            "typo",
            Duration::hours(1),
            INVALID_CLIENT,
            Some("10.0.0.5"),
        ));
        records.push(record(
            "real",
            Duration::hours(1),
            INVALID_CLIENT,
            Some("10.0.0.5"),
        ));
        let report = run(&[known], &records);
        let s = &report.findings.spraying;
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].address, "192.0.2.9");
        assert_eq!(s[0].client_ids, ["real"]);
        assert_eq!(s[0].unknown_ids, 12);
        assert_eq!(
            s[0].unknown_examples,
            ["guess-00", "guess-01", "guess-02", "guess-03", "guess-04"]
        );
        assert_eq!(s[0].failures, 13);
        assert_eq!(report.unknown_clients.len(), 13, "12 guesses and the typo");
    }
}
