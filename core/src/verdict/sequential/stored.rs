//! How reports were stored: the first release kept only the ratios, and stored a ratio that
//! overflowed as `null`. Reading one gives the saturated log for `null`.

use serde::Deserialize;

use super::{finite_log, ratio_from_log, Finding, SATURATED_RATIO};

/// The log of a stored report's evidence: the log when stored, else the ratio's log, and
/// saturated when the ratio overflowed (`null`).
fn log_of(log: Option<f64>, ratio: Option<f64>) -> f64 {
    let log = log.or_else(|| ratio.map(f64::ln));
    finite_log(log.unwrap_or(SATURATED_RATIO.ln()))
}

#[derive(Deserialize)]
pub struct RelativeReport {
    green_events: u64,
    green_requests: u64,
    blue_events: u64,
    blue_requests: u64,
    ratio: Option<f64>,
    #[serde(default)]
    log_evidence: Option<f64>,
    evidence: Option<f64>,
    rollback_at: f64,
}

impl From<RelativeReport> for super::RelativeReport {
    fn from(r: RelativeReport) -> Self {
        let log_evidence = log_of(r.log_evidence, r.evidence);
        super::RelativeReport {
            green_events: r.green_events,
            green_requests: r.green_requests,
            blue_events: r.blue_events,
            blue_requests: r.blue_requests,
            ratio: r.ratio.filter(|x| x.is_finite()),
            log_evidence,
            evidence: ratio_from_log(log_evidence),
            rollback_at: r.rollback_at,
        }
    }
}

#[derive(Deserialize)]
pub struct Report {
    finding: Finding,
    errors: super::RelativeReport,
    latency: super::RelativeReport,
    #[serde(default)]
    defects: Option<super::RelativeReport>,
    #[serde(default)]
    feedback: Option<super::RelativeReport>,
    #[serde(default)]
    step_errors: Option<super::RelativeReport>,
    #[serde(default)]
    step_latency: Option<super::RelativeReport>,
    latency_reference_ms: Option<u64>,
    #[serde(default)]
    guard_log_evidence: Option<f64>,
    guard_evidence: Option<f64>,
    guard_rollback_at: f64,
    guard_limit: f64,
    #[serde(default)]
    guard_aside: Option<super::GuardAside>,
    #[serde(default)]
    fine_log_evidence: Option<(f64, f64)>,
    #[serde(default)]
    fine_evidence: Option<(Option<f64>, Option<f64>)>,
    fine_at: Option<f64>,
    tolerance_ratio: f64,
    #[serde(default)]
    judge: Option<super::JudgeReport>,
}

impl From<Report> for super::Report {
    fn from(r: Report) -> Self {
        let guard_log_evidence = log_of(r.guard_log_evidence, r.guard_evidence);
        let fine_log_evidence = match (r.fine_log_evidence, r.fine_evidence) {
            (Some((e, l)), _) => Some((finite_log(e), finite_log(l))),
            (None, Some((e, l))) => Some((log_of(None, e), log_of(None, l))),
            (None, None) => None,
        };
        super::Report {
            finding: r.finding,
            errors: r.errors,
            latency: r.latency,
            defects: r.defects,
            feedback: r.feedback,
            step_errors: r.step_errors,
            step_latency: r.step_latency,
            latency_reference_ms: r.latency_reference_ms,
            guard_log_evidence,
            guard_evidence: ratio_from_log(guard_log_evidence),
            guard_rollback_at: r.guard_rollback_at,
            guard_limit: r.guard_limit,
            guard_aside: r.guard_aside,
            fine_log_evidence,
            fine_evidence: fine_log_evidence.map(|(e, l)| (ratio_from_log(e), ratio_from_log(l))),
            fine_at: r.fine_at,
            tolerance_ratio: r.tolerance_ratio,
            judge: r.judge,
        }
    }
}
