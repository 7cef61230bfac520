//! Which key signs and which keys are published: a pure function of (key set, now).
//!
//! - The signing key is the newest key with `activates_at <= now`.
//! - A key is published while it signs, while it is not active yet, and for
//!   (maximum token lifetime + clock skew) after a newer key took over, so that every token it
//!   signed can still be verified until it expires.
//! - A pending key (published by a rotation that has not finished: on AWS, its key set is not
//!   `AWSCURRENT` yet) neither signs nor takes over: the key that signs keeps signing and stays
//!   published however long a rotation is stuck.
//!
//! The same rules serve the token function (private key set) and the JWKS function (public key
//! records): both only need the timestamps, through [`KeyTimes`].

use time::{Duration, OffsetDateTime};

/// What the schedule needs to know of a key.
pub trait KeyTimes {
    /// The key id.
    fn kid(&self) -> &str;
    /// When the key was made (breaks ties between equal activation times).
    fn created_at(&self) -> OffsetDateTime;
    /// When the key may start signing.
    fn activates_at(&self) -> OffsetDateTime;
    /// Whether the key belongs to a rotation that has not finished (its set is not the one
    /// that signs yet). Keys of a private key set never are.
    fn is_pending(&self) -> bool {
        false
    }
    /// When the key's set became the one that signs, where that is recorded (published keys
    /// of the AWS shape); `None` when it was before the key's activation.
    fn current_since(&self) -> Option<OffsetDateTime> {
        None
    }
}

/// A [`Schedule`] in whole seconds, as the embedded shape stores it with the key set: a
/// rotation run by another process (`tokenctl keys rotate`) prunes by the timing of the server
/// that uses the set, or is refused, never by its own defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyTiming {
    /// [`Schedule::prepublication`], seconds.
    pub prepublication: i64,
    /// [`Schedule::retirement`], seconds.
    pub retirement: i64,
    /// [`Schedule::signer_refresh`], seconds.
    pub signer_refresh: i64,
}

impl From<&Schedule> for KeyTiming {
    fn from(s: &Schedule) -> Self {
        Self {
            prepublication: s.prepublication.whole_seconds(),
            retirement: s.retirement.whole_seconds(),
            signer_refresh: s.signer_refresh.whole_seconds(),
        }
    }
}

impl std::fmt::Display for KeyTiming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pre-publication {} s (TOKEN_KEY_PREPUBLICATION), retirement {} s (TOKEN_MAX_TTL + \
             TOKEN_CLOCK_SKEW), key cache {} s (TOKEN_KEY_CACHE)",
            self.prepublication, self.retirement, self.signer_refresh
        )
    }
}

/// The timing parameters of rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// How long a new key is published before it signs; longer than any JWKS cache lifetime.
    pub prepublication: Duration,
    /// How long a retired key stays published: maximum token lifetime + clock skew allowance.
    pub retirement: Duration,
    /// How long a token signer may go on with the key set it loaded (the key cache lifetime):
    /// a key that becomes current late, after its activation time, takes over only then.
    pub signer_refresh: Duration,
}

fn order_key<K: KeyTimes>(k: &K) -> (OffsetDateTime, OffsetDateTime, &str) {
    (k.activates_at(), k.created_at(), k.kid())
}

impl Schedule {
    /// The key that signs at `now`: the newest key whose activation time has come.
    pub fn signing_key<'a, K: KeyTimes>(
        &self,
        keys: &'a [K],
        now: OffsetDateTime,
    ) -> Option<&'a K> {
        keys.iter()
            .filter(|k| !k.is_pending() && k.activates_at() <= now)
            .max_by(|a, b| order_key(*a).cmp(&order_key(*b)))
    }

    /// Whether the key `kid` is published at `now`.
    pub fn is_published<K: KeyTimes>(&self, keys: &[K], kid: &str, now: OffsetDateTime) -> bool {
        let Some(key) = keys.iter().find(|k| k.kid() == kid) else {
            return false;
        };
        if key.activates_at() > now {
            return true;
        }
        // The key that took over from this one: the next to activate after it, if it has; a
        // pending key takes over from none.
        let successor = keys
            .iter()
            .filter(|k| {
                !k.is_pending() && order_key(*k) > order_key(key) && k.activates_at() <= now
            })
            .min_by(|a, b| order_key(*a).cmp(&order_key(*b)));
        match successor {
            None => true,
            Some(next) => now < self.takes_over(next) + self.retirement,
        }
    }

    /// When a key takes over from its predecessor: at its activation, or, when its set became
    /// current after that (a rotation that was stuck), once every signer has loaded that set.
    fn takes_over<K: KeyTimes>(&self, key: &K) -> OffsetDateTime {
        match key.current_since() {
            Some(since) => key.activates_at().max(since + self.signer_refresh),
            None => key.activates_at(),
        }
    }

    /// The keys published at `now`, in the order given.
    pub fn published<'a, K: KeyTimes>(&self, keys: &'a [K], now: OffsetDateTime) -> Vec<&'a K> {
        keys.iter()
            .filter(|k| self.is_published(keys, k.kid(), now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[derive(Debug, Clone)]
    struct K(String, OffsetDateTime, OffsetDateTime);
    impl KeyTimes for K {
        fn kid(&self) -> &str {
            &self.0
        }
        fn created_at(&self) -> OffsetDateTime {
            self.1
        }
        fn activates_at(&self) -> OffsetDateTime {
            self.2
        }
    }

    /// A published key with its rotation's stage.
    #[derive(Debug, Clone)]
    struct Staged(K, bool, Option<OffsetDateTime>);
    impl KeyTimes for Staged {
        fn kid(&self) -> &str {
            self.0.kid()
        }
        fn created_at(&self) -> OffsetDateTime {
            self.0.created_at()
        }
        fn activates_at(&self) -> OffsetDateTime {
            self.0.activates_at()
        }
        fn is_pending(&self) -> bool {
            self.1
        }
        fn current_since(&self) -> Option<OffsetDateTime> {
            self.2
        }
    }

    #[test]
    fn a_stuck_rotation_never_unpublishes_the_key_that_signs() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let created = t0 + Duration::days(1);
        let old = K("old".into(), t0, t0);
        let new = K("new".into(), created, created + SCHEDULE.prepublication);
        let stuck = [
            Staged(old.clone(), false, None),
            Staged(new.clone(), true, None),
        ];
        // Long past the pending key's activation plus the retirement period.
        let later = t0 + Duration::days(3);
        assert_eq!(SCHEDULE.signing_key(&stuck, later).unwrap().kid(), "old");
        assert!(SCHEDULE.is_published(&stuck, "old", later));
        assert!(
            SCHEDULE.is_published(&stuck, "new", later),
            "a pending key stays published"
        );
        // The rotation finishes late: the old key stays published until every signer has
        // loaded the new set and the tokens it signed meanwhile have expired.
        let finished = [Staged(old, false, None), Staged(new, false, Some(later))];
        let retired = later + SCHEDULE.signer_refresh + SCHEDULE.retirement;
        assert_eq!(SCHEDULE.signing_key(&finished, later).unwrap().kid(), "new");
        assert!(SCHEDULE.is_published(&finished, "old", retired - Duration::seconds(1)));
        assert!(!SCHEDULE.is_published(&finished, "old", retired));
    }

    const SCHEDULE: Schedule = Schedule {
        prepublication: Duration::hours(1),
        retirement: Duration::seconds(3600 + 60),
        signer_refresh: Duration::minutes(5),
    };

    fn kids<'a>(keys: &[&'a K]) -> Vec<&'a str> {
        keys.iter().map(|k| k.0.as_str()).collect()
    }

    /// Simulates rotations every `every`, checking at each minute that the signing key is
    /// published, that it was published for the whole pre-publication delay before it signed,
    /// and that a key stays published for `retirement` after it last signed.
    #[test]
    fn sequence_of_rotations_keeps_every_signing_key_published_long_enough() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let every = Duration::hours(6);
        let mut keys: Vec<K> = vec![K("k0".into(), t0, t0)];
        let mut last_signed: std::collections::HashMap<String, OffsetDateTime> = Default::default();
        let mut first_published: std::collections::HashMap<String, OffsetDateTime> =
            Default::default();
        let mut next_rotation = t0 + every;
        let mut now = t0;
        let mut n = 1;
        while now < t0 + Duration::days(3) {
            if now >= next_rotation {
                // The rotation rule of KeySet::rotated, on the test key type.
                let snapshot = keys.clone();
                keys.retain(|k| SCHEDULE.is_published(&snapshot, &k.0, now));
                keys.push(K(format!("k{n}"), now, now + SCHEDULE.prepublication));
                n += 1;
                next_rotation += every;
            }
            let published = SCHEDULE.published(&keys, now);
            for k in &published {
                first_published.entry(k.0.clone()).or_insert(now);
            }
            let signer = SCHEDULE.signing_key(&keys, now).expect("a key signs");
            assert!(kids(&published).contains(&signer.0.as_str()));
            let since = first_published[&signer.0];
            assert!(
                signer.0 == "k0" || now - since >= SCHEDULE.prepublication,
                "{} signs at {now} but was first published at {since}",
                signer.0
            );
            last_signed.insert(signer.0.clone(), now);
            for (kid, at) in &last_signed {
                if now < *at + SCHEDULE.retirement {
                    assert!(
                        kids(&published).contains(&kid.as_str()),
                        "{kid} signed at {at} but is unpublished at {now}"
                    );
                }
            }
            // Never more than: the retiring key, the signing key and the next one.
            assert!(published.len() <= 3, "{:?} at {now}", kids(&published));
            now += Duration::minutes(1);
        }
        assert!(n >= 12, "rotated {n} times");
        assert!(keys.len() <= 3);
    }

    #[test]
    fn newest_active_key_signs_and_future_key_is_only_published() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let keys = vec![
            K("old".into(), t0, t0),
            K(
                "new".into(),
                t0 + Duration::hours(1),
                t0 + Duration::hours(2),
            ),
        ];
        let at = t0 + Duration::hours(1) + Duration::minutes(5);
        assert_eq!(SCHEDULE.signing_key(&keys, at).unwrap().0, "old");
        assert_eq!(kids(&SCHEDULE.published(&keys, at)), ["old", "new"]);
        let after = t0 + Duration::hours(2);
        assert_eq!(SCHEDULE.signing_key(&keys, after).unwrap().0, "new");
        assert_eq!(kids(&SCHEDULE.published(&keys, after)), ["old", "new"]);
        let retired = after + SCHEDULE.retirement;
        assert_eq!(kids(&SCHEDULE.published(&keys, retired)), ["new"]);
        assert_eq!(
            kids(&SCHEDULE.published(&keys, retired - Duration::seconds(1))),
            ["old", "new"]
        );
    }

    #[test]
    fn no_key_signs_before_the_first_activation() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let keys = vec![K("a".into(), t0, t0 + Duration::hours(1))];
        assert!(SCHEDULE.signing_key(&keys, t0).is_none());
        assert_eq!(kids(&SCHEDULE.published(&keys, t0)), ["a"]);
        assert!(SCHEDULE.signing_key::<K>(&[], t0).is_none());
    }

    #[test]
    fn equal_activation_times_are_ordered_by_creation_then_kid() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let keys = vec![
            K("b".into(), t0, t0),
            K("a".into(), t0 + Duration::seconds(1), t0),
        ];
        assert_eq!(SCHEDULE.signing_key(&keys, t0).unwrap().0, "a");
        // "b" lost at the very instant it activated: it retires from then on.
        assert!(SCHEDULE.is_published(&keys, "b", t0 + SCHEDULE.retirement - Duration::seconds(1)));
        assert!(!SCHEDULE.is_published(&keys, "b", t0 + SCHEDULE.retirement));
    }
}
