//! The commands an operator or the cron sends, and one file an operator command: each checks
//! the command applies in the current phase, then builds the next state and its effects. The
//! cron's tick is in `../tick.rs`; dispatch is [`super::apply`].

mod pause;
mod promote;
mod redefine;
mod resume;
mod rollback;
mod set_split;
mod start;

pub(super) use pause::pause;
pub(super) use promote::promote;
pub use redefine::create;
pub(super) use redefine::redefine;
pub(super) use resume::resume;
pub(super) use rollback::rollback;
pub(super) use set_split::set_split;
pub(super) use start::start;

use super::{Phase, Refusal, RolloutSpec};
use crate::request::routing::RoutingDoc;
use crate::shadow::ShadowStratum;
use crate::stats::{EnvStats, Pair};

/// What an operator or the cron asks of the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start a rollout. `routing` is the split in force, whose blue model stays blue.
    Start {
        spec: RolloutSpec,
        routing: RoutingDoc,
    },
    /// Straight to completion.
    Promote,
    /// Back to 0% green.
    Rollback,
    /// Stop on the current step until resumed.
    Pause,
    /// Back to the current step's split, with the hold timer running again.
    Resume,
    /// A route's new definition (`PUT /admin/routes/{name}`): its models and stickiness at 0%
    /// green; refused while a rollout is under way.
    Redefine {
        blue_model: String,
        green_model: String,
        sticky: bool,
    },
    /// A manual split; pauses the rollout.
    SetSplit { green_percent: f64 },
    /// A cron tick, with the evaluation window's stats (what the threshold gates judge), the
    /// same requests by the split they were routed under (what the sequential test judges;
    /// empty: the window is the current step's, under one split), and blue's p95 over the
    /// rollout so far (the sequential test's latency reference).
    Tick {
        window: Box<Pair<EnvStats>>,
        strata: Vec<Stratum>,
        blue_p95_ms: Option<u64>,
        /// Requests and estimated cost of each environment over the current step, for the
        /// policy's `max_cost_ratio`.
        step_cost: Pair<CostSample>,
        /// The tick's shadow pairs, by whether they are the current step's (empty outside a
        /// shadow step).
        shadow: Vec<ShadowStratum>,
        /// The grader's reasons for the rollout's last lost pairs, newest first: quoted when
        /// the grader's test rolls green back.
        judge_reasons: Vec<String>,
    },
}

/// An environment's requests and estimated cost over some span.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostSample {
    pub requests: u64,
    pub cost_usd: f64,
}

impl CostSample {
    /// Of `stats`.
    pub fn of(stats: &EnvStats) -> CostSample {
        CostSample {
            requests: stats.requests,
            cost_usd: stats.cost_usd,
        }
    }

    /// Mean cost per request, `None` without requests.
    pub fn per_request(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.cost_usd / self.requests as f64)
    }
}

/// The evaluation window's requests routed under one split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stratum {
    pub stats: Pair<EnvStats>,
    /// Whether the split is one of the current step's.
    pub in_step: bool,
    /// The routing version the requests were routed under; `None` when unknown (then the
    /// split check does not count them).
    pub version: Option<u64>,
}

impl Stratum {
    /// The current step's requests, all under one split.
    pub fn in_step(stats: Pair<EnvStats>) -> Stratum {
        Stratum {
            stats,
            in_step: true,
            version: None,
        }
    }
}

/// The refusal of `action` in `phase`, with a hint when no rollout is under way.
fn conflict(phase: Phase, action: &str) -> Refusal {
    Refusal::Conflict(format!(
        "Cannot {action}: the rollout is {}{}.",
        phase.name(),
        match phase {
            Phase::Idle | Phase::Completed | Phase::RolledBack =>
                "; start one with POST /admin/rollouts",
            Phase::Progressing | Phase::Paused => "",
        }
    ))
}
