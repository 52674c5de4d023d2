//! The cron's tick: judge the evaluation window, decide the move, carry it out.
//!
//! Four steps, kept apart so that the decision is a small pure function tested with a table
//! (a provider-wide incident, `incident.rs`, is observed before the decision and holds it):
//! [`judge_window`] gives the verdict (the threshold gates, or the sequential test with the
//! evidence carried through the rollout), [`count`] adds it to the step's record (failures in a
//! row, whether the step passed), [`decide`] picks the [`Move`] from those facts alone, and
//! [`execute`] turns the move into the next state and its effects. Only a progressing rollout
//! is judged; a tick in any other phase changes nothing. Nothing here reads the clock or the
//! stats store: the window and `now_ms` come in as arguments.

use super::{
    CostSample, Effect, Event, EventKind, Rollout, Split, Stage, State, Step, Stratum, Transition,
    VerdictRecord,
};
use crate::api::defects::Defect;
use crate::shadow::ShadowStratum;
use crate::stats::{EnvStats, Pair};
use crate::verdict::health::{judge, HealthPolicy, Method, Verdict, VerdictStatus};
use crate::verdict::sequential::{self, Finding, TickCounts};
use crate::verdict::share_check::{self, Change};

/// What the sequential test judges on a tick: the window's requests by split, and the shadow
/// pairs ([`crate::shadow`]).
pub(super) struct Strata<'a> {
    pub live: &'a [Stratum],
    pub shadow: &'a [ShadowStratum],
    /// The grader's reasons for the last lost pairs (see `Command::Tick`).
    pub judge_reasons: &'a [String],
}

/// Judges `window` (or, for the sequential test, its `strata`) at `now_ms` and moves the
/// rollout accordingly.
pub(super) fn tick(
    s: State,
    window: &Pair<EnvStats>,
    strata: &Strata<'_>,
    blue_p95_ms: Option<u64>,
    step_cost: &Pair<CostSample>,
    now_ms: u64,
) -> Transition {
    let State { split, stage } = s;
    let mut rollout = match stage {
        Stage::Progressing(rollout) => rollout,
        // Paused, ended or idle: nothing to judge (a paused step's traffic is not the step's).
        stage => {
            return Transition {
                state: State { split, stage },
                effects: Vec::new(),
            }
        }
    };
    // First, as the guard stands aside while an incident lasts.
    let incident = super::incident::observe(&mut rollout, window, now_ms);
    let (judgement, shadow_held) = judge_tick(&mut rollout, window, strata, blue_p95_ms, step_cost);
    let facts = count(&mut rollout, &judgement, now_ms);
    let mut effects = Vec::new();
    if judgement.closes_window {
        effects.push(Effect::ResetWindow);
    }
    let change = check_split(&mut rollout, &split, strata.live, now_ms);
    let mv = hold_for_split(decide(&facts), shadow_held || rollout.split_check.holds());
    // An incident's beginning or end, unless the tick rolls back (its event says why); one
    // that lasted too long pauses the rollout, below.
    let incident = incident.filter(|_| mv != Move::RollBack);
    let (incident, pause) = match incident {
        Some(o) if o.kind == EventKind::Paused => (None, Some(o)),
        o => (o, None),
    };
    let now = State::progressing(split.clone(), rollout.clone());
    if let Some(o) = incident {
        let verdict = judgement.verdict.clone();
        let mut event = Event::by_controller(&now, now_ms, o.kind, o.message, verdict);
        event.alert = o.alert;
        effects.push(Effect::record(event));
    }
    // A rollback makes the split check moot: its event alone is recorded.
    if let Some(change) = change.filter(|_| mv != Move::RollBack) {
        effects.push(Effect::record(split_event(&now, change, now_ms)));
    }
    let verdict = judgement.verdict.clone();
    let (mut state, more) = execute(mv, &facts, split, rollout, judgement.verdict, now_ms);
    effects.extend(more);
    if let Some(o) = pause {
        state = pause_for_incident(state, o, verdict, now_ms, &mut effects);
    }
    Transition { state, effects }
}

/// The tick's judgement of green: its window, its step's cost, and what a shadow step's pairs
/// say; and whether too many of a shadow step's copies were given up (the step then holds:
/// `crate::shadow`).
fn judge_tick(
    rollout: &mut Rollout,
    window: &Pair<EnvStats>,
    strata: &Strata<'_>,
    blue_p95_ms: Option<u64>,
    step_cost: &Pair<CostSample>,
) -> (Judgement, bool) {
    let mut judgement = judge_window(rollout, window, strata, blue_p95_ms);
    let mixed = strata.shadow.iter().find_map(|s| s.step_failed.clone());
    let failed = over_cost(&rollout.health, step_cost)
        .into_iter()
        .chain(mixed);
    for reason in failed {
        judgement.verdict.status = VerdictStatus::Fail;
        judgement.verdict.reasons.insert(0, reason);
        judgement.clearly_fine = false;
    }
    let shadow_held = strata.shadow.iter().find_map(|s| s.step_held.clone());
    if rollout.step().is_shadow()
        && !strata
            .shadow
            .iter()
            .any(|s| s.in_step && s.stats.pairs.pairs > 0)
    {
        judgement.verdict.reasons.push(NO_PAIRS.to_string());
    }
    let held = shadow_held.is_some();
    judgement.verdict.reasons.extend(shadow_held);
    (judgement, held)
}

/// The event of a split check's hold or of its end.
fn split_event(now: &State, change: Change, now_ms: u64) -> Event {
    let (kind, message) = match change {
        Change::Held(m) => (EventKind::SplitMismatch, m),
        Change::Cleared(m) => (EventKind::SplitMatched, m),
    };
    Event::by_controller_plain(now, now_ms, kind, message)
}

/// The reason a shadow step's tick gives when it saw none of the step's pairs: without them the
/// step never has `min_requests` and holds, which should not go unsaid.
const NO_PAIRS: &str = "shadow step: no copy paired this tick, so the step cannot reach min_requests (is SHADOW_MAX_PER_MINUTE 0, or no request routed to blue?)";

/// Pauses `state`, still progressing, for an incident that lasted too long, with its event.
fn pause_for_incident(
    state: State,
    o: super::incident::Observed,
    verdict: Verdict,
    now_ms: u64,
    effects: &mut Vec<Effect>,
) -> State {
    let State { split, stage } = state;
    let Stage::Progressing(rollout) = stage else {
        return State { split, stage };
    };
    // As an operator's pause: a shadow step stops copying.
    let (state, more) = State::paused(split, rollout, now_ms);
    effects.extend(more);
    let event = Event::by_controller(&state, now_ms, o.kind, o.message, verdict);
    effects.push(Effect::record(event));
    state
}

/// A verdict on one window, and what the method says about it.
struct Judgement {
    verdict: Verdict,
    /// The sequential test finds green clearly fine (`advance_early`): the hold may be cut.
    clearly_fine: bool,
    /// Failing verdicts in a row that roll back.
    failure_limit: u32,
    /// The window is spent: the next tick judges new requests only.
    closes_window: bool,
}

/// Judges `window` with the rollout's method; the sequential test adds its strata to the
/// evidence.
fn judge_window(
    r: &mut Rollout,
    window: &Pair<EnvStats>,
    strata: &Strata<'_>,
    blue_p95_ms: Option<u64>,
) -> Judgement {
    match r.health.method {
        Method::Threshold => {
            let mut verdict = judge(&r.health, window);
            // A window failed during an incident is spent, not kept growing with its ticks.
            let excused = super::incident::excuse_threshold(r, window, &mut verdict);
            Judgement {
                // An inconclusive window keeps growing until it says something.
                closes_window: excused || verdict.status != VerdictStatus::Inconclusive,
                clearly_fine: false,
                failure_limit: r.health.failure_limit,
                verdict,
            }
        }
        Method::Sequential => {
            let whole = [Stratum::in_step(window.clone())];
            let live = if strata.live.is_empty() {
                &whole[..]
            } else {
                strata.live
            };
            let strata = Strata {
                live,
                shadow: strata.shadow,
                judge_reasons: strata.judge_reasons,
            };
            let (verdict, clearly_fine) = sequential_verdict(r, &strata, blue_p95_ms);
            // Every tick's window is new evidence, and reaching a level is itself the
            // decision: `failure_limit` does not apply.
            Judgement {
                verdict,
                clearly_fine,
                failure_limit: 1,
                closes_window: true,
            }
        }
    }
}

/// Judges one window with the sequential test: the window is this tick's requests (it restarts
/// every tick), each split's added to the evidence carried through the rollout with its own
/// share. Returns the verdict and whether green is clearly fine (may advance early).
/// A live split's counts for the sequential test: slow requests are those above `reference`
/// (none without one).
fn live_stratum(
    health: &HealthPolicy,
    st: &Stratum,
    reference: Option<u64>,
) -> sequential::Stratum {
    let slow = |s: &EnvStats| reference.map_or(0, |ms| s.total.count_above(ms));
    let (green, blue) = (&st.stats.green, &st.stats.blue);
    sequential::Stratum {
        counts: TickCounts {
            green_requests: green.requests,
            blue_requests: blue.requests,
            green_errors: green.errors(),
            blue_errors: blue.errors(),
            green_slow: slow(green),
            blue_slow: slow(blue),
            green_answers: green.answers,
            blue_answers: blue.answers,
            green_defects: health.judged_defects(green),
            blue_defects: health.judged_defects(blue),
            green_scored: green.feedback.scored,
            blue_scored: blue.feedback.scored,
            green_negative: green.feedback.negative,
            blue_negative: blue.feedback.negative,
            judge_wins: green.judged.wins,
            judge_losses: green.judged.losses,
            judge_ties: green.judged.ties,
        },
        in_step: st.in_step,
        fine_errors: None,
    }
}

fn sequential_verdict(
    r: &mut Rollout,
    strata: &Strata<'_>,
    blue_p95_ms: Option<u64>,
) -> (Verdict, bool) {
    let margin = r.health.latency_margin_ms;
    let next_reference = blue_p95_ms.map(|p| p + margin);
    // Only a reference fixed before this tick's requests: on the first tick there is none, and
    // no request counts as slow.
    let reference = r.evidence.latency_reference_ms;
    let live = strata
        .live
        .iter()
        .map(|st| live_stratum(&r.health, st, reference));
    let mut counts: Vec<sequential::Stratum> = live.collect();
    for st in strata.shadow {
        shadow_counts(&mut counts, strata.live, st, reference, &r.health);
    }
    let settings = r
        .health
        .sequential_settings()
        .on_step(r.step_index + 1, r.steps.len())
        .in_incident(r.incident.is_some());
    let report = sequential::update_strata(
        &mut r.evidence,
        &settings,
        &counts,
        reference,
        next_reference,
    );
    let status = match report.finding {
        Finding::Unhealthy => VerdictStatus::Fail,
        Finding::TooLittleData => VerdictStatus::Inconclusive,
        Finding::Healthy | Finding::ClearlyFine => VerdictStatus::Pass,
    };
    let early = report.finding == Finding::ClearlyFine;
    let mut reasons = report.reasons();
    reasons.extend(defect_classes(&r.health, strata.live));
    reasons.extend(ShadowStratum::reason(strata.shadow));
    if report.judge.as_ref().is_some_and(|j| j.reached()) && !strata.judge_reasons.is_empty() {
        reasons.push(format!(
            "the grader's reasons for green's last losses: {}",
            strata
                .judge_reasons
                .iter()
                .map(|r| format!("\"{r}\""))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let verdict = Verdict {
        status,
        reasons,
        evidence: Some(report),
    };
    (verdict, early)
}

/// Adds a tick's shadow copies to the counts ([`crate::shadow`]): the step's are judged with
/// blue's requests routed under the same version in place of that version's (green-less)
/// counts; others, or with no such requests, as pairs alone.
fn shadow_counts(
    counts: &mut Vec<sequential::Stratum>,
    live: &[Stratum],
    st: &ShadowStratum,
    reference: Option<u64>,
    health: &HealthPolicy,
) {
    // Blue's requests of the copies' own version (of the step's latest, for copies stored
    // without one).
    let joined = live
        .iter()
        .rposition(|l| {
            l.in_step
                && l.stats.green.requests == 0
                && (st.version.is_none() || l.version == st.version)
        })
        .filter(|_| st.in_step);
    let blue = joined.map(|i| &live[i].stats.blue);
    let mut judged = sequential::Stratum {
        counts: st.counts(blue, reference, health),
        in_step: st.in_step,
        fine_errors: Some(st.fine_errors(blue)),
    };
    match joined {
        Some(i) => {
            // The grader's pairs of the version stay with it: they are counted in green's
            // routed stats, not in the copies'.
            let live = &counts[i].counts;
            judged.counts.judge_wins = live.judge_wins;
            judged.counts.judge_losses = live.judge_losses;
            judged.counts.judge_ties = live.judge_ties;
            counts[i] = judged;
        }
        None => counts.push(judged),
    }
}

/// "green answer defects this tick: invalid_json 12, empty 1; blue: invalid_json 2", when green
/// had any the policy judges: the classes behind the defect test's figures.
fn defect_classes(health: &HealthPolicy, strata: &[Stratum]) -> Option<String> {
    let mut tick = Pair::<EnvStats>::default();
    for st in strata {
        tick.merge(&st.stats);
    }
    let list = |s: &EnvStats| {
        let parts: Vec<String> = Defect::ALL
            .into_iter()
            .filter(|d| !health.ignore_defects.contains(d) && s.defects.get(*d) > 0)
            .map(|d| format!("{} {}", d.name(), s.defects.get(d)))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    };
    (health.judged_defects(&tick.green) > 0).then(|| {
        format!(
            "green answer defects this tick: {}; blue: {}",
            list(&tick.green),
            list(&tick.blue)
        )
    })
}

/// "green costs 2.40× blue per request over the step (…), above the policy's 2×", when the
/// policy sets `max_cost_ratio`, both environments have `min_requests` in the step, blue's
/// requests cost something, and green's cost more than that many times as much.
fn over_cost(health: &HealthPolicy, step: &Pair<CostSample>) -> Option<String> {
    let limit = health.max_cost_ratio?;
    let enough = |c: &CostSample| c.requests >= health.min_requests;
    if !(enough(&step.green) && enough(&step.blue)) {
        return None;
    }
    let (green, blue) = (step.green.per_request()?, step.blue.per_request()?);
    if blue <= 0.0 || green <= limit * blue {
        return None;
    }
    Some(format!(
        "green costs {:.2}× blue per request over the step (${green:.6} vs ${blue:.6}), above the policy's {limit}×",
        green / blue
    ))
}

/// Whether the split check runs now: a progressing rollout whose policy runs it, with the
/// split in force being the step's (after a resume with a manual split it is not, until the
/// next step) and routing some requests to each side. What the status's `split_check.on`
/// shows.
pub fn checks_split(state: &State) -> bool {
    match &state.stage {
        Stage::Progressing(r) => split_checked(r, &state.split),
        _ => false,
    }
}

fn split_checked(r: &Rollout, split: &Split) -> bool {
    r.health.checks_split()
        && split.green_percent == r.step().green_percent
        && share_check::checkable(split.green_percent)
}

/// Adds the tick's requests routed at random under the step's split (the split in force,
/// while it is the step's) to the split check, when it runs; whether a hold began or ended.
/// Requests with a sticky key or forced by the client are not counted (see
/// [`share_check`]); batches of isolates older than the count of random requests count none.
fn check_split(r: &mut Rollout, split: &Split, strata: &[Stratum], now_ms: u64) -> Option<Change> {
    if !split_checked(r, split) {
        return None;
    }
    let routed = strata
        .iter()
        .filter(|st| st.in_step && st.version == Some(split.version))
        .fold((0u64, 0u64), |(g, b), st| {
            (
                g.saturating_add(st.stats.green.random_requests),
                b.saturating_add(st.stats.blue.random_requests),
            )
        });
    let tolerance = r.health.split_tolerance;
    let percent = split.green_percent;
    share_check::observe(&mut r.split_check, percent, tolerance, routed, now_ms)
}

/// `mv`, unless a split mismatch holds the rollout: then no step advances and it does not
/// complete (failing verdicts still roll back).
pub(super) fn hold_for_split(mv: Move, split_held: bool) -> Move {
    match mv {
        Move::Advance | Move::Complete if split_held => Move::Hold,
        mv => mv,
    }
}

/// What [`decide`] looks at, once the verdict is counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Facts {
    /// This tick's verdict.
    pub status: VerdictStatus,
    /// Failing verdicts in a row, this one included.
    pub failures: u32,
    /// Failing verdicts in a row that roll back (1 for the sequential test).
    pub failure_limit: u32,
    /// Whether the step's latest conclusive verdict passed.
    pub step_passed: bool,
    /// Whether the step's hold time has passed.
    pub held: bool,
    /// Whether green is clearly fine, so the hold may be cut short.
    pub clearly_fine: bool,
    /// Whether the current step is the ladder's last.
    pub last_step: bool,
    /// Whether the ladder is shadow steps only (an embeddings route's): its last step, passed,
    /// holds until the operator promotes.
    pub operator_completes: bool,
    /// Whether a provider-wide incident holds the step.
    pub incident: bool,
}

/// Counts the verdict into the rollout (failures in a row, whether the step passed, the latest
/// verdict) and returns the facts the decision needs.
fn count(r: &mut Rollout, j: &Judgement, now_ms: u64) -> Facts {
    match j.verdict.status {
        // The threshold gates keep the step's last conclusive verdict; the sequential test
        // judges the whole evidence every tick, so too little of it is no pass.
        VerdictStatus::Inconclusive => {
            if r.health.method == Method::Sequential {
                r.step_passed = false;
            }
        }
        VerdictStatus::Pass => {
            r.consecutive_failures = 0;
            r.step_passed = true;
        }
        VerdictStatus::Fail => {
            r.consecutive_failures += 1;
            r.step_passed = false;
        }
    }
    r.verdict = Some(VerdictRecord {
        verdict: j.verdict.clone(),
        at_ms: now_ms,
        consecutive_failures: r.consecutive_failures,
        step: r.step_index + 1,
    });
    Facts {
        status: j.verdict.status,
        failures: r.consecutive_failures,
        failure_limit: j.failure_limit,
        step_passed: r.step_passed,
        held: r.elapsed_on_step_ms(now_ms) >= r.step().hold_seconds * 1000,
        clearly_fine: j.clearly_fine,
        last_step: r.step_index + 1 == r.steps.len(),
        operator_completes: r.steps.iter().all(Step::is_shadow),
        incident: r.incident.is_some(),
    }
}

/// What a tick does to the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Move {
    /// Stay on the step: not held long enough, not passed, or nothing conclusive.
    Hold,
    /// A failing verdict below the limit: recorded, no change of split.
    CheckFailed,
    /// Failing verdicts reached the limit: back to 0% green.
    RollBack,
    /// The step held and passed: on to the next.
    Advance,
    /// The last step held and passed: green becomes blue.
    Complete,
}

/// Decides the move from the counted facts alone.
pub(super) fn decide(f: &Facts) -> Move {
    if f.status == VerdictStatus::Fail {
        return if f.failures >= f.failure_limit {
            Move::RollBack
        } else {
            Move::CheckFailed
        };
    }
    // A pass long ago still counts on a later inconclusive tick (threshold), but never a
    // step that has not passed since it began or resumed; nothing advances during an incident.
    // A shadow-only ladder's passed last step waits for the operator's promote.
    let awaits_operator = f.last_step && f.operator_completes;
    if f.incident || awaits_operator || !((f.held || f.clearly_fine) && f.step_passed) {
        Move::Hold
    } else if f.last_step {
        Move::Complete
    } else {
        Move::Advance
    }
}

/// Carries out `mv`: the next state, and the effects after the window's reset.
fn execute(
    mv: Move,
    f: &Facts,
    split: Split,
    rollout: Rollout,
    verdict: Verdict,
    now_ms: u64,
) -> (State, Vec<Effect>) {
    let step_no = rollout.step_index + 1;
    let (failures, limit) = (f.failures, f.failure_limit);
    let reasons = || verdict.reasons.join("; ");
    let (state, kind, message, mut effects) = match mv {
        Move::Hold => return (State::progressing(split, rollout), Vec::new()),
        Move::CheckFailed => (
            State::progressing(split, rollout),
            EventKind::CheckFailed,
            format!(
                "Check failed ({failures} of {limit} before rollback): {}",
                reasons()
            ),
            Vec::new(),
        ),
        Move::RollBack => (
            State::rolled_back(split, rollout, now_ms),
            EventKind::RolledBack,
            rollback_message(f, step_no, &reasons()),
            vec![Effect::WriteSplit],
        ),
        Move::Complete => {
            let state = State::completed(split, rollout, now_ms);
            let message = format!(
                "Completed: every step passed; {} is the new blue at 100%.",
                state.split.blue_model
            );
            (
                state,
                EventKind::Completed,
                message,
                vec![Effect::WriteSplit],
            )
        }
        Move::Advance => {
            let (state, message) = advance(split, rollout, now_ms);
            let effects = vec![Effect::ResetStep, Effect::WriteSplit];
            (state, EventKind::StepAdvanced, message, effects)
        }
    };
    let event = Event::by_controller(&state, now_ms, kind, message, verdict);
    effects.push(Effect::record(event));
    (state, effects)
}

/// Why the tick rolled back: the failing checks in a row, unless one is the limit.
fn rollback_message(f: &Facts, step_no: usize, reasons: &str) -> String {
    let why = if f.failure_limit == 1 {
        format!("on step {step_no}")
    } else {
        let failures = f.failures;
        format!("after {failures} failing checks in a row on step {step_no}")
    };
    format!("Rolled back automatically {why}: {reasons}")
}

/// Moves to the next step at `now_ms`; returns the state and the event's message.
fn advance(mut split: Split, mut r: Rollout, now_ms: u64) -> (State, String) {
    let step_no = r.step_index + 1;
    r.step_index += 1;
    r.step_started_at_ms = now_ms;
    r.step_passed = false;
    sequential::new_step(&mut r.evidence);
    share_check::restart(&mut r.split_check);
    split.green_percent = r.step().green_percent;
    split.version += 1;
    let steps = r.steps.len();
    let state = State::progressing(split, r);
    let message = format!(
        "Step {step_no} passed; step {} of {steps} at {}.",
        step_no + 1,
        state.split_words()
    );
    (state, message)
}
