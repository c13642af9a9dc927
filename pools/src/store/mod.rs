//! The control plane's state behind one interface, [`Store`]: a SQLite file by default
//! ([`sqlite`]), PostgreSQL for a shared deployment ([`postgres`]). Every method is one
//! transaction, so a control plane killed at any point leaves either the whole change or none
//! of it: a job is never both waiting and claimed, nor claimed twice, nor launched without a
//! launch record.
//!
//! The decisions themselves (admission, which job and which pool) are the pure functions of
//! [`crate::queue`] and [`plan`] (held to [`decide`]); a backend only loads their inputs and
//! writes the result. A claim takes a batch of jobs in one transaction, so one commit (one
//! fsync) serves the whole batch.

pub mod plan;
pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pool::Pool;
use crate::queue::{Fairness, QueueConfig, Queued, Refusal, admit, next};
use crate::routing::eligible;
use crate::tags::Tags;

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database: {}", postgres::describe(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error("{kind} {name} already exists (fix: pick another name, or update it)")]
    Exists { kind: &'static str, name: String },
    #[error("no {kind} named {name} (fix: list them with `minicluster {kind}s list`)")]
    NotFound { kind: &'static str, name: String },
    #[error("no job {0} (fix: list jobs with `minicluster jobs`)")]
    NoJob(u64),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(
        "no pool of queue {queue} can run a job that requires {requires} (fix: change --requires, or create a pool that provides it)"
    )]
    Unroutable { queue: String, requires: String },
    #[error(
        "pools changed since the diff was computed (revision {expected}, now {actual}) (fix: run the import again to see the new diff)"
    )]
    Stale { expected: u64, actual: u64 },
    #[error("pool {0} has running launches (fix: disable it and wait for them to stop)")]
    Busy(String),
    #[error("job {id} is {state} and cannot be cancelled")]
    Finished { id: u64, state: JobState },
    #[error("stored {what} is not valid: {reason}")]
    Corrupt { what: String, reason: String },
    #[error(
        "database URL {0:?} is not understood (fix: a file path, sqlite://PATH or postgres://USER@HOST/DB)"
    )]
    Url(String),
}

impl StoreError {
    /// The HTTP status the control plane answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            StoreError::Refused(Refusal::Full { .. }) => 429,
            StoreError::Refused(_) | StoreError::Busy(_) | StoreError::Finished { .. } => 409,
            StoreError::Exists { .. } | StoreError::Stale { .. } => 409,
            StoreError::NotFound { .. } | StoreError::NoJob(_) => 404,
            StoreError::Unroutable { .. } | StoreError::Url(_) => 400,
            _ => 500,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// A job as submitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJob {
    pub queue: String,
    pub user: String,
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub priority: i32,
    pub command: Vec<String>,
    #[serde(default)]
    pub requires: Tags,
    /// Brokers of its MiniCluster (default: the pool's size, else 1).
    #[serde(default)]
    pub size: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Waiting,
    /// Handed to a launch (running, or about to).
    Claimed,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Claimed => "claimed",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<JobState> {
        Ok(match s {
            "waiting" => JobState::Waiting,
            "claimed" => JobState::Claimed,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => return Err(corrupt("job state", other)),
        })
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A job with what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    #[serde(flatten)]
    pub spec: NewJob,
    pub state: JobState,
    pub exit_code: Option<i32>,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    pub pool: Option<String>,
    pub launch: Option<u64>,
    /// A cancel was asked while it ran; the dispatcher stops its launch.
    pub cancel_requested: bool,
    /// Unix seconds.
    pub submitted: u64,
    pub finished: Option<u64>,
}

impl Job {
    /// A job as it is the moment it is admitted: waiting, nothing run yet.
    pub fn waiting(id: u64, spec: NewJob) -> Job {
        Job {
            id,
            spec,
            state: JobState::Waiting,
            exit_code: None,
            reason: None,
            pool: None,
            launch: None,
            cancel_requested: false,
            submitted: 0,
            finished: None,
        }
    }
}

/// The timeline of a launch (DESIGN.md): requested → starting → started → connected →
/// stopping → stopped, or failed with a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchState {
    Requested,
    Starting,
    Started,
    Connected,
    Stopping,
    Stopped,
    Failed,
}

impl LaunchState {
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchState::Requested => "requested",
            LaunchState::Starting => "starting",
            LaunchState::Started => "started",
            LaunchState::Connected => "connected",
            LaunchState::Stopping => "stopping",
            LaunchState::Stopped => "stopped",
            LaunchState::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, LaunchState::Stopped | LaunchState::Failed)
    }
}

impl std::fmt::Display for LaunchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchEvent {
    pub state: LaunchState,
    /// Unix milliseconds.
    pub at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One MiniCluster launched for a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    pub id: u64,
    pub job: u64,
    pub pool: String,
    /// The MiniCluster's name: also the launcher's idempotency key.
    pub name: String,
    pub state: LaunchState,
    pub events: Vec<LaunchEvent>,
}

/// What [`Store::claim`] hands the dispatcher: the job, the pool chosen for it and the launch
/// record written in the same transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    pub job: Job,
    pub pool: Pool,
    pub launch: Launch,
}

/// How a claimed job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub state: JobState,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
}

/// How a backend writes a pool's or queue's body under its name.
pub(crate) enum Put {
    /// Refused when the name exists.
    Create,
    /// Refused when it does not.
    Update,
}

impl Put {
    /// Its statement on `pools` or `queues` (`table`); `p` is the backend's placeholder sign,
    /// parameter 1 the name and 2 the body.
    pub(crate) fn sql(&self, table: &str, p: char) -> String {
        match self {
            Put::Create => format!(
                "INSERT INTO {table} (name, body) VALUES ({p}1, {p}2) ON CONFLICT (name) DO NOTHING"
            ),
            Put::Update => format!("UPDATE {table} SET body = {p}2 WHERE name = {p}1"),
        }
    }

    /// The refusal when no row changed.
    pub(crate) fn refused(&self, kind: &'static str, name: &str) -> StoreError {
        let name = name.to_string();
        match self {
            Put::Create => StoreError::Exists { kind, name },
            Put::Update => StoreError::NotFound { kind, name },
        }
    }
}

/// The SQL a backend speaks, where the two differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The sign before a parameter's number (`?1`, `$1`).
    fn placeholder(self) -> char {
        match self {
            Dialect::Sqlite => '?',
            Dialect::Postgres => '$',
        }
    }
}

/// The columns a claim reads of a waiting job, in [`Candidate`]'s order.
const CANDIDATE_COLUMNS: &str = r#"id, "user", project, priority, requires"#;

/// The statements a claim reads its queue with ([`plan::Waiting`] and what the decision
/// starts from), built once for both backends. Parameter 1 is always the queue.
pub(crate) struct ClaimSql {
    /// Jobs of the queue claimed and not ended.
    pub running: String,
    /// Claims per user and project since parameter 2 (Unix ms).
    pub usage: String,
    /// Launches not ended, per pool (no parameters).
    pub pool_running: &'static str,
    /// The top priority of a waiting job.
    pub top: String,
    /// The top priority of a waiting job below parameter 2.
    pub top_below: String,
    /// The oldest waiting job of each fairness group at priority parameter 2: by a skip
    /// scan of the index, one step per user or project instead of a pass over every job.
    pub heads: String,
    /// Waiting jobs at priority 2 of group 3 after job 4, at most 5; the rows run on into
    /// the next groups ([`of_group`] cuts them).
    pub after: String,
}

impl ClaimSql {
    pub(crate) fn new(fairness: Fairness, dialect: Dialect) -> ClaimSql {
        let p = dialect.placeholder();
        let waiting = format!("FROM jobs WHERE queue = {p}1 AND state = 'waiting'");
        let at = format!("queue = {p}1 AND state = 'waiting' AND priority = {p}2");
        let group = match fairness {
            // One group, the whole queue: first in, first out.
            Fairness::None => "''",
            Fairness::Users => r#""user""#,
            Fairness::Projects => "project",
        };
        let (heads, after) = match fairness {
            Fairness::None => (
                format!("SELECT {CANDIDATE_COLUMNS} FROM jobs WHERE {at} ORDER BY id LIMIT 1"),
                format!(
                    "SELECT {CANDIDATE_COLUMNS} FROM jobs WHERE {at} AND {p}3 = '' AND id > {p}4 ORDER BY id LIMIT {p}5"
                ),
            ),
            // Both walk the index in (group, id) order, which only the index by group can
            // give: the planner takes it with or without statistics of the table.
            _ => (
                match dialect {
                    // Each step reads the next group's head whole, its group carried to the
                    // next step: one index descent a group (a third less time at 1,000 users
                    // than looking the group up again by id).
                    Dialect::Postgres => format!(
                        "WITH RECURSIVE g AS (
                            (SELECT {CANDIDATE_COLUMNS} FROM jobs WHERE {at} ORDER BY {group}, id LIMIT 1)
                            UNION ALL
                            SELECT n.* FROM g, LATERAL (
                                SELECT {CANDIDATE_COLUMNS} FROM jobs j
                                WHERE {at} AND j.{group} > g.{group}
                                ORDER BY j.{group}, j.id LIMIT 1
                            ) n
                        )
                        SELECT {CANDIDATE_COLUMNS} FROM g ORDER BY id"
                    ),
                    // SQLite has no LATERAL: a step yields the head's id alone.
                    Dialect::Sqlite => format!(
                        "WITH RECURSIVE g(id) AS (
                            SELECT (SELECT id FROM jobs WHERE {at} ORDER BY {group}, id LIMIT 1)
                            UNION ALL
                            SELECT (
                                SELECT j.id FROM jobs j
                                WHERE {at} AND j.{group} > (SELECT h.{group} FROM jobs h WHERE h.id = g.id)
                                ORDER BY j.{group}, j.id LIMIT 1
                            )
                            FROM g WHERE g.id IS NOT NULL
                        )
                        SELECT {CANDIDATE_COLUMNS} FROM jobs WHERE id IN (SELECT id FROM g) ORDER BY id"
                    ),
                },
                format!(
                    "SELECT {CANDIDATE_COLUMNS} FROM jobs WHERE {at} AND ({group}, id) > ({p}3, {p}4) ORDER BY {group}, id LIMIT {p}5"
                ),
            ),
        };
        ClaimSql {
            running: format!("SELECT COUNT(*) FROM jobs WHERE queue = {p}1 AND state = 'claimed'"),
            usage: format!(
                r#"SELECT "user", project, COUNT(*) FROM jobs WHERE queue = {p}1 AND claimed_ms >= {p}2 GROUP BY "user", project"#
            ),
            pool_running: "SELECT pool, COUNT(*) FROM launches WHERE state IN ('requested', 'starting', 'started', 'connected', 'stopping') GROUP BY pool",
            top: format!("SELECT MAX(priority) {waiting}"),
            top_below: format!("SELECT MAX(priority) {waiting} AND priority < {p}2"),
            heads,
            after,
        }
    }
}

/// The jobs of `group` among [`ClaimSql::after`]'s rows.
pub(crate) fn of_group(q: &QueueConfig, group: &str, rows: Vec<Candidate>) -> Vec<Candidate> {
    rows.into_iter()
        .take_while(|c| q.group(&c.queued.user, &c.queued.project) == group)
        .collect()
}

/// The launch record a claim writes: `requested`, now.
pub(crate) fn requested(id: u64, job: u64, pool: &str) -> Launch {
    Launch {
        id,
        job,
        pool: pool.to_string(),
        name: launch_name(pool, job),
        state: LaunchState::Requested,
        events: vec![LaunchEvent {
            state: LaunchState::Requested,
            at: now_ms(),
            detail: None,
        }],
    }
}

/// The step that ends a launch's timeline when its job ends this way: `failed` when the
/// MiniCluster itself failed (no exit code came back), `stopped` otherwise.
pub fn final_event(outcome: &Outcome) -> LaunchEvent {
    let state = if outcome.state == JobState::Failed && outcome.exit_code.is_none() {
        LaunchState::Failed
    } else {
        LaunchState::Stopped
    };
    LaunchEvent {
        state,
        at: now_ms(),
        detail: outcome.reason.clone(),
    }
}

/// The pool a claimed job's launch names; a placeholder when the pool was deleted while the
/// job ran (the launch still has to be re-attached and ended).
pub fn pool_of(pools: &BTreeMap<String, Pool>, launch: &Launch) -> Pool {
    pools
        .get(&launch.pool)
        .cloned()
        .unwrap_or_else(|| Pool::new(launch.pool.clone(), Default::default()))
}

/// The name of the MiniCluster launched for a job: deterministic, so that a restarted
/// control plane finds the launch it made before it was killed.
pub fn launch_name(pool: &str, job: u64) -> String {
    format!("{pool}-j{job}")
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What recent usage counts: jobs claimed in the last hour.
pub const USAGE_WINDOW_MS: u64 = 3_600_000;

/// A waiting job, as the dispatch decision sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub queued: Queued,
    pub requires: Tags,
}

/// The dispatch decision for one queue over every waiting job: the job to start next and the
/// pool to start it on, or nothing. This is the definition; a claim makes the same decisions
/// in batches through [`plan::plan`], which loads only the jobs they need.
///
/// Jobs no enabled pool of the queue can ever run are passed over (they wait for a pool);
/// the job the queue's order picks waits, holding its place, while every pool that could run
/// it is at its `max_launches`.
pub fn decide<'a>(
    q: &QueueConfig,
    waiting: &'a [Candidate],
    running: u32,
    usage: &BTreeMap<String, f64>,
    pools: &'a [Pool],
    pool_running: &BTreeMap<String, u32>,
) -> Option<(&'a Candidate, &'a Pool)> {
    let of_queue: Vec<&Pool> = pools
        .iter()
        .filter(|p| q.pools.is_empty() || q.pools.contains(&p.name))
        .collect();
    let routable: Vec<&Candidate> = waiting
        .iter()
        .filter(|c| of_queue.iter().any(|p| eligible(&c.requires, p)))
        .collect();
    let queued: Vec<Queued> = routable.iter().map(|c| c.queued.clone()).collect();
    let pick = next(q, &queued, running, usage)?;
    let cand = routable.into_iter().find(|c| c.queued.id == pick.id)?;
    let pool = of_queue.into_iter().find(|p| {
        eligible(&cand.requires, p)
            && pool_running.get(&p.name).copied().unwrap_or(0) < p.max_launches
    })?;
    Some((cand, pool))
}

/// Admission of submissions, all or none: each queue's limits counting the jobs before it,
/// and some pool of the queue able to run each job. `queue` loads a queue and how many of its
/// jobs wait (once per queue).
pub(crate) fn admit_all(
    jobs: &[NewJob],
    pools: &[Pool],
    mut queue: impl FnMut(&str) -> Result<(QueueConfig, u32)>,
) -> Result<()> {
    let mut depth: BTreeMap<&str, (QueueConfig, u32)> = BTreeMap::new();
    for job in jobs {
        let (q, waiting) = match depth.entry(&job.queue) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(queue(&job.queue)?),
        };
        admit(q, *waiting)?;
        if !routable(q, &job.requires, pools) {
            return Err(StoreError::Unroutable {
                queue: q.name.clone(),
                requires: serde_json::to_string(&job.requires).expect("tags serialise"),
            });
        }
        *waiting += 1;
    }
    Ok(())
}

/// Whether some pool of the queue could ever run a job with these requirements (submit
/// refuses work that would wait forever). A disabled pool counts: the work waits until it
/// is enabled again.
pub fn routable(q: &QueueConfig, requires: &Tags, pools: &[Pool]) -> bool {
    pools
        .iter()
        .filter(|p| q.pools.is_empty() || q.pools.contains(&p.name))
        .any(|p| {
            let enabled = Pool {
                enabled: true,
                ..p.clone()
            };
            eligible(requires, &enabled)
        })
}

/// The group a queue's fairness compares.
pub fn fairness_group(q: &QueueConfig, user: &str, project: &str) -> String {
    q.group(user, project).to_string()
}

/// Which jobs to list.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub queue: Option<String>,
    pub state: Option<JobState>,
    pub user: Option<String>,
    pub limit: Option<u32>,
}

/// The control plane's state. Each method is one transaction.
pub trait Store: Send {
    fn create_pool(&mut self, p: &Pool) -> Result<()>;
    /// Replaces a pool (it must exist).
    fn update_pool(&mut self, p: &Pool) -> Result<()>;
    /// Deletes a pool with no running launches.
    fn delete_pool(&mut self, name: &str) -> Result<()>;
    fn pools(&mut self) -> Result<Vec<Pool>>;
    /// Pools change only through this store; each change bumps the revision, which import
    /// uses to refuse a diff computed against other pools.
    fn pools_revision(&mut self) -> Result<u64>;
    /// Creates or replaces `upserts` and deletes `deletes`, all in one transaction, if the
    /// pools are still at revision `expected`.
    fn import_pools(&mut self, upserts: &[Pool], deletes: &[String], expected: u64) -> Result<()>;

    fn create_queue(&mut self, q: &QueueConfig) -> Result<()>;
    fn update_queue(&mut self, q: &QueueConfig) -> Result<()>;
    fn queues(&mut self) -> Result<Vec<QueueConfig>>;

    /// Admits a job (refused when the queue is missing, full or draining, or when no pool of
    /// it could run the job).
    fn submit(&mut self, job: &NewJob) -> Result<u64>;
    /// Admits many jobs in one transaction, with the checks of `submit`: all or none.
    fn submit_many(&mut self, jobs: &[NewJob]) -> Result<Vec<u64>>;
    fn job(&mut self, id: u64) -> Result<Job>;
    fn jobs(&mut self, filter: &JobFilter) -> Result<Vec<Job>>;
    /// The launch of a job, if it was claimed.
    fn launch_of(&mut self, job: u64) -> Result<Option<Launch>>;
    /// How many jobs of a queue are in each state (states with none are left out).
    fn counts(&mut self, queue: &str) -> Result<BTreeMap<JobState, u32>>;
    /// A waiting job is cancelled at once; a claimed one is marked for the dispatcher.
    fn cancel(&mut self, id: u64) -> Result<Job>;

    /// Claims up to `max` jobs of a queue in one transaction, as that many claims one after
    /// another would: each job the queue's order picks next, on the first eligible pool with
    /// room, marked claimed with its launch record written. When it returns, every claim is
    /// committed (on disk), so nothing is launched that a crash could forget.
    fn claim_many(&mut self, queue: &str, max: usize) -> Result<Vec<Claimed>>;
    /// Claims the next job of a queue, if it has one to hand out.
    fn claim(&mut self, queue: &str) -> Result<Option<Claimed>> {
        Ok(self.claim_many(queue, 1)?.pop())
    }
    /// Appends a step to a launch's timeline.
    fn launch_event(&mut self, launch: u64, state: LaunchState, detail: Option<&str>)
    -> Result<()>;
    /// Records how a claimed job ended, and ends its launch, in one transaction. A job that
    /// is no longer claimed is left as it is (finishing twice changes nothing).
    fn finish(&mut self, job: u64, outcome: &Outcome) -> Result<()>;
    /// Claimed jobs with their launches: what a restarted dispatcher re-attaches to.
    fn active(&mut self) -> Result<Vec<Claimed>>;
    fn launches(&mut self, pool: Option<&str>, limit: u32) -> Result<Vec<Launch>>;
}

/// Opens the store a URL names: `postgres://…` or `postgresql://…`, `sqlite://PATH`, or a
/// plain file path (SQLite).
pub fn open(url: &str) -> Result<Box<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(PostgresStore::connect(url)?));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::Url(postgres::redact(url)));
    }
    Ok(Box::new(SqliteStore::open(std::path::Path::new(path))?))
}
