//! The rollout state machine: phases, the step ladder, and what each command or tick does.
//!
//! [`apply`] is a pure function of (state, command, now): it returns the next state and the
//! effects the shell must perform (write the split to KV, restart a stats window, store an
//! event, send an alert), or a refusal. The Durable Object loads the state, calls it, persists
//! the result and performs the effects. Nothing here reads a clock, storage or the network.
//!
//! Each phase holds only the data valid in it ([`Stage`]): a paused rollout has its pause
//! time, an ended one its end time, an idle controller no rollout at all. The stored JSON keeps
//! the shape the first release wrote (`wire.rs`).
//!
//! A tick judges the *evaluation window*: the requests since the last conclusive verdict in
//! the current step. An inconclusive verdict (too little data) holds and lets the window grow;
//! a conclusive one (pass or fail) closes it, so consecutive failures are failures of disjoint
//! windows, never the same requests judged twice. That is also what makes ticks idempotent: a
//! duplicate tick finds an empty window, which is inconclusive and changes nothing, and a late
//! tick judges what accumulated and advances at most one step.
//!
//! A step advances when its hold time has passed and its latest conclusive verdict passed; the
//! last step passing completes the rollout (green becomes blue at 100%, the split returns to 0).
//! `failure_limit` consecutive failing verdicts roll back to 0% green.
//!
//! Layout: `cmd/` has one file an operator command, `tick.rs` the cron's judgement (decided,
//! then carried out), `state.rs` the phases and their data, `events.rs` the event log's
//! entries, `spec.rs` what a start asks for.

mod cmd;
mod events;
mod incident;
mod readback;
mod recovery;
mod spec;
mod state;
mod tick;
mod transition;
mod wire;

pub use cmd::{create, Command, CostSample, Stratum};
pub use events::{Actor, Event, EventKind};
pub use incident::Incident;
pub use readback::{read_back, ReadBack};
pub use recovery::{recover, unreadable, Salvage};
pub use spec::{default_embeddings_steps, default_steps, RolloutSpec, Step};
pub use state::{Ended, Paused, Phase, Rollout, Split, Stage, State, VerdictRecord};
pub use tick::checks_split;
pub use transition::{Effect, Refusal, Transition};
pub use wire::Mismatch;

/// Applies `cmd` to `state` at `now_ms`: the next state and the effects to perform, or why
/// the command is refused (then nothing changes).
pub fn apply(state: &State, cmd: Command, now_ms: u64) -> Result<Transition, Refusal> {
    let s = state.clone();
    match cmd {
        Command::Start { spec, routing } => cmd::start(s, spec, routing, now_ms),
        Command::Promote => cmd::promote(s, now_ms),
        Command::Rollback => cmd::rollback(s, now_ms),
        Command::Pause => cmd::pause(s, now_ms),
        Command::Resume => cmd::resume(s, now_ms),
        Command::SetSplit { green_percent } => cmd::set_split(s, green_percent, now_ms),
        Command::Redefine {
            blue_model,
            green_model,
            sticky,
        } => cmd::redefine(s, blue_model, green_model, sticky, now_ms),
        Command::Tick {
            window,
            strata,
            blue_p95_ms,
            step_cost,
            shadow,
            judge_reasons,
        } => Ok(tick::tick(
            s,
            &window,
            &tick::Strata {
                live: &strata,
                shadow: &shadow,
                judge_reasons: &judge_reasons,
            },
            blue_p95_ms,
            &step_cost,
            now_ms,
        )),
    }
}

#[cfg(test)]
mod tests;
