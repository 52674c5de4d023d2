//! What the evidence shows, for people and for the verdict: each test's figures
//! ([`RelativeReport`]), the whole verdict's ([`Report`]), built from the evidence against the
//! levels the settings set ([`report`]), and the sentences the status and event log carry
//! ([`Report::reasons`]).

use serde::{Deserialize, Serialize};

use super::{
    finite_log, log_mean_exp, ratio_from_log, stored, Evidence, Finding, Settings, FINE_ALPHA,
    SATURATED_RATIO,
};

/// One relative test's figures, for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "stored::RelativeReport")]
pub struct RelativeReport {
    pub green_events: u64,
    pub green_requests: u64,
    pub blue_events: u64,
    pub blue_requests: u64,
    /// Green's event rate over blue's, over the rollout; `null` when blue has none.
    pub ratio: Option<f64>,
    /// Natural log of the mixture likelihood ratio: what the verdict compares.
    pub log_evidence: f64,
    /// The mixture likelihood ratio, evidence that green is worse than τ × blue, saturated at
    /// [`SATURATED_RATIO`].
    pub evidence: f64,
    /// The ratio at which green is rolled back (1/alpha).
    pub rollback_at: f64,
}

impl RelativeReport {
    /// The figures of one relative test: its (green, blue) events among (green, blue) trials
    /// over the rollout, its log evidence and its rollback level.
    fn new(events: (u64, u64), trials: (u64, u64), log_evidence: f64, rollback_at: f64) -> Self {
        let (green_events, blue_events) = events;
        let (green_requests, blue_requests) = trials;
        RelativeReport {
            green_events,
            green_requests,
            blue_events,
            blue_requests,
            ratio: ratio_of(green_events, green_requests, blue_events, blue_requests),
            log_evidence,
            evidence: ratio_from_log(log_evidence),
            rollback_at,
        }
    }

    /// Whether the evidence reached the rollback level.
    pub fn reached(&self) -> bool {
        self.log_evidence >= self.rollback_at.ln()
    }
}

/// Everything a sequential verdict rests on. Every number is finite: evidence is kept as logs
/// and shown as ratios saturated at [`SATURATED_RATIO`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "stored::Report")]
pub struct Report {
    pub finding: Finding,
    pub errors: RelativeReport,
    /// Slow requests: slower than `latency_reference_ms`.
    pub latency: RelativeReport,
    /// Answer defects the policy judges; `null` in reports stored before they were judged.
    pub defects: Option<RelativeReport>,
    /// Negative feedback among scored answers (`green_requests` and `blue_requests` count the
    /// scored answers); `null` in reports stored before feedback was judged.
    pub feedback: Option<RelativeReport>,
    /// Errors over the current step alone (counts and evidence of the step, its own level),
    /// from the second step on; `null` on the first step (its evidence is the rollout-wide
    /// one) and in reports stored before it was kept.
    pub step_errors: Option<RelativeReport>,
    /// The same for slow requests.
    pub step_latency: Option<RelativeReport>,
    pub latency_reference_ms: Option<u64>,
    /// Natural log of the guard's evidence.
    pub guard_log_evidence: f64,
    /// The guard's evidence that green's error rate is above `max_error_rate` (saturated).
    pub guard_evidence: f64,
    pub guard_rollback_at: f64,
    /// The guard's limit this tick: `max_error_rate`, or τ × a lower bound on blue's rate when
    /// that is higher; `max_error_rate` in reports stored before the tick's limit was kept, and
    /// when the guard stood aside.
    pub guard_limit: f64,
    /// Why the guard stood aside this tick, when it did; `null` when it judged green (and in
    /// reports stored before this was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_aside: Option<GuardAside>,
    /// Natural logs of the clearly-fine evidence this step (errors, latency), when
    /// `advance_early` is on.
    pub fine_log_evidence: Option<(f64, f64)>,
    /// The same as ratios (saturated).
    pub fine_evidence: Option<(f64, f64)>,
    pub fine_at: Option<f64>,
    pub tolerance_ratio: f64,
    /// The grader's verdicts and the evidence that green loses more pairs than the tolerance
    /// allows; absent without a grader (and in reports stored before the grader judged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeReport>,
}

/// The grader test's figures, over the rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeReport {
    /// Pairs whose verdict preferred green's answer, blue's, or neither.
    pub wins: u64,
    pub losses: u64,
    pub ties: u64,
    /// Green's losses among decisive pairs; `null` before any.
    pub loss_share: Option<f64>,
    /// The share of decisive pairs green may lose.
    pub tolerance: f64,
    /// Natural log of the mixture likelihood ratio.
    pub log_evidence: f64,
    /// The evidence that green loses more than `tolerance` of decisive pairs (saturated).
    pub evidence: f64,
    /// The ratio at which green is rolled back (1/alpha).
    pub rollback_at: f64,
}

impl JudgeReport {
    /// Whether the evidence reached the rollback level.
    pub fn reached(&self) -> bool {
        self.log_evidence >= self.rollback_at.ln()
    }

    /// "the grader preferred blue's answer in 62% of 400 decisive pairs (248 lost, 152 won,
    /// 90 ties), tolerance 55%; evidence 120:1, rollback at 67:1".
    fn sentence(&self) -> String {
        let decisive = self.wins.saturating_add(self.losses);
        let share = match self.loss_share {
            Some(q) => format!("preferred blue's answer in {:.0}% of", 100.0 * q),
            None => "has no decisive verdict among".to_string(),
        };
        format!(
            "the grader {share} {decisive} decisive pairs ({} lost, {} won, {} ties), tolerance {:.0}%; evidence {}, rollback at {}",
            self.losses,
            self.wins,
            self.ties,
            100.0 * self.tolerance,
            odds(self.evidence),
            odds(self.rollback_at)
        )
    }
}

/// Why the guard added nothing in a tick: green failing as much as blue is not its fault then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardAside {
    /// A provider-wide incident was under way.
    Incident,
    /// The tick showed blue failing above `max_error_rate` (at 95%).
    BlueAbove,
}

fn ratio_of(g: u64, gn: u64, b: u64, bn: u64) -> Option<f64> {
    (b > 0 && gn > 0 && bn > 0).then(|| (g as f64 / gn as f64) / (b as f64 / bn as f64))
}

/// "62:1" for evidence above 1, "1:40" below, ">1e300:1" once saturated.
pub fn odds(x: f64) -> String {
    if x >= SATURATED_RATIO {
        return ">1e300:1".into();
    }
    let fmt = |v: f64| {
        if v >= 10.0 {
            whole(v)
        } else {
            format!("{v:.1}")
        }
    };
    if x >= 1.0 {
        format!("{}:1", fmt(x.min(1e12)))
    } else {
        format!("1:{}", fmt((1.0 / x.max(1e-12)).min(1e12)))
    }
}

/// `format!("{v:.0}")` for `v` in 10..=1e12, without the float formatter (every tick formats
/// several of these): an integer's digits, except at an exact tie, which the formatter rounds
/// to even.
pub(super) fn whole(v: f64) -> String {
    if v - v.trunc() == 0.5 {
        format!("{v:.0}")
    } else {
        (v.round() as u64).to_string()
    }
}

impl RelativeReport {
    /// "{subject} are 4.1× blue's (37 of 1200 vs 90 of 12000); evidence 62:1, rollback at
    /// 33:1", or ": none on green so far" / ": seen on green only" without a ratio.
    fn sentence(&self, subject: &str) -> String {
        let ratio = match self.ratio {
            Some(x) => format!(" are {x:.1}× blue's"),
            None if self.green_events == 0 => ": none on green so far".to_string(),
            None => ": seen on green only".to_string(),
        };
        format!(
            "{subject}{ratio} ({} of {} vs {} of {}); evidence {}, rollback at {}",
            self.green_events,
            self.green_requests,
            self.blue_events,
            self.blue_requests,
            odds(self.evidence),
            odds(self.rollback_at)
        )
    }
}

impl Report {
    /// Sentences for the status and the event log, e.g. "green errors are 4.1× blue's (…);
    /// evidence 62:1, rollback at 33:1", or "green errors: none on green so far (…)".
    pub fn reasons(&self) -> Vec<String> {
        let mut out = vec![
            self.errors.sentence("green errors"),
            match self.latency_reference_ms {
                Some(ms) => self
                    .latency
                    .sentence(&format!("green requests slower than {ms} ms")),
                None => "latency: no blue reference yet".to_string(),
            },
        ];
        let slower = match self.latency_reference_ms {
            Some(ms) => format!("this step: green requests slower than {ms} ms"),
            None => "this step: green slow requests".to_string(),
        };
        for (subject, report) in [
            ("this step: green errors", &self.step_errors),
            (slower.as_str(), &self.step_latency),
        ] {
            if let Some(r) = report {
                self.lead_if_reached(&mut out, r, subject);
            }
        }
        for (subject, report) in [
            ("green answer defects", &self.defects),
            ("green negative scores", &self.feedback),
        ] {
            // No scores at all: nothing to say about feedback.
            match report {
                Some(r)
                    if !(r.green_requests == 0 && r.blue_requests == 0 && r.green_events == 0) =>
                {
                    self.lead_if_reached(&mut out, r, subject)
                }
                _ => {}
            }
        }
        if let Some(j) = &self.judge {
            let line = j.sentence();
            if j.reached() && !self.errors.reached() {
                out.insert(0, line);
            } else {
                out.push(line);
            }
        }
        out.push(self.guard_sentence());
        if let (Some((e, l)), Some(at)) = (self.fine_evidence, self.fine_at) {
            out.push(format!(
                "no worse than {}× blue: evidence {} (errors), {} (latency); advance early at {}",
                self.tolerance_ratio,
                odds(e),
                odds(l),
                odds(at)
            ));
        }
        match self.finding {
            Finding::TooLittleData => out.insert(0, "too few requests this step to advance".into()),
            Finding::ClearlyFine => out.insert(0, "clearly fine: may advance early".into()),
            _ => {}
        }
        out
    }

    /// Adds `r`'s sentence: first when its test reached its level and the errors' did not (the
    /// event's sentence leads with the test that decided), last otherwise.
    fn lead_if_reached(&self, out: &mut Vec<String>, r: &RelativeReport, subject: &str) {
        let line = r.sentence(subject);
        if r.reached() && !self.errors.reached() {
            out.insert(0, line);
        } else {
            out.push(line);
        }
    }

    /// The guard's sentence: green's error rate against its limit this tick, or why it stood
    /// aside.
    fn guard_sentence(&self) -> String {
        let e = &self.errors;
        let rate = if e.green_requests > 0 {
            e.green_events as f64 / e.green_requests as f64
        } else {
            0.0
        };
        let against = match self.guard_aside {
            None => format!("against the {:.2}% limit", 100.0 * self.guard_limit),
            Some(GuardAside::Incident) => {
                "not judged alone this tick (a provider-wide incident lasts)".to_string()
            }
            Some(GuardAside::BlueAbove) => format!(
                "not judged alone this tick (blue is shown failing above the {:.2}% limit)",
                100.0 * self.guard_limit
            ),
        };
        format!(
            "green error rate {:.2}% {against}: evidence {}, rollback at {}",
            100.0 * rate,
            odds(self.guard_evidence),
            odds(self.guard_rollback_at)
        )
    }
}

/// The level at which each test rolls green back, and the clearly-fine test's.
struct Levels {
    errors: f64,
    latency: f64,
    defects: f64,
    feedback: f64,
    guard: f64,
    fine: f64,
    judge: f64,
}

impl Levels {
    fn of(s: &Settings) -> Levels {
        let rollout_share = s.ladder.rollout_share();
        Levels {
            errors: 1.0 / (s.alpha * rollout_share),
            latency: 1.0 / (s.latency_alpha * rollout_share),
            defects: 1.0 / s.defect_alpha,
            feedback: 1.0 / s.feedback_alpha,
            guard: 1.0 / s.guard_alpha,
            fine: 1.0 / FINE_ALPHA,
            judge: s.judge.map_or(f64::INFINITY, |j| 1.0 / j.alpha),
        }
    }
}

/// Each test's mixture evidence, as a finite log. Every comparison is between logs: the ratios
/// themselves overflow at volume.
struct Logs {
    errors: f64,
    slow: f64,
    defects: f64,
    feedback: f64,
    guard: f64,
    /// Clearly fine: (errors, slow requests).
    fine: (f64, f64),
    judge: f64,
}

impl Logs {
    fn of(ev: &Evidence) -> Logs {
        let log = |xs: &[f64]| finite_log(log_mean_exp(xs));
        Logs {
            errors: log(&ev.errors),
            slow: log(&ev.slow),
            defects: log(&ev.defects),
            feedback: log(&ev.feedback),
            guard: log(&ev.guard),
            fine: (log(&ev.fine_errors), log(&ev.fine_slow)),
            judge: log(&ev.judge),
        }
    }
}

/// The step's own evidence (errors, slow requests), from the second step on, with the counts
/// it rests on (a resume restarts `ev.step` but not the evidence).
fn step_reports(ev: &Evidence, s: &Settings) -> (Option<RelativeReport>, Option<RelativeReport>) {
    let st = &ev.step_evidence;
    let trials = (st.green_requests, st.blue_requests);
    let step_errors = s.ladder.step_share().map(|share| {
        RelativeReport::new(
            (st.green_errors, st.blue_errors),
            trials,
            finite_log(log_mean_exp(&ev.step_errors)),
            1.0 / (s.alpha * share),
        )
    });
    let step_latency = s.ladder.step_share().map(|share| {
        RelativeReport::new(
            (st.green_slow, st.blue_slow),
            trials,
            finite_log(log_mean_exp(&ev.step_slow)),
            1.0 / (s.latency_alpha * share),
        )
    });
    (step_errors, step_latency)
}

/// What the evidence says of green: unhealthy when any test reached its level, else too little
/// data until each side has `min_requests` in the step, else clearly fine or healthy.
fn finding(ev: &Evidence, s: &Settings, at: &Levels, logs: &Logs, step_reached: bool) -> Finding {
    let enough =
        ev.step.green_requests >= s.min_requests && ev.step.blue_requests >= s.min_requests;
    let unhealthy = logs.errors >= at.errors.ln()
        || logs.slow >= at.latency.ln()
        || logs.defects >= at.defects.ln()
        || logs.feedback >= at.feedback.ln()
        || logs.guard >= at.guard.ln()
        || logs.judge >= at.judge.ln()
        || step_reached;
    // Defects have no clearly-fine test of their own (an app whose answers never have any
    // would never advance early): only evidence pointing against green holds the step.
    let fine_defects = logs.defects <= 0.0 && logs.feedback <= 0.0 && logs.judge <= 0.0;
    let fine = logs.fine;
    if unhealthy {
        Finding::Unhealthy
    } else if !enough {
        Finding::TooLittleData
    } else if s.advance_early && fine.0 >= at.fine.ln() && fine.1 >= at.fine.ln() && fine_defects {
        Finding::ClearlyFine
    } else {
        Finding::Healthy
    }
}

/// What the evidence shows now, against the levels `s` sets.
pub(super) fn report(ev: &Evidence, s: &Settings, reference_ms: Option<u64>) -> Report {
    let at = Levels::of(s);
    let logs = Logs::of(ev);
    let (step_errors, step_latency) = step_reports(ev, s);
    let step_reached = [&step_errors, &step_latency]
        .into_iter()
        .flatten()
        .any(RelativeReport::reached);
    let finding = finding(ev, s, &at, &logs, step_reached);
    let r = &ev.rollout;
    let fine = logs.fine;
    Report {
        finding,
        errors: RelativeReport::new(
            (r.green_errors, r.blue_errors),
            (r.green_requests, r.blue_requests),
            logs.errors,
            at.errors,
        ),
        latency: RelativeReport::new(
            (r.green_slow, r.blue_slow),
            (r.green_requests, r.blue_requests),
            logs.slow,
            at.latency,
        ),
        defects: Some(RelativeReport::new(
            (r.green_defects, r.blue_defects),
            if r.green_answers + r.blue_answers > 0 {
                (r.green_answers, r.blue_answers)
            } else {
                (r.green_requests, r.blue_requests)
            },
            logs.defects,
            at.defects,
        )),
        feedback: Some(RelativeReport::new(
            (r.green_negative, r.blue_negative),
            (r.green_scored, r.blue_scored),
            logs.feedback,
            at.feedback,
        )),
        step_errors,
        step_latency,
        latency_reference_ms: reference_ms,
        guard_log_evidence: logs.guard,
        guard_evidence: ratio_from_log(logs.guard),
        guard_rollback_at: at.guard,
        guard_limit: s.max_error_rate,
        guard_aside: None,
        fine_log_evidence: s.advance_early.then_some(fine),
        fine_evidence: s
            .advance_early
            .then_some((ratio_from_log(fine.0), ratio_from_log(fine.1))),
        fine_at: s.advance_early.then_some(at.fine),
        tolerance_ratio: s.tolerance_ratio,
        judge: s.judge.map(|j| JudgeReport {
            wins: r.judge_wins,
            losses: r.judge_losses,
            ties: r.judge_ties,
            loss_share: (r.judge_wins + r.judge_losses > 0).then(|| {
                r.judge_losses as f64 / r.judge_wins.saturating_add(r.judge_losses) as f64
            }),
            tolerance: j.tolerance,
            log_evidence: logs.judge,
            evidence: ratio_from_log(logs.judge),
            rollback_at: at.judge,
        }),
    }
}
