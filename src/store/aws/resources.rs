//! Creates the tables and the secret the adapters use, as the SAM template declares them; for
//! tests, the local emulator and `tokenctl` against a fresh account.

use std::time::Duration;

use aws_sdk_dynamodb::Client as DynamoDb;
use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_secretsmanager::Client as SecretsManager;

use super::audit::{
    EXPIRES_AT, FAILURE_HOUR, FAILURES_INDEX, FAILURES_PROJECTED, KEY as AUDIT_KEY,
    SORT_KEY as AUDIT_SORT_KEY,
};
use super::{AwsResources, sdk_error};
use crate::store::StoreError;

/// How long a new table may take to become active.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(120);

fn build_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("cannot build a DynamoDB request: {e}"))
}

/// A string key attribute: its definition and its schema element.
fn key(name: &str, kind: KeyType) -> Result<(AttributeDefinition, KeySchemaElement), StoreError> {
    let definition = AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(build_error)?;
    let element = KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(build_error)?;
    Ok((definition, element))
}

/// The audit table's index of refusals by hour (`template.yaml` declares the same).
fn failures_index() -> Result<(GlobalSecondaryIndex, AttributeDefinition), StoreError> {
    let (definition, hash) = key(FAILURE_HOUR, KeyType::Hash)?;
    let (_, range) = key(AUDIT_SORT_KEY, KeyType::Range)?;
    let projection = Projection::builder()
        .projection_type(ProjectionType::Include)
        .set_non_key_attributes(Some(
            FAILURES_PROJECTED.iter().map(|a| (*a).to_owned()).collect(),
        ))
        .build();
    let index = GlobalSecondaryIndex::builder()
        .index_name(FAILURES_INDEX)
        .key_schema(hash)
        .key_schema(range)
        .projection(projection)
        .build()
        .map_err(build_error)?;
    Ok((index, definition))
}

/// Creates an on-demand table with point-in-time recovery unless it exists; waits until it is
/// active. `index`, if any, is created with the table (an existing table is left as it is).
async fn ensure_table(
    db: &DynamoDb,
    table: &str,
    keys: &[(&str, KeyType)],
    index: Option<(GlobalSecondaryIndex, AttributeDefinition)>,
) -> Result<(), StoreError> {
    let mut request = db
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in keys {
        let (definition, element) = key(name, kind.clone())?;
        request = request
            .attribute_definitions(definition)
            .key_schema(element);
    }
    if let Some((index, definition)) = index {
        request = request
            .attribute_definitions(definition)
            .global_secondary_indexes(index);
    }
    match request.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(e) => return Err(sdk_error("CreateTable", table, e)),
    }
    db.wait_until_table_exists()
        .table_name(table)
        .wait(TABLE_ACTIVE_WAIT)
        .await
        .map_err(|e| {
            StoreError::Backend(format!(
                "waiting for table {table} to become active: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            ))
        })?;
    let pitr = PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(true)
        .build()
        .map_err(build_error)?;
    db.update_continuous_backups()
        .table_name(table)
        .point_in_time_recovery_specification(pitr)
        .send()
        .await
        .map_err(|e| sdk_error("UpdateContinuousBackups", table, e))?;
    Ok(())
}

/// Turns on TTL on `expires_at` unless it is on already (enabling twice is an error).
async fn ensure_ttl(db: &DynamoDb, table: &str) -> Result<(), StoreError> {
    let current = db
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTimeToLive", table, e))?;
    let status = current
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status());
    if matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        return Ok(());
    }
    let spec = TimeToLiveSpecification::builder()
        .attribute_name(EXPIRES_AT)
        .enabled(true)
        .build()
        .map_err(build_error)?;
    db.update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(|e| sdk_error("UpdateTimeToLive", table, e))?;
    Ok(())
}

/// Creates the key secret without a value (the empty key set) unless it exists. The id may be
/// an ARN, which only an existing secret can have.
async fn ensure_secret(sm: &SecretsManager, secret_id: &str) -> Result<(), StoreError> {
    match sm.describe_secret().secret_id(secret_id).send().await {
        Ok(_) => return Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(e) => return Err(sdk_error("DescribeSecret", secret_id, e)),
    }
    let created = sm
        .create_secret()
        .name(secret_id)
        .description("Private signing keys of the token service (JSON key set)")
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        // Created by someone else since the describe: that is what we wanted.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_exists_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(sdk_error("CreateSecret", secret_id, e)),
    }
}

/// Creates the tables (clients and their secret index, on-demand, point-in-time recovery, TTL on the audit, rate-limit and
/// assertion-id tables' `expires_at`, the audit table's index of refusals) and the empty key
/// secret, as `template.yaml` declares them. Idempotent: what exists already is left as it is.
pub async fn create_resources(
    sdk: &aws_config::SdkConfig,
    names: &AwsResources,
) -> Result<(), StoreError> {
    let db = DynamoDb::new(sdk);
    let hash = |name| [(name, KeyType::Hash)];
    ensure_table(&db, &names.clients_table, &hash("client_id"), None).await?;
    ensure_table(
        &db,
        &names.audit_table,
        &[(AUDIT_KEY, KeyType::Hash), (AUDIT_SORT_KEY, KeyType::Range)],
        Some(failures_index()?),
    )
    .await?;
    ensure_ttl(&db, &names.audit_table).await?;
    ensure_table(&db, &names.public_keys_table, &hash("kid"), None).await?;
    ensure_table(&db, &names.rate_limits_table, &hash("key"), None).await?;
    ensure_ttl(&db, &names.rate_limits_table).await?;
    ensure_table(
        &db,
        &names.secret_index_table,
        &hash(super::secret_index::KEY),
        None,
    )
    .await?;
    ensure_table(&db, &names.assertion_ids_table, &hash("key"), None).await?;
    ensure_ttl(&db, &names.assertion_ids_table).await?;
    ensure_secret(&SecretsManager::new(sdk), &names.key_secret_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `AuditTable` resource of `template.yaml`, as text: its line and the more deeply
    /// indented (or blank) lines after it.
    fn audit_table_in_template() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
        let template = std::fs::read_to_string(path).expect("template.yaml");
        let mut lines = template.lines().skip_while(|l| *l != "  AuditTable:");
        let header = lines.next().expect("AuditTable in template.yaml");
        let body = lines.take_while(|l| l.is_empty() || l.starts_with("    "));
        std::iter::once(header)
            .chain(body)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_template_declares_the_failure_index_create_resources_makes() {
        let table = audit_table_in_template();
        for needle in [
            format!("IndexName: {FAILURES_INDEX}"),
            format!("- AttributeName: {FAILURE_HOUR}\n          AttributeType: S"),
            format!(
                "- AttributeName: {FAILURE_HOUR}\n              KeyType: HASH\n            \
                 - AttributeName: {AUDIT_SORT_KEY}\n              KeyType: RANGE"
            ),
            "ProjectionType: INCLUDE".to_owned(),
            format!("NonKeyAttributes: [{}]", FAILURES_PROJECTED.join(", ")),
        ] {
            assert!(table.contains(&needle), "{needle:?} not in:\n{table}");
        }
        let (index, _) = failures_index().unwrap();
        assert_eq!(index.index_name(), FAILURES_INDEX);
    }
}
