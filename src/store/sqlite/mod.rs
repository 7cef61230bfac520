//! The SQLite adapter of every store port: the embedded shape's single file.
//!
//! One file holds clients, the audit trail, the key set and the public keys; it is created
//! with mode 0600 because it holds private keys. WAL mode lets readers (the token endpoint)
//! proceed while a writer (this process's writer thread, or `tokenctl`) writes.
//!
//! Every write of this process goes through one thread (`writer.rs`), which commits the writes
//! queued meanwhile in one transaction (group commit); callers wait for it without blocking
//! the async runtime. Reads run on a small pool of reader connections, none of which the
//! writer ever locks: a read waits only on another read. WAL checkpoints run on a thread of
//! their own (`checkpoint.rs`), so that the writer does not stop for them.

mod checkpoint;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use checkpoint::Checkpointer;
use writer::Writer;

use super::{
    AssertionReplay, AuditLog, ClientAdmin, ClientReader, Expected, IndexedSecret, KeyStore,
    PublicKeyStore, RateLimits, SecretIndex, StoreError,
};
use crate::audit::{AuditQuery, AuditRecord, Failures};
use crate::clients::{Client, SecretHash};
use crate::keys::{KeySet, PublicKeyRecord};

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r"
    CREATE TABLE clients (
        client_id TEXT PRIMARY KEY,
        version   INTEGER NOT NULL,
        record    TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id  TEXT NOT NULL,
        ts_ms      INTEGER NOT NULL,
        outcome    TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        record     TEXT NOT NULL
    );
    CREATE INDEX audit_by_client ON audit (client_id, ts_ms);
    CREATE INDEX audit_by_time ON audit (ts_ms);
    CREATE TABLE key_set (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        json TEXT NOT NULL
    );
    CREATE TABLE public_keys (
        kid    TEXT PRIMARY KEY,
        record TEXT NOT NULL
    ) WITHOUT ROWID;
",
    r"
    CREATE TABLE rate_counters (
        key        TEXT PRIMARY KEY,
        count      INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
",
    r"
    CREATE TABLE assertion_ids (
        key        TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
",
    // The refused token requests by time (`AuditRecord::is_failure`), so the audit report finds
    // every address's failures under any id by reading only refusals. Built over the existing
    // rows too, so records written before it are found like new ones.
    r"
    CREATE INDEX audit_failures_by_time ON audit (ts_ms)
        WHERE outcome NOT IN ('issued', 'admin');
",
    // The secret DPoP nonces are made with (RFC 9449 §8): 256 bits from SQLite's generator,
    // which the operating system's entropy seeds, made once with the file.
    r"
    CREATE TABLE service_secrets (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO service_secrets (name, value) VALUES ('dpop_nonce', randomblob(32));
",
    // The secret index: a secret's client by its digest, so a reported leak is found without
    // reading every client. Filled from the existing records, as `reindex_secrets` does.
    r"
    CREATE TABLE secret_index (
        hash      TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        secret_id TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX secret_index_by_client ON secret_index (client_id);
    INSERT OR REPLACE INTO secret_index (hash, client_id, secret_id)
        SELECT json_extract(s.value, '$.hash'), c.client_id, json_extract(s.value, '$.secret_id')
        FROM clients c, json_each(c.record, '$.secrets') s
        WHERE json_valid(c.record) AND json_extract(s.value, '$.hash') IS NOT NULL;
",
];

/// Reader connections: two cover the runtime's worker threads on a small machine; a reader
/// that finds every connection busy waits for one of them.
const READERS: usize = 4;

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    /// Dropped after the writer, whose connection's close ends its thread.
    _checkpointer: Checkpointer,
    /// The token requests under way, whose audit writes a batch waits for.
    expected: Expected,
    readers: Box<[Mutex<Connection>]>,
    next_reader: AtomicUsize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock cannot leave a transaction open (rusqlite rolls back on
    // drop), so the connection is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(backend)
}

/// Parses a stored record. serde's messages may quote the value they failed on (a secret's
/// digest, a private key), so only the position is reported.
fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| {
        StoreError::Backend(format!(
            "stored record is malformed (JSON line {} column {})",
            e.line(),
            e.column()
        ))
    })
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(|_| ())
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    // WAL with synchronous=FULL: the WAL is synced at every commit, so a write that was
    // acknowledged (an audit record, a used assertion id) survives an OS crash or power loss
    // too; NORMAL syncs only at checkpoints and can lose the last commits. With group commit
    // that is one sync per batch, not per request (README "Performance" has the cost).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )
    .map_err(backend)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    let current: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    let current = usize::try_from(current).map_err(backend)?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "database schema version {current} is newer than this build supports ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql).map_err(backend)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0600) the database at `path` and brings its schema up
    /// to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(backend)?;
        }
        create_private_file(&path).map_err(backend)?;
        let mut writer = connect(&path)?;
        migrate(&mut writer)?;
        let checkpointer = checkpoint::start(&mut writer, connect(&path)?)?;
        let readers = (0..READERS)
            .map(|_| connect(&path).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        let expected = Expected::default();
        Ok(Self {
            path,
            writer: Writer::start(writer, expected.clone())?,
            _checkpointer: checkpointer,
            expected,
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Counts requests under way that will each write (the embedded server's token requests):
    /// the writer thread gathers their writes into one commit (`GATHER_WINDOW` in `writer.rs`).
    pub fn expect_writes(&self) -> &Expected {
        &self.expected
    }

    /// A reader connection: the first free one, else the next in turn (waiting for it).
    fn reader(&self) -> MutexGuard<'_, Connection> {
        if let Some(free) = self.readers.iter().find_map(|r| r.try_lock().ok()) {
            return free;
        }
        let turn = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        lock(&self.readers[turn])
    }

    /// The secret DPoP nonces are made with (`oauth::nonce`), made with the file.
    pub fn dpop_nonce_secret(&self) -> Result<Vec<u8>, StoreError> {
        self.reader()
            .query_row(
                "SELECT value FROM service_secrets WHERE name = 'dpop_nonce'",
                [],
                |r| r.get(0),
            )
            .map_err(backend)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes audit records and rate counters that expired before `now_epoch` (DynamoDB
    /// does this with TTL). Returns how many rows were deleted.
    pub async fn prune_expired(&self, now_epoch: i64) -> Result<usize, StoreError> {
        self.writer
            .run(move |tx| {
                let sp = tx.savepoint().map_err(backend)?;
                let mut deleted = 0;
                for table in ["audit", "rate_counters", "assertion_ids"] {
                    deleted += sp
                        .execute(
                            &format!("DELETE FROM {table} WHERE expires_at < ?1"),
                            [now_epoch],
                        )
                        .map_err(backend)?;
                }
                sp.commit().map_err(backend)?;
                Ok(deleted)
            })
            .await
    }
}

/// Why a versioned write to a client matched no row: it is gone, or it changed.
fn missing_or_conflict(conn: &Connection, client_id: &str) -> Result<StoreError, StoreError> {
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM clients WHERE client_id = ?1)",
            [client_id],
            |r| r.get(0),
        )
        .map_err(backend)?;
    let what = format!("client {client_id}");
    Ok(if exists {
        StoreError::Conflict(what)
    } else {
        StoreError::NotFound(what)
    })
}

/// Makes the secret index's entries of `client_id` exactly `secrets` (`(digest, secret id)`
/// pairs): none when the client is gone.
fn index_secrets(
    conn: &Connection,
    client_id: &str,
    secrets: &[(String, String)],
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM secret_index WHERE client_id = ?1")
        .and_then(|mut s| s.execute([client_id]))
        .map_err(backend)?;
    let mut insert = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO secret_index (hash, client_id, secret_id) VALUES (?1, ?2, ?3)",
        )
        .map_err(backend)?;
    for (hash, secret_id) in secrets {
        insert
            .execute(params![hash, client_id, secret_id])
            .map_err(backend)?;
    }
    Ok(())
}

/// The `(digest, secret id)` pairs of a client's secrets, as the index holds them.
fn index_entries(client: &Client) -> Vec<(String, String)> {
    client
        .secrets
        .iter()
        .map(|s| (s.hash.as_str().to_owned(), s.secret_id.clone()))
        .collect()
}

#[async_trait]
impl SecretIndex for SqliteStore {
    async fn find_secret(&self, hash: &SecretHash) -> Result<Option<IndexedSecret>, StoreError> {
        self.reader()
            .prepare_cached("SELECT client_id, secret_id FROM secret_index WHERE hash = ?1")
            .and_then(|mut s| {
                s.query_row([hash.as_str()], |r| {
                    Ok(IndexedSecret {
                        client_id: r.get(0)?,
                        secret_id: r.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(backend)
    }
}

#[async_trait]
impl AssertionReplay for SqliteStore {
    async fn first_use(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        // One statement, so atomic: an expired record (not pruned yet) counts as absent. The
        // answer comes after the commit: a restart never forgets a use it allowed.
        let key = key.to_owned();
        let changed = self
            .writer
            .run(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO assertion_ids (key, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
                     WHERE assertion_ids.expires_at <= ?3",
                )
                .and_then(|mut s| s.execute(params![key, expires_at, now]))
                .map_err(backend)
            })
            .await?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl ClientReader for SqliteStore {
    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let text: Option<String> = self
            .reader()
            .prepare_cached("SELECT record FROM clients WHERE client_id = ?1")
            .and_then(|mut s| s.query_row([client_id], |r| r.get(0)).optional())
            .map_err(backend)?;
        text.map(|t| from_json(&t)).transpose()
    }
}

#[async_trait]
impl ClientAdmin for SqliteStore {
    async fn create_client(&self, client: &Client) -> Result<(), StoreError> {
        let record = to_json(client)?;
        let (id, version) = (client.client_id.clone(), client.version as i64);
        let secrets = index_entries(client);
        let inserted = self
            .writer
            .run(move |tx| {
                let sp = tx.savepoint().map_err(backend)?;
                let inserted = sp
                    .execute(
                        "INSERT INTO clients (client_id, version, record) VALUES (?1, ?2, ?3)
                         ON CONFLICT (client_id) DO NOTHING",
                        params![id, version, record],
                    )
                    .map_err(backend)?;
                if inserted == 1 {
                    index_secrets(&sp, &id, &secrets)?;
                }
                sp.commit().map_err(backend)?;
                Ok(inserted)
            })
            .await?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists(format!(
                "client {}",
                client.client_id
            )));
        }
        Ok(())
    }

    async fn update_client(&self, client: &Client) -> Result<(), StoreError> {
        let record = to_json(client)?;
        let (id, version) = (client.client_id.clone(), client.version as i64);
        let secrets = index_entries(client);
        self.writer
            .run(move |tx| {
                let sp = tx.savepoint().map_err(backend)?;
                let updated = sp
                    .execute(
                        "UPDATE clients SET version = ?2, record = ?3
                         WHERE client_id = ?1 AND version = ?2 - 1",
                        params![id, version, record],
                    )
                    .map_err(backend)?;
                if updated == 1 {
                    index_secrets(&sp, &id, &secrets)?;
                    return sp.commit().map_err(backend);
                }
                Err(missing_or_conflict(&sp, &id)?)
            })
            .await
    }

    async fn delete_client(&self, client_id: &str, version: u64) -> Result<(), StoreError> {
        let id = client_id.to_owned();
        self.writer
            .run(move |tx| {
                let sp = tx.savepoint().map_err(backend)?;
                let deleted = sp
                    .execute(
                        "DELETE FROM clients WHERE client_id = ?1 AND version = ?2",
                        params![id, version as i64],
                    )
                    .map_err(backend)?;
                if deleted == 1 {
                    index_secrets(&sp, &id, &[])?;
                    return sp.commit().map_err(backend);
                }
                Err(missing_or_conflict(&sp, &id)?)
            })
            .await
    }

    async fn reindex_secrets(&self) -> Result<usize, StoreError> {
        self.writer
            .run(move |tx| {
                let sp = tx.savepoint().map_err(backend)?;
                let clients = {
                    let mut stmt = sp
                        .prepare("SELECT record FROM clients ORDER BY client_id")
                        .map_err(backend)?;
                    let rows = stmt
                        .query_map([], |r| r.get::<_, String>(0))
                        .map_err(backend)?;
                    rows.map(|r| from_json::<Client>(&r.map_err(backend)?))
                        .collect::<Result<Vec<_>, _>>()?
                };
                sp.execute("DELETE FROM secret_index", [])
                    .map_err(backend)?;
                let mut indexed = 0;
                for client in &clients {
                    let entries = index_entries(client);
                    indexed += entries.len();
                    index_secrets(&sp, &client.client_id, &entries)?;
                }
                sp.commit().map_err(backend)?;
                Ok(indexed)
            })
            .await
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare("SELECT record FROM clients ORDER BY client_id")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(backend)?;
        rows.map(|r| from_json(&r.map_err(backend)?)).collect()
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let json = to_json(record)?;
        let ts_ms = (record.timestamp.unix_timestamp_nanos() / 1_000_000) as i64;
        let (client_id, outcome) = (record.client_id.clone(), record.outcome.clone());
        let expires_at = record.expires_at;
        // One statement: a failed insert leaves nothing behind in the batch's transaction.
        self.writer
            .run(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO audit (client_id, ts_ms, outcome, expires_at, record)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| s.execute(params![client_id, ts_ms, outcome, expires_at, json]))
                .map_err(backend)
            })
            .await?;
        Ok(())
    }

    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT record FROM audit
                 WHERE (?1 IS NULL OR client_id = ?1)
                   AND (?2 IS NULL OR ts_ms >= ?2)
                   AND (?3 IS NULL OR ts_ms < ?3)
                   AND (?4 IS NULL OR outcome = ?4)
                 ORDER BY ts_ms DESC, seq DESC
                 LIMIT ?5",
            )
            .map_err(backend)?;
        let limit = if q.limit == 0 {
            i64::MAX
        } else {
            q.limit as i64
        };
        let rows = stmt
            .query_map(
                params![
                    q.client_id,
                    q.since.map(ms),
                    q.until.map(ms),
                    q.outcome,
                    limit
                ],
                |r| r.get::<_, String>(0),
            )
            .map_err(backend)?;
        rows.map(|r| from_json(&r.map_err(backend)?)).collect()
    }

    async fn failures(
        &self,
        since: time::OffsetDateTime,
        until: time::OffsetDateTime,
    ) -> Result<Failures, StoreError> {
        let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        let conn = self.reader();
        // `INDEXED BY` makes the statement fail rather than fall back to another plan: the
        // condition must stay the index's own, word for word.
        let mut stmt = conn
            .prepare_cached(
                "SELECT record FROM audit INDEXED BY audit_failures_by_time
                 WHERE outcome NOT IN ('issued', 'admin') AND ts_ms >= ?1 AND ts_ms < ?2",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![ms(since), ms(until)], |r| r.get::<_, String>(0))
            .map_err(backend)?;
        let mut records = Vec::new();
        for row in rows {
            let record: AuditRecord = from_json(&row.map_err(backend)?)?;
            if record.is_failure() {
                records.push(record);
            }
        }
        Ok(Failures {
            records,
            queries: 1,
        })
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn load_key_set(&self) -> Result<KeySet, StoreError> {
        let text: Option<String> = self
            .reader()
            .query_row("SELECT json FROM key_set WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        match text {
            None => Ok(KeySet::default()),
            Some(t) => KeySet::from_json(&t).map_err(backend),
        }
    }

    /// Runs in the writer's `IMMEDIATE` transaction, which takes the write lock before
    /// reading, so the version check (the stored set is `expected`) and both writes see no
    /// other writer in between, in this process or another; a savepoint undoes a half-done
    /// replacement. Every rotation adds a fresh random key, so a set's JSON never comes back
    /// once replaced and serves as its version.
    async fn replace_key_set(&self, expected: &KeySet, next: &KeySet) -> Result<(), StoreError> {
        let records = next.public_records().map_err(backend)?;
        let (expected, next) = (expected.clone(), next.to_json());
        self.writer
            .run(move |tx| {
                let sp = tx.savepoint().map_err(backend)?;
                let stored: Option<String> = sp
                    .query_row("SELECT json FROM key_set WHERE id = 1", [], |r| r.get(0))
                    .optional()
                    .map_err(backend)?;
                let stored = match stored {
                    None => KeySet::default(),
                    Some(t) => KeySet::from_json(&t).map_err(backend)?,
                };
                if stored != expected {
                    return Err(StoreError::Conflict("the key set".to_owned()));
                }
                sp.execute(
                    "INSERT INTO key_set (id, json) VALUES (1, ?1)
                     ON CONFLICT (id) DO UPDATE SET json = excluded.json",
                    [next],
                )
                .map_err(backend)?;
                write_public_keys(&sp, &records)?;
                sp.commit().map_err(backend)
            })
            .await
    }
}

/// Makes the public-keys table exactly `records`, inside the caller's transaction.
fn write_public_keys(tx: &Connection, records: &[PublicKeyRecord]) -> Result<(), StoreError> {
    tx.execute("DELETE FROM public_keys", []).map_err(backend)?;
    for r in records {
        tx.execute(
            "INSERT INTO public_keys (kid, record) VALUES (?1, ?2)",
            params![r.kid, to_json(r)?],
        )
        .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl PublicKeyStore for SqliteStore {
    async fn public_keys(&self) -> Result<Vec<PublicKeyRecord>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT record FROM public_keys ORDER BY kid")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(backend)?;
        rows.map(|r| from_json(&r.map_err(backend)?)).collect()
    }

    async fn replace_public_keys(&self, records: &[PublicKeyRecord]) -> Result<(), StoreError> {
        let records = records.to_vec();
        self.writer
            .run(move |tx| {
                let sp = tx.savepoint().map_err(backend)?;
                write_public_keys(&sp, &records)?;
                sp.commit().map_err(backend)
            })
            .await
    }
}

#[async_trait]
impl RateLimits for SqliteStore {
    async fn acquire(&self, key: &str, limit: u32, expires_at: i64) -> Result<bool, StoreError> {
        // One statement is atomic: the upsert only counts while below the limit.
        let key = key.to_owned();
        let changed = self
            .writer
            .run(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO rate_counters (key, count, expires_at) VALUES (?1, 1, ?3)
                     ON CONFLICT (key) DO UPDATE SET count = count + 1 WHERE count < ?2",
                )
                .and_then(|mut s| s.execute(params![key, i64::from(limit), expires_at]))
                .map_err(backend)
            })
            .await?;
        Ok(changed == 1)
    }

    async fn increment(&self, key: &str, expires_at: i64) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.writer
            .run(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO rate_counters (key, count, expires_at) VALUES (?1, 1, ?2)
                     ON CONFLICT (key) DO UPDATE SET count = count + 1",
                )
                .and_then(|mut s| s.execute(params![key, expires_at]))
                .map_err(backend)
            })
            .await?;
        Ok(())
    }

    async fn count(&self, key: &str) -> Result<u64, StoreError> {
        let n: Option<i64> = self
            .reader()
            .prepare_cached("SELECT count FROM rate_counters WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(backend)?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATERIAL: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ";

    /// A store whose key set and client record were damaged outside the service.
    fn damaged() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO key_set (id, json) VALUES (1, ?1)",
            [format!(r#"{{"version":1,"keys":["{MATERIAL}"]}}"#)],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO clients (client_id, version, record) VALUES ('c', 1, ?1)",
            [format!(r#"{{"client_id":"c","secrets":"{MATERIAL}"}}"#)],
        )
        .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn parse_errors_never_carry_stored_material() {
        let (_dir, store) = damaged();
        let err = store.load_key_set().await.unwrap_err().to_string();
        assert!(!err.contains(MATERIAL), "{err}");
        assert!(err.contains("line"), "{err}");
        let err = store.get_client("c").await.unwrap_err().to_string();
        assert!(!err.contains(MATERIAL), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[tokio::test]
    async fn a_key_set_replace_from_a_stale_read_conflicts_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("keys.db")).unwrap();
        let schedule = crate::config::ServiceConfig::for_tests().schedule;
        let now = time::OffsetDateTime::now_utc();
        let empty = KeySet::default();
        let first = empty.rotated(now, &schedule).unwrap();
        let rival = empty.rotated(now, &schedule).unwrap();
        store.replace_key_set(&empty, &first).await.unwrap();
        let err = store.replace_key_set(&empty, &rival).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(store.load_key_set().await.unwrap(), first);
        assert_eq!(
            store.public_keys().await.unwrap(),
            first.public_records().unwrap()
        );
    }

    #[test]
    fn every_connection_syncs_each_commit() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(&dir.path().join("sync.db")).unwrap();
        let level: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(level, 2, "synchronous=FULL, not NORMAL (1)");
    }
}
