//! The DynamoDB layout of the rate-limit counters, on moto: the counters of one source and
//! window are one item, read for one read unit, and the item stays under 4 KB at the default
//! failure limit, whatever the client ids.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use time::OffsetDateTime;
use token_service::limits::{
    FailureLimits, Window, failures_of_client_key, failures_of_source_key, refusals_of_source_key,
};
use token_service::store::RateLimits;
use token_service::store::aws::{DynamoDbRateLimits, create_resources};

use crate::support::{moto, stores::random_resources};

/// Read units of every `BatchGetItem` of the client it is on: it asks DynamoDB for them
/// (`ReturnConsumedCapacity`) and keeps what each call reports.
#[derive(Debug, Clone, Default)]
struct ReadUnits(Arc<Mutex<Vec<f64>>>);

impl ReadUnits {
    fn take(&self) -> Vec<f64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for ReadUnits {
    fn name(&self) -> &'static str {
        "CountReadUnits"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(input) = context.input_mut().downcast_mut::<BatchGetItemInput>() {
            input.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let output = context
            .output_or_error()
            .and_then(Result::ok)
            .and_then(|o| o.downcast_ref::<BatchGetItemOutput>());
        if let Some(output) = output {
            let units = output
                .consumed_capacity()
                .iter()
                .filter_map(|c| c.capacity_units())
                .sum();
            self.0.lock().unwrap().push(units);
        }
        Ok(())
    }
}

/// A fresh rate-limits table on moto: the adapter over a client that counts read units, and a
/// plain client to read the table raw.
async fn table() -> (
    DynamoDbRateLimits,
    ReadUnits,
    aws_sdk_dynamodb::Client,
    String,
) {
    let sdk = moto::sdk_config().await;
    let names = random_resources();
    create_resources(&sdk, &names).await.unwrap();
    let units = ReadUnits::default();
    let counted = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(units.clone())
        .build();
    let limits = DynamoDbRateLimits::new(
        aws_sdk_dynamodb::Client::from_conf(counted),
        &names.rate_limits_table,
    );
    let raw = aws_sdk_dynamodb::Client::new(&sdk);
    (limits, units, raw, names.rate_limits_table)
}

/// DynamoDB's size of an item: each attribute's name plus its value (a string's bytes; a
/// number's significant digits, two to a byte, plus one).
fn item_size(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, v)| {
            name.len()
                + match v {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => {
                        let digits = n.trim_start_matches('-').trim_matches('0').replace('.', "");
                        digits.len().div_ceil(2) + 1
                    }
                    other => panic!("unexpected attribute {other:?}"),
                }
        })
        .sum()
}

#[tokio::test]
async fn the_counters_of_a_source_are_one_item_read_for_one_unit() {
    let (limits, units, raw, table) = table().await;
    let window = Window::at(OffsetDateTime::from_unix_timestamp(1_790_000_030).unwrap());
    let expires = window.expires_at();
    let source = "203.0.113.7";
    let keys = [
        refusals_of_source_key(source, window),
        failures_of_source_key(source, window),
        failures_of_client_key("svc", source, window),
    ];
    // Nothing counted yet: one item is read, absent, for one unit.
    assert_eq!(limits.counts(&keys).await.unwrap(), [0, 0, 0]);
    assert_eq!(units.take(), [1.0]);

    limits.increment(&keys[0], expires).await.unwrap();
    for _ in 0..2 {
        assert!(limits.acquire(&keys[1], 10, expires).await.unwrap());
    }
    for _ in 0..3 {
        assert!(limits.acquire(&keys[2], 10, expires).await.unwrap());
    }
    // Another client id and the issue counter do not change the three.
    limits
        .increment(&failures_of_client_key("other", source, window), expires)
        .await
        .unwrap();
    limits
        .increment(&format!("issue#svc#{}", expires - 120), expires)
        .await
        .unwrap();

    let scan = raw.scan().table_name(&table).send().await.unwrap();
    let mut found: Vec<&str> = scan
        .items()
        .iter()
        .map(|i| i["key"].as_s().unwrap().as_str())
        .collect();
    found.sort_unstable();
    let item_key = format!("src#{source}#{}", expires - 120);
    assert_eq!(
        found,
        [format!("issue#svc#{}", expires - 120), item_key.clone()]
    );
    let item = scan
        .items()
        .iter()
        .find(|i| i["key"].as_s().unwrap() == &item_key)
        .unwrap();
    let number = |name: &str| item.get(name).map(|v| v.as_n().unwrap().as_str());
    assert_eq!(number("refused"), Some("1"));
    assert_eq!(number("fail"), Some("2"));
    assert_eq!(number("expires_at"), Some(expires.to_string().as_str()));
    // Each client id is an attribute of its own, named by a digest, not by the id.
    let clients: Vec<(&String, &str)> = item
        .iter()
        .filter(|(name, _)| name.starts_with("fail#"))
        .map(|(name, v)| (name, v.as_n().unwrap().as_str()))
        .collect();
    assert_eq!(clients.len(), 2, "{item:?}");
    assert!(clients.iter().any(|(_, v)| *v == "3") && clients.iter().any(|(_, v)| *v == "1"));
    assert!(
        clients
            .iter()
            .all(|(name, _)| !name.contains("svc") && name.len() == 27)
    );
    assert_eq!(item.len(), 6, "{item:?}");

    // The read before a request: one item, one strongly consistent read unit.
    units.take();
    assert_eq!(limits.counts(&keys).await.unwrap(), [1, 2, 3]);
    assert_eq!(units.take(), [1.0]);
    // Two sources, in any order, with a key twice and an absent one: one item each.
    let elsewhere = refusals_of_source_key("198.51.100.1", window);
    let mixed = [
        keys[2].clone(),
        elsewhere.clone(),
        keys[0].clone(),
        keys[2].clone(),
        failures_of_client_key("absent", source, window),
    ];
    assert_eq!(limits.counts(&mixed).await.unwrap(), [3, 0, 1, 3, 0]);
    assert_eq!(units.take(), [2.0]);
    assert_eq!(limits.count(&keys[2]).await.unwrap(), 3);
    assert_eq!(limits.count(&elsewhere).await.unwrap(), 0);
}

#[tokio::test]
async fn a_source_item_stays_under_4_kb_at_the_default_failure_limit() {
    let (limits, units, raw, table) = table().await;
    let window = Window::at(OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap());
    // The longest IPv6 source, the default limits (100 failures per source, 10 per pair), and
    // failures of distinct client ids of the longest length, 128 characters.
    let source = "ffff:ffff:ffff:ffff::/64";
    let failures = FailureLimits::new(&limits, source, window, 100, 10);
    for i in 0..100 {
        let id = format!("{i:0>128}");
        assert!(failures.record(Some(&id)).await.unwrap(), "failure {i}");
    }
    // Past the source's limit no further client id reaches the item.
    assert!(!failures.record(Some(&"z".repeat(128))).await.unwrap());
    for _ in 0..1000 {
        limits
            .increment(&refusals_of_source_key(source, window), window.expires_at())
            .await
            .unwrap();
    }

    let keys = [
        refusals_of_source_key(source, window),
        failures_of_source_key(source, window),
        failures_of_client_key(&"z".repeat(128), source, window),
    ];
    units.take();
    assert_eq!(limits.counts(&keys).await.unwrap(), [1000, 100, 0]);
    assert_eq!(units.take(), [1.0]);
    let scan = raw.scan().table_name(&table).send().await.unwrap();
    assert_eq!(scan.items().len(), 1);
    let item = &scan.items()[0];
    assert_eq!(item.keys().filter(|n| n.starts_with("fail#")).count(), 100);
    let size = item_size(item);
    // Under 4 KB, one read unit, with room: about 3 KB (docs/aws-store.md).
    assert!(size < 3100, "{size} bytes");
    assert!(size > 100 * 27, "{size} bytes");
}
