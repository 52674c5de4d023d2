//! The state as stored.

use super::*;

#[test]
fn state_round_trips_through_json() {
    let s = in_phase(Phase::Paused);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<State>(&json).unwrap(), s);
}
