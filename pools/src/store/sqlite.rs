//! The SQLite store: one file, nothing to start. WAL journal with `synchronous=FULL`, so
//! readers do not block the dispatcher and every commit is on disk (its fsync done) before it
//! returns; every write transaction is `BEGIN IMMEDIATE`, so two processes on one file take
//! turns instead of both claiming.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::plan::{self, Claiming, Waiting};
use super::{
    Candidate, ClaimSql, Claimed, Dialect, Job, JobFilter, JobState, Launch, LaunchEvent,
    LaunchState, NewJob, Outcome, Put, Result, Store, StoreError, admit_all, corrupt, final_event,
    now_ms, of_group, pool_of, requested,
};
use crate::pool::Pool;
use crate::queue::{QueueConfig, Queued};

pub struct SqliteStore {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('pools_revision', 0);
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
    requires TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'claimed', 'done', 'failed', 'cancelled')),
    exit_code INTEGER,
    reason TEXT,
    pool TEXT,
    launch INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    submitted INTEGER NOT NULL,
    claimed_ms INTEGER,
    finished INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(queue, state, priority, user, id);
CREATE INDEX IF NOT EXISTS jobs_by_project ON jobs(queue, state, priority, project, id);
CREATE INDEX IF NOT EXISTS jobs_in_order ON jobs(queue, state, priority, id);
CREATE INDEX IF NOT EXISTS jobs_by_claim ON jobs(queue, claimed_ms);
CREATE TABLE IF NOT EXISTS launches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job INTEGER NOT NULL UNIQUE REFERENCES jobs(id),
    pool TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    events TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS launches_by_pool ON launches(pool, state);
CREATE INDEX IF NOT EXISTS launches_by_state ON launches(state);
";

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store values serialise")
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

fn now_s() -> u64 {
    now_ms() / 1000
}

impl SqliteStore {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Said, not left to the build's default: a claim must be on disk before its launch.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore { conn })
    }

    fn write(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

/// Waiting jobs as the decision sees them.
fn candidates(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Candidate>> {
    let mut st = conn.prepare_cached(sql)?;
    let rows = st.query_map(args, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i32>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, user, project, priority, requires) = row?;
        out.push(Candidate {
            queued: Queued {
                id: id as u64,
                user,
                project,
                priority,
                seq: id as u64,
            },
            requires: parse("job requires", &requires)?,
        });
    }
    Ok(out)
}

fn insert_job(tx: &Transaction<'_>, job: &NewJob) -> Result<u64> {
    tx.prepare_cached(
        "INSERT INTO jobs (queue, user, project, priority, requires, spec, state, submitted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'waiting', ?7)",
    )?
    .execute(params![
            job.queue,
            job.user,
            job.project,
            job.priority,
            json(&job.requires),
            json(job),
        now_s() as i64
    ])?;
    Ok(tx.last_insert_rowid() as u64)
}

/// Writes a pool's or queue's body under its name (tables `pools` and `queues`).
fn put_named(
    tx: &Transaction<'_>,
    kind: &'static str,
    name: &str,
    body: &str,
    how: Put,
) -> Result<()> {
    let sql = how.sql(&format!("{kind}s"), '?');
    if tx.execute(&sql, params![name, body])? == 0 {
        return Err(how.refused(kind, name));
    }
    Ok(())
}

fn bump_revision(tx: &Transaction<'_>) -> Result<()> {
    tx.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'pools_revision'",
        [],
    )?;
    Ok(())
}

fn revision(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT value FROM meta WHERE key = 'pools_revision'",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

fn all_pools(conn: &Connection) -> Result<Vec<Pool>> {
    let mut st = conn.prepare("SELECT body FROM pools ORDER BY name")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|b| parse("pool", &b?)).collect()
}

fn queue_in(conn: &Connection, name: &str) -> Result<QueueConfig> {
    let body: Option<String> = conn
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
    parse("queue", &body)
}

const JOB_COLUMNS: &str =
    "id, spec, state, exit_code, reason, pool, launch, cancel_requested, submitted, finished";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

type JobRow = (
    i64,
    String,
    String,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<i64>,
    bool,
    i64,
    Option<i64>,
);

fn job_of(row: JobRow) -> Result<Job> {
    let (id, spec, state, exit_code, reason, pool, launch, cancel_requested, submitted, finished) =
        row;
    Ok(Job {
        id: id as u64,
        spec: parse::<NewJob>("job", &spec)?,
        state: JobState::parse(&state)?,
        exit_code,
        reason,
        pool,
        launch: launch.map(|l| l as u64),
        cancel_requested,
        submitted: submitted as u64,
        finished: finished.map(|f| f as u64),
    })
}

fn job_in(conn: &Connection, id: u64) -> Result<Job> {
    let row = conn
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row(params![id as i64], job_row)
        .optional()?
        .ok_or(StoreError::NoJob(id))?;
    job_of(row)
}

fn launch_of(r: (i64, i64, String, String, String, String)) -> Result<Launch> {
    let (id, job, pool, name, _state, events) = r;
    let events: Vec<LaunchEvent> = parse("launch timeline", &events)?;
    Ok(Launch {
        id: id as u64,
        job: job as u64,
        pool,
        name,
        state: events.last().map_or(LaunchState::Requested, |e| e.state),
        events,
    })
}

fn launch_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, i64, String, String, String, String)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn launch_of_job(conn: &Connection, job: u64) -> Result<Option<Launch>> {
    conn.query_row(
        "SELECT id, job, pool, name, state, events FROM launches WHERE job = ?1",
        params![job as i64],
        launch_row,
    )
    .optional()?
    .map(launch_of)
    .transpose()
}

/// Waiting jobs of one queue, read inside a claim's transaction.
struct Loader<'a> {
    conn: &'a Connection,
    queue: &'a QueueConfig,
    sql: &'a ClaimSql,
}

impl Waiting for Loader<'_> {
    fn top_priority(&mut self, below: Option<i32>) -> Result<Option<i32>> {
        let top = match below {
            None => self
                .conn
                .prepare_cached(&self.sql.top)?
                .query_row(params![self.queue.name], |r| r.get(0))?,
            Some(b) => self
                .conn
                .prepare_cached(&self.sql.top_below)?
                .query_row(params![self.queue.name, b], |r| r.get(0))?,
        };
        Ok(top)
    }

    fn heads(&mut self, priority: i32) -> Result<Vec<Candidate>> {
        candidates(
            self.conn,
            &self.sql.heads,
            params![self.queue.name, priority],
        )
    }

    fn after(
        &mut self,
        priority: i32,
        group: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Candidate>> {
        let rows = candidates(
            self.conn,
            &self.sql.after,
            params![self.queue.name, priority, group, after as i64, limit as i64],
        )?;
        Ok(of_group(self.queue, group, rows))
    }
}

impl Claiming for Loader<'_> {
    fn running(&mut self) -> Result<u32> {
        Ok(self
            .conn
            .prepare_cached(&self.sql.running)?
            .query_row(params![self.queue.name], |r| r.get(0))?)
    }

    fn pools(&mut self) -> Result<Vec<Pool>> {
        all_pools(self.conn)
    }

    fn claims_since(&mut self, since: u64) -> Result<Vec<(String, String, f64)>> {
        let mut st = self.conn.prepare_cached(&self.sql.usage)?;
        let rows = st.query_map(params![self.queue.name, since as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn pool_running(&mut self) -> Result<BTreeMap<String, u32>> {
        let mut st = self.conn.prepare_cached(self.sql.pool_running)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl Store for SqliteStore {
    fn create_pool(&mut self, p: &Pool) -> Result<()> {
        let tx = self.write()?;
        put_named(&tx, "pool", &p.name, &json(p), Put::Create)?;
        bump_revision(&tx)?;
        tx.commit()?;
        Ok(())
    }

    fn update_pool(&mut self, p: &Pool) -> Result<()> {
        let tx = self.write()?;
        put_named(&tx, "pool", &p.name, &json(p), Put::Update)?;
        bump_revision(&tx)?;
        tx.commit()?;
        Ok(())
    }

    fn delete_pool(&mut self, name: &str) -> Result<()> {
        let tx = self.write()?;
        let busy: u32 = tx.query_row(
            "SELECT COUNT(*) FROM launches WHERE pool = ?1 AND state NOT IN ('stopped', 'failed')",
            params![name],
            |r| r.get(0),
        )?;
        if busy > 0 {
            return Err(StoreError::Busy(name.into()));
        }
        let n = tx.execute("DELETE FROM pools WHERE name = ?1", params![name])?;
        if n == 0 {
            return Err(StoreError::NotFound {
                kind: "pool",
                name: name.into(),
            });
        }
        bump_revision(&tx)?;
        tx.commit()?;
        Ok(())
    }

    fn pools(&mut self) -> Result<Vec<Pool>> {
        all_pools(&self.conn)
    }

    fn pools_revision(&mut self) -> Result<u64> {
        revision(&self.conn)
    }

    fn import_pools(&mut self, upserts: &[Pool], deletes: &[String], expected: u64) -> Result<()> {
        let tx = self.write()?;
        let actual = revision(&tx)?;
        if actual != expected {
            return Err(StoreError::Stale { expected, actual });
        }
        for name in deletes {
            let busy: u32 = tx.query_row(
                "SELECT COUNT(*) FROM launches WHERE pool = ?1 AND state NOT IN ('stopped', 'failed')",
                params![name],
                |r| r.get(0),
            )?;
            if busy > 0 {
                return Err(StoreError::Busy(name.clone()));
            }
            tx.execute("DELETE FROM pools WHERE name = ?1", params![name])?;
        }
        for p in upserts {
            tx.execute(
                "INSERT INTO pools (name, body) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET body = excluded.body",
                params![p.name, json(p)],
            )?;
        }
        if !upserts.is_empty() || !deletes.is_empty() {
            bump_revision(&tx)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn create_queue(&mut self, q: &QueueConfig) -> Result<()> {
        let tx = self.write()?;
        put_named(&tx, "queue", &q.name, &json(q), Put::Create)?;
        tx.commit()?;
        Ok(())
    }

    fn update_queue(&mut self, q: &QueueConfig) -> Result<()> {
        let tx = self.write()?;
        put_named(&tx, "queue", &q.name, &json(q), Put::Update)?;
        tx.commit()?;
        Ok(())
    }

    fn queues(&mut self) -> Result<Vec<QueueConfig>> {
        let mut st = self.conn.prepare("SELECT body FROM queues ORDER BY name")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|b| parse("queue", &b?)).collect()
    }

    fn submit(&mut self, job: &NewJob) -> Result<u64> {
        Ok(self.submit_many(std::slice::from_ref(job))?[0])
    }

    fn submit_many(&mut self, jobs: &[NewJob]) -> Result<Vec<u64>> {
        let tx = self.write()?;
        admit_all(jobs, &all_pools(&tx)?, |name| {
            let waiting = tx.query_row(
                "SELECT COUNT(*) FROM jobs WHERE queue = ?1 AND state = 'waiting'",
                params![name],
                |r| r.get(0),
            )?;
            Ok((queue_in(&tx, name)?, waiting))
        })?;
        let ids = jobs
            .iter()
            .map(|job| insert_job(&tx, job))
            .collect::<Result<_>>()?;
        tx.commit()?;
        Ok(ids)
    }

    fn job(&mut self, id: u64) -> Result<Job> {
        job_in(&self.conn, id)
    }

    fn launch_of(&mut self, job: u64) -> Result<Option<Launch>> {
        launch_of_job(&self.conn, job)
    }

    fn counts(&mut self, queue: &str) -> Result<BTreeMap<JobState, u32>> {
        let mut st = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM jobs WHERE queue = ?1 GROUP BY state")?;
        let rows = st.query_map(params![queue], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (state, n) = row?;
            out.insert(JobState::parse(&state)?, n);
        }
        Ok(out)
    }

    fn jobs(&mut self, f: &JobFilter) -> Result<Vec<Job>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR user = ?3) ORDER BY id DESC LIMIT ?4"
        ))?;
        let rows = st.query_map(
            params![
                f.queue,
                f.state.map(JobState::as_str),
                f.user,
                f.limit.map_or(-1, i64::from)
            ],
            job_row,
        )?;
        rows.map(|r| job_of(r?)).collect()
    }

    fn cancel(&mut self, id: u64) -> Result<Job> {
        let tx = self.write()?;
        let job = job_in(&tx, id)?;
        match job.state {
            JobState::Waiting => {
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', reason = 'cancelled before it started', finished = ?2 WHERE id = ?1",
                    params![id as i64, now_s() as i64],
                )?;
            }
            JobState::Claimed => {
                tx.execute(
                    "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1",
                    params![id as i64],
                )?;
            }
            state => return Err(StoreError::Finished { id, state }),
        }
        let job = job_in(&tx, id)?;
        tx.commit()?;
        Ok(job)
    }

    fn claim_many(&mut self, queue: &str, max: usize) -> Result<Vec<Claimed>> {
        let tx = self.write()?;
        let q = queue_in(&tx, queue)?;
        let sql = ClaimSql::new(q.fairness, Dialect::Sqlite);
        let planned = plan::claims(
            &q,
            max,
            &mut Loader {
                conn: &tx,
                queue: &q,
                sql: &sql,
            },
        )?;
        let mut out = Vec::with_capacity(planned.len());
        for (c, pool) in planned {
            let id = c.queued.id;
            let mut launch = requested(0, id, &pool.name);
            tx.prepare_cached(
                "INSERT INTO launches (job, pool, name, state, events) VALUES (?1, ?2, ?3, 'requested', ?4)",
            )?
            .execute(params![
                id as i64,
                pool.name,
                launch.name,
                json(&launch.events)
            ])?;
            launch.id = tx.last_insert_rowid() as u64;
            let changed = tx
                .prepare_cached(
                    "UPDATE jobs SET state = 'claimed', pool = ?2, launch = ?3, claimed_ms = ?4 WHERE id = ?1 AND state = 'waiting'",
                )?
                .execute(params![id as i64, pool.name, launch.id as i64, now_ms() as i64])?;
            if changed != 1 {
                return Err(corrupt("job", format!("job {id} changed during its claim")));
            }
            out.push(Claimed {
                job: job_in(&tx, id)?,
                pool,
                launch,
            });
        }
        tx.commit()?;
        Ok(out)
    }

    fn launch_event(
        &mut self,
        launch: u64,
        state: LaunchState,
        detail: Option<&str>,
    ) -> Result<()> {
        let tx = self.write()?;
        let events: Option<String> = tx
            .query_row(
                "SELECT events FROM launches WHERE id = ?1",
                params![launch as i64],
                |r| r.get(0),
            )
            .optional()?;
        let Some(events) = events else {
            return Err(StoreError::NotFound {
                kind: "launch",
                name: launch.to_string(),
            });
        };
        let mut events: Vec<LaunchEvent> = parse("launch timeline", &events)?;
        events.push(LaunchEvent {
            state,
            at: now_ms(),
            detail: detail.map(String::from),
        });
        tx.execute(
            "UPDATE launches SET state = ?2, events = ?3 WHERE id = ?1",
            params![launch as i64, state.as_str(), json(&events)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn finish(&mut self, job: u64, outcome: &Outcome) -> Result<()> {
        let tx = self.write()?;
        let changed = tx.execute(
            "UPDATE jobs SET state = ?2, exit_code = ?3, reason = ?4, finished = ?5 WHERE id = ?1 AND state = 'claimed'",
            params![
                job as i64,
                outcome.state.as_str(),
                outcome.exit_code,
                outcome.reason,
                now_s() as i64
            ],
        )?;
        if changed == 1
            && let Some(l) = launch_of_job(&tx, job)?
            && !l.state.is_final()
        {
            let mut events = l.events;
            let end = final_event(outcome);
            let state = end.state;
            events.push(end);
            tx.execute(
                "UPDATE launches SET state = ?2, events = ?3 WHERE id = ?1",
                params![l.id as i64, state.as_str(), json(&events)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn active(&mut self) -> Result<Vec<Claimed>> {
        let ids: Vec<i64> = {
            let mut st = self
                .conn
                .prepare("SELECT id FROM jobs WHERE state = 'claimed' ORDER BY id")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let pools: BTreeMap<String, Pool> = all_pools(&self.conn)?
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        let mut out = Vec::new();
        for id in ids {
            let job = job_in(&self.conn, id as u64)?;
            let launch = launch_of_job(&self.conn, id as u64)?
                .ok_or_else(|| corrupt("job", format!("claimed job {id} has no launch")))?;
            let pool = pool_of(&pools, &launch);
            out.push(Claimed { job, pool, launch });
        }
        Ok(out)
    }

    fn launches(&mut self, pool: Option<&str>, limit: u32) -> Result<Vec<Launch>> {
        let mut st = self.conn.prepare(
            "SELECT id, job, pool, name, state, events FROM launches WHERE (?1 IS NULL OR pool = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![pool, i64::from(limit)], launch_row)?;
        rows.map(|r| launch_of(r?)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_on_disk_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("mc.db")).unwrap();
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let synchronous: i64 = s
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        // 2 is FULL: in WAL mode, every commit syncs the log.
        assert_eq!((mode.as_str(), synchronous), ("wal", 2));
    }
}
