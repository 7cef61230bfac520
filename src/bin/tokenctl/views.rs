//! What tokenctl prints: the JSON views of records, and the text for people.

use serde::Serialize;
use time::OffsetDateTime;
use token_service::audit::AuditRecord;
use token_service::audit::report::{Findings, Report, UnknownClient};
use token_service::audit::stats::ClientStats;
use token_service::clients::{
    Client, ClientAuthMethod, ClientKey, ClientStatus, ExtraClaims, StoredSecret,
};
use token_service::keys::KeySet;

use crate::commands::CliResult;

/// A client as printed: everything but secret hashes.
#[derive(Debug, Serialize)]
pub struct ClientView {
    client_id: String,
    name: String,
    status: ClientStatus,
    scopes: Vec<String>,
    default_scopes: Vec<String>,
    audiences: Vec<String>,
    default_audience: String,
    token_ttl: Option<u64>,
    rate_limit: Option<u32>,
    pub secrets: Vec<SecretView>,
    auth_method: ClientAuthMethod,
    keys: Vec<ClientKeyView>,
    claims: ExtraClaims,
    dpop_bound: bool,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    version: u64,
}

#[derive(Debug, Serialize)]
pub struct SecretView {
    secret_id: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

impl From<&StoredSecret> for SecretView {
    fn from(s: &StoredSecret) -> Self {
        Self {
            secret_id: s.secret_id.clone(),
            created_at: s.created_at,
            expires_at: s.expires_at,
        }
    }
}

/// A registered public key of a client: its kid and the public JWK.
#[derive(Debug, Serialize)]
pub struct ClientKeyView {
    kid: String,
    jwk: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    added_at: OffsetDateTime,
}

impl From<&ClientKey> for ClientKeyView {
    fn from(k: &ClientKey) -> Self {
        Self {
            kid: k.kid.clone(),
            jwk: serde_json::to_value(&k.jwk).unwrap_or_default(),
            added_at: k.added_at,
        }
    }
}

/// The key type of a JWK as printed (`RSA`, `EC`, `OKP`).
fn key_type(k: &ClientKey) -> String {
    serde_json::to_value(&k.jwk)
        .ok()
        .and_then(|v| v.get("kty").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

pub fn print_keys(c: &Client) {
    println!("{:<45} {:<4} ADDED", "KID", "KTY");
    for k in &c.keys {
        println!("{:<45} {:<4} {}", k.kid, key_type(k), ts(k.added_at));
    }
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            status: c.status,
            scopes: c.scopes.clone(),
            default_scopes: c.default_scopes.clone(),
            audiences: c.audiences.clone(),
            default_audience: c.default_audience.clone(),
            token_ttl: c.token_ttl,
            rate_limit: c.rate_limit,
            secrets: c.secrets.iter().map(SecretView::from).collect(),
            auth_method: c.auth_method,
            keys: c.keys.iter().map(ClientKeyView::from).collect(),
            claims: c.claims.clone(),
            dpop_bound: c.dpop_bound,
            created_at: c.created_at,
            updated_at: c.updated_at,
            version: c.version,
        }
    }
}

/// A newly created secret: the only output that ever holds one.
#[derive(Debug, Serialize)]
pub struct NewSecretView {
    pub client_id: String,
    pub client_secret: String,
    pub secret_id: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

pub fn ts(at: OffsetDateTime) -> String {
    token_service::encoding::rfc3339_ms(at)
}

pub fn print_json<T: Serialize>(value: &T) -> CliResult {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn print_client(c: &Client) {
    println!("client_id:        {}", c.client_id);
    println!("name:             {}", c.name);
    println!("status:           {}", c.status.as_str());
    println!("scopes:           {}", c.scopes.join(" "));
    println!("default scopes:   {}", c.default_scopes.join(" "));
    println!("audiences:        {}", c.audiences.join(" "));
    println!("default audience: {}", c.default_audience);
    match c.token_ttl {
        Some(t) => println!("token ttl:        {t} s"),
        None => println!("token ttl:        service default"),
    }
    match c.rate_limit {
        Some(n) => println!("rate limit:       {n} tokens/min"),
        None => println!("rate limit:       service default"),
    }
    println!("version:          {}", c.version);
    println!("auth method:      {}", c.auth_method.as_str());
    println!("dpop bound:       {}", c.dpop_bound);
    for (name, value) in &c.claims {
        println!("claim:            {name} = {value}");
    }
    for k in &c.keys {
        println!(
            "key:              {} ({}, added {})",
            k.kid,
            key_type(k),
            ts(k.added_at)
        );
    }
    for s in &c.secrets {
        let expiry = s
            .expires_at
            .map(|e| format!("expires {}", ts(e)))
            .unwrap_or_else(|| "no expiry".to_owned());
        println!(
            "secret:           {} (created {}, {expiry})",
            s.secret_id,
            ts(s.created_at)
        );
    }
}

pub fn print_new_secret(json: bool, view: &NewSecretView) -> CliResult {
    if json {
        return print_json(view);
    }
    println!("client_id:     {}", view.client_id);
    println!("client_secret: {}", view.client_secret);
    println!("secret_id:     {}", view.secret_id);
    if let Some(e) = view.expires_at {
        println!("expires_at:    {}", ts(e));
    }
    eprintln!("The secret is shown only now; store it safely.");
    Ok(())
}

/// One audit record, on one line.
pub fn print_record(r: &AuditRecord) {
    let detail = match (&r.action, &r.jti) {
        (Some(action), _) => format!(
            "{action} by {} {}",
            r.actor.as_deref().unwrap_or("-"),
            r.fields.join(",")
        ),
        (None, Some(jti)) => format!(
            "jti={jti} scope={} aud={} auth={}",
            r.scope.as_deref().unwrap_or(""),
            r.audience.as_deref().unwrap_or(""),
            r.issued_with().unwrap_or("-")
        ),
        (None, None) => String::new(),
    };
    println!(
        "{} {:<20} {:<24} ip={} req={} {detail}",
        ts(r.timestamp),
        r.client_id,
        r.outcome,
        r.source_ip.as_deref().unwrap_or("-"),
        r.request_id
    );
}

/// `clients stats` as text.
pub fn print_stats(stats: &ClientStats) {
    let c = &stats.counts;
    println!(
        "client {} since {}: {} issued, {} failed, {} rate limited",
        stats.client_id,
        ts(stats.since),
        c.issued,
        c.failed,
        c.limited
    );
    for (outcome, n) in &c.by_outcome {
        println!("  {outcome:<24} {n}");
    }
}

/// `audit report` as text: the findings first, then a line per client.
pub fn print_report(report: &Report) {
    println!(
        "audit report {} .. {} (baseline: {} periods from {})",
        ts(report.period.since),
        ts(report.period.until),
        report.options.baseline_periods,
        ts(report.baseline.since)
    );
    print_findings(&report.findings);
    println!();
    println!(
        "{:<24} {:<9} {:>7} {:>7} {:>7} {:>16}",
        "CLIENT_ID", "STATUS", "ISSUED", "FAILED", "LIMITED", "BASELINE/PERIOD"
    );
    for c in &report.clients {
        let average = c
            .baseline_average
            .map_or_else(|| "-".to_owned(), |a| format!("{a:.1}"));
        let n = &c.counts;
        println!(
            "{:<24} {:<9} {:>7} {:>7} {:>7} {average:>16}",
            c.client_id,
            c.status.as_str(),
            n.issued,
            n.failed,
            n.limited
        );
    }
    if !report.unknown_clients.is_empty() {
        print_unknown(&report.unknown_clients);
    }
    let r = &report.reads;
    println!();
    println!(
        "read: {} client list, {} audit queries, {} failure-index queries, {} records",
        r.client_list, r.audit_queries, r.failure_queries, r.records
    );
}

/// Rows of the unknown-ids table the text shows; `--json` lists every id.
const UNKNOWN_ROWS: usize = 20;

/// The ids that are no client, most refused first, at most [`UNKNOWN_ROWS`] of them: a
/// guesser's thousands of ids would bury the rest of the report.
fn print_unknown(unknown: &[UnknownClient]) {
    let mut rows: Vec<&UnknownClient> = unknown.iter().collect();
    rows.sort_by_key(|u| std::cmp::Reverse(u.counts.requests()));
    println!();
    println!(
        "{:<24} {:>7} {:>7} {:>7} {:>9}",
        "UNKNOWN_CLIENT_ID", "ISSUED", "FAILED", "LIMITED", "ADDRESSES"
    );
    for u in rows.iter().take(UNKNOWN_ROWS) {
        let n = &u.counts;
        println!(
            "{:<24} {:>7} {:>7} {:>7} {:>9}",
            u.client_id, n.issued, n.failed, n.limited, u.addresses
        );
    }
    if rows.len() > UNKNOWN_ROWS {
        println!(
            "... and {} more (--json lists them all)",
            rows.len() - UNKNOWN_ROWS
        );
    }
}

fn print_findings(f: &Findings) {
    if f.is_empty() {
        println!("findings: none");
        return;
    }
    println!("findings:");
    for n in &f.new_addresses {
        println!(
            "  new address      {} from {} ({} tokens)",
            n.client_id, n.address, n.issued
        );
    }
    for s in &f.spraying {
        let mut against = Vec::new();
        if !s.client_ids.is_empty() {
            against.push(format!(
                "{} client ids: {}",
                s.client_ids.len(),
                s.client_ids.join(" ")
            ));
        }
        if s.unknown_ids > 0 {
            let more = if s.unknown_ids > s.unknown_examples.len() {
                " ..."
            } else {
                ""
            };
            against.push(format!(
                "{} unknown ids: {}{more}",
                s.unknown_ids,
                s.unknown_examples.join(" ")
            ));
        }
        println!(
            "  spraying         {} failed {} times against {}",
            s.address,
            s.failures,
            against.join("; ")
        );
    }
    for l in &f.leaked_secrets {
        println!(
            "  leaked secret    {} secret {} at {}, reported by {}: {} (found at {})",
            l.client_id,
            l.secret_id,
            ts(l.at),
            l.reported_by,
            l.action,
            l.url
        );
    }
    for j in &f.volume_jumps {
        println!(
            "  volume jump      {}: {} requests, baseline {:.1} a period",
            j.client_id, j.requests, j.baseline_average
        );
    }
    for d in &f.disabled_tried {
        println!(
            "  disabled, tried  {}: {} requests from {}",
            d.client_id,
            d.requests,
            d.addresses.join(" ")
        );
    }
}

/// What `keys init` / `keys rotate --json` print on the aws backend.
#[derive(Debug, Serialize)]
pub struct RotationView {
    /// Whether a rotation ran (`keys init` on an existing set runs none).
    rotated: bool,
    /// The secret version that is now current, when a rotation ran.
    version_id: Option<String>,
    /// The newest key of the current set.
    kid: Option<String>,
    /// When the newest key may sign.
    #[serde(with = "time::serde::rfc3339::option")]
    activates_at: Option<OffsetDateTime>,
    /// How many keys the current set holds.
    keys: usize,
}

impl RotationView {
    /// The view of the set `keys` after the rotation that made `version_id` current, if one ran.
    pub fn new(version_id: Option<String>, keys: &KeySet) -> Self {
        let newest = keys
            .keys
            .iter()
            .max_by_key(|k| (k.activates_at, k.created_at));
        Self {
            rotated: version_id.is_some(),
            version_id,
            kid: newest.map(|k| k.kid.clone()),
            activates_at: newest.map(|k| k.activates_at),
            keys: keys.keys.len(),
        }
    }
}

/// Prints a rotation on the aws backend: the version made current and the key it added.
pub fn print_rotation(view: &RotationView, json: bool) -> CliResult {
    if json {
        return print_json(view);
    }
    match (&view.version_id, &view.kid, view.activates_at) {
        (Some(version), Some(kid), Some(at)) => println!(
            "rotation finished (secret version {version} is current): added key {kid} (signs from \
             {}); {} key(s) in the set",
            ts(at),
            view.keys
        ),
        (Some(version), _, _) => {
            return Err(
                format!("rotation finished as version {version}, which holds no key").into(),
            );
        }
        (None, _, _) => println!("a key set exists already; nothing changed"),
    }
    Ok(())
}
