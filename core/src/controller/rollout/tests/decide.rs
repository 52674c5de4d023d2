//! The tick's decision, from the counted facts alone.

use super::super::tick::{decide, Facts, Move};
use super::*;

#[test]
fn decision_table() {
    use Move::*;
    use VerdictStatus::{Fail, Inconclusive, Pass};
    #[rustfmt::skip]
    let table = [
        // status, failures, limit, step passed, held, clearly fine, last step, expected
        // Failing: below the limit a recorded check, at or above it a rollback, whatever the
        // hold or the step.
        (Fail, 1, 2, false, true, false, false, CheckFailed),
        (Fail, 1, 2, false, true, false, true, CheckFailed),
        (Fail, 2, 2, false, false, false, false, RollBack),
        (Fail, 3, 2, false, true, false, true, RollBack),
        // The sequential test's limit is 1.
        (Fail, 1, 1, false, false, false, false, RollBack),
        // Passing: advance once held, complete on the last step.
        (Pass, 0, 2, true, false, false, false, Hold),
        (Pass, 0, 2, true, true, false, false, Advance),
        (Pass, 0, 2, true, true, false, true, Complete),
        // Clearly fine cuts the hold short.
        (Pass, 0, 1, true, false, true, false, Advance),
        (Pass, 0, 1, true, false, true, true, Complete),
        // Inconclusive: an earlier pass on this step still counts once held (threshold)...
        (Inconclusive, 0, 2, true, true, false, false, Advance),
        (Inconclusive, 0, 2, true, false, false, false, Hold),
        // ...no pass since the step began or resumed holds, however long.
        (Inconclusive, 0, 2, false, true, false, false, Hold),
        (Inconclusive, 1, 2, false, true, false, true, Hold),
        (Inconclusive, 0, 1, false, true, true, true, Hold),
    ];
    for (status, failures, failure_limit, step_passed, held, clearly_fine, last_step, expected) in
        table
    {
        let facts = Facts {
            status,
            failures,
            failure_limit,
            step_passed,
            held,
            clearly_fine,
            last_step,
            operator_completes: false,
            incident: false,
        };
        assert_eq!(decide(&facts), expected, "{facts:?}");
    }
}

/// A step held its time, with one verdict of `status` (a pass is the step's), `last_step` or
/// not, no incident, on a live ladder.
fn held_step(status: VerdictStatus, last_step: bool) -> Facts {
    Facts {
        status,
        failures: 1,
        failure_limit: 1,
        step_passed: status == VerdictStatus::Pass,
        held: true,
        clearly_fine: false,
        last_step,
        operator_completes: false,
        incident: false,
    }
}

/// A provider-wide incident holds a step that would advance or complete; a failing verdict
/// still rolls back.
#[test]
fn an_incident_holds_but_never_keeps_a_rollback() {
    let facts = |status, last_step| Facts {
        clearly_fine: true,
        incident: true,
        ..held_step(status, last_step)
    };
    assert_eq!(decide(&facts(VerdictStatus::Pass, false)), Move::Hold);
    assert_eq!(decide(&facts(VerdictStatus::Pass, true)), Move::Hold);
    assert_eq!(decide(&facts(VerdictStatus::Fail, false)), Move::RollBack);
}

/// An embeddings route's ladder (shadow steps only) completes on the operator's promote alone:
/// its last step, passed, holds; a failing verdict still rolls back.
#[test]
fn a_shadow_only_ladder_holds_on_its_passed_last_step() {
    let facts = |status, last_step| Facts {
        operator_completes: true,
        ..held_step(status, last_step)
    };
    assert_eq!(decide(&facts(VerdictStatus::Pass, false)), Move::Advance);
    assert_eq!(decide(&facts(VerdictStatus::Pass, true)), Move::Hold);
    assert_eq!(decide(&facts(VerdictStatus::Fail, true)), Move::RollBack);
}
