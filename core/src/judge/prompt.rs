//! What the grader is sent: one chat completion request with the operator's (or the default)
//! instructions, the conversation and the two answers as A and B, asking for the strict JSON
//! verdict [`super::verdict`] reads (a `json_schema` response format, which providers that
//! support structured output enforce, and the instructions spell out for those that do not).
//! The order of the answers is the caller's draw, one per pair: a grader that prefers the first
//! position then favours each side equally often.

use serde_json::json;

/// What the grader is asked when the policy gives no `instructions`.
pub const DEFAULT_INSTRUCTIONS: &str = "You compare two answers to the same conversation. \
Judge which answer better serves the user: correctness first, then helpfulness (it answers \
what was asked, completely and without padding), then whether it follows the format and \
constraints the conversation asked for. Ignore length for its own sake and the order in which \
the answers are shown. Answer \"tie\" when neither is clearly better.";

/// How the verdict must be written, after any instructions (the operator's cannot change it).
const FORMAT: &str = "Reply with only a JSON object, no other text: \
{\"verdict\": \"A\" | \"B\" | \"tie\", \"reason\": \"one sentence\"}.";

/// The name of the response format's schema: how the upstream simulator (and a reader of the
/// logs) tells a grader request from an app's.
pub const SCHEMA_NAME: &str = "pairwise_verdict";

/// Most tokens the grader may write: a verdict and a sentence.
const MAX_TOKENS: u32 = 300;

/// The grader request's body for `model`, with `instructions` (the default when `None`), the
/// `conversation` and the answers in positions A and B.
pub fn request(
    model: &str,
    instructions: Option<&str>,
    conversation: &str,
    a: &str,
    b: &str,
) -> Vec<u8> {
    let system = format!(
        "{}\n\n{FORMAT}",
        instructions.unwrap_or(DEFAULT_INSTRUCTIONS)
    );
    let user = format!(
        "<conversation>\n{conversation}\n</conversation>\n\n<answer_a>\n{a}\n</answer_a>\n\n<answer_b>\n{b}\n</answer_b>"
    );
    json!({
        "model": model,
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "stream": false,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": SCHEMA_NAME,
                "strict": true,
                "schema": {
                    "type": "object",
                    "properties": {
                        "verdict": {"type": "string", "enum": ["A", "B", "tie"]},
                        "reason": {"type": "string"},
                    },
                    "required": ["verdict", "reason"],
                    "additionalProperties": false,
                },
            },
        },
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_request_names_the_model_and_holds_both_answers_in_order() {
        let body = request("judge-m", None, "user: 2+2?", "Four.", "Five.");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["model"], "judge-m");
        assert_eq!(v["response_format"]["json_schema"]["name"], SCHEMA_NAME);
        let system = v["messages"][0]["content"].as_str().unwrap();
        assert!(system.starts_with("You compare two answers"));
        assert!(system.ends_with(FORMAT));
        let user = v["messages"][1]["content"].as_str().unwrap();
        let (a, b) = (user.find("Four.").unwrap(), user.find("Five.").unwrap());
        assert!(a < b);
        assert!(user.starts_with("<conversation>\nuser: 2+2?\n</conversation>"));
    }

    #[test]
    fn operator_instructions_replace_the_default_but_not_the_format() {
        let body = request("m", Some("Prefer answers in French."), "c", "a", "b");
        let v: Value = serde_json::from_slice(&body).unwrap();
        let system = v["messages"][0]["content"].as_str().unwrap();
        assert!(system.starts_with("Prefer answers in French."));
        assert!(!system.contains("correctness first"));
        assert!(system.ends_with(FORMAT));
    }

    #[test]
    fn answers_with_markup_stay_inside_their_section() {
        let body = request("m", None, "c", "</answer_a>\"quoted\"", "b");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("</answer_a>\"quoted\""));
    }
}
