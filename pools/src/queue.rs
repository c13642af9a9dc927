//! Queue decisions, as pure functions: whether a submission is admitted, and which queued job
//! goes next. Priority orders work (higher first) but never preempts; within a priority, the
//! fairness policy picks the user (or project) with the least recent usage per unit of weight;
//! within one user, first in, first out.

use std::collections::BTreeMap;

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

    fn group<'a>(&self, j: &'a Queued) -> &'a str {
        match self.fairness {
            Fairness::Projects => &j.project,
            _ => &j.user,
        }
    }
}

/// The job to dispatch next, if the queue may dispatch one. `usage` is recent usage by user
/// or project (the caller decays it); less usage per weight goes first.
pub fn next<'a>(
    q: &QueueConfig,
    waiting: &'a [Queued],
    running: u32,
    usage: &BTreeMap<String, f64>,
) -> Option<&'a Queued> {
    if q.state == QueueState::Paused || running >= q.max_running {
        return None;
    }
    let top = waiting.iter().map(|j| j.priority).max()?;
    let candidates = waiting.iter().filter(|j| j.priority == top);
    if q.fairness == Fairness::None {
        return candidates.min_by_key(|j| j.seq);
    }
    // Per group: its oldest job; then the group with the least usage per weight, ties to
    // the group that has waited longest.
    let mut oldest: BTreeMap<&str, &Queued> = BTreeMap::new();
    for j in candidates {
        let g = q.group(j);
        if oldest.get(g).is_none_or(|o| j.seq < o.seq) {
            oldest.insert(g, j);
        }
    }
    oldest
        .into_iter()
        .min_by(|(ga, ja), (gb, jb)| {
            let sa = usage.get(*ga).copied().unwrap_or(0.0) / q.weight(ga);
            let sb = usage.get(*gb).copied().unwrap_or(0.0) / q.weight(gb);
            sa.total_cmp(&sb).then(ja.seq.cmp(&jb.seq))
        })
        .map(|(_, j)| j)
}

/// The same decisions as [`next`], from an index kept as jobs come and go: per priority, per
/// user (or project), a FIFO. A decision looks at one priority level's groups, not at every
/// waiting job, so it costs the number of groups, not the number of jobs.
#[derive(Clone, Debug, Default)]
pub struct Index {
    levels: BTreeMap<std::cmp::Reverse<i32>, BTreeMap<String, std::collections::VecDeque<Queued>>>,
    len: usize,
}

impl Index {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a job; jobs must come in submission order (`seq` increasing).
    pub fn push(&mut self, q: &QueueConfig, j: Queued) {
        let group = q.group(&j).to_string();
        self.levels
            .entry(std::cmp::Reverse(j.priority))
            .or_default()
            .entry(group)
            .or_default()
            .push_back(j);
        self.len += 1;
    }

    /// The job [`next`] would pick, without removing it.
    pub fn peek(
        &self,
        q: &QueueConfig,
        running: u32,
        usage: &BTreeMap<String, f64>,
    ) -> Option<&Queued> {
        if q.state == QueueState::Paused || running >= q.max_running {
            return None;
        }
        let groups = self.levels.values().next()?;
        let heads = groups
            .iter()
            .filter_map(|(g, fifo)| fifo.front().map(|j| (g.as_str(), j)));
        if q.fairness == Fairness::None {
            return heads.map(|(_, j)| j).min_by_key(|j| j.seq);
        }
        heads
            .min_by(|(ga, ja), (gb, jb)| {
                let sa = usage.get(*ga).copied().unwrap_or(0.0) / q.weight(ga);
                let sb = usage.get(*gb).copied().unwrap_or(0.0) / q.weight(gb);
                sa.total_cmp(&sb).then(ja.seq.cmp(&jb.seq))
            })
            .map(|(_, j)| j)
    }

    /// Takes the job [`next`] would pick.
    pub fn pop(
        &mut self,
        q: &QueueConfig,
        running: u32,
        usage: &BTreeMap<String, f64>,
    ) -> Option<Queued> {
        let (priority, group) = {
            let j = self.peek(q, running, usage)?;
            (j.priority, q.group(j).to_string())
        };
        let level = self.levels.get_mut(&std::cmp::Reverse(priority))?;
        let fifo = level.get_mut(&group)?;
        let j = fifo.pop_front();
        if fifo.is_empty() {
            level.remove(&group);
        }
        if level.is_empty() {
            self.levels.remove(&std::cmp::Reverse(priority));
        }
        self.len -= usize::from(j.is_some());
        j
    }
}
