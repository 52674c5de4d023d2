//! What the grader said about pairs of answers ([`crate::judge`]): green's wins, losses and ties
//! against blue's answer to the same prompt, the pairs it could not judge, and what grading
//! cost. Kept in green's [`super::EnvStats`] (the pairs judge green's answers), merged by
//! addition like every other count, and left out of stored documents while empty, so that
//! stats written before the grader existed read as "nothing judged".

use serde::{Deserialize, Serialize};

/// The grader's verdicts over some window. Only [`JudgedCounts::wins`] and
/// [`JudgedCounts::losses`] are evidence (see [`crate::verdict::sequential`]); ties,
/// inconsistent pairs and failures are shown, never judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JudgedCounts {
    /// Pairs whose verdict preferred green's answer.
    pub wins: u64,
    /// Pairs whose verdict preferred blue's answer.
    pub losses: u64,
    /// Pairs judged a tie.
    pub ties: u64,
    /// Pairs judged in both orders whose two verdicts disagreed: a position bias, not a
    /// preference (counted only when `both_orders` is on).
    pub inconsistent: u64,
    /// Pairs the grader failed on: an error, no answer in time, or a verdict that is not the
    /// strict JSON asked for (`judge_failed`).
    pub failed: u64,
    /// The grader's own usage and its price, never counted as blue's or green's.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    #[serde(deserialize_with = "super::finite_or_zero")]
    pub cost_usd: f64,
    /// What a live step's reference copies to blue used and cost (priced at blue's model): the
    /// other part of judging's cost, never counted as blue's.
    pub reference_prompt_tokens: u64,
    pub reference_completion_tokens: u64,
    #[serde(deserialize_with = "super::finite_or_zero")]
    pub reference_cost_usd: f64,
}

impl JudgedCounts {
    /// Pairs with a verdict: a win, a loss or a tie (the status's `judged`).
    pub fn judged(&self) -> u64 {
        self.wins
            .saturating_add(self.losses)
            .saturating_add(self.ties)
    }

    /// Pairs with a winner: what the test reads.
    pub fn decisive(&self) -> u64 {
        self.wins.saturating_add(self.losses)
    }

    /// Nothing was sent to the grader.
    pub fn is_empty(&self) -> bool {
        *self == JudgedCounts::default()
    }

    /// Adds `o` into this (saturating; a cost stays finite).
    pub fn merge(&mut self, o: &JudgedCounts) {
        self.wins = self.wins.saturating_add(o.wins);
        self.losses = self.losses.saturating_add(o.losses);
        self.ties = self.ties.saturating_add(o.ties);
        self.inconsistent = self.inconsistent.saturating_add(o.inconsistent);
        self.failed = self.failed.saturating_add(o.failed);
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(o.completion_tokens);
        self.cost_usd = super::finite_sum(self.cost_usd, o.cost_usd);
        self.reference_prompt_tokens = self
            .reference_prompt_tokens
            .saturating_add(o.reference_prompt_tokens);
        self.reference_completion_tokens = self
            .reference_completion_tokens
            .saturating_add(o.reference_completion_tokens);
        self.reference_cost_usd = super::finite_sum(self.reference_cost_usd, o.reference_cost_usd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::json;

    #[test]
    fn counts_merge_by_addition_and_saturate() {
        let mut a = JudgedCounts {
            wins: 3,
            losses: u64::MAX - 1,
            ties: 2,
            cost_usd: f64::MAX,
            ..JudgedCounts::default()
        };
        let b = JudgedCounts {
            wins: 1,
            losses: 5,
            failed: 4,
            cost_usd: f64::MAX,
            ..JudgedCounts::default()
        };
        a.merge(&b);
        assert_eq!((a.wins, a.losses, a.ties, a.failed), (4, u64::MAX, 2, 4));
        assert!(a.cost_usd.is_finite());
        assert_eq!(a.judged(), u64::MAX);
        assert_eq!(a.decisive(), u64::MAX);
    }

    #[test]
    fn a_stored_null_or_missing_field_reads_as_zero() {
        let read: JudgedCounts = json::parse(r#"{"wins":2,"cost_usd":null}"#).unwrap();
        assert_eq!(read.wins, 2);
        assert_eq!(read.cost_usd, 0.0);
        assert_eq!(read.losses, 0);
    }
}
