//! The PostgreSQL store (a shared deployment): the same tables and transactions as
//! [`super::sqlite`], and the same decisions ([`super::decide`] and [`crate::queue`]).
//!
//! Every write transaction starts with `pg_advisory_xact_lock(WRITE_LOCK)`, so the writes of
//! all control planes on one database take turns, as `BEGIN IMMEDIATE` makes them on a SQLite
//! file. Why a lock and not SERIALIZABLE with retry: a claim reads every waiting job of its
//! queue, the usage of the last hour and the running launches of every pool, so two claims at
//! once always overlap and one of them would always be retried; waiting for the lock costs
//! the same as that retry without a retry loop in every method or any serialisation failure
//! to tell apart from a real error. Writes are short (no I/O but the database inside them),
//! so one writer at a time is not what limits a control plane. The transactions are READ
//! COMMITTED: each statement after the lock sees everything the previous holder committed
//! (a REPEATABLE READ snapshot would be taken before the wait and miss it).
//!
//! A claim takes a batch under one lock and one commit, and its statements are prepared once
//! per connection: each is then one round trip, and the batch's writes are one statement
//! each (arrays of the claimed jobs), not one per job.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ::postgres::types::ToSql;
use ::postgres::{
    Client, Config, GenericClient, IsolationLevel, NoTls, Row, Statement, Transaction,
};

use super::plan::{self, Claiming, Waiting};
use super::{
    Candidate, ClaimSql, Claimed, Dialect, Job, JobFilter, JobState, Launch, LaunchEvent,
    LaunchState, NewJob, Outcome, Put, Result, Store, StoreError, admit_all, corrupt, final_event,
    now_ms, of_group, pool_of, requested,
};
use crate::pool::Pool;
use crate::queue::{QueueConfig, Queued};

/// The advisory lock key every write transaction takes ("mcpools" and a version byte).
/// Advisory locks are per database, so stores on different databases do not wait for each
/// other.
const WRITE_LOCK: i64 = 0x6d63_706f_6f6c_7301;

/// How long a write waits for the lock before it fails (SQLite's busy timeout).
const LOCK_TIMEOUT: &str = "10s";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PostgresStore {
    client: Client,
    prepared: Prepared,
}

/// Statements prepared on this connection, by their text: parsed and planned once, then one
/// round trip per use (a statement given as text costs three: prepare, execute, close).
/// Prepared statements belong to the session, not to a transaction.
#[derive(Default)]
struct Prepared(HashMap<String, Statement>);

impl Prepared {
    fn get(&mut self, c: &mut impl GenericClient, sql: &str) -> Result<Statement> {
        if let Some(st) = self.0.get(sql) {
            return Ok(st.clone());
        }
        let st = c.prepare(sql)?;
        self.0.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('pools_revision', 0) ON CONFLICT (key) DO NOTHING;
CREATE TABLE IF NOT EXISTS pools (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id BIGSERIAL PRIMARY KEY,
    queue TEXT NOT NULL REFERENCES queues(name),
    "user" TEXT NOT NULL,
    project TEXT NOT NULL,
    priority INTEGER NOT NULL,
    requires TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'claimed', 'done', 'failed', 'cancelled')),
    exit_code INTEGER,
    reason TEXT,
    pool TEXT,
    launch BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    submitted BIGINT NOT NULL,
    claimed_ms BIGINT,
    finished BIGINT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(queue, state, priority, "user", id);
CREATE INDEX IF NOT EXISTS jobs_by_project ON jobs(queue, state, priority, project, id);
CREATE INDEX IF NOT EXISTS jobs_in_order ON jobs(queue, state, priority, id);
CREATE INDEX IF NOT EXISTS jobs_by_claim ON jobs(queue, claimed_ms);
CREATE TABLE IF NOT EXISTS launches (
    id BIGSERIAL PRIMARY KEY,
    job BIGINT NOT NULL UNIQUE REFERENCES jobs(id),
    pool TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    events TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS launches_by_pool ON launches(pool, state);
CREATE INDEX IF NOT EXISTS launches_by_state ON launches(state);
"#;

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store values serialise")
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

fn now_s() -> u64 {
    now_ms() / 1000
}

/// A PostgreSQL error with its cause, for [`StoreError`]'s message: the error's own text is
/// only its kind ("db error", "error connecting to server"); the cause says what happened.
/// Neither contains the connection URL.
pub(crate) fn describe(e: &::postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// A database URL (or `key=value` connection string) fit for a message: a password, in the
/// user info or as a `password` parameter, becomes `***`.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme) = out.find("://") {
        let start = scheme + 3;
        // Everything from the first ':' of the user info to the last '@' may be password
        // (an unescaped '@' or '/' in it included): hide all of it.
        if let Some(at) = out[start..].rfind('@').map(|i| start + i)
            && let Some(colon) = out[start..at].find(':').map(|i| start + i)
        {
            out.replace_range(colon + 1..at, "***");
        }
    }
    let mut from = 0;
    while let Some(i) = out[from..].to_ascii_lowercase().find("password=") {
        let value = from + i + "password=".len();
        let rest = &out[value..];
        let end = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => rest[1..].find(q).map_or(rest.len(), |j| j + 2),
            _ => rest
                .find(|c: char| c == '&' || c.is_whitespace())
                .unwrap_or(rest.len()),
        };
        out.replace_range(value..value + end, "***");
        from = value + 3;
    }
    out
}

/// The URL of database `db` on the server `url` names, its user, host, port and parameters
/// kept: for tools and tests that make databases of their own.
pub fn on_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl PostgresStore {
    /// Connects (without TLS) to the database a `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
    /// URL names and creates the tables it lacks.
    pub fn connect(url: &str) -> Result<Self> {
        let mut config: Config = url.parse().map_err(|_| StoreError::Url(redact(url)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("minicluster");
        }
        let client = config.connect(NoTls)?;
        let mut store = PostgresStore {
            client,
            prepared: Prepared::default(),
        };
        // Under the write lock: two control planes starting on an empty database would
        // otherwise race to create the same tables (and one would fail).
        let mut tx = store.write()?;
        tx.batch_execute(SCHEMA)?;
        tx.commit()?;
        Ok(store)
    }

    fn write(&mut self) -> Result<Transaction<'_>> {
        write(&mut self.client)
    }

    /// A read-only transaction: one snapshot for all its statements.
    fn read(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?)
    }
}

/// A write transaction: READ COMMITTED, holding the write lock.
fn write(client: &mut Client) -> Result<Transaction<'_>> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
    ))?;
    Ok(tx)
}

fn count(r: &Row, idx: usize) -> Result<u32> {
    let n: i64 = r.try_get(idx)?;
    u32::try_from(n).map_err(|e| corrupt("count", e))
}

fn count_one(c: &mut impl GenericClient, sql: &str, name: &str) -> Result<u32> {
    count(&c.query_one(sql, &[&name])?, 0)
}

fn bump_revision(c: &mut impl GenericClient) -> Result<()> {
    c.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'pools_revision'",
        &[],
    )?;
    Ok(())
}

fn revision(c: &mut impl GenericClient) -> Result<u64> {
    let r = c.query_one("SELECT value FROM meta WHERE key = 'pools_revision'", &[])?;
    Ok(r.try_get::<_, i64>(0)? as u64)
}

fn all_pools(c: &mut impl GenericClient) -> Result<Vec<Pool>> {
    c.query("SELECT body FROM pools ORDER BY name", &[])?
        .iter()
        .map(|r| parse("pool", r.try_get(0)?))
        .collect()
}

fn queue_in(c: &mut impl GenericClient, name: &str) -> Result<QueueConfig> {
    let row = c
        .query_opt("SELECT body FROM queues WHERE name = $1", &[&name])?
        .ok_or_else(|| StoreError::NotFound {
            kind: "queue",
            name: name.into(),
        })?;
    parse("queue", row.try_get(0)?)
}

const BUSY: &str =
    "SELECT COUNT(*) FROM launches WHERE pool = $1 AND state NOT IN ('stopped', 'failed')";

const JOB_COLUMNS: &str =
    "id, spec, state, exit_code, reason, pool, launch, cancel_requested, submitted, finished";

fn job_of(r: &Row) -> Result<Job> {
    Ok(Job {
        id: r.try_get::<_, i64>(0)? as u64,
        spec: parse::<NewJob>("job", r.try_get(1)?)?,
        state: JobState::parse(r.try_get(2)?)?,
        exit_code: r.try_get(3)?,
        reason: r.try_get(4)?,
        pool: r.try_get(5)?,
        launch: r.try_get::<_, Option<i64>>(6)?.map(|l| l as u64),
        cancel_requested: r.try_get(7)?,
        submitted: r.try_get::<_, i64>(8)? as u64,
        finished: r.try_get::<_, Option<i64>>(9)?.map(|f| f as u64),
    })
}

fn job_in(c: &mut impl GenericClient, id: u64) -> Result<Job> {
    let row = c
        .query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
            &[&(id as i64)],
        )?
        .ok_or(StoreError::NoJob(id))?;
    job_of(&row)
}

const LAUNCH_COLUMNS: &str = "id, job, pool, name, state, events";

fn launch_of(r: &Row) -> Result<Launch> {
    let events: Vec<LaunchEvent> = parse("launch timeline", r.try_get(5)?)?;
    Ok(Launch {
        id: r.try_get::<_, i64>(0)? as u64,
        job: r.try_get::<_, i64>(1)? as u64,
        pool: r.try_get(2)?,
        name: r.try_get(3)?,
        state: events.last().map_or(LaunchState::Requested, |e| e.state),
        events,
    })
}

fn launch_of_job(c: &mut impl GenericClient, job: u64) -> Result<Option<Launch>> {
    c.query_opt(
        &format!("SELECT {LAUNCH_COLUMNS} FROM launches WHERE job = $1"),
        &[&(job as i64)],
    )?
    .as_ref()
    .map(launch_of)
    .transpose()
}

/// Writes a pool's or queue's body under its name (tables `pools` and `queues`).
fn put_named(
    tx: &mut Transaction<'_>,
    kind: &'static str,
    name: &str,
    body: &str,
    how: Put,
) -> Result<()> {
    let sql = how.sql(&format!("{kind}s"), '$');
    if tx.execute(&sql, &[&name, &body])? == 0 {
        return Err(how.refused(kind, name));
    }
    Ok(())
}

/// Waiting jobs as the decision sees them.
fn candidates(
    tx: &mut Transaction<'_>,
    st: &Statement,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for r in tx.query(st, args)? {
        let id = r.try_get::<_, i64>(0)? as u64;
        out.push(Candidate {
            queued: Queued {
                id,
                user: r.try_get(1)?,
                project: r.try_get(2)?,
                priority: r.try_get(3)?,
                seq: id,
            },
            requires: parse("job requires", r.try_get(4)?)?,
        });
    }
    Ok(out)
}

/// Waiting jobs of one queue, read inside a claim's transaction.
struct Loader<'a, 't> {
    tx: &'a mut Transaction<'t>,
    prepared: &'a mut Prepared,
    queue: &'a QueueConfig,
    sql: &'a ClaimSql,
}

impl Waiting for Loader<'_, '_> {
    fn top_priority(&mut self, below: Option<i32>) -> Result<Option<i32>> {
        let row = match below {
            None => {
                let st = self.prepared.get(self.tx, &self.sql.top)?;
                self.tx.query_one(&st, &[&self.queue.name])?
            }
            Some(b) => {
                let st = self.prepared.get(self.tx, &self.sql.top_below)?;
                self.tx.query_one(&st, &[&self.queue.name, &b])?
            }
        };
        Ok(row.try_get(0)?)
    }

    fn heads(&mut self, priority: i32) -> Result<Vec<Candidate>> {
        let st = self.prepared.get(self.tx, &self.sql.heads)?;
        candidates(self.tx, &st, &[&self.queue.name, &priority])
    }

    fn after(
        &mut self,
        priority: i32,
        group: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Candidate>> {
        let st = self.prepared.get(self.tx, &self.sql.after)?;
        let rows = candidates(
            self.tx,
            &st,
            &[
                &self.queue.name,
                &priority,
                &group,
                &(after as i64),
                &(limit as i64),
            ],
        )?;
        Ok(of_group(self.queue, group, rows))
    }
}

impl Claiming for Loader<'_, '_> {
    fn running(&mut self) -> Result<u32> {
        let st = self.prepared.get(self.tx, &self.sql.running)?;
        count(&self.tx.query_one(&st, &[&self.queue.name])?, 0)
    }

    fn pools(&mut self) -> Result<Vec<Pool>> {
        all_pools(self.tx)
    }

    fn claims_since(&mut self, since: u64) -> Result<Vec<(String, String, f64)>> {
        let st = self.prepared.get(self.tx, &self.sql.usage)?;
        self.tx
            .query(&st, &[&self.queue.name, &(since as i64)])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<_, i64>(2)? as f64)))
            .collect()
    }

    fn pool_running(&mut self) -> Result<BTreeMap<String, u32>> {
        let st = self.prepared.get(self.tx, self.sql.pool_running)?;
        self.tx
            .query(&st, &[])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, count(r, 1)?)))
            .collect()
    }
}

/// Inserts jobs already admitted, many rows per statement.
fn insert_jobs(tx: &mut Transaction<'_>, jobs: &[NewJob]) -> Result<Vec<u64>> {
    let mut ids = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(1000) {
        let column = |f: fn(&NewJob) -> String| chunk.iter().map(f).collect::<Vec<String>>();
        let priorities: Vec<i32> = chunk.iter().map(|j| j.priority).collect();
        let rows = tx.query(
            r#"INSERT INTO jobs (queue, "user", project, priority, requires, spec, state, submitted)
               SELECT queue, u, project, priority, requires, spec, 'waiting', $7
               FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::INTEGER[], $5::TEXT[], $6::TEXT[])
                   WITH ORDINALITY AS j(queue, u, project, priority, requires, spec, n)
               ORDER BY n
               RETURNING id"#,
            &[
                &column(|j| j.queue.clone()),
                &column(|j| j.user.clone()),
                &column(|j| j.project.clone()),
                &priorities,
                &column(|j| json(&j.requires)),
                &column(json),
                &(now_s() as i64),
            ],
        )?;
        let mut got = rows
            .iter()
            .map(|r| Ok(r.try_get::<_, i64>(0)? as u64))
            .collect::<Result<Vec<u64>>>()?;
        // Ids come from one sequence in insertion order; sorted, they are the jobs' in order.
        got.sort_unstable();
        ids.extend(got);
    }
    Ok(ids)
}

impl Store for PostgresStore {
    fn create_pool(&mut self, p: &Pool) -> Result<()> {
        let mut tx = self.write()?;
        put_named(&mut tx, "pool", &p.name, &json(p), Put::Create)?;
        bump_revision(&mut tx)?;
        tx.commit()?;
        Ok(())
    }

    fn update_pool(&mut self, p: &Pool) -> Result<()> {
        let mut tx = self.write()?;
        put_named(&mut tx, "pool", &p.name, &json(p), Put::Update)?;
        bump_revision(&mut tx)?;
        tx.commit()?;
        Ok(())
    }

    fn delete_pool(&mut self, name: &str) -> Result<()> {
        let mut tx = self.write()?;
        if count_one(&mut tx, BUSY, name)? > 0 {
            return Err(StoreError::Busy(name.into()));
        }
        let n = tx.execute("DELETE FROM pools WHERE name = $1", &[&name])?;
        if n == 0 {
            return Err(StoreError::NotFound {
                kind: "pool",
                name: name.into(),
            });
        }
        bump_revision(&mut tx)?;
        tx.commit()?;
        Ok(())
    }

    fn pools(&mut self) -> Result<Vec<Pool>> {
        let mut tx = self.read()?;
        let pools = all_pools(&mut tx)?;
        tx.commit()?;
        Ok(pools)
    }

    fn pools_revision(&mut self) -> Result<u64> {
        let mut tx = self.read()?;
        let rev = revision(&mut tx)?;
        tx.commit()?;
        Ok(rev)
    }

    fn import_pools(&mut self, upserts: &[Pool], deletes: &[String], expected: u64) -> Result<()> {
        let mut tx = self.write()?;
        let actual = revision(&mut tx)?;
        if actual != expected {
            return Err(StoreError::Stale { expected, actual });
        }
        for name in deletes {
            if count_one(&mut tx, BUSY, name)? > 0 {
                return Err(StoreError::Busy(name.clone()));
            }
            tx.execute("DELETE FROM pools WHERE name = $1", &[name])?;
        }
        for p in upserts {
            tx.execute(
                "INSERT INTO pools (name, body) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET body = excluded.body",
                &[&p.name, &json(p)],
            )?;
        }
        if !upserts.is_empty() || !deletes.is_empty() {
            bump_revision(&mut tx)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn create_queue(&mut self, q: &QueueConfig) -> Result<()> {
        let mut tx = self.write()?;
        put_named(&mut tx, "queue", &q.name, &json(q), Put::Create)?;
        tx.commit()?;
        Ok(())
    }

    fn update_queue(&mut self, q: &QueueConfig) -> Result<()> {
        let mut tx = self.write()?;
        put_named(&mut tx, "queue", &q.name, &json(q), Put::Update)?;
        tx.commit()?;
        Ok(())
    }

    fn queues(&mut self) -> Result<Vec<QueueConfig>> {
        let mut tx = self.read()?;
        let queues = tx
            .query("SELECT body FROM queues ORDER BY name", &[])?
            .iter()
            .map(|r| parse("queue", r.try_get(0)?))
            .collect::<Result<_>>()?;
        tx.commit()?;
        Ok(queues)
    }

    fn submit(&mut self, job: &NewJob) -> Result<u64> {
        Ok(self.submit_many(std::slice::from_ref(job))?[0])
    }

    fn submit_many(&mut self, jobs: &[NewJob]) -> Result<Vec<u64>> {
        let mut tx = self.write()?;
        let pools = all_pools(&mut tx)?;
        admit_all(jobs, &pools, |name| {
            let waiting = count_one(
                &mut tx,
                "SELECT COUNT(*) FROM jobs WHERE queue = $1 AND state = 'waiting'",
                name,
            )?;
            Ok((queue_in(&mut tx, name)?, waiting))
        })?;
        let ids = insert_jobs(&mut tx, jobs)?;
        tx.commit()?;
        Ok(ids)
    }

    fn job(&mut self, id: u64) -> Result<Job> {
        let mut tx = self.read()?;
        let job = job_in(&mut tx, id)?;
        tx.commit()?;
        Ok(job)
    }

    fn launch_of(&mut self, job: u64) -> Result<Option<Launch>> {
        let mut tx = self.read()?;
        let launch = launch_of_job(&mut tx, job)?;
        tx.commit()?;
        Ok(launch)
    }

    fn counts(&mut self, queue: &str) -> Result<BTreeMap<JobState, u32>> {
        let mut tx = self.read()?;
        let mut out = BTreeMap::new();
        for r in tx.query(
            "SELECT state, COUNT(*) FROM jobs WHERE queue = $1 GROUP BY state",
            &[&queue],
        )? {
            out.insert(JobState::parse(r.try_get(0)?)?, count(&r, 1)?);
        }
        tx.commit()?;
        Ok(out)
    }

    fn jobs(&mut self, f: &JobFilter) -> Result<Vec<Job>> {
        let mut tx = self.read()?;
        let rows = tx.query(
            &format!(
                r#"SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::TEXT IS NULL OR queue = $1) AND ($2::TEXT IS NULL OR state = $2) AND ($3::TEXT IS NULL OR "user" = $3) ORDER BY id DESC LIMIT $4"#
            ),
            &[
                &f.queue,
                &f.state.map(JobState::as_str),
                &f.user,
                &f.limit.map(i64::from),
            ],
        )?;
        let jobs = rows.iter().map(job_of).collect::<Result<_>>()?;
        tx.commit()?;
        Ok(jobs)
    }

    fn cancel(&mut self, id: u64) -> Result<Job> {
        let mut tx = self.write()?;
        let job = job_in(&mut tx, id)?;
        match job.state {
            JobState::Waiting => {
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', reason = 'cancelled before it started', finished = $2 WHERE id = $1",
                    &[&(id as i64), &(now_s() as i64)],
                )?;
            }
            JobState::Claimed => {
                tx.execute(
                    "UPDATE jobs SET cancel_requested = TRUE WHERE id = $1",
                    &[&(id as i64)],
                )?;
            }
            state => return Err(StoreError::Finished { id, state }),
        }
        let job = job_in(&mut tx, id)?;
        tx.commit()?;
        Ok(job)
    }

    fn claim_many(&mut self, queue: &str, max: usize) -> Result<Vec<Claimed>> {
        let PostgresStore { client, prepared } = self;
        let mut tx = write(client)?;
        let q = queue_in(&mut tx, queue)?;
        let sql = ClaimSql::new(q.fairness, Dialect::Postgres);
        let planned = plan::claims(
            &q,
            max,
            &mut Loader {
                tx: &mut tx,
                prepared,
                queue: &q,
                sql: &sql,
            },
        )?;
        if planned.is_empty() {
            return Ok(Vec::new());
        }
        // The batch in three statements: its launch records, its jobs claimed, the jobs read.
        let mut launches: Vec<Launch> = planned
            .iter()
            .map(|(c, p)| requested(0, c.queued.id, &p.name))
            .collect();
        let jobs: Vec<i64> = launches.iter().map(|l| l.job as i64).collect();
        let pool_names: Vec<&str> = planned.iter().map(|(_, p)| p.name.as_str()).collect();
        let names: Vec<&str> = launches.iter().map(|l| l.name.as_str()).collect();
        let events: Vec<String> = launches.iter().map(|l| json(&l.events)).collect();
        let st = prepared.get(
            &mut tx,
            "INSERT INTO launches (job, pool, name, state, events)
             SELECT job, pool, name, 'requested', events
             FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[]) AS l(job, pool, name, events)
             RETURNING job, id",
        )?;
        let ids: HashMap<i64, i64> = tx
            .query(&st, &[&jobs, &pool_names, &names, &events])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_>>()?;
        for l in &mut launches {
            l.id = ids[&(l.job as i64)] as u64;
        }
        let launch_ids: Vec<i64> = launches.iter().map(|l| l.id as i64).collect();
        let st = prepared.get(
            &mut tx,
            "UPDATE jobs SET state = 'claimed', pool = c.pool, launch = c.launch, claimed_ms = $4
             FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) AS c(id, pool, launch)
             WHERE jobs.id = c.id AND jobs.state = 'waiting'",
        )?;
        let changed = tx.execute(&st, &[&jobs, &pool_names, &launch_ids, &(now_ms() as i64)])?;
        if changed != jobs.len() as u64 {
            return Err(corrupt(
                "jobs",
                format!(
                    "{} of {} jobs changed during their claim",
                    jobs.len() as u64 - changed,
                    jobs.len()
                ),
            ));
        }
        let st = prepared.get(
            &mut tx,
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY($1)"),
        )?;
        let mut claimed: HashMap<u64, Job> = tx
            .query(&st, &[&jobs])?
            .iter()
            .map(|r| job_of(r).map(|j| (j.id, j)))
            .collect::<Result<_>>()?;
        tx.commit()?;
        planned
            .into_iter()
            .zip(launches)
            .map(|((c, pool), launch)| {
                let job = claimed.remove(&c.queued.id).ok_or_else(|| {
                    corrupt("job", format!("claimed job {} vanished", c.queued.id))
                })?;
                Ok(Claimed { job, pool, launch })
            })
            .collect()
    }

    fn launch_event(
        &mut self,
        launch: u64,
        state: LaunchState,
        detail: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.write()?;
        let Some(row) = tx.query_opt(
            "SELECT events FROM launches WHERE id = $1",
            &[&(launch as i64)],
        )?
        else {
            return Err(StoreError::NotFound {
                kind: "launch",
                name: launch.to_string(),
            });
        };
        let mut events: Vec<LaunchEvent> = parse("launch timeline", row.try_get(0)?)?;
        events.push(LaunchEvent {
            state,
            at: now_ms(),
            detail: detail.map(String::from),
        });
        tx.execute(
            "UPDATE launches SET state = $2, events = $3 WHERE id = $1",
            &[&(launch as i64), &state.as_str(), &json(&events)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn finish(&mut self, job: u64, outcome: &Outcome) -> Result<()> {
        let mut tx = self.write()?;
        let changed = tx.execute(
            "UPDATE jobs SET state = $2, exit_code = $3, reason = $4, finished = $5 WHERE id = $1 AND state = 'claimed'",
            &[
                &(job as i64),
                &outcome.state.as_str(),
                &outcome.exit_code,
                &outcome.reason,
                &(now_s() as i64),
            ],
        )?;
        if changed == 1
            && let Some(l) = launch_of_job(&mut tx, job)?
            && !l.state.is_final()
        {
            let mut events = l.events;
            let end = final_event(outcome);
            let state = end.state;
            events.push(end);
            tx.execute(
                "UPDATE launches SET state = $2, events = $3 WHERE id = $1",
                &[&(l.id as i64), &state.as_str(), &json(&events)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn active(&mut self) -> Result<Vec<Claimed>> {
        let mut tx = self.read()?;
        let ids: Vec<i64> = tx
            .query(
                "SELECT id FROM jobs WHERE state = 'claimed' ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        let pools: BTreeMap<String, Pool> = all_pools(&mut tx)?
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        let mut out = Vec::new();
        for id in ids {
            let job = job_in(&mut tx, id as u64)?;
            let launch = launch_of_job(&mut tx, id as u64)?
                .ok_or_else(|| corrupt("job", format!("claimed job {id} has no launch")))?;
            let pool = pool_of(&pools, &launch);
            out.push(Claimed { job, pool, launch });
        }
        tx.commit()?;
        Ok(out)
    }

    fn launches(&mut self, pool: Option<&str>, limit: u32) -> Result<Vec<Launch>> {
        let mut tx = self.read()?;
        let launches = tx
            .query(
                &format!(
                    "SELECT {LAUNCH_COLUMNS} FROM launches WHERE ($1::TEXT IS NULL OR pool = $1) ORDER BY id DESC LIMIT $2"
                ),
                &[&pool, &i64::from(limit)],
            )?
            .iter()
            .map(launch_of)
            .collect::<Result<_>>()?;
        tx.commit()?;
        Ok(launches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords() {
        for (url, want) in [
            (
                "postgres://mc:hunter2@db.example:5432/mc",
                "postgres://mc:***@db.example:5432/mc",
            ),
            (
                "postgresql://mc:p@ss/w0rd@db/mc?sslmode=disable",
                "postgresql://mc:***@db/mc?sslmode=disable",
            ),
            ("postgres://mc@db/mc", "postgres://mc@db/mc"),
            (
                "postgres://mc@db/mc?password=hunter2&application_name=x",
                "postgres://mc@db/mc?password=***&application_name=x",
            ),
            (
                "host=db user=mc password='hunter 2' dbname=mc",
                "host=db user=mc password=*** dbname=mc",
            ),
            ("host=db PASSWORD=hunter2", "host=db PASSWORD=***"),
        ] {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn urls_name_another_database() {
        assert_eq!(
            on_database("postgres://postgres@127.0.0.1:54329/postgres", "x"),
            "postgres://postgres@127.0.0.1:54329/x"
        );
        assert_eq!(
            on_database("postgres://u:p@h?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(on_database("postgres://u@h", "x"), "postgres://u@h/x");
    }

    #[test]
    fn errors_do_not_show_the_password() {
        for url in [
            // Nothing listens on port 1.
            "postgres://mc:hunter2@127.0.0.1:1/mc",
            "postgres://mc:hunter2@127.0.0.1:notaport/mc",
            "postgres://mc@127.0.0.1:1/mc?password=hunter2&nonsense=1",
            "host=127.0.0.1 port=1 password=hunter2 user='unterminated",
        ] {
            let e = PostgresStore::connect(url).err().expect("no server there");
            let msg = format!("{e} {e:?}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }
    }
}
