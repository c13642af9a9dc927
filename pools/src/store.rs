//! The control plane's state behind one interface. SQLite (a file, nothing to start) here;
//! every change is one transaction, so a killed control plane leaves either the whole change
//! or none of it — a job is never both waiting and claimed, nor claimed twice.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::queue::{Fairness, QueueConfig, QueueState, Queued, Refusal, admit, next};
use crate::routing::Pool;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{kind} {name} already exists (fix: pick another name, or update it)")]
    Exists { kind: &'static str, name: String },
    #[error("no {kind} named {name} (fix: list them with `minicluster {kind}s list`)")]
    NotFound { kind: &'static str, name: String },
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("stored {what} is not valid JSON: {reason}")]
    Corrupt { what: String, reason: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A job as submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    pub queue: String,
    pub user: String,
    pub project: String,
    pub priority: i32,
    pub command: Vec<String>,
}

/// A job handed to a launch: its id and the launch record made in the same transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    pub job: u64,
    pub launch: u64,
    pub command: Vec<String>,
}

pub struct SqliteStore {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pools (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL REFERENCES queues(name),
    user TEXT NOT NULL,
    project TEXT NOT NULL,
    priority INTEGER NOT NULL,
    command TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'claimed', 'done')),
    exit_code INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(queue, state);
CREATE TABLE IF NOT EXISTS launches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job INTEGER NOT NULL UNIQUE REFERENCES jobs(id),
    state TEXT NOT NULL
);
";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: e.to_string(),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        // WAL: readers do not block the dispatcher; a crash keeps every committed transaction.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore { conn })
    }

    pub fn create_pool(&mut self, p: &Pool) -> Result<()> {
        let body = serde_json::to_string(p).expect("a pool serialises");
        let n = self.conn.execute(
            "INSERT INTO pools (name, body) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![p.name, body],
        )?;
        if n == 0 {
            return Err(StoreError::Exists {
                kind: "pool",
                name: p.name.clone(),
            });
        }
        Ok(())
    }

    pub fn pools(&self) -> Result<Vec<Pool>> {
        let mut st = self.conn.prepare("SELECT body FROM pools ORDER BY name")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|b| {
            let b = b?;
            serde_json::from_str(&b).map_err(|e| corrupt("pool", e))
        })
        .collect()
    }

    pub fn create_queue(&mut self, q: &QueueConfig) -> Result<()> {
        let body = serde_json::to_string(q).expect("a queue serialises");
        let n = self.conn.execute(
            "INSERT INTO queues (name, body) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![q.name, body],
        )?;
        if n == 0 {
            return Err(StoreError::Exists {
                kind: "queue",
                name: q.name.clone(),
            });
        }
        Ok(())
    }

    /// Pause, resume or drain a queue.
    pub fn set_queue_state(&mut self, name: &str, state: QueueState) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut q = queue_in(&tx, name)?;
        q.state = state;
        tx.execute(
            "UPDATE queues SET body = ?2 WHERE name = ?1",
            params![name, serde_json::to_string(&q).expect("a queue serialises")],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Admits a job to its queue (refused when the queue is missing, full or draining).
    pub fn submit(&mut self, job: &NewJob) -> Result<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let q = queue_in(&tx, &job.queue)?;
        let waiting: u32 = tx.query_row(
            "SELECT COUNT(*) FROM jobs WHERE queue = ?1 AND state = 'waiting'",
            params![job.queue],
            |r| r.get(0),
        )?;
        admit(&q, waiting)?;
        tx.execute(
            "INSERT INTO jobs (queue, user, project, priority, command, state) VALUES (?1, ?2, ?3, ?4, ?5, 'waiting')",
            params![
                job.queue,
                job.user,
                job.project,
                job.priority,
                serde_json::to_string(&job.command).expect("a command serialises")
            ],
        )?;
        let id = tx.last_insert_rowid() as u64;
        tx.commit()?;
        Ok(id)
    }

    /// Claims the next job of a queue and records its launch, in one transaction: either both
    /// happen or neither.
    pub fn claim(&mut self, queue: &str) -> Result<Option<Claimed>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let q = queue_in(&tx, queue)?;
        let running: u32 = tx.query_row(
            "SELECT COUNT(*) FROM jobs WHERE queue = ?1 AND state = 'claimed'",
            params![queue],
            |r| r.get(0),
        )?;
        let waiting: Vec<Queued> = {
            let mut st = tx.prepare(
                "SELECT id, user, project, priority FROM jobs WHERE queue = ?1 AND state = 'waiting'",
            )?;
            let rows = st.query_map(params![queue], |r| {
                let id: i64 = r.get(0)?;
                Ok(Queued {
                    id: id as u64,
                    user: r.get(1)?,
                    project: r.get(2)?,
                    priority: r.get(3)?,
                    seq: id as u64,
                })
            })?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        // Recent usage: what each user or project has claimed.
        let column = if q.fairness == Fairness::Projects {
            "project"
        } else {
            "user"
        };
        let usage: BTreeMap<String, f64> = {
            let mut st = tx.prepare(&format!(
                "SELECT {column}, COUNT(*) FROM jobs WHERE queue = ?1 AND state != 'waiting' GROUP BY {column}"
            ))?;
            let rows = st.query_map(params![queue], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
            })?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        let Some(pick) = next(&q, &waiting, running, &usage).cloned() else {
            return Ok(None);
        };
        let changed = tx.execute(
            "UPDATE jobs SET state = 'claimed' WHERE id = ?1 AND state = 'waiting'",
            params![pick.id as i64],
        )?;
        debug_assert_eq!(changed, 1, "the transaction holds the write lock");
        tx.execute(
            "INSERT INTO launches (job, state) VALUES (?1, 'requested')",
            params![pick.id as i64],
        )?;
        let launch = tx.last_insert_rowid() as u64;
        let command: String = tx.query_row(
            "SELECT command FROM jobs WHERE id = ?1",
            params![pick.id as i64],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(Some(Claimed {
            job: pick.id,
            launch,
            command: serde_json::from_str(&command).map_err(|e| corrupt("job command", e))?,
        }))
    }

    /// Records a finished job.
    pub fn finish(&mut self, job: u64, exit_code: i32) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE jobs SET state = 'done', exit_code = ?2 WHERE id = ?1 AND state = 'claimed'",
            params![job as i64, exit_code],
        )?;
        tx.execute(
            "UPDATE launches SET state = 'stopped' WHERE job = ?1",
            params![job as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Jobs by state, for a queue: (waiting, claimed, done).
    pub fn counts(&self, queue: &str) -> Result<(u32, u32, u32)> {
        let count = |state: &str| -> Result<u32> {
            Ok(self.conn.query_row(
                "SELECT COUNT(*) FROM jobs WHERE queue = ?1 AND state = ?2",
                params![queue, state],
                |r| r.get(0),
            )?)
        };
        Ok((count("waiting")?, count("claimed")?, count("done")?))
    }
}

fn queue_in(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<QueueConfig> {
    let body: Option<String> = tx
        .query_row(
            "SELECT body FROM queues WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()?;
    let body = body.ok_or_else(|| StoreError::NotFound {
        kind: "queue",
        name: name.into(),
    })?;
    serde_json::from_str(&body).map_err(|e| corrupt("queue", e))
}
