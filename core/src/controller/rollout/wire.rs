//! The state's stored JSON shape, as the first controller release wrote it, and the
//! conversions to and from [`State`].
//!
//! The Durable Object's storage outlives every deploy, so this shape is a contract
//! (`tests/stored_formats.rs`): a phase, the split's fields, an optional rollout whose pause
//! and end times are options, and the latest verdict at the top level. Loading checks that the
//! phase and the rollout agree; a document that breaks that is a deserialization error, never
//! a state that panics later. Writing produces exactly this shape again. Nothing else lives
//! here: no transition reads or writes these types.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Ended, Incident, Paused, Phase, Rollout, Split, Stage, State, Step, VerdictRecord};
use crate::verdict::health::{HealthPolicy, Verdict, VerdictStatus};
use crate::verdict::sequential::{Evidence, Report};
use crate::verdict::share_check::SplitCheck;

/// The stored state (v1). Field order is the JSON's order.
#[derive(Serialize, Deserialize)]
pub struct StoredState {
    phase: Phase,
    blue_model: String,
    green_model: String,
    green_percent: f64,
    sticky: bool,
    version: u64,
    rollout: Option<StoredRollout>,
    verdict: Option<VerdictRecord>,
}

/// A [`VerdictRecord`] as stored: the verdict's fields beside the record's own, as its derived
/// `Serialize` flattens them. Read through this plain struct rather than serde's `flatten`,
/// which buffers the document first and so compiled a second copy of the verdict's
/// `Deserialize` (its evidence included) into the wasm; what is read is the same.
#[derive(Deserialize)]
pub struct StoredVerdict {
    status: VerdictStatus,
    reasons: Vec<String>,
    #[serde(default)]
    evidence: Option<Report>,
    at_ms: u64,
    consecutive_failures: u32,
    step: usize,
}

impl From<StoredVerdict> for VerdictRecord {
    fn from(s: StoredVerdict) -> VerdictRecord {
        VerdictRecord {
            verdict: Verdict {
                status: s.status,
                reasons: s.reasons,
                evidence: s.evidence,
            },
            at_ms: s.at_ms,
            consecutive_failures: s.consecutive_failures,
            step: s.step,
        }
    }
}

/// The stored rollout (v1): the pause and end times are options whatever the phase.
#[derive(Serialize, Deserialize)]
struct StoredRollout {
    id: u64,
    green_model: String,
    blue_model: String,
    steps: Vec<Step>,
    health: HealthPolicy,
    started_at_ms: u64,
    step_index: usize,
    step_started_at_ms: u64,
    paused_at_ms: Option<u64>,
    consecutive_failures: u32,
    step_passed: bool,
    ended_at_ms: Option<u64>,
    // Absent from documents written before the sequential test existed.
    #[serde(default)]
    evidence: Evidence,
    // Absent from documents written before the split check existed.
    #[serde(default)]
    split_check: SplitCheck,
    // Absent from documents written before incidents held a rollout, and while none lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incident: Option<Incident>,
    // Absent from documents written before incident ends were remembered, and before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incident_ended_at_ms: Option<u64>,
}

/// Why a stored state does not load: its phase and its rollout disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Idle, yet a rollout or a verdict is stored.
    IdleWithRollout,
    /// Progressing, paused or ended, yet no rollout is stored.
    NoRollout(Phase),
    /// The pause and end times do not fit the phase (a pause time only while paused, an end
    /// time only once completed or rolled back).
    Times(Phase),
    /// The step index is outside the ladder (or the ladder is empty).
    StepIndex {
        /// The stored `step_index`.
        index: usize,
        /// How many steps the ladder has.
        steps: usize,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::IdleWithRollout => f.write_str("an idle state stores a rollout or a verdict"),
            Mismatch::NoRollout(p) => write!(f, "a {} state stores no rollout", p.name()),
            Mismatch::Times(p) => write!(
                f,
                "a {} rollout's paused_at_ms and ended_at_ms do not fit its phase",
                p.name()
            ),
            Mismatch::StepIndex { index, steps } => {
                write!(f, "step_index {index} is outside a ladder of {steps} steps")
            }
        }
    }
}

impl TryFrom<StoredState> for State {
    type Error = Mismatch;

    fn try_from(w: StoredState) -> Result<State, Mismatch> {
        let split = Split {
            blue_model: w.blue_model,
            green_model: w.green_model,
            green_percent: w.green_percent,
            sticky: w.sticky,
            version: w.version,
        };
        let stage = match (w.phase, w.rollout) {
            (Phase::Idle, None) if w.verdict.is_none() => Stage::Idle,
            (Phase::Idle, _) => return Err(Mismatch::IdleWithRollout),
            (phase, None) => return Err(Mismatch::NoRollout(phase)),
            (phase, Some(r)) => stage(phase, r, w.verdict)?,
        };
        Ok(State { split, stage })
    }
}

/// The stage of a stored rollout in a phase other than idle.
fn stage(
    phase: Phase,
    r: StoredRollout,
    verdict: Option<VerdictRecord>,
) -> Result<Stage, Mismatch> {
    if r.step_index >= r.steps.len() {
        return Err(Mismatch::StepIndex {
            index: r.step_index,
            steps: r.steps.len(),
        });
    }
    let (paused_at_ms, ended_at_ms) = (r.paused_at_ms, r.ended_at_ms);
    let rollout = Rollout {
        id: r.id,
        green_model: r.green_model,
        blue_model: r.blue_model,
        steps: r.steps,
        health: r.health,
        started_at_ms: r.started_at_ms,
        step_index: r.step_index,
        step_started_at_ms: r.step_started_at_ms,
        consecutive_failures: r.consecutive_failures,
        step_passed: r.step_passed,
        evidence: r.evidence,
        split_check: r.split_check,
        verdict,
        incident: r.incident,
        incident_ended_at_ms: r.incident_ended_at_ms,
    };
    Ok(match (phase, paused_at_ms, ended_at_ms) {
        (Phase::Progressing, None, None) => Stage::Progressing(rollout),
        (Phase::Paused, Some(paused_at_ms), None) => Stage::Paused(Paused {
            rollout,
            paused_at_ms,
        }),
        (Phase::Completed, None, Some(ended_at_ms)) => Stage::Completed(Ended {
            rollout,
            ended_at_ms,
        }),
        (Phase::RolledBack, None, Some(ended_at_ms)) => Stage::RolledBack(Ended {
            rollout,
            ended_at_ms,
        }),
        (Phase::Idle, ..) => return Err(Mismatch::IdleWithRollout),
        (phase, ..) => return Err(Mismatch::Times(phase)),
    })
}

impl From<State> for StoredState {
    fn from(s: State) -> StoredState {
        let phase = s.phase();
        let (rollout, paused_at_ms, ended_at_ms) = match s.stage {
            Stage::Idle => (None, None, None),
            Stage::Progressing(r) => (Some(r), None, None),
            Stage::Paused(p) => (Some(p.rollout), Some(p.paused_at_ms), None),
            Stage::Completed(e) | Stage::RolledBack(e) => {
                (Some(e.rollout), None, Some(e.ended_at_ms))
            }
        };
        let mut verdict = None;
        let rollout = rollout.map(|r| {
            verdict = r.verdict;
            StoredRollout {
                id: r.id,
                green_model: r.green_model,
                blue_model: r.blue_model,
                steps: r.steps,
                health: r.health,
                started_at_ms: r.started_at_ms,
                step_index: r.step_index,
                step_started_at_ms: r.step_started_at_ms,
                paused_at_ms,
                consecutive_failures: r.consecutive_failures,
                step_passed: r.step_passed,
                ended_at_ms,
                evidence: r.evidence,
                split_check: r.split_check,
                incident: r.incident,
                incident_ended_at_ms: r.incident_ended_at_ms,
            }
        });
        StoredState {
            phase,
            blue_model: s.split.blue_model,
            green_model: s.split.green_model,
            green_percent: s.split.green_percent,
            sticky: s.split.sticky,
            version: s.split.version,
            rollout,
            verdict,
        }
    }
}
