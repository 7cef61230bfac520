//! Rate-limit windows, the source a request is counted against, and the counter keys: the one
//! place that spells a key (DESIGN.md "Abuse protection", "Data model").
//!
//! Also the limits on failed authentications ([`FailureLimits`]) and on tokens issued
//! ([`acquire_issue`]); the budget of refused requests lives in [`crate::refusal`].

use std::net::{IpAddr, Ipv6Addr};

use time::OffsetDateTime;

use crate::store::{RateLimits, StoreError};

/// Length of a rate-limit window, seconds.
pub const WINDOW_SECS: i64 = 60;

/// The fixed one-minute window an instant falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: i64,
    retry_after: u64,
}

impl Window {
    /// The window `now` falls in.
    pub fn at(now: OffsetDateTime) -> Self {
        let ts = now.unix_timestamp();
        let start = ts - ts.rem_euclid(WINDOW_SECS);
        Self {
            start,
            retry_after: (start + WINDOW_SECS - ts).max(1) as u64,
        }
    }

    /// Counters outlive their window a little, then the backend drops them (TTL).
    pub fn expires_at(self) -> i64 {
        self.start + 2 * WINDOW_SECS
    }

    /// Seconds until the window ends: the `Retry-After` of a `429` (RFC 9110 §10.2.3).
    pub fn retry_after(self) -> u64 {
        self.retry_after
    }
}

/// The source a request is counted against: the address itself, or for IPv6 its /64. One
/// host is routinely given a whole /64 (RFC 4291 §2.5.4 interface identifiers, RFC 8981
/// temporary addresses) and could otherwise take a fresh address for every attempt. Requests
/// without a known address (in-process callers) share the source `-`.
pub fn source(ip: Option<&str>) -> String {
    let ip = ip.unwrap_or("-");
    match ip.parse::<IpAddr>().map(|a| a.to_canonical()) {
        Ok(IpAddr::V6(v6)) => {
            let network = Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
            format!("{network}/64")
        }
        Ok(v4) => v4.to_string(),
        Err(_) => ip.to_owned(),
    }
}

/// Tokens issued to a client in a window.
pub fn issue_key(client_id: &str, window: Window) -> String {
    format!("issue#{client_id}#{}", window.start)
}

/// Failed authentications from a source, all client ids together.
pub fn failures_of_source_key(source: &str, window: Window) -> String {
    format!("fail-ip#{source}#{}", window.start)
}

/// Failed authentications from a source for one client id. The source never holds `#`, so
/// reading from the right tells every (client id, source) pair apart.
pub fn failures_of_client_key(client_id: &str, source: &str, window: Window) -> String {
    format!("fail#{client_id}#{source}#{}", window.start)
}

/// Refused requests (every 4xx answer) from a source.
pub fn refusals_of_source_key(source: &str, window: Window) -> String {
    format!("refused#{source}#{}", window.start)
}

/// Which counter of a source a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCounter<'a> {
    /// Its refused requests ([`refusals_of_source_key`]).
    Refusals,
    /// Its failed authentications, all client ids together ([`failures_of_source_key`]).
    Failures,
    /// Its failed authentications for one client id ([`failures_of_client_key`]).
    ClientFailures(&'a str),
}

/// A counter key of a source, read back: the source, the window's start as the key spells it,
/// and which of the source's counters. A backend may keep a source's counters of one window
/// together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceKey<'a> {
    /// The source ([`source`]).
    pub source: &'a str,
    /// The window's start, epoch seconds, as the key spells it.
    pub window: &'a str,
    /// Which of the source's counters.
    pub counter: SourceCounter<'a>,
}

impl<'a> SourceKey<'a> {
    /// `key` read back, or `None` for a key of another kind (the issue counter's). Distinct
    /// keys read back distinct: each is rebuilt from its parts. The window (an integer) ends
    /// the key and the source holds no `#`, so a client id keeps any `#` of its own.
    pub fn parse(key: &'a str) -> Option<Self> {
        let (rest, window) = key.rsplit_once('#')?;
        let digits = window.strip_prefix('-').unwrap_or(window);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (source, counter) = if let Some(source) = rest.strip_prefix("refused#") {
            (source, SourceCounter::Refusals)
        } else if let Some(source) = rest.strip_prefix("fail-ip#") {
            (source, SourceCounter::Failures)
        } else {
            let (client, source) = rest.strip_prefix("fail#")?.rsplit_once('#')?;
            (source, SourceCounter::ClientFailures(client))
        };
        Some(Self {
            source,
            window,
            counter,
        })
    }
}

/// Takes one of `client_id`'s tokens of `window`, `limit` a window, in one atomic step:
/// whether one was left.
pub async fn acquire_issue(
    counters: &dyn RateLimits,
    client_id: &str,
    limit: u32,
    window: Window,
) -> Result<bool, StoreError> {
    let key = issue_key(client_id, window);
    counters.acquire(&key, limit, window.expires_at()).await
}

/// The limits on failed authentications of one source in one window: per source (all client
/// ids together) and per (client id, source). Not per client id alone: whoever knows an id
/// could then lock the real client out (DESIGN.md "Abuse protection").
pub struct FailureLimits<'a> {
    counters: &'a dyn RateLimits,
    source: &'a str,
    window: Window,
    per_source: u32,
    per_client: u32,
}

impl<'a> FailureLimits<'a> {
    /// The limits of `source` in `window`: `per_source` failures from it, `per_client` of them
    /// for any one client id.
    pub fn new(
        counters: &'a dyn RateLimits,
        source: &'a str,
        window: Window,
        per_source: u32,
        per_client: u32,
    ) -> Self {
        Self {
            counters,
            source,
            window,
            per_source,
            per_client,
        }
    }

    /// The counter key and limit of the source (`client_id` `None`) or of the (client id,
    /// source) pair.
    fn counter(&self, client_id: Option<&str>) -> (String, u32) {
        match client_id {
            None => (
                failures_of_source_key(self.source, self.window),
                self.per_source,
            ),
            Some(id) => (
                failures_of_client_key(id, self.source, self.window),
                self.per_client,
            ),
        }
    }

    /// The counter key of the source (`None`) or of the (client id, source) pair.
    pub fn key(&self, client_id: Option<&str>) -> String {
        self.counter(client_id).0
    }

    /// Whether `count`, read from [`key`](Self::key)`(client_id)`, reached its limit: the
    /// request is then refused before any secret is checked.
    pub fn is_over(&self, client_id: Option<&str>, count: u64) -> bool {
        count >= u64::from(self.counter(client_id).1)
    }

    /// Counts a failed authentication against the source and, when the request named a valid
    /// client id, against the (client id, source) pair: each checked against its limit and
    /// counted in one atomic step, the pair only when the source had room. Whether both had
    /// room: parallel guesses may all pass the early [`is_over`](Self::is_over) before any is counted, and a
    /// failure that finds its counter full is answered `429`, so no more of them get
    /// `invalid_client` than the limits allow.
    pub async fn record(&self, client_id: Option<&str>) -> Result<bool, StoreError> {
        let expires_at = self.window.expires_at();
        let counters = [Some(None), client_id.map(Some)];
        for who in counters.into_iter().flatten() {
            let (key, limit) = self.counter(who);
            if !self.counters.acquire(&key, limit, expires_at).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fakes::Counters;

    #[tokio::test]
    async fn failures_are_limited_per_source_and_per_client_and_source() {
        let counters = Counters::default();
        let window = Window::at(OffsetDateTime::from_unix_timestamp(600).unwrap());
        let failures = FailureLimits::new(&counters, "192.0.2.1", window, 3, 2);
        let over = async |who: Option<&str>| {
            let count = counters.count(&failures.key(who)).await.unwrap();
            failures.is_over(who, count)
        };
        assert!(!over(None).await);
        assert!(failures.record(Some("a")).await.unwrap());
        assert!(failures.record(Some("a")).await.unwrap());
        // The pair is full: refused before its secret is checked; the source still has room.
        assert!(over(Some("a")).await);
        assert!(!over(None).await);
        assert!(!failures.record(Some("a")).await.unwrap());
        // That failure still took the source's last slot; now every client id is refused.
        assert!(over(None).await);
        assert!(!failures.record(Some("b")).await.unwrap());
        assert_eq!(counters.count(&failures.key(Some("b"))).await.unwrap(), 0);
        assert!(failures.is_over(None, 3) && !failures.is_over(None, 2));
        assert!(failures.is_over(Some("b"), 2) && !failures.is_over(Some("b"), 1));
        assert_eq!(
            failures.key(None),
            failures_of_source_key("192.0.2.1", window)
        );
    }

    #[test]
    fn source_keys_read_back_and_other_keys_do_not() {
        let w = Window::at(OffsetDateTime::from_unix_timestamp(120).unwrap());
        let read = |key: String| {
            let k = SourceKey::parse(&key).unwrap();
            (
                k.source.to_owned(),
                k.window.to_owned(),
                format!("{:?}", k.counter),
            )
        };
        let at = |counter: &str| {
            (
                "2001:db8::/64".to_owned(),
                "120".to_owned(),
                counter.to_owned(),
            )
        };
        let src = "2001:db8::/64";
        assert_eq!(read(refusals_of_source_key(src, w)), at("Refusals"));
        assert_eq!(read(failures_of_source_key(src, w)), at("Failures"));
        assert_eq!(
            read(failures_of_client_key("a#b", src, w)),
            at("ClientFailures(\"a#b\")")
        );
        for other in [
            issue_key("svc", w),
            "refused#x".to_owned(),
            "fail-ip#x#now".to_owned(),
            "refused#x#+5".to_owned(),
            "fail#svc#120".to_owned(),
            String::new(),
        ] {
            assert_eq!(SourceKey::parse(&other), None, "{other}");
        }
    }

    #[test]
    fn windows_are_whole_minutes_and_retry_after_counts_to_the_end() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_015).unwrap();
        let w = Window::at(t);
        assert_eq!(w.start % WINDOW_SECS, 0);
        assert_eq!(w.start, 1_700_000_015 - 1_700_000_015 % 60);
        assert_eq!(w.retry_after, (w.start + 60 - 1_700_000_015) as u64);
        assert_eq!(w.expires_at(), w.start + 120);
    }

    #[test]
    fn ipv6_sources_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source(Some("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(source(Some("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(source(Some("192.0.2.1")), "192.0.2.1");
        assert_eq!(source(None), "-");
    }

    #[test]
    fn every_key_names_its_kind_source_and_window() {
        let w = Window::at(OffsetDateTime::from_unix_timestamp(120).unwrap());
        assert_eq!(issue_key("svc", w), "issue#svc#120");
        assert_eq!(
            failures_of_source_key("192.0.2.1", w),
            "fail-ip#192.0.2.1#120"
        );
        assert_eq!(
            failures_of_client_key("svc", "192.0.2.1", w),
            "fail#svc#192.0.2.1#120"
        );
        assert_eq!(
            refusals_of_source_key("192.0.2.1", w),
            "refused#192.0.2.1#120"
        );
    }
}
