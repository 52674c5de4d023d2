//! The breaker's design proof: issue 11's fault benchmark played on virtual time.
//!
//! 1000 requests from 20 clients that each send the next request when the last is answered;
//! 30% of them routed to green; blue answers each in 200–800 ms (uniform; the same time counts
//! as its first event for a stream); the shell's first-byte timeout is 30 s. The request path is
//! modelled as the shell will run it: ask [`Breaker::admit_green`], send green its attempt, ask
//! [`Breaker::check`] when told, give up on `Abandon`, fall back to blue on a failure or a
//! timeout, and report every green end and every blue answer. The figure is the issue's: the
//! share of requests that wait more than 5 s longer than their blue answer takes.
//!
//! Green shapes: hung (accepts, never answers), refusing connections (fails in 1–10 ms),
//! answering 503 (in 20–100 ms); and two that must never be ejected: healthy (like blue) and
//! three times slower than blue. Fixed seeds: a failure replays. `cargo test -p bluegreen-core
//! --test breaker_sim -- --nocapture` prints the table.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use bluegreen_core::request::breaker::{Admit, Breaker, Check, Finish, Mode, Settings, Ticket};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const REQUESTS: usize = 1000;
const CLIENTS: usize = 20;
const GREEN_SHARE: f64 = 0.3;
const FIRST_BYTE_TIMEOUT_MS: u64 = 30_000;
const LATE_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Green {
    Hung,
    Refusing,
    Status503,
    Healthy,
    ThreeTimesSlower,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    OnGreen(Ticket),
    OnBlue,
    Done,
}

struct Request {
    client: usize,
    arrived_ms: u64,
    blue_ms: u64,
    phase: Phase,
    /// Green was asked and failed, or the breaker moved it: the stats count a green error.
    green_error: bool,
    routed_green: bool,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive { client: usize },
    GreenEnds { req: usize, finish: u8 },
    Check { req: usize },
    Timeout { req: usize },
    BlueAnswers { req: usize },
}

#[derive(Debug, Default)]
struct Figures {
    routed_green: usize,
    sent_green: usize,
    shed: usize,
    abandoned: usize,
    green_errors: usize,
    late: usize,
    worst_excess_ms: u64,
    ejections: u64,
    finished_ms: u64,
}

struct Sim {
    breaker: Breaker,
    mode: Mode,
    green: Green,
    rng: SmallRng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    requests: Vec<Request>,
    figures: Figures,
}

const FINISH: [Finish; 3] = [Finish::Ok, Finish::Error, Finish::NoAnswer];

impl Sim {
    fn at(&mut self, when: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((when, self.seq, ev)));
    }

    fn arrive(&mut self, client: usize) {
        if self.requests.len() == REQUESTS {
            return;
        }
        let req = self.requests.len();
        let routed_green = self.rng.random_bool(GREEN_SHARE);
        self.requests.push(Request {
            client,
            arrived_ms: self.now,
            blue_ms: self.rng.random_range(200..=800),
            phase: Phase::OnBlue,
            green_error: false,
            routed_green,
        });
        if !routed_green {
            return self.serve_blue(req);
        }
        self.figures.routed_green += 1;
        let ticket = match self.breaker.admit_green(self.mode, self.now) {
            Admit::Green(t) | Admit::Probe(t) => t,
            Admit::Shed(_) => {
                self.figures.shed += 1;
                self.requests[req].green_error = true;
                return self.serve_blue(req);
            }
        };
        self.figures.sent_green += 1;
        self.requests[req].phase = Phase::OnGreen(ticket);
        let (now, blue_ms) = (self.now, self.requests[req].blue_ms);
        let end = match self.green {
            Green::Hung => None,
            Green::Refusing => Some((self.rng.random_range(1..=10), Finish::NoAnswer)),
            Green::Status503 => Some((self.rng.random_range(20..=100), Finish::Error)),
            Green::Healthy => Some((self.rng.random_range(200..=800), Finish::Ok)),
            Green::ThreeTimesSlower => Some((3 * blue_ms, Finish::Ok)),
        };
        if let Some((ms, finish)) = end {
            let finish = FINISH.iter().position(|f| *f == finish).unwrap() as u8;
            self.at(now + ms, Ev::GreenEnds { req, finish });
        }
        self.at(now + FIRST_BYTE_TIMEOUT_MS, Ev::Timeout { req });
        self.check(req);
    }

    fn check(&mut self, req: usize) {
        let Phase::OnGreen(ticket) = self.requests[req].phase else {
            return;
        };
        match self.breaker.check(ticket, self.now) {
            Check::Wait { until_ms } => self.at(until_ms, Ev::Check { req }),
            Check::Abandon(_) => {
                self.figures.abandoned += 1;
                self.requests[req].green_error = true;
                self.serve_blue(req);
            }
            Check::Untracked => {}
        }
    }

    fn green_ends(&mut self, req: usize, finish: Finish) {
        let Phase::OnGreen(ticket) = self.requests[req].phase else {
            return; // given up on already
        };
        self.breaker.attempt_finished(ticket, finish, self.now);
        if finish == Finish::Ok {
            self.done(req, 0);
        } else {
            self.requests[req].green_error = true;
            self.serve_blue(req);
        }
    }

    fn serve_blue(&mut self, req: usize) {
        self.requests[req].phase = Phase::OnBlue;
        let at = self.now + self.requests[req].blue_ms;
        self.at(at, Ev::BlueAnswers { req });
    }

    fn done(&mut self, req: usize, blue_ms: u64) {
        let r = &mut self.requests[req];
        r.phase = Phase::Done;
        // How much longer than its blue answer this request waited (0 for a request that
        // green answered: the healthy shapes are judged by ejections, not by this).
        let excess = (self.now - r.arrived_ms).saturating_sub(blue_ms);
        let f = &mut self.figures;
        if blue_ms > 0 {
            f.late += usize::from(excess > LATE_MS);
            f.worst_excess_ms = f.worst_excess_ms.max(excess);
        }
        f.green_errors += usize::from(r.green_error && r.routed_green);
        f.finished_ms = self.now;
        let client = r.client;
        self.at(self.now, Ev::Arrive { client });
    }

    fn run(mut self) -> Figures {
        for client in 0..CLIENTS {
            self.at(0, Ev::Arrive { client });
        }
        while let Some(Reverse((when, _, ev))) = self.queue.pop() {
            self.now = when;
            match ev {
                Ev::Arrive { client } => self.arrive(client),
                Ev::GreenEnds { req, finish } => self.green_ends(req, FINISH[finish as usize]),
                Ev::Check { req } => self.check(req),
                Ev::Timeout { req } => self.green_ends(req, Finish::NoAnswer),
                Ev::BlueAnswers { req } => {
                    let blue_ms = self.requests[req].blue_ms;
                    self.breaker.blue_answered(self.mode, blue_ms, self.now);
                    self.done(req, blue_ms);
                }
            }
        }
        assert!(self.requests.iter().all(|r| r.phase == Phase::Done));
        self.figures.ejections = self.breaker.snapshot().counts.ejections;
        self.figures
    }
}

fn simulate(green: Green, mode: Mode, settings: Settings, seed: u64) -> Figures {
    Sim {
        breaker: Breaker::new(settings),
        mode,
        green,
        rng: SmallRng::seed_from_u64(seed),
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        requests: Vec::with_capacity(REQUESTS),
        figures: Figures::default(),
    }
    .run()
}

const SEEDS: std::ops::Range<u64> = 0x11_00..0x11_08;

fn off() -> Settings {
    Settings {
        enabled: false,
        ..Settings::default()
    }
}

#[test]
fn a_failing_green_costs_at_most_two_percent_of_requests_five_seconds() {
    println!(
        "{:<18} {:<6} {:<7} {:>6} {:>5} {:>5} {:>9} {:>10} {:>10} {:>7} {:>8}",
        "green",
        "mode",
        "breaker",
        "green",
        "sent",
        "shed",
        "abandoned",
        "ejections",
        "worst ms",
        "> 5 s",
        "run s"
    );
    for green in [Green::Hung, Green::Refusing, Green::Status503] {
        for mode in [Mode::Stream, Mode::Whole] {
            for (name, settings) in [("on", Settings::default()), ("off", off())] {
                let mut worst_share = 0f64;
                for seed in SEEDS {
                    let f = simulate(green, mode, settings, seed);
                    let share = f.late as f64 / REQUESTS as f64;
                    worst_share = worst_share.max(share);
                    if seed == SEEDS.start {
                        println!(
                            "{:<18} {:<6} {:<7} {:>6} {:>5} {:>5} {:>9} {:>10} {:>10} {:>6.1}% {:>8.1}",
                            format!("{green:?}"),
                            format!("{mode:?}"),
                            name,
                            f.routed_green,
                            f.sent_green,
                            f.shed,
                            f.abandoned,
                            f.ejections,
                            f.worst_excess_ms,
                            100.0 * share,
                            f.finished_ms as f64 / 1000.0
                        );
                    }
                    // Never hides a broken green: every green request is charged as an error,
                    // whether green failed it, or the breaker shed or gave it up.
                    assert_eq!(f.green_errors, f.routed_green, "{green:?} {mode:?} {name}");
                    if name == "on" {
                        assert!(share <= 0.02, "{green:?} {mode:?} seed {seed}: {share}");
                        assert!(f.ejections >= 1);
                    }
                }
                if name == "on" {
                    println!(
                        "{:>74} worst of {} seeds: {:.1}%",
                        "",
                        SEEDS.end - SEEDS.start,
                        100.0 * worst_share
                    );
                }
                if green == Green::Hung && name == "off" {
                    // Without a breaker every green request waits the whole 30 s: ~30%.
                    assert!(worst_share > 0.2, "{worst_share}");
                }
            }
        }
    }
}

#[test]
fn a_healthy_or_merely_slower_green_is_never_ejected() {
    for green in [Green::Healthy, Green::ThreeTimesSlower] {
        for mode in [Mode::Stream, Mode::Whole] {
            for seed in SEEDS {
                let f = simulate(green, mode, Settings::default(), seed);
                assert_eq!(
                    (f.ejections, f.shed, f.abandoned, f.green_errors),
                    (0, 0, 0, 0),
                    "{green:?} {mode:?} seed {seed}"
                );
                assert_eq!(f.sent_green, f.routed_green);
            }
        }
    }
}
