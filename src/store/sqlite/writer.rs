//! The one thread that writes the SQLite file, committing the writes of many requests in one
//! transaction (group commit).
//!
//! Requests hand their write to the thread and wait for its answer; they never hold a lock
//! or run SQLite on the async runtime's threads. The thread takes every write that is queued
//! when it is free (at most [`MAX_BATCH`]), runs each in the same `IMMEDIATE` transaction and
//! commits once. Each caller is answered only after that commit returned, so its write is as
//! durable as the connection's `synchronous` level makes a commit; if the commit fails, every
//! write of the batch fails. While the thread commits one batch the next one queues, so a
//! busy server commits many records at once and an idle one commits each at once.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use super::backend;
use crate::store::StoreError;

/// The most writes one transaction commits; bounds the time a batch holds the write lock.
pub const MAX_BATCH: usize = 512;

/// What a queued write does once its commit's outcome is known.
type Settle = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A queued write: runs inside the batch's transaction (or learns that none could be opened)
/// and returns how to answer its caller once the batch is committed.
type Job = Box<dyn for<'c> FnOnce(Result<&mut Transaction<'c>, &StoreError>) -> Settle + Send>;

/// The handle of the writer thread; dropping it lets the thread finish the queued writes and
/// waits for it.
pub struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite writer thread stopped".to_owned())
}

impl Writer {
    /// Starts the thread that owns `conn`.
    pub fn start(conn: Connection) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || serve(conn, &queue))
            .map_err(backend)?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the next batch's transaction and returns its result once the batch is
    /// committed. `work` that writes more than one statement and may fail half-way takes a
    /// savepoint, so that its failure undoes only its own changes.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
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
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(job).map_err(|_| stopped())?;
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

/// The thread's loop: one batch per turn until every sender is gone.
fn serve(mut conn: Connection, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit(&mut conn, batch);
    }
}

/// Runs a batch in one transaction, commits it and answers every caller.
fn commit(conn: &mut Connection, batch: Vec<Job>) {
    let settles: Vec<Settle>;
    let committed = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(mut tx) => {
            settles = batch.into_iter().map(|job| job(Ok(&mut tx))).collect();
            // A statement error that rolled the whole transaction back (SQLITE_FULL, an I/O
            // error) makes this commit fail too, so no caller is told its write stands.
            tx.commit().map_err(backend)
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
