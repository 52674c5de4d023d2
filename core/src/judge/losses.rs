//! The last pairs green lost: what an operator reads on the dashboard (the prompt and both
//! answers, cut short) and what the rollback event quotes (the grader's reasons). Isolates send
//! the losses of a batch with it; the controller keeps the newest [`KEEP`] of the rollout.
//! Prompts and answers are the app's users' data: they are shown to operators only (the admin
//! API), and kept no longer than the rollout's windows.

use serde::{Deserialize, Serialize};

use crate::api::text::keep_start;

/// Losses kept (per batch and per rollout).
pub const KEEP: usize = 5;
/// Most characters kept of the prompt and of each answer.
pub const MAX_SHOWN_CHARS: usize = 600;

/// One pair green lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loss {
    /// When it was judged (Unix ms).
    pub at_ms: u64,
    /// The routing version its request was routed under: a loss of a rollout before the
    /// controller's current one is not kept (0 in losses stored without it).
    #[serde(default)]
    pub version: u64,
    /// The request's id (as in the outcome records and the logs).
    pub request_id: String,
    /// The conversation's end.
    pub prompt: String,
    pub green_answer: String,
    pub blue_answer: String,
    /// The grader's reason (the first order's, when judged in both).
    pub reason: String,
}

impl Loss {
    /// A loss with its texts cut to [`MAX_SHOWN_CHARS`]; the prompt keeps its end.
    pub fn new(
        at_ms: u64,
        version: u64,
        request_id: &str,
        prompt: &str,
        green_answer: &str,
        blue_answer: &str,
        reason: &str,
    ) -> Loss {
        let cut = |s: &str| keep_start(s, MAX_SHOWN_CHARS);
        Loss {
            at_ms,
            version,
            request_id: request_id.chars().take(64).collect(),
            prompt: crate::api::text::keep_end(prompt, MAX_SHOWN_CHARS),
            green_answer: cut(green_answer),
            blue_answer: cut(blue_answer),
            reason: cut(reason),
        }
    }
}

/// The newest [`KEEP`] losses, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Losses(Vec<Loss>);

impl Losses {
    /// Adds `more`, keeping the newest [`KEEP`] (in any order of arrival).
    pub fn add(&mut self, more: &[Loss]) {
        self.add_since(more, 0);
    }

    /// Adds those of `more` routed under `version` or later, keeping the newest [`KEEP`].
    pub fn add_since(&mut self, more: &[Loss], version: u64) {
        self.0
            .extend(more.iter().filter(|l| l.version >= version).cloned());
        crate::util::sort::by_key(&mut self.0, |l| l.at_ms);
        let over = self.0.len().saturating_sub(KEEP);
        self.0.drain(..over);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn list(&self) -> &[Loss] {
        &self.0
    }

    /// The grader's reasons, newest first, for the rollback event: `["…", "…"]`.
    pub fn reasons(&self) -> Vec<String> {
        self.0
            .iter()
            .rev()
            .filter(|l| !l.reason.is_empty())
            .map(|l| l.reason.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(at_ms: u64) -> Loss {
        Loss::new(
            at_ms,
            3,
            "r",
            "user: q",
            "g",
            "b",
            &format!("reason {at_ms}"),
        )
    }

    #[test]
    fn the_newest_are_kept_whatever_the_order() {
        let mut l = Losses::default();
        l.add(&[loss(5), loss(1), loss(9)]);
        l.add(&[loss(3), loss(7), loss(8), loss(2)]);
        let at: Vec<u64> = l.list().iter().map(|l| l.at_ms).collect();
        assert_eq!(at, [3, 5, 7, 8, 9]);
        assert_eq!(l.reasons()[0], "reason 9");
    }

    #[test]
    fn losses_at_the_same_time_keep_their_order_of_arrival() {
        let at = |at_ms: u64, reason: &str| Loss::new(at_ms, 3, "r", "p", "g", "b", reason);
        let mut l = Losses::default();
        l.add(&[at(2, "a"), at(1, "b"), at(2, "c")]);
        l.add(&[at(2, "d"), at(1, "e"), at(3, "f"), at(2, "g")]);
        let seen: Vec<&str> = l.list().iter().map(|l| l.reason.as_str()).collect();
        assert_eq!(seen, ["a", "c", "d", "g", "f"]);
    }

    #[test]
    fn losses_of_an_earlier_rollout_are_not_kept() {
        let mut l = Losses::default();
        let mut old = loss(9);
        old.version = 2;
        l.add_since(&[old, loss(1)], 3);
        assert_eq!(l.list().len(), 1);
        assert_eq!(l.list()[0].version, 3);
    }

    #[test]
    fn texts_are_cut() {
        let long = "p".repeat(5000);
        let l = Loss::new(1, 0, &"i".repeat(200), &long, &long, &long, &long);
        for s in [&l.prompt, &l.green_answer, &l.blue_answer, &l.reason] {
            assert!(s.chars().count() < MAX_SHOWN_CHARS + 40, "{}", s.len());
        }
        assert_eq!(l.request_id.len(), 64);
    }

    #[test]
    fn stored_losses_read_back() {
        let mut l = Losses::default();
        l.add(&[loss(1)]);
        let text = serde_json::to_string(&l).unwrap();
        let back: Losses = crate::util::json::parse(&text).unwrap();
        assert_eq!(back, l);
    }
}
