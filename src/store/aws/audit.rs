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

use super::attrs::{self, Item, Reader, n, s};
use super::sdk_error;
use crate::audit::{AuditQuery, AuditRecord, Failures, NO_CLIENT};
use crate::encoding::rfc3339_ms;
use crate::store::{AuditLog, StoreError};

pub(super) const KEY: &str = "client_id";
pub(super) const SORT_KEY: &str = "sk";
/// The TTL attribute: DynamoDB deletes the record some time after this epoch second.
pub(super) const EXPIRES_AT: &str = "expires_at";
/// The sparse attribute of refusals: the start of their UTC hour, `2026-12-06T11:00:00Z`.
pub(super) const FAILURE_HOUR: &str = "failure_hour";
/// The global secondary index of refusals by hour: partition key [`FAILURE_HOUR`], sort key
/// `sk`. It projects what a report reads of a refusal ([`FAILURES_PROJECTED`]), not the user
/// agent, so that an index item stays small.
pub const FAILURES_INDEX: &str = "failures-by-hour";
/// The attributes [`FAILURES_INDEX`] projects besides the table's and its own keys (the table
/// definition, feature `secrets`, reads them).
#[cfg_attr(not(feature = "secrets"), allow(dead_code))]
pub(super) const FAILURES_PROJECTED: &[&str] = &[
    "timestamp",
    "request_id",
    "outcome",
    EXPIRES_AT,
    "source_ip",
];

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

fn to_item(record: &AuditRecord) -> Result<Item, StoreError> {
    let mut item = Item::from([
        (KEY.to_owned(), s(partition(record))),
        (SORT_KEY.to_owned(), s(sort_key(record))),
        ("timestamp".to_owned(), attrs::time(record.timestamp)?),
        ("request_id".to_owned(), s(&record.request_id)),
        ("outcome".to_owned(), s(&record.outcome)),
        (EXPIRES_AT.to_owned(), n(record.expires_at)),
    ]);
    let optional = [
        ("jti", &record.jti),
        ("scope", &record.scope),
        ("audience", &record.audience),
        ("source_ip", &record.source_ip),
        ("user_agent", &record.user_agent),
        ("actor", &record.actor),
        ("action", &record.action),
        ("auth_method", &record.auth_method),
        ("dpop_jkt", &record.dpop_jkt),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), s(value));
        }
    }
    if !record.fields.is_empty() {
        let fields = record.fields.iter().map(s).collect();
        item.insert("fields".to_owned(), AttributeValue::L(fields));
    }
    if record.is_failure() {
        item.insert(FAILURE_HOUR.to_owned(), s(failure_hour(record.timestamp)?));
    }
    Ok(item)
}

fn from_item(item: &Item, table: &str) -> Result<AuditRecord, StoreError> {
    let r = Reader::new(item, table);
    let key = r.s(KEY)?;
    Ok(AuditRecord {
        client_id: if key.starts_with(NO_CLIENT_PREFIX) {
            NO_CLIENT.to_owned()
        } else {
            key
        },
        timestamp: r.time("timestamp")?,
        request_id: r.s("request_id")?,
        outcome: r.s("outcome")?,
        jti: r.opt_s("jti")?,
        scope: r.opt_s("scope")?,
        audience: r.opt_s("audience")?,
        source_ip: r.opt_s("source_ip")?,
        user_agent: r.opt_s("user_agent")?,
        actor: r.opt_s("actor")?,
        action: r.opt_s("action")?,
        fields: r.strings("fields")?,
        auth_method: r.opt_s("auth_method")?,
        dpop_jkt: r.opt_s("dpop_jkt")?,
        expires_at: r.i64(EXPIRES_AT)?,
    })
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
            c.outcome = Some("#outcome = :outcome".to_owned());
        }
        c
    }

    fn names(&self) -> Vec<(&'static str, &'static str)> {
        let mut names = Vec::new();
        if self.range.is_some() {
            names.push(("#sk", SORT_KEY));
        }
        if self.outcome.is_some() {
            names.push(("#outcome", "outcome"));
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

    #[test]
    fn an_hour_starts_on_the_hour_in_utc() {
        let at = datetime!(2026-12-06 13:30:00 +02:00);
        assert_eq!(hour_start(at), datetime!(2026-12-06 11:00 UTC));
        assert_eq!(failure_hour(at).unwrap(), "2026-12-06T11:00:00Z");
    }
}
