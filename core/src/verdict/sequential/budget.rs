//! How a relative test's `alpha` is shared between its evidence over the whole rollout and its
//! evidence over each step alone, so that a green that breaks late is judged on what it does
//! now, not weighed down by hours of healthy evidence.
//!
//! The relative error and latency tests each keep two likelihood ratios: one carried through
//! the whole rollout, and one restarted when each step after the first begins. Under the null
//! (green at most τ × blue, on every tick), each is a non-negative supermartingale that starts
//! at 1, so by Ville's inequality the rollout-wide one ever reaches `1/(alpha·(1−β))` with
//! probability at most `alpha·(1−β)`, and step k's (k = 2..n) ever reaches
//! `1/(alpha·β/(n−1))` with probability at most `alpha·β/(n−1)`. By the union bound, the chance
//! that any of them ever reaches its level during the rollout is at most `alpha`: the guarantee
//! of the test is the same as with the rollout-wide evidence alone. Step 1's own evidence is the
//! rollout-wide one, so it needs no budget; a one-step ladder keeps all of `alpha` for the
//! rollout-wide test. A step's evidence starts once (when the step begins, or when a rollout
//! stored before it was kept is first judged) and is never restarted within the step: a
//! restart at a moment of one's choosing (say, when it stands low) would break the bound.
//! Steps only ever advance, so a ladder of n steps starts at most n−1 of them.
//!
//! β is [`STEP_SHARE`]; the simulation chose it (see its doc).

/// β: the share of a relative test's `alpha` given to the per-step evidence of the steps after
/// the first, split equally between them. The simulation's LATE-BREAK (green fine at 10% and
/// 30%, failing 3% vs 0.5% from 50% on, 1 req/s at 10%) and BAD at a 10% step (1 req/s) pull
/// in opposite directions: a larger β lowers the later steps' levels, and raises step 1's.
/// Measured (rolled back within 10 ticks of the break / of the start, 2000 runs each):
/// β = 0 (no per-step evidence) 10.4% / 96.4%; 0.05: 99.4% / 96.2%; 0.1: 99.4% / 95.9%;
/// 0.15: 99.6% / 95.9%; 0.2: 99.7% / 95.6%; 0.3: 99.7% / 94.9% (a miss); 0.5: 99.7% / 93.5%.
/// The per-step level grows only with the log of 1/β, so a small β catches the late break
/// almost as fast as a large one; 0.1 keeps BAD above its target and leaves the per-step tests
/// (level 1000:1 for errors on the default ladder) room for breaks subtler than LATE-BREAK.
pub const STEP_SHARE: f64 = 0.1;

/// Where the rollout is in its ladder: which levels its relative tests have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ladder {
    /// The current step, 1-based.
    pub step: usize,
    /// How many steps the ladder has (at least 1).
    pub steps: usize,
}

impl Default for Ladder {
    /// A one-step ladder: the rollout-wide evidence has all of `alpha`.
    fn default() -> Self {
        Ladder { step: 1, steps: 1 }
    }
}

impl Ladder {
    /// The share of `alpha` the rollout-wide evidence has: all of it on a one-step ladder,
    /// `1 − β` otherwise.
    pub fn rollout_share(self) -> f64 {
        if self.steps > 1 {
            1.0 - STEP_SHARE
        } else {
            1.0
        }
    }

    /// The share of `alpha` the current step's own evidence has: `β/(n−1)` from the second step
    /// on; `None` on the first (its evidence is the rollout-wide one).
    pub fn step_share(self) -> Option<f64> {
        (self.step > 1 && self.steps > 1).then(|| STEP_SHARE / (self.steps - 1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_of_a_ladder_add_up_to_alpha() {
        for steps in 1..=12 {
            let total: f64 = (1..=steps)
                .map(|step| {
                    let l = Ladder { step, steps };
                    l.step_share().unwrap_or(0.0)
                })
                .sum::<f64>()
                + Ladder { step: 1, steps }.rollout_share();
            assert!((total - 1.0).abs() < 1e-12, "{steps} steps: {total}");
        }
        assert_eq!(Ladder::default().step_share(), None);
        assert_eq!(Ladder::default().rollout_share(), 1.0);
        // The default ladder: 0.9 for the rollout, β/3 for each of steps 2, 3 and 4.
        let second = Ladder { step: 2, steps: 4 };
        assert!((second.step_share().unwrap() - STEP_SHARE / 3.0).abs() < 1e-15);
        assert_eq!(Ladder { step: 1, steps: 4 }.step_share(), None);
    }
}
