//! [`AuditLog`] on a DynamoDB table: partition key `client_id`, sort key
//! `sk` = `<RFC 3339 time with ms>#<request id>`, so one client's records sort by time.
//!
//! Records of requests that named no client (`-`) are partitioned per source address, under
//! `- <address>`: a flood of unidentified requests from one address can only heat its own
//! partition key, never one shared by everybody. (A space never occurs in a client id, so these
//! keys cannot collide with a client's.) They read back with client `-`.
//!
//! A refused token request also carries `failure_hour`, the UTC hour it falls in: the partition
//! key of the sparse global secondary index [`FAILURES_INDEX`], whose sort key is `sk` again.
//! Only refusals have the attribute, so only they are in the index, and the refusals of a
//! period, under any id, are read with one `Query` per hour (and per 1 MB page), never a Scan.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoDb;
use aws_sdk_dynamodb::types::AttributeValue;
use time::macros::format_description;
use time::{Duration, OffsetDateTime, UtcOffset};

use super::attrs::{Item, Reader, n, s};
use super::sdk_error;
use crate::audit::{AuditQuery, AuditRecord, Failures, ISSUED, NO_CLIENT};
use crate::encoding::rfc3339_ms;
use crate::store::{AuditLog, StoreError};

pub(super) const KEY: &str = "client_id";
pub(super) const SORT_KEY: &str = "sk";
/// The TTL attribute: DynamoDB deletes the record some time after this epoch second.
pub(super) const EXPIRES_AT: &str = "expires_at";
/// The outcome of a record other than an issued token ([`to_item`]).
pub(super) const OUTCOME: &str = "outcome";
/// The sparse attribute of refusals: the start of their UTC hour, `2026-12-06T11:00:00Z`.
pub(super) const FAILURE_HOUR: &str = "failure_hour";
/// The global secondary index of refusals by hour: partition key `FAILURE_HOUR`, sort key
/// `sk`. It projects what a report reads of a refusal (`FAILURES_PROJECTED`), not the user
/// agent, so that an index item stays small.
pub const FAILURES_INDEX: &str = "failures-by-hour";
/// The attributes [`FAILURES_INDEX`] projects besides the table's and its own keys (the table
/// definition, feature `secrets`, reads them). Items no longer carry `timestamp` and
/// `request_id` (the sort key, which every index projects, has both); the list keeps them for
/// older items, and because changing an index's projection means rebuilding the index.
#[cfg_attr(not(feature = "secrets"), allow(dead_code))]
pub(super) const FAILURES_PROJECTED: &[&str] =
    &["timestamp", "request_id", OUTCOME, EXPIRES_AT, "source_ip"];

/// The audit trail in a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDbAuditLog {
    db: DynamoDb,
    table: String,
}

/// The prefix of the partition keys of records that named no client.
const NO_CLIENT_PREFIX: &str = "- ";

/// The partition key of a record: its client, or `- <source address>` when it named none.
fn partition(record: &AuditRecord) -> String {
    if record.client_id == NO_CLIENT {
        format!(
            "{NO_CLIENT_PREFIX}{}",
            record.source_ip.as_deref().unwrap_or(NO_CLIENT)
        )
    } else {
        record.client_id.clone()
    }
}

/// The sort key of a record: time first, so that a key range is a time range.
fn sort_key(record: &AuditRecord) -> String {
    format!("{}#{}", rfc3339_ms(record.timestamp), record.request_id)
}

/// The start of the UTC hour `at` falls in.
fn hour_start(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    at.replace_time(time::Time::from_hms(at.hour(), 0, 0).unwrap_or(time::Time::MIDNIGHT))
}

/// The [`FAILURE_HOUR`] of a refusal at `at`: its hour's start, as RFC 3339.
fn failure_hour(at: OffsetDateTime) -> Result<String, StoreError> {
    hour_start(at)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .map_err(|e| StoreError::Backend(format!("cannot format a timestamp: {e}")))
}

// Attribute names of the optional fields. Every audit item is stored for the whole retention
// (90 days by default), so a byte per item is about 300 MB at 100 million tokens a month: the
// ones outside the key schema and the failure index's projection are short. Items written
// before carry the long names, which are still read (`OLD_*`).
const SCOPE: &str = "scp";
const AUDIENCE: &str = "aud";
const USER_AGENT: &str = "ua";
const AUTH_METHOD: &str = "am";
const DPOP_JKT: &str = "jkt";
const OLD_SCOPE: &str = "scope";
const OLD_AUDIENCE: &str = "audience";
const OLD_USER_AGENT: &str = "user_agent";
const OLD_AUTH_METHOD: &str = "auth_method";
const OLD_DPOP_JKT: &str = "dpop_jkt";
// Written by items before the sort key was their only copy of the time and request id.
const OLD_TIMESTAMP: &str = "timestamp";
const OLD_REQUEST_ID: &str = "request_id";

/// The nanoseconds past the millisecond of `sk`, when there are any: the record's time reads
/// back exactly, for 2 to 5 bytes instead of a second copy of the time.
const SUB_MS: &str = "ns";

/// Whether `record`'s `fields` only repeat its authentication method, as an issued token's do
/// ([`AuditRecord::for_issued`]): the item leaves them out and [`from_item`] puts them back.
fn fields_repeat_auth_method(record: &AuditRecord) -> bool {
    record.outcome == ISSUED
        && record.is_token_request()
        && record
            .auth_method
            .as_ref()
            .is_some_and(|m| record.fields == [m.as_str()])
}

/// The item of a record. The time (to the millisecond, [`SUB_MS`] the rest) and the request id
/// are in the sort key only; an issued token's item has no `outcome` (absent means
/// [`ISSUED`], the outcome of most items; items written before have it), and its `fields` are
/// left out when they repeat its `auth_method`.
fn to_item(record: &AuditRecord) -> Result<Item, StoreError> {
    let mut item = Item::from([
        (KEY.to_owned(), s(partition(record))),
        (SORT_KEY.to_owned(), s(sort_key(record))),
        (EXPIRES_AT.to_owned(), n(record.expires_at)),
    ]);
    if record.outcome != ISSUED {
        item.insert(OUTCOME.to_owned(), s(&record.outcome));
    }
    let optional = [
        ("jti", &record.jti),
        (SCOPE, &record.scope),
        (AUDIENCE, &record.audience),
        ("source_ip", &record.source_ip),
        (USER_AGENT, &record.user_agent),
        ("actor", &record.actor),
        ("action", &record.action),
        (AUTH_METHOD, &record.auth_method),
        (DPOP_JKT, &record.dpop_jkt),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), s(value));
        }
    }
    // Absent means "repeats `am`" on an issued token's item, so an issued record with other
    // `fields`, none included, stores them.
    let issued_with_method =
        record.outcome == ISSUED && record.is_token_request() && record.auth_method.is_some();
    if !fields_repeat_auth_method(record) && (issued_with_method || !record.fields.is_empty()) {
        let fields = record.fields.iter().map(s).collect();
        item.insert("fields".to_owned(), AttributeValue::L(fields));
    }
    let sub_ms = record.timestamp.nanosecond() % 1_000_000;
    if sub_ms != 0 {
        item.insert(SUB_MS.to_owned(), n(sub_ms));
    }
    if record.is_failure() {
        item.insert(FAILURE_HOUR.to_owned(), s(failure_hour(record.timestamp)?));
    }
    Ok(item)
}

/// The time and request id of a sort key `<RFC 3339 time with ms>#<request id>`.
fn split_sort_key(sk: &str) -> Option<(OffsetDateTime, &str)> {
    let (at, request_id) = sk.split_once('#')?;
    let at = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    Some((at, request_id))
}

fn from_item(item: &Item, table: &str) -> Result<AuditRecord, StoreError> {
    let r = Reader::new(item, table);
    let key = r.s(KEY)?;
    let sk = r.s(SORT_KEY)?;
    let (at, request_id) = split_sort_key(&sk).ok_or_else(|| {
        super::malformed(
            table,
            format_args!("attribute {SORT_KEY} is not <time>#<request id>"),
        )
    })?;
    // Items written before the short names: the long one, and the full-precision time.
    let either = |name: &str, old: &str| -> Result<Option<String>, StoreError> {
        Ok(r.opt_s(name)?.or(r.opt_s(old)?))
    };
    let mut record = AuditRecord {
        client_id: if key.starts_with(NO_CLIENT_PREFIX) {
            NO_CLIENT.to_owned()
        } else {
            key
        },
        timestamp: match item.contains_key(OLD_TIMESTAMP) {
            true => r.time(OLD_TIMESTAMP)?,
            false if item.contains_key(SUB_MS) => at + Duration::nanoseconds(r.i64(SUB_MS)?),
            false => at,
        },
        request_id: r
            .opt_s(OLD_REQUEST_ID)?
            .unwrap_or_else(|| request_id.to_owned()),
        outcome: r.opt_s(OUTCOME)?.unwrap_or_else(|| ISSUED.to_owned()),
        jti: r.opt_s("jti")?,
        scope: either(SCOPE, OLD_SCOPE)?,
        audience: either(AUDIENCE, OLD_AUDIENCE)?,
        source_ip: r.opt_s("source_ip")?,
        user_agent: either(USER_AGENT, OLD_USER_AGENT)?,
        actor: r.opt_s("actor")?,
        action: r.opt_s("action")?,
        fields: r.strings("fields")?,
        auth_method: either(AUTH_METHOD, OLD_AUTH_METHOD)?,
        dpop_jkt: either(DPOP_JKT, OLD_DPOP_JKT)?,
        expires_at: r.i64(EXPIRES_AT)?,
    };
    if !item.contains_key("fields") && record.outcome == ISSUED && record.is_token_request() {
        record.fields = record.auth_method.iter().cloned().collect();
    }
    Ok(record)
}

/// The query's conditions on the sort key and the outcome, as DynamoDB expressions.
///
/// `since` is inclusive and `until` exclusive, at millisecond precision like the SQLite
/// adapter: `"<t>#id" >= "<t>"` holds and `"<t>#id" < "<t>"` does not.
#[derive(Default)]
struct Conditions {
    range: Option<String>,
    outcome: Option<String>,
    values: Item,
}

impl Conditions {
    fn new(q: &AuditQuery) -> Self {
        let mut c = Self::default();
        let bound = |t: OffsetDateTime| s(rfc3339_ms(t));
        c.range = match (q.since, q.until) {
            (None, None) => None,
            (Some(since), None) => {
                c.values.insert(":since".to_owned(), bound(since));
                Some("#sk >= :since".to_owned())
            }
            (None, Some(until)) => {
                c.values.insert(":until".to_owned(), bound(until));
                Some("#sk < :until".to_owned())
            }
            // BETWEEN is inclusive, yet no key equals the bare `<t>` of `until`: still exclusive.
            // A key condition allows only this form for two bounds.
            (Some(since), Some(until)) => {
                c.values.insert(":since".to_owned(), bound(since));
                c.values.insert(":until".to_owned(), bound(until));
                Some("#sk BETWEEN :since AND :until".to_owned())
            }
        };
        if let Some(outcome) = &q.outcome {
            c.values.insert(":outcome".to_owned(), s(outcome));
            c.outcome = Some(if outcome == ISSUED {
                // Issued tokens' items have no outcome; those written before say `issued`.
                "(attribute_not_exists(#outcome) OR #outcome = :outcome)".to_owned()
            } else {
                "#outcome = :outcome".to_owned()
            });
        }
        c
    }

    fn names(&self) -> Vec<(&'static str, &'static str)> {
        let mut names = Vec::new();
        if self.range.is_some() {
            names.push(("#sk", SORT_KEY));
        }
        if self.outcome.is_some() {
            names.push(("#outcome", OUTCOME));
        }
        names
    }
}

/// An empty time window: DynamoDB rejects a reversed key range, SQLite just finds nothing.
fn is_empty_window(q: &AuditQuery) -> bool {
    matches!((q.since, q.until), (Some(a), Some(b)) if rfc3339_ms(a) >= rfc3339_ms(b))
}

/// A page size for a query returning at most `limit` items.
fn page_size(limit: usize) -> i32 {
    i32::try_from(limit.min(1000)).unwrap_or(1000)
}

fn limit(q: &AuditQuery) -> usize {
    if q.limit == 0 { usize::MAX } else { q.limit }
}

impl DynamoDbAuditLog {
    /// The audit log in `table`, through `db`.
    pub fn new(db: DynamoDb, table: impl Into<String>) -> Self {
        Self {
            db,
            table: table.into(),
        }
    }

    /// One client's records: a Query on its partition, newest first, stopping at the limit.
    async fn query_client(
        &self,
        client_id: &str,
        q: &AuditQuery,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let c = Conditions::new(q);
        let mut values = c.values.clone();
        values.insert(":pk".to_owned(), s(client_id));
        let mut request = self
            .db
            .query()
            .table_name(&self.table)
            .key_condition_expression(key_condition_for(&c))
            .expression_attribute_names("#pk", KEY)
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(false)
            // Eventually consistent: half the read units of a strongly consistent Query. Only
            // the admin tool reads the trail, and a record written within the last second
            // missing from a report or a listing changes nothing it decides.
            .consistent_read(false);
        for (alias, name) in c.names() {
            request = request.expression_attribute_names(alias, name);
        }
        match &c.outcome {
            Some(filter) => request = request.filter_expression(filter),
            // Without a filter every item read is returned: read no more than needed. (With
            // one, DynamoDB applies the limit before filtering, so pages stay full size.)
            None if q.limit > 0 => request = request.limit(page_size(q.limit)),
            None => {}
        }
        let mut pages = request.into_paginator().items().send();
        let (limit, mut records) = (limit(q), Vec::new());
        while records.len() < limit {
            let Some(item) = pages.next().await else {
                break;
            };
            let item = item.map_err(|e| sdk_error("Query", &self.table, e))?;
            records.push(from_item(&item, &self.table)?);
        }
        Ok(records)
    }

    /// Every client's records (or, with `unidentified`, those of requests that named no
    /// client, across their per-address partitions): a Scan of the whole table, sorted here.
    /// Fine for the admin tool (`tokenctl audit`) on a table bounded by its retention; the
    /// request path never calls it.
    async fn scan_all(
        &self,
        q: &AuditQuery,
        unidentified: bool,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut c = Conditions::new(q);
        let prefix = unidentified.then(|| {
            c.values.insert(":nc".to_owned(), s(NO_CLIENT_PREFIX));
            "begins_with(#pk, :nc)"
        });
        let filter = [prefix, c.range.as_deref(), c.outcome.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" AND ");
        let mut request = self
            .db
            .scan()
            .table_name(&self.table)
            .consistent_read(false);
        if !filter.is_empty() {
            request = request
                .filter_expression(filter)
                .set_expression_attribute_values(Some(c.values.clone()));
            for (alias, name) in c.names() {
                request = request.expression_attribute_names(alias, name);
            }
            if unidentified {
                request = request.expression_attribute_names("#pk", KEY);
            }
        }
        let mut pages = request.into_paginator().items().send();
        let mut keyed = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_error("Scan", &self.table, e))?;
            let record = from_item(&item, &self.table)?;
            keyed.push((sort_key(&record), record));
        }
        // Newest first across partitions; the sort key orders records of one millisecond.
        keyed.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(keyed.into_iter().map(|(_, r)| r).take(limit(q)).collect())
    }

    /// The refusals of one hour's partition of [`FAILURES_INDEX`] within `[since, until)`,
    /// added to `out`: one `Query` per page. Index reads are eventually consistent (DynamoDB
    /// offers nothing else on a global secondary index).
    async fn query_failure_hour(
        &self,
        hour: OffsetDateTime,
        since: OffsetDateTime,
        until: OffsetDateTime,
        out: &mut Failures,
    ) -> Result<(), StoreError> {
        // As in `Conditions`: no key equals the bare `<until>`, so BETWEEN excludes it.
        let mut pages = self
            .db
            .query()
            .table_name(&self.table)
            .index_name(FAILURES_INDEX)
            .key_condition_expression("#hour = :hour AND #sk BETWEEN :since AND :until")
            .expression_attribute_names("#hour", FAILURE_HOUR)
            .expression_attribute_names("#sk", SORT_KEY)
            .expression_attribute_values(":hour", s(failure_hour(hour)?))
            .expression_attribute_values(":since", s(rfc3339_ms(since)))
            .expression_attribute_values(":until", s(rfc3339_ms(until)))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("Query", &self.table, e))?;
            out.queries += 1;
            for item in page.items() {
                out.records.push(from_item(item, &self.table)?);
            }
        }
        Ok(())
    }
}

/// The key condition of a client query: the partition plus the time range, if any.
fn key_condition_for(c: &Conditions) -> String {
    match &c.range {
        Some(range) => format!("#pk = :pk AND {range}"),
        None => "#pk = :pk".to_owned(),
    }
}

#[async_trait]
impl AuditLog for DynamoDbAuditLog {
    async fn append(&self, record: &AuditRecord) -> Result<(), StoreError> {
        // Never overwrite: a repeated (time, request id) would otherwise erase a record.
        let result = self
            .db
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record)?))
            .condition_expression("attribute_not_exists(#sk)")
            .expression_attribute_names("#sk", SORT_KEY)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::AlreadyExists(format!(
                    "audit record {} of client {}",
                    record.request_id, record.client_id
                )))
            }
            Err(e) => Err(sdk_error("PutItem", &self.table, e)),
        }
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        // DynamoDB rejects an empty key value; no record can have one.
        if is_empty_window(q) || q.client_id.as_deref() == Some("") {
            return Ok(Vec::new());
        }
        match q.client_id.as_deref() {
            Some(NO_CLIENT) => self.scan_all(q, true).await,
            Some(client_id) => self.query_client(client_id, q).await,
            None => self.scan_all(q, false).await,
        }
    }

    async fn failures(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Failures, StoreError> {
        let mut out = Failures::default();
        if rfc3339_ms(since) >= rfc3339_ms(until) {
            return Ok(out);
        }
        let mut hour = hour_start(since);
        while hour < until {
            self.query_failure_hour(hour, since, until, &mut out)
                .await?;
            hour += Duration::HOUR;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{ADMIN, INVALID_CLIENT, ISSUED, RATE_LIMITED, RequestContext};
    use time::macros::datetime;

    fn item(outcome: &str, action: Option<&str>) -> Item {
        let at = datetime!(2026-12-06 11:59:59.999 UTC);
        let mut r = AuditRecord::for_request(
            Some("svc"),
            outcome,
            &RequestContext::default(),
            at,
            Duration::days(1),
        );
        r.action = action.map(str::to_owned);
        to_item(&r).unwrap()
    }

    #[test]
    fn only_refusals_carry_their_hour_so_only_they_are_in_the_failure_index() {
        for outcome in [INVALID_CLIENT, RATE_LIMITED, "invalid_scope"] {
            assert_eq!(
                item(outcome, None).get(FAILURE_HOUR),
                Some(&s("2026-12-06T11:00:00Z")),
                "{outcome}"
            );
        }
        assert_eq!(item(ISSUED, None).get(FAILURE_HOUR), None);
        assert_eq!(item(ADMIN, Some("client.create")).get(FAILURE_HOUR), None);
    }

    /// DynamoDB's size of an item: the names' and values' UTF-8 bytes, a number about one byte
    /// per two digits plus one, a list 3 bytes plus one per element.
    fn item_size(item: &Item) -> usize {
        fn value(v: &AttributeValue) -> usize {
            match v {
                AttributeValue::S(s) => s.len(),
                AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
                AttributeValue::L(l) => 3 + l.iter().map(|v| value(v) + 1).sum::<usize>(),
                other => panic!("not in an audit item: {other:?}"),
            }
        }
        item.iter().map(|(name, v)| name.len() + value(v)).sum()
    }

    /// The record of a token issued to a 16-character client id, from `python-requests`.
    fn issued() -> AuditRecord {
        let meta = RequestContext {
            request_id: "JKJaXmPLvHcESHA=".into(),
            source_ip: Some("203.0.113.7".into()),
            user_agent: Some("python-requests/2.32.3".into()),
        };
        let facts = crate::audit::TokenFacts {
            jti: "DSh6Amib-fuoug_Vlh61bQ".into(),
            scope: "api.read".into(),
            audience: "https://api.example.com".into(),
            auth_method: "client_secret_basic",
            dpop_jkt: None,
        };
        let at = datetime!(2026-12-06 11:59:59.999123456 UTC);
        AuditRecord::for_issued("billing-reporter", facts, &meta, at, Duration::days(90))
    }

    /// The item as written before the short names, with the time at full precision.
    fn item_with_long_names(r: &AuditRecord) -> Item {
        let mut item = Item::from([
            (KEY.to_owned(), s(partition(r))),
            (SORT_KEY.to_owned(), s(sort_key(r))),
            (
                "timestamp".to_owned(),
                super::super::attrs::time(r.timestamp).unwrap(),
            ),
            ("request_id".to_owned(), s(&r.request_id)),
            ("outcome".to_owned(), s(&r.outcome)),
            (EXPIRES_AT.to_owned(), n(r.expires_at)),
            (
                "fields".to_owned(),
                AttributeValue::L(r.fields.iter().map(s).collect()),
            ),
        ]);
        for (name, value) in [
            ("jti", &r.jti),
            ("scope", &r.scope),
            ("audience", &r.audience),
            ("source_ip", &r.source_ip),
            ("user_agent", &r.user_agent),
            ("auth_method", &r.auth_method),
            ("dpop_jkt", &r.dpop_jkt),
        ] {
            if let Some(value) = value {
                item.insert(name.to_owned(), s(value));
            }
        }
        item
    }

    #[test]
    fn an_issued_tokens_item_is_217_bytes_and_reads_back_whole() {
        let record = issued();
        let item = to_item(&record).unwrap();
        // 342 bytes with the long names, the time and request id beside the sort key, and
        // `fields` repeating `auth_method`; DynamoDB adds 100 bytes a stored item.
        assert_eq!(item_size(&item_with_long_names(&record)), 342);
        // 230 with `outcome`, which an issued token's item no longer carries.
        assert_eq!(item.get(OUTCOME), None);
        assert_eq!(item_size(&item), 217, "{item:?}");
        assert_eq!(from_item(&item, "audit").unwrap(), record);
        assert_eq!(record.issued_with(), Some("client_secret_basic"));
    }

    #[test]
    fn items_with_the_long_names_read_back_as_written() {
        let mut record = issued();
        record.timestamp = datetime!(2026-12-06 11:59:59.999123456 UTC);
        record.dpop_jkt = Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into());
        assert_eq!(
            from_item(&item_with_long_names(&record), "audit").unwrap(),
            record,
            "the full-precision time and every field"
        );
        // An issued record written before `auth_method` has the method in `fields` only.
        record.auth_method = None;
        let item = item_with_long_names(&record);
        let read = from_item(&item, "audit").unwrap();
        assert_eq!(read.issued_with(), Some("client_secret_basic"));
        assert_eq!(read, record);
    }

    #[test]
    fn the_time_reads_back_to_the_nanosecond_and_other_fields_of_an_issued_token_are_kept() {
        let mut record = issued();
        for at in [
            datetime!(2026-12-06 11:59:59 UTC),
            datetime!(2026-12-06 11:59:59.000000001 UTC),
            datetime!(2026-12-06 13:59:59.999999999 +02:00),
        ] {
            record.timestamp = at;
            assert_eq!(
                from_item(&to_item(&record).unwrap(), "audit").unwrap(),
                record
            );
        }
        for fields in [vec![], vec!["private_key_jwt".to_owned()]] {
            record.fields = fields;
            let item = to_item(&record).unwrap();
            assert!(item.contains_key("fields"));
            assert_eq!(from_item(&item, "audit").unwrap(), record);
        }
    }

    #[test]
    fn refusals_and_management_records_keep_their_fields() {
        let mut refusal = issued();
        refusal.outcome = INVALID_CLIENT.to_owned();
        (
            refusal.jti,
            refusal.scope,
            refusal.audience,
            refusal.auth_method,
        ) = (None, None, None, None);
        refusal.fields = Vec::new();
        let item = to_item(&refusal).unwrap();
        assert_eq!(from_item(&item, "audit").unwrap(), refusal);
        let mut admin = issued();
        admin.outcome = ADMIN.to_owned();
        admin.actor = Some("ops".into());
        admin.action = Some("client.update".into());
        admin.fields = vec!["scopes".into(), "audiences".into()];
        let item = to_item(&admin).unwrap();
        assert!(item.contains_key("fields"));
        assert_eq!(from_item(&item, "audit").unwrap(), admin);
    }

    #[test]
    fn a_sort_key_that_is_not_time_and_request_id_is_a_malformed_item() {
        let mut item = to_item(&issued()).unwrap();
        item.insert(SORT_KEY.to_owned(), s("yesterday"));
        let e = from_item(&item, "audit").unwrap_err().to_string();
        assert!(
            e.contains("malformed item in audit") && e.contains(SORT_KEY),
            "{e}"
        );
    }

    #[test]
    fn an_hour_starts_on_the_hour_in_utc() {
        let at = datetime!(2026-12-06 13:30:00 +02:00);
        assert_eq!(hour_start(at), datetime!(2026-12-06 11:00 UTC));
        assert_eq!(failure_hour(at).unwrap(), "2026-12-06T11:00:00Z");
    }
}
