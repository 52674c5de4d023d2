//! What the grader answered: a strict JSON verdict, `{"verdict": "A" | "B" | "tie", "reason":
//! "…"}`, as the message content of a chat completion. Anything else (an error, an answer that
//! is not a completion, content with prose around the JSON, another verdict word, a field not
//! asked for) judges nothing and counts as `judge_failed`. The pair's order is undone here: A
//! and B become green's win, loss or tie ([`Judgement`]); two verdicts on one pair in both
//! orders count only when they agree ([`combine`]).

use serde::Deserialize;

use crate::api::usage::{usage_of, Usage};
use crate::stats::judged::JudgedCounts;

/// Most characters of the grader's reason kept (for the rollback event and the dashboard).
pub const MAX_REASON_CHARS: usize = 400;

/// Which position the grader preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    A,
    B,
    Tie,
}

/// One grader call read: the preference and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub preference: Preference,
    pub reason: String,
}

/// Why a grader call judged nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The grader's answer was not a chat completion with content.
    NotACompletion,
    /// The content was not the strict JSON verdict.
    Unparseable(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotACompletion => {
                write!(f, "the grader's answer is not a completion with content")
            }
            Failure::Unparseable(why) => {
                write!(f, "the grader's verdict is not the JSON asked for: {why}")
            }
        }
    }
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Strict {
    verdict: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Reads a grader's 2xx answer `body`: its verdict, and its usage (for the grader's cost) when it
/// reported one, whatever the verdict.
pub fn read(body: &[u8]) -> (Result<Reading, Failure>, Option<Usage>) {
    let usage = usage_of(body);
    let content = crate::util::json::from_slice::<Completion>(body)
        .ok()
        .and_then(|c| c.choices.into_iter().next())
        .and_then(|c| c.message.content);
    let Some(content) = content else {
        return (Err(Failure::NotACompletion), usage);
    };
    (read_content(&content), usage)
}

/// Reads the verdict in a completion's content.
pub fn read_content(content: &str) -> Result<Reading, Failure> {
    let strict: Strict = crate::util::json::parse(content.trim())
        .map_err(|e| Failure::Unparseable(first_words(&e.to_string())))?;
    let preference = match strict.verdict.as_str() {
        "A" => Preference::A,
        "B" => Preference::B,
        "tie" => Preference::Tie,
        other => {
            return Err(Failure::Unparseable(format!(
                "verdict {:?} is not \"A\", \"B\" or \"tie\"",
                first_words(other)
            )))
        }
    };
    Ok(Reading {
        preference,
        reason: crate::api::text::keep_start(
            &one_line(strict.reason.as_deref().unwrap_or("")),
            MAX_REASON_CHARS,
        ),
    })
}

/// `s` on one line: control characters (line feeds included) as spaces, trimmed. A reason is
/// quoted in events, logs and alerts.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

fn first_words(s: &str) -> String {
    s.chars().take(80).collect()
}

/// What a pair came to, for green.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    Win,
    Loss,
    Tie,
    /// Judged in both orders, with verdicts that disagree.
    Inconsistent,
    /// The grader judged nothing.
    Failed,
}

impl Judgement {
    /// Green's side of a `reading` made with green's answer in position A (`green_first`) or B.
    pub fn of(preference: Preference, green_first: bool) -> Judgement {
        match (preference, green_first) {
            (Preference::Tie, _) => Judgement::Tie,
            (Preference::A, true) | (Preference::B, false) => Judgement::Win,
            (Preference::A, false) | (Preference::B, true) => Judgement::Loss,
        }
    }

    /// The name in logs: `win`, `loss`, `tie`, `inconsistent`, `judge_failed`.
    pub fn name(self) -> &'static str {
        match self {
            Judgement::Win => "win",
            Judgement::Loss => "loss",
            Judgement::Tie => "tie",
            Judgement::Inconsistent => "inconsistent",
            Judgement::Failed => "judge_failed",
        }
    }

    /// Counts this pair.
    pub fn count(self, into: &mut JudgedCounts) {
        let n = match self {
            Judgement::Win => &mut into.wins,
            Judgement::Loss => &mut into.losses,
            Judgement::Tie => &mut into.ties,
            Judgement::Inconsistent => &mut into.inconsistent,
            Judgement::Failed => &mut into.failed,
        };
        *n = n.saturating_add(1);
    }
}

/// A pair judged in both orders: a win, loss or tie only when both verdicts say it; a failure
/// when either call failed.
pub fn combine(first: Judgement, second: Judgement) -> Judgement {
    match (first, second) {
        (Judgement::Failed, _) | (_, Judgement::Failed) => Judgement::Failed,
        (a, b) if a == b => a,
        _ => Judgement::Inconsistent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(content: &str) -> Vec<u8> {
        serde_json::json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 30, "total_tokens": 930}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_strict_verdict_reads() {
        let (r, usage) = read(&completion(
            r#" {"verdict": "B", "reason": "A misses the date."} "#,
        ));
        let r = r.unwrap();
        assert_eq!(r.preference, Preference::B);
        assert_eq!(r.reason, "A misses the date.");
        let u = usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (900, 30));
        assert_eq!(
            read_content(r#"{"verdict":"tie"}"#).unwrap().preference,
            Preference::Tie
        );
    }

    #[test]
    fn anything_but_the_strict_verdict_fails() {
        for content in [
            "A",
            "```json\n{\"verdict\": \"A\"}\n```",
            "I prefer A. {\"verdict\": \"A\"}",
            r#"{"verdict": "a"}"#,
            r#"{"verdict": "Tie"}"#,
            r#"{"verdict": "both"}"#,
            r#"{"verdict": "A", "confidence": 0.9}"#,
            r#"{"verdict": 1}"#,
            r#"{"reason": "no verdict"}"#,
            r#"["A"]"#,
            "",
        ] {
            assert!(read_content(content).is_err(), "{content:?}");
        }
        let (r, usage) = read(br#"{"error":{"message":"overloaded"}}"#);
        assert_eq!(r.unwrap_err(), Failure::NotACompletion);
        assert!(usage.is_none());
        let (r, _) = read(br#"{"choices":[{"message":{"content":null}}]}"#);
        assert_eq!(r.unwrap_err(), Failure::NotACompletion);
    }

    #[test]
    fn a_long_reason_is_cut() {
        let long = "z".repeat(MAX_REASON_CHARS * 3);
        let r = read_content(&format!(r#"{{"verdict":"A","reason":"{long}"}}"#)).unwrap();
        assert!(r.reason.chars().count() < MAX_REASON_CHARS + 40);
        let r =
            read_content("{\"verdict\":\"B\",\"reason\":\"line one\\nline\\u0007two \"}").unwrap();
        assert_eq!(r.reason, "line one line two");
    }

    #[test]
    fn the_order_is_undone() {
        assert_eq!(Judgement::of(Preference::A, true), Judgement::Win);
        assert_eq!(Judgement::of(Preference::A, false), Judgement::Loss);
        assert_eq!(Judgement::of(Preference::B, true), Judgement::Loss);
        assert_eq!(Judgement::of(Preference::B, false), Judgement::Win);
        assert_eq!(Judgement::of(Preference::Tie, false), Judgement::Tie);
    }

    #[test]
    fn both_orders_count_only_when_they_agree() {
        use Judgement::*;
        assert_eq!(combine(Win, Win), Win);
        assert_eq!(combine(Loss, Loss), Loss);
        assert_eq!(combine(Tie, Tie), Tie);
        assert_eq!(combine(Win, Loss), Inconsistent);
        assert_eq!(combine(Tie, Loss), Inconsistent);
        assert_eq!(combine(Failed, Win), Failed);
        assert_eq!(combine(Loss, Failed), Failed);
        let mut c = JudgedCounts::default();
        for j in [Win, Loss, Loss, Tie, Inconsistent, Failed] {
            j.count(&mut c);
        }
        assert_eq!(
            (c.wins, c.losses, c.ties, c.inconsistent, c.failed),
            (1, 2, 1, 1, 1)
        );
    }
}
