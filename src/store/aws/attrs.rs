//! Conversion between DynamoDB attribute values and the stored records.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::malformed;
use crate::store::StoreError;

/// One DynamoDB item.
pub(super) type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub(super) fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// An instant as an RFC 3339 string attribute, at full precision so that it reads back equal.
pub(super) fn time(at: OffsetDateTime) -> Result<AttributeValue, StoreError> {
    at.format(&Rfc3339)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Backend(format!("cannot format a timestamp: {e}")))
}

/// Reads the attributes of one item, naming the table in every error.
pub(super) struct Reader<'a> {
    item: &'a Item,
    table: &'a str,
}

impl<'a> Reader<'a> {
    /// A reader of `item`, read from `table`.
    pub(super) fn new(item: &'a Item, table: &'a str) -> Self {
        Self { item, table }
    }

    fn error(&self, name: &str, expected: &str) -> StoreError {
        malformed(
            self.table,
            format_args!("attribute {name} is not {expected}"),
        )
    }

    /// A string attribute that may be absent.
    pub(super) fn opt_s(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(true)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.error(name, "a string")),
        }
    }

    /// A required string attribute.
    pub(super) fn s(&self, name: &str) -> Result<String, StoreError> {
        self.opt_s(name)?
            .ok_or_else(|| malformed(self.table, format_args!("attribute {name} is missing")))
    }

    /// A required integer attribute.
    pub(super) fn i64(&self, name: &str) -> Result<i64, StoreError> {
        match self.item.get(name) {
            Some(AttributeValue::N(v)) => v.parse().map_err(|_| self.error(name, "an integer")),
            _ => Err(self.error(name, "a number")),
        }
    }

    /// A required RFC 3339 instant.
    pub(super) fn time(&self, name: &str) -> Result<OffsetDateTime, StoreError> {
        OffsetDateTime::parse(&self.s(name)?, &Rfc3339)
            .map_err(|_| self.error(name, "an RFC 3339 time"))
    }

    /// A list of strings that may be absent (read as empty).
    pub(super) fn strings(&self, name: &str) -> Result<Vec<String>, StoreError> {
        match self.item.get(name) {
            None => Ok(Vec::new()),
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|v| {
                    v.as_s()
                        .cloned()
                        .map_err(|_| self.error(name, "a list of strings"))
                })
                .collect(),
            Some(_) => Err(self.error(name, "a list")),
        }
    }

    /// A required attribute holding JSON text, parsed.
    pub(super) fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        serde_json::from_str(&self.s(name)?)
            // serde's message may quote the stored text: report only where it failed.
            .map_err(|e| {
                self.error(
                    name,
                    &format!("valid JSON (line {} column {})", e.line(), e.column()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn values_read_back_as_written() {
        let at = datetime!(2026-01-02 03:04:05.123456789 UTC);
        let item: Item = HashMap::from([
            ("a".to_owned(), s("x")),
            ("n".to_owned(), n(-42)),
            ("t".to_owned(), time(at).unwrap()),
            ("l".to_owned(), AttributeValue::L(vec![s("p"), s("q")])),
            ("j".to_owned(), s("[1,2]")),
        ]);
        let r = Reader::new(&item, "table");
        assert_eq!(r.s("a").unwrap(), "x");
        assert_eq!(r.opt_s("missing").unwrap(), None);
        assert_eq!(r.i64("n").unwrap(), -42);
        assert_eq!(r.time("t").unwrap(), at);
        assert_eq!(r.strings("l").unwrap(), ["p", "q"]);
        assert_eq!(r.strings("missing").unwrap(), Vec::<String>::new());
        assert_eq!(r.json::<Vec<u8>>("j").unwrap(), [1, 2]);
    }

    #[test]
    fn errors_name_the_attribute_but_never_the_value() {
        let item: Item = HashMap::from([
            ("secretish".to_owned(), s("{not json: hunter2")),
            ("num".to_owned(), s("7")),
        ]);
        let r = Reader::new(&item, "clients");
        let err = r
            .json::<serde_json::Value>("secretish")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("secretish") && err.contains("clients"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        assert!(r.i64("num").is_err());
        assert!(r.s("absent").unwrap_err().to_string().contains("absent"));
    }
}
