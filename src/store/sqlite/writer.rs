//! The one thread that writes the SQLite file, committing the writes of many requests in one
//! transaction (group commit).
//!
//! Requests hand their write to the thread and wait for its answer; they never hold a lock
//! or run SQLite on the async runtime's threads. The thread takes every write that is queued
//! when it is free (at most [`MAX_BATCH`]), runs each in the same `IMMEDIATE` transaction and
//! commits once. Each caller is answered only after that commit returned, so its write is as
//! durable as the connection's `synchronous` level makes a commit (`FULL`: see
//! [`super::connect`]); if the batch cannot be committed, it is rolled back and every write of
//! it fails. While the thread commits one batch the next one queues, so a busy server commits
//! many records at once and an idle one commits each at once.
//!
//! A commit costs about the same whatever its size (the WAL frames of the table and its
//! indexes, and the sync), so with slow signatures (RS256), where writes arrive one at a time,
//! it costs nearly as much as a token's whole HTTP exchange. While more requests that will
//! write are under way than the batch holds ([`Expected`], counted by the embedded server's
//! token route once a request's body is in), the thread waits for their writes up to
//! [`GATHER_WINDOW`] before committing: a busy server trades at most that much latency for
//! fewer commits; a lone request never waits (docs/performance.md "Gathering writes").
//!
//! The queue is bounded ([`QUEUE_CAPACITY`]): a disk slower than the requests makes callers
//! fail at once (`503` at the HTTP edge) rather than grow memory without limit. A panic on the
//! thread ends the process with a non-zero status, so that a supervisor restarts it; a server
//! without its writer could only answer `503` forever.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use super::backend;
use crate::store::{Expected, StoreError};

/// The most writes one transaction commits; bounds the time a batch holds the write lock.
pub const MAX_BATCH: usize = 512;

/// The most writes waiting for the thread: eight full batches. Past it a write fails at once.
pub const QUEUE_CAPACITY: usize = 8 * MAX_BATCH;

/// The longest a batch waits for the writes of requests under way ([`Expected`]).
pub const GATHER_WINDOW: Duration = Duration::from_millis(1);

/// How often a gathering batch looks again at how many requests are under way, which can
/// fall when one ends without a write.
const GATHER_SLICE: Duration = Duration::from_micros(100);

/// The exit status of a process whose writer thread panicked (`EX_SOFTWARE`, sysexits.h).
pub const PANIC_EXIT_STATUS: i32 = 70;

/// What a queued write does once its commit's outcome is known.
type Settle = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A queued write: runs inside the batch's transaction (or learns that none could be opened)
/// and returns how to answer its caller once the batch is committed.
type Job = Box<dyn for<'c> FnOnce(Result<&mut Transaction<'c>, &StoreError>) -> Settle + Send>;

/// The handle of the writer thread; dropping it lets the thread finish the queued writes and
/// waits for it.
pub struct Writer {
    jobs: Option<mpsc::SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite writer thread stopped".to_owned())
}

fn queue_full() -> StoreError {
    StoreError::Backend("the SQLite writer queue is full".to_owned())
}

impl Writer {
    /// Starts the thread that owns `conn`, with a queue of [`QUEUE_CAPACITY`] writes, gathering
    /// the writes of the requests `expected` counts.
    pub fn start(conn: Connection, expected: Expected) -> Result<Self, StoreError> {
        Self::with_capacity(conn, QUEUE_CAPACITY, expected)
    }

    /// Starts the thread that owns `conn`, with a queue of `capacity` writes.
    fn with_capacity(
        conn: Connection,
        capacity: usize,
        expected: Expected,
    ) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::sync_channel(capacity);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || {
                if catch_unwind(AssertUnwindSafe(|| serve(conn, &queue, &expected))).is_err() {
                    // The panic message is already on stderr (the panic hook ran first).
                    tracing::error!("the SQLite writer thread panicked; stopping the process");
                    std::process::exit(PANIC_EXIT_STATUS);
                }
            })
            .map_err(backend)?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the next batch's transaction and returns its result once the batch is
    /// committed; fails at once when the queue is full. `work` that writes more than one
    /// statement and may fail half-way takes a savepoint, so that its failure undoes only its
    /// own changes.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&mut Transaction<'c>) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, answered) = job(work);
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => {
                metrics::counter!("sqlite_writer_queue_full").increment(1);
                queue_full()
            }
            TrySendError::Disconnected(_) => stopped(),
        })?;
        answered.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A queued write of `work` and the receiver of its answer.
fn job<T, F>(work: F) -> (Job, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: for<'c> FnOnce(&mut Transaction<'c>) -> Result<T, StoreError> + Send + 'static,
{
    let (answer, answered) = oneshot::channel();
    let job: Job = Box::new(move |tx| {
        let outcome = match tx {
            Ok(tx) => work(tx),
            Err(e) => Err(StoreError::Backend(e.to_string())),
        };
        Box::new(move |committed: Result<(), StoreError>| {
            // The caller may have given up (deadline, closed connection); its write stands.
            let _ = answer.send(committed.and(outcome));
        })
    });
    (job, answered)
}

/// The thread's loop: one batch per turn until every sender is gone.
fn serve(mut conn: Connection, queue: &mpsc::Receiver<Job>, expected: &Expected) {
    while let Ok(first) = queue.recv() {
        commit(&mut conn, gather(queue, first, expected, GATHER_WINDOW));
    }
}

/// The batch that starts with `first`: every write queued, then, while more requests are under
/// way than the batch holds, the writes that come within `window`; at most [`MAX_BATCH`].
fn gather(
    queue: &mpsc::Receiver<Job>,
    first: Job,
    expected: &Expected,
    window: Duration,
) -> Vec<Job> {
    let mut batch = Vec::with_capacity(64);
    batch.push(first);
    let deadline = Instant::now() + window;
    while batch.len() < MAX_BATCH {
        if let Ok(job) = queue.try_recv() {
            batch.push(job);
            continue;
        }
        let now = Instant::now();
        if expected.get() <= batch.len() || now >= deadline {
            break;
        }
        match queue.recv_timeout((deadline - now).min(GATHER_SLICE)) {
            Ok(job) => batch.push(job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    batch
}

/// Runs a batch in one transaction, commits it and answers every caller. A batch is all or
/// nothing: when SQLite rolled the transaction back under a statement (`SQLITE_FULL`, an I/O
/// error), the rest of the batch is not run (it would run outside any transaction and stay
/// written while its caller is told it failed), and a failed commit is rolled back.
fn commit(conn: &mut Connection, batch: Vec<Job>) {
    let mut settles: Vec<Settle> = Vec::with_capacity(batch.len());
    let committed = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(mut tx) => {
            let mut jobs = batch.into_iter();
            let mut lost = None;
            for job in jobs.by_ref() {
                settles.push(job(Ok(&mut tx)));
                if tx.is_autocommit() {
                    lost = Some(StoreError::Backend(
                        "SQLite rolled the batch's transaction back".to_owned(),
                    ));
                    break;
                }
            }
            match lost {
                Some(e) => {
                    settles.extend(jobs.map(|job| job(Err(&e))));
                    Err(e)
                }
                None => finish(tx),
            }
        }
        Err(e) => {
            let e = backend(e);
            settles = batch.into_iter().map(|job| job(Err(&e))).collect();
            Err(e)
        }
    };
    if let Err(e) = &committed {
        tracing::error!(error = %e, writes = settles.len(), "SQLite batch not committed");
    }
    for settle in settles {
        settle(match &committed {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Backend(e.to_string())),
        });
    }
}

/// Commits `tx`, or rolls it back when the commit fails (a failed `COMMIT` can leave the
/// transaction open).
fn finish(mut tx: Transaction<'_>) -> Result<(), StoreError> {
    // Committing by statement keeps `tx` here, to roll back by name if the commit fails.
    let result = tx.execute_batch("COMMIT").map_err(backend);
    if result.is_err()
        && !tx.is_autocommit()
        && let Err(e) = tx.execute_batch("ROLLBACK")
    {
        tracing::error!(error = %e, "SQLite batch could not be rolled back");
    }
    // Committed or rolled back: nothing is left for the drop to finish.
    tx.set_drop_behavior(rusqlite::DropBehavior::Ignore);
    result
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn memory() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")
            .unwrap();
        conn
    }

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn insert(v: i64) -> impl for<'c> FnOnce(&mut Transaction<'c>) -> Result<(), StoreError> {
        move |tx| {
            tx.execute("INSERT INTO t (v) VALUES (?1)", [v])
                .map(drop)
                .map_err(backend)
        }
    }

    fn answer<T>(mut answered: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        answered.try_recv().expect("every job is answered")
    }

    #[test]
    fn a_batch_commits_every_write_and_answers_each() {
        let mut conn = memory();
        let (a, a_answer) = job(insert(1));
        let (b, b_answer) = job(insert(2));
        commit(&mut conn, vec![a, b]);
        assert!(answer(a_answer).is_ok());
        assert!(answer(b_answer).is_ok());
        assert_eq!(rows(&conn), 2);
    }

    #[test]
    fn a_batch_rolled_back_by_sqlite_writes_nothing_after_it_and_fails_every_job() {
        let mut conn = memory();
        let (before, before_answer) = job(insert(1));
        // What SQLite does on SQLITE_FULL or an I/O error under a statement: the whole
        // transaction is rolled back and the connection is back in autocommit.
        let (lost, lost_answer) = job(|tx: &mut Transaction<'_>| {
            tx.execute_batch("ROLLBACK").map_err(backend)?;
            Err::<(), _>(StoreError::Backend("disk full".to_owned()))
        });
        let (after, after_answer) = job(insert(3));
        commit(&mut conn, vec![before, lost, after]);
        assert!(answer(before_answer).is_err());
        assert!(answer(lost_answer).is_err());
        assert!(answer(after_answer).is_err());
        assert_eq!(rows(&conn), 0, "no write of a failed batch stays");
        assert!(conn.is_autocommit(), "no transaction is left open");
    }

    #[test]
    fn a_failed_commit_is_rolled_back_and_fails_every_job() {
        let mut conn = memory();
        conn.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
             PRAGMA foreign_keys = ON;",
        )
        .unwrap();
        let (ok, ok_answer) = job(insert(1));
        // A deferred foreign key is checked at COMMIT, which then fails.
        let (orphan, orphan_answer) = job(|tx: &mut Transaction<'_>| {
            tx.execute("INSERT INTO child (p) VALUES (42)", [])
                .map(drop)
                .map_err(backend)
        });
        commit(&mut conn, vec![ok, orphan]);
        assert!(answer(ok_answer).is_err());
        assert!(answer(orphan_answer).is_err());
        assert!(conn.is_autocommit(), "the failed batch was rolled back");
        assert_eq!(rows(&conn), 0);
        // The connection serves the next batch.
        let (next, next_answer) = job(insert(2));
        commit(&mut conn, vec![next]);
        assert!(answer(next_answer).is_ok());
        assert_eq!(rows(&conn), 1);
    }

    #[test]
    fn a_full_queue_fails_at_once_and_loses_nothing_queued() {
        let writer = Writer::with_capacity(memory(), 2, Expected::default()).unwrap();
        let jobs = writer.jobs.clone().unwrap();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        // The thread is held inside a first batch while the queue fills.
        let (hold, held) = job(move |tx: &mut Transaction<'_>| {
            started.send(()).unwrap();
            gate.recv().ok();
            insert(1)(tx)
        });
        assert!(jobs.try_send(hold).is_ok());
        running.recv().unwrap();
        let (a, a_answer) = job(insert(10));
        let (b, b_answer) = job(insert(11));
        assert!(jobs.try_send(a).is_ok() && jobs.try_send(b).is_ok());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let refused = runtime.block_on(writer.run(insert(99))).unwrap_err();
        assert_eq!(refused.to_string(), queue_full().to_string());
        release.send(()).unwrap();
        drop(jobs);
        drop(writer); // finishes the queued writes and joins the thread
        for answered in [held, a_answer, b_answer] {
            assert!(answer(answered).is_ok());
        }
    }

    /// A job that inserts `v`, for [`gather`], which never runs it.
    fn queued(v: i64) -> Job {
        job(insert(v)).0
    }

    #[test]
    fn a_batch_waits_for_the_writes_of_requests_under_way() {
        let (jobs, queue) = mpsc::sync_channel(8);
        let expected = Expected::default();
        let (_first, _second) = (expected.enter(), expected.enter());
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            jobs.send(queued(2)).unwrap();
            jobs
        });
        // A window far longer than the test: the batch ends when the second write comes.
        let batch = gather(&queue, queued(1), &expected, Duration::from_secs(600));
        assert_eq!(batch.len(), 2, "both requests' writes in one batch");
        drop(late.join().unwrap());
    }

    #[test]
    fn a_lone_request_or_an_ended_one_is_not_waited_for() {
        let (jobs, queue) = mpsc::sync_channel(8);
        let expected = Expected::default();
        let only = expected.enter();
        let batch = gather(&queue, queued(1), &expected, Duration::from_secs(600));
        assert_eq!(batch.len(), 1);
        // A second request under way ends without a write: the batch stops waiting for it.
        let ending = expected.enter();
        let ends = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(ending);
        });
        let batch = gather(&queue, queued(2), &expected, Duration::from_secs(600));
        assert_eq!(batch.len(), 1);
        ends.join().unwrap();
        drop((only, jobs));
        // Without any request counted, whatever is queued is taken, and nothing more.
        let (jobs, queue) = mpsc::sync_channel(8);
        jobs.send(queued(4)).unwrap();
        let batch = gather(
            &queue,
            queued(3),
            &Expected::default(),
            Duration::from_secs(600),
        );
        assert_eq!(batch.len(), 2);
    }

    /// Run as its own child process: the child (marked by an environment variable) panics
    /// on the writer thread; the parent asserts how the child ended.
    #[test]
    fn a_writer_panic_ends_the_process() {
        const CHILD: &str = "TOKEN_SERVICE_WRITER_PANIC_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let writer = Writer::start(memory(), Expected::default()).unwrap();
            let _ = runtime.block_on(
                writer.run(|_tx| -> Result<(), StoreError> { panic!("a write that panics") }),
            );
            // The caller learns at once that its write failed; the thread ends the process a
            // moment later. Waiting here (bounded) lets it: exit 0 means it never did.
            std::thread::sleep(std::time::Duration::from_secs(30));
            std::process::exit(0);
        }
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "--nocapture"])
            .arg("store::sqlite::writer::tests::a_writer_panic_ends_the_process")
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert_eq!(
            child.status.code(),
            Some(PANIC_EXIT_STATUS),
            "child output: {}",
            String::from_utf8_lossy(&child.stderr)
        );
    }
}
