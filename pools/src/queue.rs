//! Queue decisions, as pure functions: whether a submission is admitted, and which queued job
//! goes next. Priority orders work (higher first) but never preempts; within a priority, the
//! fairness policy picks the user (or project) with the least recent usage per unit of weight;
//! within one user, first in, first out.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Who is compared for fairness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fairness {
    /// First in, first out within a priority.
    None,
    Users,
    Projects,
}

/// Whether a queue takes and hands out work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    Open,
    /// Takes submissions, dispatches nothing.
    Paused,
    /// Takes no submissions, dispatches what it holds.
    Draining,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueConfig {
    pub name: String,
    /// Jobs of this queue running at once.
    pub max_running: u32,
    /// Jobs waiting at most (admission control).
    pub max_depth: u32,
    pub fairness: Fairness,
    /// Weight of a user or project (default 1): twice the weight, twice the share.
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    pub state: QueueState,
    /// The pools it routes to (empty: every pool).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    /// Among queues, higher goes first when pools are scarce.
    #[serde(default)]
    pub priority: i32,
}

impl QueueConfig {
    /// A queue with the defaults of `queues create`.
    pub fn new(name: impl Into<String>) -> QueueConfig {
        QueueConfig {
            name: name.into(),
            max_running: DEFAULT_MAX_RUNNING,
            max_depth: DEFAULT_MAX_DEPTH,
            fairness: Fairness::Users,
            weights: BTreeMap::new(),
            state: QueueState::Open,
            pools: Vec::new(),
            priority: 0,
        }
    }
}

/// The default number of jobs a queue runs at once.
pub const DEFAULT_MAX_RUNNING: u32 = 16;

/// The default depth limit.
pub const DEFAULT_MAX_DEPTH: u32 = 10_000;

/// A job waiting in a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub id: u64,
    pub user: String,
    pub project: String,
    pub priority: i32,
    /// Submission order.
    pub seq: u64,
}

/// Why a submission was refused (HTTP 429 for a full queue, 409 otherwise).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "queue {queue} is full: {depth} jobs wait (max-depth {depth}); try again when some have started, or raise --max-depth"
    )]
    Full { queue: String, depth: u32 },
    #[error(
        "queue {queue} is draining and takes no new work (fix: `minicluster queues resume {queue}`, or submit to another queue)"
    )]
    Draining { queue: String },
}

/// Admission: a full or draining queue refuses.
pub fn admit(q: &QueueConfig, waiting: u32) -> Result<(), Refusal> {
    if q.state == QueueState::Draining {
        return Err(Refusal::Draining {
            queue: q.name.clone(),
        });
    }
    if waiting >= q.max_depth {
        return Err(Refusal::Full {
            queue: q.name.clone(),
            depth: q.max_depth,
        });
    }
    Ok(())
}

impl QueueConfig {
    fn weight(&self, who: &str) -> f64 {
        self.weights
            .get(who)
            .copied()
            .filter(|w| *w > 0.0)
            .unwrap_or(1.0)
    }

    /// The group fairness compares a job in: its user or project, or one group for the whole
    /// queue when there is no fairness (first in, first out).
    pub fn group<'a>(&self, user: &'a str, project: &'a str) -> &'a str {
        match self.fairness {
            Fairness::None => "",
            Fairness::Users => user,
            Fairness::Projects => project,
        }
    }

    fn group_of<'a>(&self, j: &'a Queued) -> &'a str {
        self.group(&j.user, &j.project)
    }

    /// A group's recent usage per unit of weight: less goes first.
    fn share(&self, usage: &BTreeMap<String, f64>, group: &str) -> Share {
        Share(usage.get(group).copied().unwrap_or(0.0) / self.weight(group))
    }
}

/// Whether a queue hands out work now: not paused, and under its `max_running`.
pub fn may_dispatch(q: &QueueConfig, running: u32) -> bool {
    q.state != QueueState::Paused && running < q.max_running
}

/// The job to dispatch next, if the queue may dispatch one. `usage` is recent usage by user
/// or project (the caller decays it); less usage per weight goes first.
///
/// This is the definition, a pass over every waiting job; [`Index`] makes the same decisions
/// in time that does not grow with the queue.
pub fn next<'a>(
    q: &QueueConfig,
    waiting: &'a [Queued],
    running: u32,
    usage: &BTreeMap<String, f64>,
) -> Option<&'a Queued> {
    if !may_dispatch(q, running) {
        return None;
    }
    let top = waiting.iter().map(|j| j.priority).max()?;
    let candidates = waiting.iter().filter(|j| j.priority == top);
    // Per group: its oldest job; then the group with the least usage per weight, ties to
    // the group that has waited longest.
    let mut oldest: BTreeMap<&str, &Queued> = BTreeMap::new();
    for j in candidates {
        let g = q.group_of(j);
        if oldest.get(g).is_none_or(|o| j.seq < o.seq) {
            oldest.insert(g, j);
        }
    }
    oldest
        .into_iter()
        .min_by(|(ga, ja), (gb, jb)| {
            let (sa, sb) = (q.share(usage, ga), q.share(usage, gb));
            sa.cmp(&sb).then(ja.seq.cmp(&jb.seq))
        })
        .map(|(_, j)| j)
}

/// Usage per unit of weight, ordered as `f64::total_cmp` orders it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Share(f64);

impl Eq for Share {}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The same decisions as [`next`], from an index kept as jobs come and go and usage is
/// charged: per priority, per fairness group, a FIFO; and per priority the groups ordered by
/// (usage per weight, submission of their oldest job). A decision is the first group of the
/// top priority, so it costs a logarithm of the number of groups, whatever the queue's depth.
#[derive(Clone, Debug)]
pub struct Index {
    q: QueueConfig,
    usage: BTreeMap<String, f64>,
    levels: BTreeMap<Reverse<i32>, Level>,
    len: usize,
}

#[derive(Clone, Debug, Default)]
struct Level {
    fifos: HashMap<String, VecDeque<Queued>>,
    /// Every group with a job here, once, by its share and its oldest job's `seq`.
    order: BTreeSet<(Share, u64, String)>,
}

impl Index {
    /// An empty index deciding as `q` does (its fairness and weights), with no usage yet.
    pub fn new(q: &QueueConfig) -> Index {
        Index {
            q: q.clone(),
            usage: BTreeMap::new(),
            levels: BTreeMap::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fairness group of a job, as this index compares it.
    pub fn group_of<'a>(&self, j: &'a Queued) -> &'a str {
        self.q.group_of(j)
    }

    /// Adds a job. Within one group and priority, jobs must come in submission order (`seq`
    /// increasing).
    pub fn push(&mut self, j: Queued) {
        let group = self.q.group_of(&j).to_string();
        let share = self.q.share(&self.usage, &group);
        let level = self.levels.entry(Reverse(j.priority)).or_default();
        let fifo = level.fifos.entry(group.clone()).or_default();
        debug_assert!(fifo.back().is_none_or(|b| b.seq < j.seq), "seq order");
        if fifo.is_empty() {
            level.order.insert((share, j.seq, group));
        }
        fifo.push_back(j);
        self.len += 1;
    }

    /// The job [`next`] would pick (with running 0), without removing it.
    pub fn peek(&self) -> Option<&Queued> {
        let level = self.levels.values().next()?;
        let (_, _, group) = level.order.first()?;
        level.fifos.get(group)?.front()
    }

    /// Takes the job [`next`] would pick (with running 0). Usage is not charged: see
    /// [`Index::charge`].
    pub fn pop(&mut self) -> Option<Queued> {
        let mut entry = self.levels.first_entry()?;
        let level = entry.get_mut();
        let (share, _, group) = level.order.pop_first()?;
        let fifo = level.fifos.get_mut(&group)?;
        let j = fifo.pop_front()?;
        match fifo.front() {
            Some(after) => {
                level.order.insert((share, after.seq, group));
            }
            None => {
                level.fifos.remove(&group);
            }
        }
        if level.fifos.is_empty() {
            entry.remove();
        }
        self.len -= 1;
        Some(j)
    }

    /// Whether jobs of `group` at `priority` are in the index.
    pub fn holds(&self, priority: i32, group: &str) -> bool {
        self.levels
            .get(&Reverse(priority))
            .is_some_and(|l| l.fifos.contains_key(group))
    }

    /// A group's recent usage.
    pub fn usage(&self, group: &str) -> f64 {
        self.usage.get(group).copied().unwrap_or(0.0)
    }

    /// Sets a group's recent usage (what the caller counted, or decayed).
    pub fn set_usage(&mut self, group: &str, usage: f64) {
        let before = self.q.share(&self.usage, group);
        self.usage.insert(group.to_string(), usage);
        let after = self.q.share(&self.usage, group);
        if before == after {
            return;
        }
        for level in self.levels.values_mut() {
            if let Some(oldest) = level.fifos.get(group).and_then(|f| f.front()) {
                let mut key = (before, oldest.seq, group.to_string());
                level.order.remove(&key);
                key.0 = after;
                level.order.insert(key);
            }
        }
    }

    /// Adds to a group's recent usage (a job of it was dispatched).
    pub fn charge(&mut self, group: &str, by: f64) {
        self.set_usage(group, self.usage(group) + by);
    }
}
