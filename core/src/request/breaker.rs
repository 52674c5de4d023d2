//! Outlier ejection for green, inside one isolate: when green's recent attempts fail, or stay
//! unanswered far longer than blue's answers take, new green requests go straight to blue for a
//! cool-down, and after it one request at a time probes green.
//!
//! This is Envoy's consecutive-failure ejection (five failures in a row, an ejection of
//! `base × times ejected`, capped) with a classic breaker's single half-open probe (Envoy lets
//! the host back at once; with one upstream and no active health check, a probe is what tells a
//! recovered green from a still broken one), plus a hang detector: Envoy sees a hung host only
//! when its requests time out, which here would cost every green user the whole first-byte
//! timeout. The breaker knows which green attempts are in flight, so it can tell that green has
//! stopped answering before any attempt has ended.
//!
//! # What it does not do
//!
//! No I/O, no clock, no timers: the shell passes `now` (Unix ms) into every call, and asks
//! [`Breaker::check`] when to look again for an attempt still waiting on green. It does not
//! classify answers (the fallback policy and the stream reader do, and report
//! [`Finish::Ok`], [`Finish::Error`] or [`Finish::NoAnswer`]), and it never sees forced
//! requests: a client that forces green gets green's answer, breaker or not.
//!
//! # When green is ejected
//!
//! - **Failures:** `consecutive_failures` (5) green attempts in a row end in
//!   [`Finish::Error`] or [`Finish::NoAnswer`]. An answer that is not a failure resets the count.
//! - **Hang:** each attempt has a *hang deadline*: `hang_factor` (5) × blue's recent p90 answer
//!   time in the same mode, at least `hang_floor_ms` (4 s), at most `hang_cap_ms` (120 s).
//!   Green is hung when, with no green answer (of any kind) since they started, either
//!   `hung_attempts` (3) attempts are past their deadline, or one attempt is past twice its
//!   deadline (the rule for a quiet isolate, where three green requests are rarely in flight at
//!   once).
//!
//! "Blue's answer time" is per [`Mode`]: for a stream, the time to its first event (what the
//! shell waits for before it commits); for a non-streamed request, the time to the whole answer,
//! which is what its response headers wait for. A green compared in the wrong mode would look
//! hung whenever its answers are long. Blue's p90 is taken over its last 64 successful answers
//! in the mode, so up to six outliers among them do not move it; a stream with no blue stream
//! answers yet borrows the non-streamed reference (which is longer, so more lenient), and with
//! no reference at all the deadline is the cap.
//!
//! **A slow green is not a hung one.** The hang rule needs every one of the attempts it counts
//! to be unanswered for 5 × blue's p90 and 4 s, *and* green to have answered nothing since they
//! started. A green answering 3× slower than blue is never ejected by it; one whose answers
//! take longer than the deadline is ejected only while no answer at all comes back (at a cold
//! start, or when it slows down all at once), and such a green has every request slower than
//! blue's p95, which the controller's latency test rolls back anyway. Deployments whose green
//! is expected to think long before its first event (a reasoning model behind a fast blue)
//! raise the floor (`GREEN_HANG_FLOOR_MS`).
//!
//! # After an ejection
//!
//! Green stays ejected for `base_ejection_ms` (30 s) × the number of strikes, at most
//! `max_ejection_ms` (300 s). A strike is added at each ejection, and one is forgiven for each
//! `base_ejection_ms` green stays closed, so a green that broke once long ago starts again at
//! 30 s. When the cool-down is over, the next green request is the probe
//! ([`Admit::Probe`]); the others are still shed until it ends. An answer closes the breaker; a
//! failure, or no answer within the probe's hang deadline, ejects green again with one more
//! strike.
//!
//! While green is ejected, attempts already waiting on it past their hang deadline are given
//! up ([`Check::Abandon`]) and served by blue: without that, the requests that were in flight
//! when green hung would still wait the whole first-byte timeout.
//!
//! # How shed requests count
//!
//! A breaker must never hide a broken green from the verdict, nor make a healthy one look
//! broken. Counting only the attempts actually made would hide one: the breaker stops sampling
//! green exactly while it is failing, so a green that is down half the time, in bursts, would
//! show a few failures per outage and every success in between — an error rate far below the
//! truth. Counting nothing for shed requests would also shrink green's share of the requests
//! under the verdict's feet. So every request the breaker moves to blue counts as the request
//! it was: routed to green, a fallback, and a green error ([`Shed::charge`]):
//!
//! - a request never sent ([`ShedReason::Ejected`], `x-bluegreen-fallback: green-ejected`) is an
//!   error of its own class, `ejected`: the breaker predicts its failure from green's own
//!   failures just before, and the status shows these apart from observed ones;
//! - an attempt given up ([`ShedReason::Abandoned`], `green-abandoned`) was sent and left
//!   unanswered past its hang deadline: a `timeout`, as it would have been without the breaker,
//!   only sooner.
//!
//! During an outage that is the error rate green would have had without a breaker. It can
//! make a healthy green look worse only when green is ejected while healthy: by chance, five
//! failures in a row for a green at the guard's 5% limit is 0.05⁵ ≈ 3·10⁻⁷ per attempt, and
//! each such ejection charges one cool-down of one isolate's green traffic; after a real outage
//! ends, at most one cool-down of requests is charged for a green that has already recovered.
//! Both are small beside the traffic a verdict needs, and both end with the next probe.

use std::collections::VecDeque;

use serde::Serialize;

mod blue;
mod settings;

use blue::Recent;
pub use settings::Settings;
use settings::MAX_MS;

/// Which of blue's times a green attempt is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A streamed request: time to its first event.
    Stream,
    /// A non-streamed request: time to the whole answer (its response headers).
    Whole,
}

/// How one green attempt ended, as the shell saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Green answered and the answer is used (a success, or a client error passed through).
    Ok,
    /// Green answered with a failure: a status that falls back (5xx, 429, 404, 408), an error
    /// event before the stream began, a stream that ended before its first event. Green is
    /// alive but failing.
    Error,
    /// Green gave no answer: the connection failed, or the shell's own timeout ran out.
    NoAnswer,
}

/// One green attempt the breaker knows of. Hand it back to [`Breaker::attempt_finished`],
/// [`Breaker::check`] or [`Breaker::attempt_cancelled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// Why green is (or was) ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// This many green attempts in a row failed.
    Failures { attempts: u32 },
    /// Green attempts stayed unanswered past their hang deadline, and green answered nothing
    /// since they started: `attempts` of them were overdue, the oldest by `waited_ms`.
    Hung { attempts: u32, waited_ms: u64 },
    /// The probe after a cool-down failed.
    ProbeFailed,
    /// The probe after a cool-down stayed unanswered past its hang deadline.
    ProbeHung,
}

/// What the request path does with a green request; see [`Breaker::admit_green`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send it to green.
    Green(Ticket),
    /// Send it to green as the one probe after a cool-down; its outcome closes the breaker or
    /// ejects green again.
    Probe(Ticket),
    /// Send it to blue at once.
    Shed(Shed),
}

/// Why a green request is served by blue on the breaker's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShedReason {
    /// Green is ejected: the request was never sent to green.
    Ejected,
    /// The request was sent to green, green was then ejected, and this attempt had waited past
    /// its hang deadline: given up.
    Abandoned,
}

impl ShedReason {
    /// The `x-bluegreen-fallback` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::Ejected => "green-ejected",
            ShedReason::Abandoned => "green-abandoned",
        }
    }

    /// How the stats count a request moved to blue for this reason.
    pub fn charge(self) -> Charge {
        match self {
            ShedReason::Ejected => Charge::Ejected,
            ShedReason::Abandoned => Charge::Timeout,
        }
    }
}

/// How the stats count a request the breaker moved to blue: always as a green request, a
/// fallback and a green error, of this class (see the module doc for why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Charge {
    /// An error of its own class, `ejected`: green's failure predicted, not observed.
    Ejected,
    /// A `timeout`: green was asked and did not answer within the hang deadline.
    Timeout,
}

/// A request the breaker moved to blue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shed {
    /// What happened to it; its `as_str` goes in `x-bluegreen-fallback`.
    pub reason: ShedReason,
    /// Why green is ejected, for the log.
    pub cause: Cause,
}

impl Shed {
    /// How the stats count it.
    pub fn charge(&self) -> Charge {
        self.reason.charge()
    }
}

/// What to do about an attempt still waiting on green; see [`Breaker::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Keep waiting; unless the attempt ends first, ask again at `until_ms` (always later than
    /// the `now` asked with).
    Wait { until_ms: u64 },
    /// Give green up now: cancel the attempt and serve blue. The breaker has forgotten the
    /// ticket.
    Abandon(Shed),
    /// The breaker does not know this ticket (it ended, was given up, or was pushed out of the
    /// table): no advice; the shell's own timeouts apply.
    Untracked,
}

/// A change of the breaker's state, for the log; see [`Breaker::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Green was ejected until `until_ms`; `strikes` sets how long.
    Ejected {
        at_ms: u64,
        cause: Cause,
        until_ms: u64,
        strikes: u32,
    },
    /// The probe answered: green is back.
    Closed { at_ms: u64 },
}

/// Most green attempts tracked at once; past it the oldest is forgotten (its end is then
/// ignored). An isolate serves far fewer requests at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// Largest `hung_attempts`.
pub(super) const MAX_HUNG_ATTEMPTS: usize = 16;

/// Events kept until polled; older ones are dropped.
const MAX_EVENTS: usize = 16;

/// Strikes never exceed this, so `base × strikes` stays small.
const MAX_STRIKES: u32 = 1_000;

/// How soon an attempt past its deadline asks again while green is not ejected: the delay
/// with which a failure-driven ejection reaches attempts already overdue.
const RECHECK_MS: u64 = 500;

#[derive(Debug, Clone, Copy)]
struct Flight {
    ticket: u64,
    started_ms: u64,
    mode: Mode,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Green is used. `failures` in a row so far, counted over attempts started since
    /// `since_ms` (when it last closed), so an old episode's stragglers do not count.
    Closed { failures: u32, since_ms: u64 },
    /// Green is shed until `until_ms`.
    Ejected { until_ms: u64, cause: Cause },
    /// One probe is out; everything else is shed.
    Probing { probe: u64, cause: Cause },
}

/// The green breaker of one isolate. Kept in a `RefCell` beside the isolate's other caches;
/// every call is a few comparisons over at most [`MAX_IN_FLIGHT`] attempts.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: Settings,
    state: State,
    strikes: u32,
    /// When `strikes` was last brought up to date while closed.
    strikes_at_ms: u64,
    /// Green attempts in flight, oldest first (tickets and start times both increase).
    flights: VecDeque<Flight>,
    next_ticket: u64,
    /// When green last answered anything (an answer or a failure status).
    last_answer_ms: Option<u64>,
    blue_stream: Recent,
    blue_whole: Recent,
    /// The latest `now` seen: time never runs backwards here, whatever the caller's clock does.
    now_ms: u64,
    events: VecDeque<Event>,
    counts: Counts,
}

/// What the breaker has done since the isolate started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Times green was ejected.
    pub ejections: u64,
    /// Requests shed without being sent to green.
    pub shed: u64,
    /// Attempts given up while green was ejected.
    pub abandoned: u64,
    /// Probes sent.
    pub probes: u64,
}

/// The breaker's state for `/healthz` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// `closed`, `ejected` or `probing`.
    pub state: &'static str,
    /// Failures in a row so far (closed only).
    pub consecutive_failures: u32,
    /// When the cool-down ends (ejected only).
    pub ejected_until_ms: Option<u64>,
    /// Why green is ejected (ejected or probing).
    pub cause: Option<Cause>,
    /// Ejections that still lengthen the next cool-down.
    pub strikes: u32,
    /// Green attempts tracked.
    pub in_flight: usize,
    /// The hang deadline of a new attempt in each mode now.
    pub hang_deadline_stream_ms: u64,
    pub hang_deadline_whole_ms: u64,
    pub counts: Counts,
}

impl Breaker {
    /// A closed breaker. Settings out of range are brought into it.
    pub fn new(settings: Settings) -> Breaker {
        Breaker {
            settings: settings.bounded(),
            state: State::Closed {
                failures: 0,
                since_ms: 0,
            },
            strikes: 0,
            strikes_at_ms: 0,
            flights: VecDeque::new(),
            next_ticket: 1,
            last_answer_ms: None,
            blue_stream: Recent::new(),
            blue_whole: Recent::new(),
            now_ms: 0,
            events: VecDeque::new(),
            counts: Counts::default(),
        }
    }

    /// The settings in force (after bounding).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Called by the request path before it sends a (not forced) request to green. `Green` and
    /// `Probe` carry the ticket the attempt must be reported with; `Shed` means serve blue now,
    /// with the shed's reason as the fallback reason.
    pub fn admit_green(&mut self, mode: Mode, now_ms: u64) -> Admit {
        if !self.settings.enabled {
            return Admit::Green(Ticket(0));
        }
        let now = self.tick(now_ms);
        self.advance(now);
        match self.state {
            State::Closed { .. } => Admit::Green(self.track(mode, now)),
            State::Ejected { until_ms, cause } if now >= until_ms => {
                let ticket = self.track(mode, now);
                self.state = State::Probing {
                    probe: ticket.0,
                    cause,
                };
                self.counts.probes = self.counts.probes.saturating_add(1);
                Admit::Probe(ticket)
            }
            State::Ejected { cause, .. } | State::Probing { cause, .. } => {
                self.counts.shed = self.counts.shed.saturating_add(1);
                Admit::Shed(Shed {
                    reason: ShedReason::Ejected,
                    cause,
                })
            }
        }
    }

    /// Called when a green attempt ended: at its response headers for a non-streamed request,
    /// at its first event (or its end or error before one) for a stream, or when it failed to
    /// connect or ran out of the shell's own time.
    pub fn attempt_finished(&mut self, ticket: Ticket, finish: Finish, now_ms: u64) {
        if !self.settings.enabled {
            return;
        }
        let now = self.tick(now_ms);
        let Some(flight) = self.untrack(ticket.0) else {
            self.advance(now);
            return;
        };
        if finish != Finish::NoAnswer {
            self.last_answer_ms = Some(now);
        }
        match self.state {
            State::Probing { probe, .. } if probe == ticket.0 => match finish {
                Finish::Ok => self.close(now),
                Finish::Error | Finish::NoAnswer => self.eject(Cause::ProbeFailed, now),
            },
            State::Closed { failures, since_ms } if flight.started_ms >= since_ms => {
                if finish == Finish::Ok {
                    self.state = State::Closed {
                        failures: 0,
                        since_ms,
                    };
                } else {
                    let failures = failures.saturating_add(1);
                    self.state = State::Closed { failures, since_ms };
                    if failures >= self.settings.consecutive_failures {
                        self.eject(Cause::Failures { attempts: failures }, now);
                    }
                }
            }
            // An attempt from before the last change of state: it says nothing about now.
            _ => {}
        }
        self.advance(now);
    }

    /// Called when a green attempt ended without a judgement of green: the client went away,
    /// or the request was cancelled. A cancelled probe lets the next request probe.
    pub fn attempt_cancelled(&mut self, ticket: Ticket, now_ms: u64) {
        if !self.settings.enabled {
            return;
        }
        let now = self.tick(now_ms);
        if self.untrack(ticket.0).is_some() {
            if let State::Probing { probe, cause } = self.state {
                if probe == ticket.0 {
                    self.state = State::Ejected {
                        until_ms: now,
                        cause,
                    };
                }
            }
        }
        self.advance(now);
    }

    /// Called with every successful blue answer (blue's own requests, fallbacks and forced
    /// ones alike): `answer_ms` from the start of the blue attempt to its first event (stream)
    /// or its response headers (non-streamed). Failures are not answers and are not reported.
    pub fn blue_answered(&mut self, mode: Mode, answer_ms: u64, now_ms: u64) {
        if !self.settings.enabled {
            return;
        }
        let now = self.tick(now_ms);
        match mode {
            Mode::Stream => self.blue_stream.push(answer_ms),
            Mode::Whole => self.blue_whole.push(answer_ms),
        }
        self.advance(now);
    }

    /// Called while a green attempt waits: first when it is sent, then at each `until_ms` it
    /// is told (at most `hang_floor_ms` apart, more often once the attempt is overdue), until
    /// the attempt ends. `Abandon` means cancel it and serve blue (the breaker
    /// has forgotten it: do not report it again).
    pub fn check(&mut self, ticket: Ticket, now_ms: u64) -> Check {
        if !self.settings.enabled {
            return Check::Untracked;
        }
        let now = self.tick(now_ms);
        self.advance(now);
        let Some(flight) = self.find(ticket.0) else {
            return Check::Untracked;
        };
        let due = flight.started_ms.saturating_add(self.deadline(flight.mode));
        let until = match self.state {
            // The deadline moves as blue's answers come in (from the cap to seconds, on a cold
            // isolate), so look again after the floor at the latest.
            _ if due > now => due.min(now.saturating_add(self.settings.hang_floor_ms)),
            State::Closed { .. } => {
                let next_trip = self.next_trip().map_or(u64::MAX, |(at, _)| at);
                next_trip.min(now.saturating_add(RECHECK_MS))
            }
            // advance() re-ejects a probe past its deadline, so a probe here is not overdue.
            State::Probing { probe, .. } if probe == ticket.0 => due,
            State::Ejected { cause, .. } | State::Probing { cause, .. } => {
                self.untrack(ticket.0);
                self.counts.abandoned = self.counts.abandoned.saturating_add(1);
                return Check::Abandon(Shed {
                    reason: ShedReason::Abandoned,
                    cause,
                });
            }
        };
        Check::Wait {
            until_ms: until.max(now.saturating_add(1)),
        }
    }

    /// The oldest state change not yet polled. The shell logs them; at most the last 16 are
    /// kept.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The breaker's state now, for `/healthz` and logs.
    pub fn snapshot(&self) -> Snapshot {
        let (state, failures, until) = match self.state {
            State::Closed { failures, .. } => ("closed", failures, None),
            State::Ejected { until_ms, .. } => ("ejected", 0, Some(until_ms)),
            State::Probing { .. } => ("probing", 0, None),
        };
        Snapshot {
            state,
            consecutive_failures: failures,
            ejected_until_ms: until,
            cause: self.cause(),
            strikes: self
                .strikes
                .saturating_sub(self.forgiven_strikes(self.now_ms)),
            in_flight: self.flights.len(),
            hang_deadline_stream_ms: self.deadline(Mode::Stream),
            hang_deadline_whole_ms: self.deadline(Mode::Whole),
            counts: self.counts,
        }
    }

    /// The hang deadline of an attempt in `mode`, from blue's answers so far.
    pub fn hang_deadline_ms(&self, mode: Mode) -> u64 {
        self.deadline(mode)
    }

    fn tick(&mut self, now_ms: u64) -> u64 {
        self.now_ms = self.now_ms.max(now_ms);
        self.now_ms
    }

    fn cause(&self) -> Option<Cause> {
        match self.state {
            State::Closed { .. } => None,
            State::Ejected { cause, .. } | State::Probing { cause, .. } => Some(cause),
        }
    }

    fn deadline(&self, mode: Mode) -> u64 {
        let reference = match mode {
            Mode::Stream => self.blue_stream.p90.or(self.blue_whole.p90),
            Mode::Whole => self.blue_whole.p90,
        };
        let s = &self.settings;
        reference.map_or(s.hang_cap_ms, |r| {
            r.saturating_mul(u64::from(s.hang_factor))
                .clamp(s.hang_floor_ms, s.hang_cap_ms)
        })
    }

    fn track(&mut self, mode: Mode, now: u64) -> Ticket {
        if self.flights.len() >= MAX_IN_FLIGHT {
            self.flights.pop_front();
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.flights.push_back(Flight {
            ticket,
            started_ms: now,
            mode,
        });
        Ticket(ticket)
    }

    fn index(&self, ticket: u64) -> Option<usize> {
        self.flights
            .binary_search_by_key(&ticket, |f| f.ticket)
            .ok()
    }

    fn find(&self, ticket: u64) -> Option<Flight> {
        self.index(ticket).map(|i| self.flights[i])
    }

    fn untrack(&mut self, ticket: u64) -> Option<Flight> {
        self.index(ticket).and_then(|i| self.flights.remove(i))
    }

    /// The attempts the hang rule looks at: started since green last answered, and since the
    /// breaker last closed. A suffix of `flights`.
    fn unanswered(&self) -> impl Iterator<Item = &Flight> {
        let since = match self.state {
            State::Closed { since_ms, .. } => since_ms,
            _ => 0,
        }
        .max(self.last_answer_ms.unwrap_or(0));
        let first = self.flights.partition_point(|f| f.started_ms < since);
        self.flights.range(first..)
    }

    /// When the hang rule trips if nothing else happens, and why.
    fn next_trip(&self) -> Option<(u64, Cause)> {
        let m = self.settings.hung_attempts as usize;
        let deadlines = [self.deadline(Mode::Stream), self.deadline(Mode::Whole)];
        let due = |f: &Flight| f.started_ms.saturating_add(deadlines[f.mode as usize]);
        // The m earliest due times: within a mode they come in start order, so the first m of
        // each mode hold them.
        let mut earliest = [u64::MAX; 2 * MAX_HUNG_ATTEMPTS];
        let mut taken = [0usize; 2];
        let mut n = 0;
        let mut lone = u64::MAX;
        let mut oldest = u64::MAX;
        for f in self.unanswered() {
            let k = f.mode as usize;
            if taken[k] == 0 {
                lone = lone.min(f.started_ms.saturating_add(deadlines[k].saturating_mul(2)));
            }
            oldest = oldest.min(f.started_ms);
            if taken[k] < m {
                earliest[n] = due(f);
                taken[k] += 1;
                n += 1;
            }
            if taken == [m, m] {
                break;
            }
        }
        let earliest = &mut earliest[..n];
        crate::util::sort::by_key(earliest, |&due| due);
        let many = earliest.get(m - 1).copied().unwrap_or(u64::MAX);
        let at = many.min(lone);
        (at < u64::MAX).then(|| {
            let overdue = self.unanswered().filter(|f| due(f) <= at).count();
            let cause = Cause::Hung {
                attempts: u32::try_from(overdue).unwrap_or(u32::MAX).max(1),
                waited_ms: at.saturating_sub(oldest),
            };
            (at, cause)
        })
    }

    /// Applies what time alone decides: a hang while closed, a probe past its deadline.
    fn advance(&mut self, now: u64) {
        match self.state {
            State::Closed { .. } => {
                if let Some((at, cause)) = self.next_trip() {
                    if at <= now {
                        self.eject(cause, now);
                    }
                }
            }
            State::Probing { probe, .. } => {
                let overdue = self
                    .find(probe)
                    .is_none_or(|f| now >= f.started_ms.saturating_add(self.deadline(f.mode)));
                if overdue {
                    self.eject(Cause::ProbeHung, now);
                }
            }
            State::Ejected { .. } => {}
        }
    }

    fn forgiven_strikes(&self, now: u64) -> u32 {
        match self.state {
            State::Closed { .. } => {
                let healthy = now.saturating_sub(self.strikes_at_ms);
                u32::try_from(healthy / self.settings.base_ejection_ms).unwrap_or(u32::MAX)
            }
            _ => 0,
        }
    }

    fn eject(&mut self, cause: Cause, now: u64) {
        let strikes = self
            .strikes
            .saturating_sub(self.forgiven_strikes(now))
            .saturating_add(1)
            .min(MAX_STRIKES);
        self.strikes = strikes;
        let s = &self.settings;
        let cool_down = s
            .base_ejection_ms
            .saturating_mul(u64::from(strikes))
            .min(s.max_ejection_ms);
        let until_ms = now.saturating_add(cool_down);
        self.state = State::Ejected { until_ms, cause };
        self.counts.ejections = self.counts.ejections.saturating_add(1);
        self.event(Event::Ejected {
            at_ms: now,
            cause,
            until_ms,
            strikes,
        });
    }

    fn close(&mut self, now: u64) {
        self.state = State::Closed {
            failures: 0,
            since_ms: now,
        };
        self.strikes_at_ms = now;
        self.event(Event::Closed { at_ms: now });
    }

    fn event(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }
}

#[cfg(test)]
mod tests;
