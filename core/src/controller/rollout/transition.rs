//! What [`super::apply`] returns: the next state and the effects the shell performs, or a
//! refusal, and how a refusal becomes the API's 409 or 400. The shell performs the effects.

use super::{Event, State};
use crate::error::fields::FieldError;
use crate::error::ApiError;

/// What the shell must do after a transition, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write [`State::routing_doc`] to KV.
    WriteSplit,
    /// Restart the evaluation window's stats.
    ResetWindow,
    /// Restart the step's stats (and the window's).
    ResetStep,
    /// Restart all of the rollout's stats (a new rollout).
    ResetRollout,
    /// Store the event, and alert when `event.alert`.
    Record(Box<Event>),
}

impl Effect {
    /// Records `event` (boxed: an event is far larger than the other effects).
    pub(super) fn record(event: Event) -> Effect {
        Effect::Record(Box::new(event))
    }
}

/// Why a command was refused. Nothing changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// It does not apply in the current phase (HTTP 409).
    Conflict(String),
    /// A field breaks a rule (HTTP 400).
    Invalid(FieldError),
}

impl From<Refusal> for ApiError {
    /// A conflict is a 409 with the refusal's sentence; an invalid field a 400 naming it.
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Conflict(msg) => ApiError::conflict(msg),
            Refusal::Invalid(e) => e.into(),
        }
    }
}

/// The next state and what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The state to persist.
    pub state: State,
    /// What to perform once it is persisted, in order.
    pub effects: Vec<Effect>,
}
