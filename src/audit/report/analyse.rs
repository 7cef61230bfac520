//! The pure part of the audit report: from clients and their records to findings.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    ClientReport, DisabledTried, Findings, NewAddress, Reads, Report, ReportOptions, Span,
    Spraying, UnknownClient, VolumeJump, Window, by_client, periods_existed, shown_id,
};
use crate::audit::stats::OutcomeCounts;
use crate::audit::{AuditRecord, INVALID_CLIENT, ISSUED, NO_CLIENT};
use crate::clients::{Client, ClientStatus};

/// The management action that disables a client (see `Admin::set_status`).
const DISABLE_ACTION: &str = "client.disable";

/// The report on `records` (those of the baseline and the period; others are ignored) about
/// `clients`. Records of ids that are no client feed the spraying finding and the unknown ids,
/// listed only when `options.include_unknown`.
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
    findings.spraying = spraying(records, window, options);
    let known: BTreeSet<&str> = clients.iter().map(|c| c.client_id.as_str()).collect();
    let unknown = options.include_unknown.then(|| {
        groups
            .iter()
            .filter(|(id, _)| !known.contains(*id))
            .map(|(id, own)| unknown_client(id, own, window))
            .filter(|u| u.counts.requests() > 0)
            .collect()
    });
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
        .filter(|r| r.action.as_deref() == Some(DISABLE_ACTION))
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
/// `options.spray_min_clients` client ids (`-`, no id, does not count as one).
fn spraying(records: &[AuditRecord], window: Window, options: &ReportOptions) -> Vec<Spraying> {
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
            let mut client_ids: Vec<String> = ids.into_iter().map(shown_id).collect();
            client_ids.sort();
            Spraying {
                address: address.to_owned(),
                client_ids,
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
