//! WAL checkpoints on a thread of their own, so that the writer thread does not stop for them.
//!
//! A checkpoint copies the pages the WAL holds back into the database file and syncs that
//! file. SQLite runs it by default on the connection whose commit took the WAL past 1,000
//! pages, inside that commit: here the writer thread, which then holds every caller of the
//! batch and every write queued behind it for the length of a sync of the database file and
//! the copy of the pages (several milliseconds on a virtual disk, once every few hundred
//! commits under load). That stall is the tail of the token endpoint's latency
//! (docs/performance.md "Checkpoints off the writer").
//!
//! [`start`] replaces that with a `PASSIVE` checkpoint on a connection of its own: the writer's
//! commit only nudges the thread, and the checkpoint runs beside later commits, which it never
//! blocks. A passive checkpoint does not restart the WAL, though: the writer restarts it at its
//! next transaction only when every frame was copied before that transaction began, which
//! under a steady stream of commits is seldom the case. So past [`WRITER_CHECKPOINT_PAGES`] the
//! writer checkpoints as SQLite would have: by then the thread has copied nearly every frame,
//! and the writer's own checkpoint copies the rest and lets the WAL start over. It also takes
//! over should the thread ever fall behind or stop. Durability does not change: a commit is
//! synced to the WAL before it is acknowledged (`synchronous=FULL`), whoever checkpoints it.

use std::ffi::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use super::backend;
use crate::store::StoreError;

/// WAL pages after a commit from which the thread is nudged to checkpoint: SQLite's own
/// automatic checkpoint threshold.
pub const CHECKPOINT_PAGES: c_int = 1_000;

/// WAL pages after a commit from which the writer checkpoints itself, as SQLite would by
/// default (see the module's documentation): 32 MiB of 4 KiB pages, the most the WAL holds.
pub const WRITER_CHECKPOINT_PAGES: c_int = 8_000;

/// What wakes the thread.
enum Wake {
    /// A commit left at least [`CHECKPOINT_PAGES`] in the WAL.
    Nudge,
    /// The handle was dropped.
    Stop,
}

/// The checkpoint thread; dropping the handle stops it (after the checkpoint under way) and
/// waits for it. The writer's commits go on without it, checkpointing at their own threshold.
pub struct Checkpointer {
    wake: mpsc::SyncSender<Wake>,
    thread: Option<JoinHandle<()>>,
    done: Arc<AtomicU64>,
}

impl Checkpointer {
    /// How many checkpoints the thread has completed (for tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn completed(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Waits while a nudge is pending: the thread is there to take it.
        let _ = self.wake.send(Wake::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Hands the checkpoints of `writer`'s commits to a new thread that checkpoints on `conn` (a
/// connection of its own to the same file). Replaces `writer`'s automatic checkpoint: the two
/// are the same SQLite hook.
pub fn start(writer: &mut Connection, conn: Connection) -> Result<Checkpointer, StoreError> {
    // One pending nudge is enough: the thread checkpoints everything there is when it wakes.
    let (wake, woken) = mpsc::sync_channel(1);
    let nudge = wake.clone();
    let done = Arc::new(AtomicU64::new(0));
    let count = done.clone();
    let thread = std::thread::Builder::new()
        .name("sqlite-checkpoint".to_owned())
        .spawn(move || run(&conn, &woken, &count))
        .map_err(backend)?;
    writer
        .wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
            if pages >= WRITER_CHECKPOINT_PAGES {
                // Busy while the thread checkpoints; the next commit tries again. An error
                // returned here would fail the statement whose commit already happened.
                if let Err(e) = wal.checkpoint() {
                    tracing::debug!(error = %e, pages, "WAL checkpoint on the writer deferred");
                }
            } else if pages >= CHECKPOINT_PAGES {
                // Full: a nudge is pending. Disconnected: the thread was stopped.
                let _ = nudge.try_send(Wake::Nudge);
            }
            Ok(())
        }))
        .map_err(backend)?;
    Ok(Checkpointer {
        wake,
        thread: Some(thread),
        done,
    })
}

/// The thread's loop: a passive checkpoint per nudge, until it is stopped.
fn run(conn: &Connection, woken: &mpsc::Receiver<Wake>, done: &AtomicU64) {
    while let Ok(Wake::Nudge) = woken.recv() {
        // Columns: busy (1 when it could not run to the end), frames in the WAL, frames copied.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; the writer will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;

    const PAGE: u64 = 4096;

    fn open(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        // The checkpoints are what is tested; syncing every commit would only slow the test.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
            .unwrap();
        conn
    }

    /// A writer and its checkpoint thread on a new file with one table of page-sized rows.
    fn writer(dir: &Path) -> (Connection, Checkpointer) {
        let path = dir.join("c.db");
        let mut writer = open(&path);
        writer
            .execute_batch("CREATE TABLE t (v BLOB NOT NULL)")
            .unwrap();
        let checkpointer = start(&mut writer, open(&path)).unwrap();
        (writer, checkpointer)
    }

    /// Commits `n` transactions of one row that fills a page of its own.
    fn commit_pages(conn: &Connection, n: usize) {
        for _ in 0..n {
            conn.execute("INSERT INTO t (v) VALUES (zeroblob(3900))", [])
                .unwrap();
        }
    }

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    /// The most the WAL file may hold: it starts over each time it reaches the writer's
    /// threshold (give or take the few commits whose checkpoint found the thread's under way).
    const MOST_WAL_BYTES: u64 = (WRITER_CHECKPOINT_PAGES as u64 * 5 / 4) * (PAGE + 24);

    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("c.db-wal")).unwrap().len()
    }

    #[test]
    fn commits_past_the_threshold_are_checkpointed_by_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, checkpointer) = writer(dir.path());
        // Two or three frames a commit (the row's page, the table's root, the database header).
        commit_pages(&writer, CHECKPOINT_PAGES as usize / 4);
        assert!(wal_bytes(dir.path()) < u64::from(CHECKPOINT_PAGES.unsigned_abs()) * PAGE);
        assert_eq!(
            checkpointer.completed(),
            0,
            "nothing to do below the threshold"
        );
        commit_pages(&writer, CHECKPOINT_PAGES as usize);
        let deadline = Instant::now() + Duration::from_secs(10);
        while checkpointer.completed() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(checkpointer.completed() > 0, "the thread checkpointed");
        // The database file grows only by checkpoints: the pages reached it.
        let db_bytes = std::fs::metadata(dir.path().join("c.db")).unwrap().len();
        assert!(db_bytes >= u64::from(CHECKPOINT_PAGES.unsigned_abs()) * PAGE);
    }

    #[test]
    fn the_wal_stays_bounded_under_a_steady_stream_of_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _checkpointer) = writer(dir.path());
        // At least two frames a commit (the row's page and the database header, as the file
        // grows): four times what the WAL may hold.
        let total = 2 * WRITER_CHECKPOINT_PAGES as usize;
        commit_pages(&writer, total);
        assert_eq!(rows(&writer), total as i64);
        let wal = wal_bytes(dir.path());
        assert!(wal <= MOST_WAL_BYTES, "{wal} > {MOST_WAL_BYTES}");
    }

    #[test]
    fn the_writer_commits_on_once_the_thread_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, checkpointer) = writer(dir.path());
        commit_pages(&writer, CHECKPOINT_PAGES as usize);
        // Joins the thread, whatever the writer does.
        drop(checkpointer);
        let total = WRITER_CHECKPOINT_PAGES as usize;
        commit_pages(&writer, total);
        assert_eq!(rows(&writer), (CHECKPOINT_PAGES as usize + total) as i64);
        // The writer's own checkpoints still bound the WAL.
        let wal = wal_bytes(dir.path());
        assert!(wal <= MOST_WAL_BYTES, "{wal} > {MOST_WAL_BYTES}");
    }
}
