//! The isolate's green breakers ([`bluegreen_core::request::breaker`]): one per route (each
//! route's green is its own model, and one failing says nothing of another), built from the
//! `GREEN_EJECTION*` settings on first use, fed with the clock, their events logged.
//!
//! It decides nothing: the core's breaker says whether a green request goes to green, when an
//! attempt still waiting on green must be looked at again and whether it is given up. This
//! module keeps the breaker for the isolate's life and hands each tracked attempt a [`Watch`],
//! whose drop tells the breaker that an attempt ended unjudged (the client went away).

use bluegreen_core::request::breaker::{
    Admit, Breaker, Check, Finish, Mode, Settings, Shed, Snapshot,
};

use crate::per_route;
use crate::runtime::now_ms;

/// Runs `f` on `route`'s breaker (built from `settings` the first time), then logs the state
/// changes it made.
fn with<R>(settings: &Settings, route: &str, f: impl FnOnce(&mut Breaker) -> R) -> R {
    per_route::with(route, |state| {
        let breaker = state.breaker.get_or_insert_with(|| Breaker::new(*settings));
        let result = f(breaker);
        while let Some(event) = breaker.poll_event() {
            match serde_json::to_string(&event) {
                Ok(json) => worker::console_warn!("green_breaker {route} {json}"),
                Err(e) => worker::console_error!("green_breaker event not logged: {e}"),
            }
        }
        result
    })
}

/// What to do with a (not forced) green request.
pub enum Gate {
    /// Serve it from blue now: green is ejected.
    Shed(Shed),
    /// Send it to green; the watch (none while the breaker is off) follows the attempt.
    Send(Option<Watch>),
}

/// Asks `route`'s breaker before a (not forced) green attempt in `mode`.
pub fn admit(settings: &Settings, route: &str, mode: Mode) -> Gate {
    if !settings.enabled {
        return Gate::Send(None);
    }
    match with(settings, route, |b| b.admit_green(mode, now_ms())) {
        Admit::Green(ticket) | Admit::Probe(ticket) => Gate::Send(Some(Watch {
            settings: *settings,
            route: route.to_string(),
            ticket: Some(ticket),
        })),
        Admit::Shed(shed) => Gate::Shed(shed),
    }
}

/// Tells `route`'s breaker that a blue attempt in `mode` answered, `answer_ms` after it was
/// sent (to its headers, or a stream's first event): what green's hang deadline is measured
/// against.
pub fn blue_answered(settings: &Settings, route: &str, mode: Mode, answer_ms: u64) {
    if settings.enabled {
        with(settings, route, |b| {
            b.blue_answered(mode, answer_ms, now_ms())
        });
    }
}

/// `route`'s breaker's state for `/healthz`; `None` while `GREEN_EJECTION` is off.
pub fn snapshot(settings: &Settings, route: &str) -> Option<Snapshot> {
    settings
        .enabled
        .then(|| with(settings, route, |b| b.snapshot()))
}

/// One green attempt the breaker tracks, from its send to its judgement. Dropped before
/// [`Watch::finish`] (the request was cancelled), it tells the breaker the attempt ended
/// without a word on green.
pub struct Watch {
    settings: Settings,
    route: String,
    /// `None` once the breaker no longer tracks it.
    ticket: Option<bluegreen_core::request::breaker::Ticket>,
}

impl Watch {
    /// Called when the attempt is sent and at each wake the last call asked for, while it
    /// waits on green. `Ok(Some(at))`: look again at `at` (Unix ms), unless the attempt ends
    /// first. `Ok(None)`: no need to look again before `limit_at_ms`, when the attempt's own
    /// limit ends it (no timer is needed for the breaker). `Err(shed)`: give green up now and
    /// serve blue.
    pub fn next(&mut self, now: u64, limit_at_ms: u64) -> Result<Option<u64>, Shed> {
        let Some(ticket) = self.ticket else {
            return Ok(None);
        };
        match with(&self.settings, &self.route, |b| b.check(ticket, now)) {
            Check::Wait { until_ms } => Ok((until_ms < limit_at_ms).then_some(until_ms)),
            Check::Abandon(shed) => {
                self.ticket = None;
                Err(shed)
            }
            Check::Untracked => {
                self.ticket = None;
                Ok(None)
            }
        }
    }

    /// Reports how the attempt ended, at its commit point: its headers, or a stream's first
    /// event (or its end or failure before one).
    pub fn finish(mut self, finish: Finish) {
        if let Some(ticket) = self.ticket.take() {
            with(&self.settings, &self.route, |b| {
                b.attempt_finished(ticket, finish, now_ms())
            });
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            with(&self.settings, &self.route, |b| {
                b.attempt_cancelled(ticket, now_ms())
            });
        }
    }
}
