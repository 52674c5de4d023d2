//! The token usage an answer reports, in any of the routed APIs' shapes.

use serde::{Deserialize, Serialize};

/// Token counts reported by the upstream: chat's `prompt_tokens` and `completion_tokens`, or
/// the Responses API's `input_tokens` and `output_tokens` (read as the same counts; records
/// and stats keep chat's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default, alias = "input_tokens")]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default, alias = "output_tokens")]
    pub completion_tokens: u64,
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<Usage>,
    /// A Responses stream's terminal event carries its usage in its `response`.
    response: Option<Inner>,
}

#[derive(Deserialize)]
struct Inner {
    usage: Option<Usage>,
}

/// The `usage` object of an answer or a streamed event, when there is one: top level (a chat
/// completion, its last chunk, a response object, an embeddings list) or in the `response` of a
/// Responses stream's terminal event. Anything unparseable yields `None`: usage is
/// informative, never a reason to fail.
pub fn usage_of(json: &[u8]) -> Option<Usage> {
    let w = crate::util::json::from_slice::<WithUsage>(json).ok()?;
    w.usage.or_else(|| w.response?.usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_usage() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],
                        "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        assert_eq!(
            usage_of(body),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 3
            })
        );
        assert_eq!(usage_of(br#"{"usage":null}"#), None);
        // The Responses API's names, top level and in a terminal event's `response`.
        let responses = Usage {
            prompt_tokens: 7,
            completion_tokens: 4,
        };
        let body = br#"{"object":"response","usage":{"input_tokens":7,"output_tokens":4,"total_tokens":11}}"#;
        assert_eq!(usage_of(body), Some(responses));
        let event = br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":0},"output_tokens":4}}}"#;
        assert_eq!(usage_of(event), Some(responses));
        assert_eq!(
            usage_of(br#"{"type":"response.created","response":{"usage":null}}"#),
            None
        );
        assert_eq!(usage_of(b"<html>"), None);
    }
}
