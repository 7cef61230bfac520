//! How many requests are under way that will each hand the store a write: the embedded SQLite
//! writer waits for their writes to commit them together (`GATHER_WINDOW` in
//! `store/sqlite/writer.rs`). A store that does not gather writes never reads it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many requests are under way that will hand the store a write. A shape that gathers
/// writes gives it to the token route as a request extension; the route counts itself from the
/// moment its body is in until it has answered. Zero, the default, never makes a batch wait.
#[derive(Debug, Clone, Default)]
pub struct Expected(Arc<AtomicUsize>);

impl Expected {
    /// Counts one more request under way until the guard is dropped (answered or cancelled).
    pub fn enter(&self) -> ExpectedGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        ExpectedGuard(self.0.clone())
    }

    /// How many requests are under way.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One request under way ([`Expected::enter`]).
#[derive(Debug)]
pub struct ExpectedGuard(Arc<AtomicUsize>);

impl Drop for ExpectedGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
