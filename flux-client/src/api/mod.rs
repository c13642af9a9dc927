//! Typed calls on top of [`Client`](crate::Client), one file per broker service family.

mod broker;
mod events;
mod jobs;
mod resource;

pub use broker::BrokerState;
pub use jobs::{
    EventlogEntry, EventlogWatch, JobInfo, JobResult, JobState, ListRequest, OutputEvent,
    SubmitOptions, WaitResult, WatchFlags, state_mask,
};
pub use resource::{
    ChildHealth, OverlayHealth, ResourceStatus, SchedStatus, Topology, parse_idset,
};
