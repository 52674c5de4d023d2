//! The grader: is green's answer as good as blue's on the same prompt?
//!
//! A rollout's health policy may name a grader model (`"judge"`, [`JudgePolicy`]). Then pairs
//! of answers to one prompt are judged by it: on a shadow step blue's answer and green's copy;
//! on a live step green's answer and a reference copy of the request sent to blue, never
//! served. The grader sees the conversation and the two answers as A and B, in an order drawn
//! for each pair ([`prompt`]), and must answer a strict JSON verdict ([`verdict`]). Green's
//! wins, losses and ties are counted in its stats ([`crate::stats::judged`]) and the sequential
//! test judges the losses among decisive pairs against the policy's `tolerance`
//! ([`crate::verdict::sequential`]).
//!
//! This module decides which pairs are judged ([`sampled`]; the policy itself is read in
//! [`crate::request::judging`], which the routing document carries), builds what the grader is sent,
//! reads what it answers and keeps the last losses an operator reads ([`losses`]). It sends
//! nothing and reads no clock: the shell (`src/proxy/judge.rs`) does.

pub mod losses;
pub mod prompt;
pub mod verdict;

use crate::request::split::{green_buckets, random_bucket};

pub use crate::request::judging::{
    JudgePolicy, DEFAULT_TOLERANCE, MAX_INSTRUCTIONS_CHARS, MAX_PER_MINUTE,
};

/// Whether the pair a random `draw` of the shell's stands for is judged under `policy` (a draw
/// of its own, apart from the split's and the shadow copy's).
pub fn sampled(policy: &JudgePolicy, draw: u64) -> bool {
    random_bucket(draw) < green_buckets(policy.sample_percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: serde_json::Value) -> JudgePolicy {
        JudgePolicy::from_json(&v, "health.judge").unwrap()
    }

    #[test]
    fn sampling_follows_the_share() {
        let p = read(json!({"model": "m", "sample_percent": 30, "max_per_minute": 3}));
        let n = 100_000u64;
        let taken = (0..n)
            .filter(|i| sampled(&p, i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .count() as f64;
        assert!((taken / n as f64 - 0.30).abs() < 0.01, "{taken}");
    }
}
