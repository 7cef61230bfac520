//! The audit report (`tokenctl audit report`): each client's token requests in a period, and
//! signs of suspicious use — a client used from a new address, an address failing against
//! several client ids (known or not), a jump in a client's volume, a disabled client still
//! being tried, a secret reported leaked by a scanning program.
//!
//! [`build`] reads the records through the store ports, one query per client over the period
//! and its baseline (a DynamoDB `Query` on the client's partition), and the refusals of the
//! period under every id through the failure index ([`AuditLog::failures`]); never a `Scan` of
//! the audit trail. [`analyse`] is the pure part.

mod analyse;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use time::{Duration, OffsetDateTime};

pub use analyse::analyse;

use super::stats::OutcomeCounts;
use super::{AuditQuery, AuditRecord};
use crate::clients::secret::SECRET_PREFIX;
use crate::clients::{Client, ClientStatus};
use crate::clock::Clock;
use crate::store::{AuditLog, ClientAdmin, StoreError};

/// Baseline length, in periods before the reported one.
pub const DEFAULT_BASELINE_PERIODS: u32 = 7;
/// A client's volume jumped when its requests in the period reach this many times its average
/// per period in the baseline...
pub const DEFAULT_JUMP_FACTOR: f64 = 3.0;
/// ...and at least this many requests.
pub const DEFAULT_JUMP_MIN: usize = 20;
/// An address is spraying when its failed authentications named at least this many client ids,
/// clients' or not.
pub const DEFAULT_SPRAY_MIN_CLIENTS: usize = 3;
/// How many of a spraying address's unknown ids the finding shows (it counts them all).
pub const UNKNOWN_EXAMPLES: usize = 5;

/// What the report covers and when it calls something suspicious.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(into = "OptionsJson")]
pub struct ReportOptions {
    /// The reported period, ending now (the JSON shows it as the report's `period`).
    pub period: Duration,
    /// Baseline length in periods: the records of the `baseline_periods` periods before the
    /// reported one are read too, to find new addresses and volume jumps.
    pub baseline_periods: u32,
    /// See [`DEFAULT_JUMP_FACTOR`].
    pub jump_factor: f64,
    /// See [`DEFAULT_JUMP_MIN`].
    pub jump_min: usize,
    /// See [`DEFAULT_SPRAY_MIN_CLIENTS`].
    pub spray_min_clients: usize,
}

/// The options as the report's JSON shows them. `include_unknown` is always true: ids that
/// are no client are always read now (through the failure index), and the field stays for
/// readers of the JSON that was printed when reading them took a flag and a Scan.
#[derive(Serialize)]
struct OptionsJson {
    baseline_periods: u32,
    jump_factor: f64,
    jump_min: usize,
    spray_min_clients: usize,
    include_unknown: bool,
}

impl From<ReportOptions> for OptionsJson {
    fn from(o: ReportOptions) -> Self {
        Self {
            baseline_periods: o.baseline_periods,
            jump_factor: o.jump_factor,
            jump_min: o.jump_min,
            spray_min_clients: o.spray_min_clients,
            include_unknown: true,
        }
    }
}

impl ReportOptions {
    /// The defaults, for a period of `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            baseline_periods: DEFAULT_BASELINE_PERIODS,
            jump_factor: DEFAULT_JUMP_FACTOR,
            jump_min: DEFAULT_JUMP_MIN,
            spray_min_clients: DEFAULT_SPRAY_MIN_CLIENTS,
        }
    }
}

/// The instants a report is about: `[baseline_start, start)` is the baseline, `[start, end)`
/// the reported period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start of the baseline.
    pub baseline_start: OffsetDateTime,
    /// Start of the reported period (end of the baseline).
    pub start: OffsetDateTime,
    /// End of the reported period (now).
    pub end: OffsetDateTime,
}

impl Window {
    /// The window of a report made at `now`.
    pub fn at(now: OffsetDateTime, options: &ReportOptions) -> Self {
        let start = now - options.period;
        Self {
            baseline_start: start - options.period * options.baseline_periods,
            start,
            end: now,
        }
    }

    /// Whether `at` falls in the reported period.
    pub fn in_period(&self, at: OffsetDateTime) -> bool {
        self.start <= at && at < self.end
    }

    /// Whether `at` falls in the baseline.
    pub fn in_baseline(&self, at: OffsetDateTime) -> bool {
        self.baseline_start <= at && at < self.start
    }
}

/// A span of time, as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// Start, inclusive.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// End, exclusive.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// The report (its JSON shape is documented in README, "Audit report").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The reported period.
    pub period: Span,
    /// The baseline before it.
    pub baseline: Span,
    /// The thresholds applied.
    pub options: ReportOptions,
    /// What looks suspicious.
    pub findings: Findings,
    /// Every client, ordered by id.
    pub clients: Vec<ClientReport>,
    /// Ids that are no client (unknown, deleted, `-`), with their refused requests in the
    /// period, ordered by id as shown.
    pub unknown_clients: Vec<UnknownClient>,
    /// What the report read.
    pub reads: Reads,
}

/// One client's period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientReport {
    /// The client.
    pub client_id: String,
    /// Its status now.
    pub status: ClientStatus,
    /// Its token requests in the period.
    #[serde(flatten)]
    pub counts: OutcomeCounts,
    /// Its token requests in the baseline.
    pub baseline_requests: usize,
    /// Its baseline requests per period, over the baseline periods it existed in (`None` when
    /// it was created during the reported period: there is nothing to compare with).
    pub baseline_average: Option<f64>,
}

/// Refused requests in the period under an id that is no client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnknownClient {
    /// The id named (`-` for none; an id shaped like a client secret is shown as `[redacted]`).
    pub client_id: String,
    /// Its refused token requests in the period (the failure index holds no `issued` record:
    /// a deleted client's tokens of the period are not counted here).
    #[serde(flatten)]
    pub counts: OutcomeCounts,
    /// How many source addresses they came from.
    pub addresses: usize,
}

/// What looks suspicious in the period. Each list is ordered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Findings {
    /// A client got tokens from an address that got it none in the baseline.
    pub new_addresses: Vec<NewAddress>,
    /// An address whose failed authentications named several client ids, clients' or not.
    pub spraying: Vec<Spraying>,
    /// A client whose requests jumped against its own baseline.
    pub volume_jumps: Vec<VolumeJump>,
    /// A disabled client still asked for tokens after it was disabled.
    pub disabled_tried: Vec<DisabledTried>,
    /// A secret-scanning program reported a client's secret leaked (`leak.*` records).
    pub leaked_secrets: Vec<LeakedSecret>,
}

impl Findings {
    /// Whether nothing looks suspicious.
    pub fn is_empty(&self) -> bool {
        self.new_addresses.is_empty()
            && self.spraying.is_empty()
            && self.volume_jumps.is_empty()
            && self.disabled_tried.is_empty()
            && self.leaked_secrets.is_empty()
    }
}

/// See [`Findings::leaked_secrets`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeakedSecret {
    /// The client.
    pub client_id: String,
    /// When the report was handled.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who reported it (`github secret scanning`, `gitlab secret scanning`).
    pub reported_by: String,
    /// What was done: `leak.revoke`, `leak.disable` or `leak.report`.
    pub action: String,
    /// The secret's id.
    pub secret_id: String,
    /// Where it was found, as the program said.
    pub url: String,
}

/// See [`Findings::new_addresses`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewAddress {
    /// The client.
    pub client_id: String,
    /// The source address.
    pub address: String,
    /// Tokens issued to the client from there in the period.
    pub issued: usize,
}

/// See [`Findings::spraying`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spraying {
    /// The source address.
    pub address: String,
    /// The ids of clients its failed authentications named, ordered.
    pub client_ids: Vec<String>,
    /// How many distinct ids that are no client they named (`-`, no id, is none).
    pub unknown_ids: usize,
    /// Up to [`UNKNOWN_EXAMPLES`] of those, ordered as shown (an id shaped like a client
    /// secret is `[redacted]`): a guesser's pattern, never the whole list of guesses.
    pub unknown_examples: Vec<String>,
    /// Its failed authentications in the period.
    pub failures: usize,
}

/// See [`Findings::volume_jumps`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeJump {
    /// The client.
    pub client_id: String,
    /// Its token requests in the period.
    pub requests: usize,
    /// Its baseline requests per period.
    pub baseline_average: f64,
}

/// See [`Findings::disabled_tried`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisabledTried {
    /// The client.
    pub client_id: String,
    /// Its token requests in the period after it was disabled.
    pub requests: usize,
    /// The addresses they came from, ordered.
    pub addresses: Vec<String>,
}

/// The reads a report made: its cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reads {
    /// Reads of the whole client list (a Scan of the clients table on DynamoDB).
    pub client_list: usize,
    /// Audit queries of one client each (a paginated `Query` on DynamoDB).
    pub audit_queries: usize,
    /// Audit reads across all clients (a `Scan` of the whole audit table on DynamoDB). Always
    /// 0: the report no longer makes one; kept for readers of its JSON.
    pub audit_scans: usize,
    /// Reads of the failure index ([`crate::audit::Failures::queries`]): on DynamoDB one
    /// `Query` per hour of the period and per further 1 MB page, on SQLite one.
    pub failure_queries: usize,
    /// Audit records read (the clients' and the period's refusals).
    pub records: usize,
}

/// Reads the clients and their audit records through the store ports and makes the report for
/// the period ending at `clock`'s now.
///
/// Cost: one read of the client list, one audit query per client over the baseline and the
/// period, and the period's refusals through the failure index (on DynamoDB one `Query` per
/// hour and page), whose records under ids that are no client complete the clients' own.
/// Those of clients are taken from the clients' partitions, which hold records written before
/// the index existed too.
pub async fn build(
    clients: &dyn ClientAdmin,
    audit: &dyn AuditLog,
    clock: &dyn Clock,
    options: &ReportOptions,
) -> Result<Report, StoreError> {
    let window = Window::at(clock.now(), options);
    let list = clients.list_clients().await?;
    let mut reads = Reads {
        client_list: 1,
        ..Reads::default()
    };
    let query = |client_id: Option<&str>| AuditQuery {
        client_id: client_id.map(str::to_owned),
        since: Some(window.baseline_start),
        until: Some(window.end),
        ..AuditQuery::default()
    };
    let mut records = Vec::new();
    for client in &list {
        records.extend(audit.query(&query(Some(&client.client_id))).await?);
        reads.audit_queries += 1;
    }
    let failures = audit.failures(window.start, window.end).await?;
    reads.failure_queries = failures.queries;
    reads.records = records.len() + failures.records.len();
    let known: BTreeSet<&str> = list.iter().map(|c| c.client_id.as_str()).collect();
    records.extend(
        failures
            .records
            .into_iter()
            .filter(|r| !known.contains(r.client_id.as_str())),
    );
    Ok(analyse(&list, &records, window, options, reads))
}

/// Groups records by client id.
fn by_client(records: &[AuditRecord]) -> BTreeMap<&str, Vec<&AuditRecord>> {
    let mut groups: BTreeMap<&str, Vec<&AuditRecord>> = BTreeMap::new();
    for r in records {
        groups.entry(r.client_id.as_str()).or_default().push(r);
    }
    groups
}

/// A client id as the report prints it: an id shaped like one of our secrets (someone sent the
/// secret as the id) is never printed.
fn shown_id(client_id: &str) -> String {
    if client_id.starts_with(SECRET_PREFIX) {
        "[redacted]".to_owned()
    } else {
        client_id.to_owned()
    }
}

/// The baseline periods `client` existed in, whole or in part (0 when created in the period).
fn periods_existed(client: &Client, window: Window, options: &ReportOptions) -> u32 {
    let from = client.created_at.max(window.baseline_start);
    if from >= window.start || options.period <= Duration::ZERO {
        return 0;
    }
    let periods = ((window.start - from) / options.period).ceil();
    // Bounded by the baseline length, so the conversion cannot truncate.
    (periods as u32).min(options.baseline_periods)
}
