//! What operators do: pause, resume, manual splits, promote, roll back and start, from every
//! phase.

use super::*;

#[test]
fn pause_and_resume_freeze_the_hold_timer() {
    let s = started(&[(10.0, 300), (50.0, 60)]);
    // Paused after 2 of 5 minutes, for 10 minutes.
    let p = apply(&s, Command::Pause, 2 * MIN).unwrap();
    assert_eq!(kinds(&p), [EventKind::Paused]);
    let s = p.state;
    assert_eq!(s.phase(), Phase::Paused);
    // Ticks while paused judge nothing.
    assert!(tick(&s, bad(), 5 * MIN).effects.is_empty());
    // Five minutes later, still 2 minutes on the step.
    assert_eq!(s.step_elapsed_ms(7 * MIN), Some(2 * MIN));
    let r = apply(&s, Command::Resume, 12 * MIN).unwrap();
    assert_eq!(kinds(&r), [EventKind::Resumed]);
    // No split change on resume from a plain pause.
    assert!(!r.effects.contains(&Effect::WriteSplit));
    let s = r.state;
    // At 14 min: 2 + 2 = 4 of 5 minutes on the step: holds even though passing.
    let s = tick(&s, healthy(), 14 * MIN).state;
    assert_eq!(s.green_percent(), 10.0);
    // 1 of 5 minutes left (the status's `remaining_seconds`, 60, in `status::tests`).
    assert_eq!(s.step_elapsed_ms(14 * MIN), Some(4 * MIN));
    let s = tick(&s, healthy(), 15 * MIN).state;
    assert_eq!(s.green_percent(), 50.0);
    // Pause twice, resume twice: 409.
    assert!(matches!(
        apply(&s, Command::Resume, 16 * MIN),
        Err(Refusal::Conflict(_))
    ));
    let s = apply(&s, Command::Pause, 16 * MIN).unwrap().state;
    assert!(matches!(
        apply(&s, Command::Pause, 16 * MIN),
        Err(Refusal::Conflict(_))
    ));
}

#[test]
fn after_a_resume_the_step_must_pass_again() {
    // Threshold gates: a pass before the pause does not carry over the resume.
    let s = started(&[(10.0, 120), (50.0, 60)]);
    let s = tick(&s, healthy(), MIN).state;
    assert!(s.rollout().unwrap().step_passed);
    let s = apply(&s, Command::Pause, MIN).unwrap().state;
    let r = apply(&s, Command::Resume, 5 * MIN).unwrap();
    assert!(r.effects.contains(&Effect::ResetWindow));
    // At 7 min the step has run 3 of its 2 minutes, but the window since the resume is
    // thin: it holds.
    let t = tick(&r.state, window(10, 0), 7 * MIN);
    assert_eq!(t.state.green_percent(), 10.0);
    let t = tick(&t.state, healthy(), 8 * MIN);
    assert_eq!(t.state.green_percent(), 50.0);
}

#[test]
fn a_manual_split_pauses_and_resume_restores_the_step() {
    let s = started(&[(10.0, 300)]);
    let t = apply(
        &s,
        Command::SetSplit {
            green_percent: 25.0,
        },
        MIN,
    )
    .unwrap();
    assert_eq!(kinds(&t), [EventKind::SplitSet]);
    assert!(t.effects.contains(&Effect::WriteSplit));
    let Some(Effect::Record(ev)) = t.effects.last() else {
        panic!()
    };
    assert!(ev.alert, "pausing a running rollout alerts");
    let s = t.state;
    assert_eq!((s.phase(), s.green_percent()), (Phase::Paused, 25.0));
    // A second manual split while paused: no pause alert.
    let t = apply(&s, Command::SetSplit { green_percent: 5.0 }, MIN).unwrap();
    let Some(Effect::Record(ev)) = t.effects.last() else {
        panic!()
    };
    assert!(!ev.alert);
    let r = apply(&t.state, Command::Resume, 2 * MIN).unwrap();
    assert!(r.effects.contains(&Effect::WriteSplit));
    assert_eq!(r.state.green_percent(), 10.0);
    assert!(matches!(
        apply(
            &s,
            Command::SetSplit {
                green_percent: 101.0
            },
            MIN
        ),
        Err(Refusal::Invalid(_))
    ));
}

#[test]
fn promote_and_rollback_from_each_phase() {
    use Phase::*;
    // (phase, promote allowed, rollback allowed)
    for (phase, ok) in [
        (Idle, false),
        (Progressing, true),
        (Paused, true),
        (Completed, false),
        (RolledBack, false),
    ] {
        let s = in_phase(phase);
        assert_eq!(s.phase(), phase);
        let p = apply(&s, Command::Promote, 5);
        let r = apply(&s, Command::Rollback, 5);
        assert_eq!(p.is_ok(), ok, "promote from {phase:?}");
        assert_eq!(r.is_ok(), ok, "rollback from {phase:?}");
        if ok {
            let p = p.unwrap().state;
            assert_eq!(
                (p.phase(), p.split().blue_model.as_str(), p.green_percent()),
                (Completed, "green-m", 0.0)
            );
            let r = r.unwrap().state;
            assert_eq!(
                (r.phase(), r.split().blue_model.as_str(), r.green_percent()),
                (RolledBack, "blue-m", 0.0)
            );
            assert_eq!(r.ended_at_ms(), Some(5));
        } else {
            let Err(Refusal::Conflict(msg)) = p else {
                panic!()
            };
            assert!(msg.contains(phase.name()), "{msg}");
        }
    }
}

#[test]
fn starting_is_refused_while_active_and_allowed_after() {
    for phase in [Phase::Progressing, Phase::Paused] {
        let s = in_phase(phase);
        let r = apply(
            &s,
            Command::Start {
                spec: spec(&[(10.0, 60)]),
                routing: routing(),
            },
            9,
        );
        assert!(matches!(r, Err(Refusal::Conflict(_))));
    }
    // After completion, the next rollout's blue is the completed green.
    let done = in_phase(Phase::Completed);
    let routing_now = done.routing_doc(2);
    let mut next = spec(&[(20.0, 60)]);
    next.green_model = "newer".into();
    let t = apply(
        &done,
        Command::Start {
            spec: next,
            routing: routing_now,
        },
        3,
    )
    .unwrap();
    let r = t.state.rollout().unwrap();
    assert_eq!((r.id, r.blue_model.as_str()), (2, "green-m"));
    // Green equal to blue is a 400.
    let r = apply(
        &State::initial(&routing()),
        Command::Start {
            spec: RolloutSpec {
                green_model: "blue-m".into(),
                ..spec(&[(10.0, 1)])
            },
            routing: routing(),
        },
        0,
    );
    assert!(matches!(r, Err(Refusal::Invalid(e)) if e.field == "green_model"));
}

#[test]
fn refusals_answer_409_and_400() {
    use crate::error::fields::FieldError;
    use crate::error::ApiError;
    let conflict = ApiError::from(Refusal::Conflict(
        "Cannot pause: the rollout is idle.".into(),
    ));
    assert_eq!((conflict.status, conflict.code), (409, "conflict"));
    let invalid = ApiError::from(Refusal::Invalid(FieldError::new(
        "green_percent",
        "must be 0 to 100",
    )));
    assert_eq!(
        (invalid.status, invalid.param.as_deref()),
        (400, Some("green_percent"))
    );
}

#[test]
fn a_version_names_the_models_its_split_sent_requests_to() {
    use crate::environment::Environment::{Blue, Green};
    let idle = State::initial(&routing());
    assert_eq!(
        (idle.model_under(Blue, 7), idle.model_under(Green, 7)),
        ("blue-m", "old-green")
    );
    let s = started(&[(10.0, 60), (50.0, 60)]);
    let v = s.version();
    // The rollout's split, and the idle split before it (green served nothing there).
    for version in [v, v - 1] {
        assert_eq!(s.model_under(Blue, version), "blue-m");
        assert_eq!(s.model_under(Green, version), "green-m");
    }
    // A completion moves green into blue: requests routed before it went to the old blue.
    let done = apply(&s, Command::Promote, 1).unwrap().state;
    let end = done.version();
    assert_eq!(end, v + 1);
    assert_eq!(done.model_under(Blue, end), "green-m");
    assert_eq!(done.model_under(Blue, v), "blue-m");
    assert_eq!(done.model_under(Green, v), "green-m");
    // A rollback changes no model.
    let back = apply(&s, Command::Rollback, 1).unwrap().state;
    assert_eq!(back.model_under(Blue, back.version()), "blue-m");
    assert_eq!(back.model_under(Green, v), "green-m");
}

fn redefine(blue: &str) -> Command {
    Command::Redefine {
        blue_model: blue.into(),
        green_model: blue.into(),
        sticky: true,
    }
}

#[test]
fn an_idle_route_gets_its_new_blue_at_a_new_version() {
    let s = State::initial(&routing());
    let t = apply(&s, redefine("qwen-max"), 1_000).unwrap();
    assert_eq!(t.state.split().blue_model, "qwen-max");
    assert_eq!(t.state.split().green_model, "qwen-max");
    assert_eq!(t.state.version(), 8);
    assert_eq!(t.state.phase(), Phase::Idle);
    assert!(t.effects.contains(&Effect::WriteSplit));
    assert_eq!(kinds(&t), [EventKind::RouteDefined]);
    assert!(!events(&t)[0].alert);
    // The same definition again changes nothing: no version, no event.
    let again = apply(&t.state, redefine("qwen-max"), 2_000).unwrap();
    assert_eq!(again.state, t.state);
    assert!(again.effects.is_empty());
}

#[test]
fn a_running_rollout_keeps_its_blue_and_an_ended_one_takes_a_new_one() {
    let s = started(&[(10.0, 60)]);
    let refused = apply(&s, redefine("qwen-max"), 1_000).unwrap_err();
    assert!(
        matches!(&refused, Refusal::Conflict(m) if m.contains("while rollout 1 is progressing")),
        "{refused:?}"
    );
    let ended = apply(&s, Command::Rollback, 1_000).unwrap().state;
    let t = apply(&ended, redefine("qwen-max"), 2_000).unwrap();
    assert_eq!(t.state.phase(), Phase::RolledBack);
    assert_eq!(t.state.split().blue_model, "qwen-max");
}

#[test]
fn a_created_route_is_idle_on_its_definition_and_writes_it() {
    let t = create(&routing(), 5_000);
    assert_eq!(t.state, State::initial(&routing()));
    assert!(t.effects.contains(&Effect::WriteSplit));
    assert_eq!(kinds(&t), [EventKind::RouteDefined]);
    assert!(events(&t)[0].message.contains("blue-m serves all traffic"));
}
