//! The controller owns the routing document: every tick reads it back and compares it with the
//! split its state puts in force. A document deleted or edited by hand, or a write that never
//! landed, is found within a tick and rewritten, with an event that says what was found.
//! Only the split counts (models, share, stickiness, version); `updated_at` is the writer's.

use super::{Event, EventKind, State};
use crate::request::routing::RoutingDoc;

/// What a read-back of the routing document found.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadBack {
    /// The document puts the state's split in force.
    Matches,
    /// There is no document: the request path serves the vars.
    Missing,
    /// A valid document with another split (edited by hand, or an older write).
    Differs(RoutingDoc),
    /// A document the request path ignores as invalid (the reason).
    Invalid(String),
    /// KV did not answer: nothing is known (the reason); nothing is rewritten.
    NotRead(String),
}

impl ReadBack {
    /// Whether the document must be rewritten.
    pub fn needs_rewrite(&self) -> bool {
        matches!(
            self,
            ReadBack::Missing | ReadBack::Differs(_) | ReadBack::Invalid(_)
        )
    }

    /// The event that records a rewrite at `now_ms`, when one is needed.
    pub fn repair_event(&self, state: &State, now_ms: u64) -> Option<Event> {
        let found = match self {
            ReadBack::Missing => "was missing".to_string(),
            ReadBack::Differs(doc) => format!(
                "held another split ({}% green, {} / {}, version {})",
                doc.green_percent, doc.blue_model, doc.green_model, doc.version
            ),
            ReadBack::Invalid(reason) => format!("was invalid ({reason})"),
            ReadBack::Matches | ReadBack::NotRead(_) => return None,
        };
        let message = format!(
            "The routing document in KV {found}; rewritten with the controller's split: {}% \
             green, version {}.",
            state.green_percent(),
            state.version()
        );
        Some(Event::by_controller_plain(
            state,
            now_ms,
            EventKind::RoutingRepaired,
            message,
        ))
    }
}

/// Compares what KV holds (`Ok(None)`: no document; `Err(Invalid)`/`Err(NotRead)` as the shell
/// classed a failed read) with the split `state` puts in force.
pub fn read_back(state: &State, kv: Result<Option<RoutingDoc>, ReadBack>) -> ReadBack {
    let doc = match kv {
        Ok(Some(doc)) => doc,
        Ok(None) => return ReadBack::Missing,
        Err(found) => return found,
    };
    let own = state.routing_doc(0);
    let same = doc.blue_model == own.blue_model
        && doc.green_model == own.green_model
        && doc.green_percent == own.green_percent
        && doc.shadow_percent == own.shadow_percent
        && doc.sticky == own.sticky
        && doc.version == own.version
        && doc.judge == own.judge;
    if same {
        ReadBack::Matches
    } else {
        ReadBack::Differs(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::initial(&RoutingDoc {
            blue_model: "b".into(),
            green_model: "g".into(),
            green_percent: 30.0,
            shadow_percent: 0.0,
            sticky: true,
            version: 8,
            updated_at: None,
            judge: None,
        })
    }

    #[test]
    fn read_back_table() {
        let s = state();
        let own = s.routing_doc(5);
        let edited = RoutingDoc {
            green_percent: 100.0,
            ..own.clone()
        };
        let older = RoutingDoc {
            version: 7,
            ..own.clone()
        };
        // (what KV gave, finding, rewrite?, event?)
        type Case = (Result<Option<RoutingDoc>, ReadBack>, ReadBack, bool, bool);
        let cases: [Case; 6] = [
            (Ok(Some(own.clone())), ReadBack::Matches, false, false),
            (Ok(None), ReadBack::Missing, true, true),
            (
                Ok(Some(edited.clone())),
                ReadBack::Differs(edited),
                true,
                true,
            ),
            (
                Ok(Some(older.clone())),
                ReadBack::Differs(older),
                true,
                true,
            ),
            (
                Err(ReadBack::Invalid("green_percent 130".into())),
                ReadBack::Invalid("green_percent 130".into()),
                true,
                true,
            ),
            (
                Err(ReadBack::NotRead("timeout".into())),
                ReadBack::NotRead("timeout".into()),
                false,
                false,
            ),
        ];
        for (kv, finding, rewrite, event) in cases {
            let found = read_back(&s, kv);
            assert_eq!(found, finding);
            assert_eq!(found.needs_rewrite(), rewrite, "{found:?}");
            let e = found.repair_event(&s, 9);
            assert_eq!(e.is_some(), event, "{found:?}");
            if let Some(e) = e {
                assert_eq!((e.kind, e.alert), (EventKind::RoutingRepaired, true));
                assert!(e.message.contains("30% green, version 8"), "{}", e.message);
            }
        }
    }
}
