//! When the stored state cannot be read (a document an older or newer version wrote, or one
//! damaged by hand): the controller must still answer. It serves an idle state on the routing
//! the request path is using, so nothing changes for users; it records the problem once; it
//! judges and changes nothing; and it leaves the unreadable document in place until an operator
//! recovers with `POST /admin/recover`, which lands in a safe split (0% green on the blue model
//! the document named) and keeps the stats.

use serde_json::Value;

use super::{Effect, Event, EventKind, State, Transition};
use crate::request::routing::RoutingDoc;
use crate::util::json;

/// What can still be read of an unreadable stored state, field by field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Salvage {
    /// The blue model it named, when that field is still a non-empty string.
    pub blue_model: Option<String>,
    /// Its routing version, when still a whole number.
    pub version: Option<u64>,
}

impl Salvage {
    /// Reads what it can of `raw`; nothing when it is not even JSON.
    pub fn from_raw(raw: &str) -> Salvage {
        let Ok(v) = json::parse::<Value>(raw) else {
            return Salvage::default();
        };
        Salvage {
            blue_model: v["blue_model"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(String::from),
            version: v["version"].as_u64(),
        }
    }
}

/// The state to serve while the stored one is unreadable (idle, on `routing`, the routing the
/// request path uses), and the event that records why.
pub fn unreadable(routing: &RoutingDoc, error: &str, now_ms: u64) -> (State, Event) {
    let state = State::initial(routing);
    let message = format!(
        "The stored rollout state cannot be read ({error}). Nothing is judged or changed until \
         an operator recovers with POST /admin/recover, which sets 0% green on the last blue \
         model and keeps the stats."
    );
    let event = Event::by_controller_plain(&state, now_ms, EventKind::StateUnreadable, message);
    (state, event)
}

/// `POST /admin/recover`: a safe split — 0% green on the blue model the unreadable state named
/// (else the routing in force), at a routing version above both — idle, with the stats kept.
pub fn recover(salvage: &Salvage, routing: &RoutingDoc, now_ms: u64) -> Transition {
    let blue_model = salvage
        .blue_model
        .clone()
        .unwrap_or_else(|| routing.blue_model.clone());
    let version = salvage.version.unwrap_or(0).max(routing.version) + 1;
    let safe = RoutingDoc {
        blue_model,
        green_percent: 0.0,
        version,
        ..routing.clone()
    };
    let state = State::initial(&safe);
    let message = format!(
        "Recovered by an operator from an unreadable state: {} serves all traffic; no rollout \
         is under way.",
        safe.blue_model
    );
    let event = Event::by_operator(&state, now_ms, EventKind::Recovered, message);
    Transition {
        state,
        effects: vec![Effect::WriteSplit, Effect::record(event)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::rollout::Phase;

    fn routing() -> RoutingDoc {
        RoutingDoc {
            blue_model: "in-kv".into(),
            green_model: "g".into(),
            green_percent: 30.0,
            shadow_percent: 0.0,
            sticky: true,
            version: 12,
            updated_at: None,
            judge: None,
        }
    }

    #[test]
    fn salvage_reads_what_it_can() {
        // (raw, blue model, version)
        let cases: [(&str, Option<&str>, Option<u64>); 5] = [
            (
                r#"{"blue_model": "b", "version": 9, "phase": 7}"#,
                Some("b"),
                Some(9),
            ),
            (r#"{"blue_model": "", "version": -1}"#, None, None),
            (r#"{"version": 3}"#, None, Some(3)),
            ("[1, 2]", None, None),
            ("not json", None, None),
        ];
        for (raw, blue, version) in cases {
            let s = Salvage::from_raw(raw);
            assert_eq!(
                (s.blue_model.as_deref(), s.version),
                (blue, version),
                "{raw}"
            );
        }
    }

    #[test]
    fn while_unreadable_the_routing_in_force_is_served_and_the_problem_alerts() {
        let (state, event) = unreadable(&routing(), "missing field `phase`", 5);
        assert_eq!(state.phase(), Phase::Idle);
        assert_eq!(state.routing_doc(5).green_percent, 30.0);
        assert_eq!(state.version(), 12, "nothing is written");
        assert_eq!(event.kind, EventKind::StateUnreadable);
        assert!(event.alert && event.message.contains("missing field `phase`"));
    }

    #[test]
    fn recovery_lands_on_zero_green_on_the_last_blue_above_every_version() {
        // (salvage, blue model after, version after)
        let named = Salvage {
            blue_model: Some("stored-blue".into()),
            version: Some(40),
        };
        let cases = [
            (named, "stored-blue", 41),
            (Salvage::default(), "in-kv", 13),
        ];
        for (salvage, blue, version) in cases {
            let t = recover(&salvage, &routing(), 9);
            let doc = t.state.routing_doc(9);
            assert_eq!(
                (doc.blue_model.as_str(), doc.green_percent, doc.version),
                (blue, 0.0, version)
            );
            assert_eq!(t.state.phase(), Phase::Idle);
            assert_eq!(t.effects[0], Effect::WriteSplit);
            let Effect::Record(e) = &t.effects[1] else {
                panic!("an event")
            };
            assert_eq!((e.kind, e.alert), (EventKind::Recovered, true));
        }
    }
}
