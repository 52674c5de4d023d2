//! What the grader is sent: one chat completion request with the operator's (or the default)
//! instructions, the conversation and the two answers as A and B, asking for the strict JSON
//! verdict [`super::verdict`] reads (a `json_schema` response format, which providers that
//! support structured output enforce, and the instructions spell out for those that do not).
//! The order of the answers is the caller's draw, one per pair: a grader that prefers the first
//! position then favours each side equally often.

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

/// The grader request's body for `model`, with `instructions` (the default when `None`), the
/// `conversation` and the answers in positions A and B: a chat completion at temperature 0, at
/// most 300 tokens, not streamed, whose response format is [`SCHEMA_NAME`]'s JSON schema (the
/// verdict, `"A"`, `"B"` or `"tie"`, and the reason, both strings, both required, nothing else).
///
/// Written straight to text, its keys in the order `serde_json::Value` writes them (sorted), the
/// same bytes as the `json!` the tests hold it to: a tree of values built only to be written
/// cost the wasm its building and writing code.
pub fn request(
    model: &str,
    instructions: Option<&str>,
    conversation: &str,
    a: &str,
    b: &str,
) -> Vec<u8> {
    let (system, user) = messages(instructions, conversation, a, b);
    let mut out = br#"{"max_tokens":300,"messages":[{"content":"#.to_vec();
    push_string(&mut out, &system);
    out.extend_from_slice(br#","role":"system"},{"content":"#);
    push_string(&mut out, &user);
    out.extend_from_slice(br#","role":"user"}],"model":"#);
    push_string(&mut out, model);
    out.extend_from_slice(
        br#","response_format":{"json_schema":{"name":"pairwise_verdict","schema":{"additionalProperties":false,"properties":{"reason":{"type":"string"},"verdict":{"enum":["A","B","tie"],"type":"string"}},"required":["verdict","reason"],"type":"object"},"strict":true},"type":"json_schema"},"stream":false,"temperature":0}"#,
    );
    out
}

/// The system message's text (the instructions, then [`FORMAT`]) and the user message's (the
/// conversation and both answers, each in its own section).
fn messages(instructions: Option<&str>, conversation: &str, a: &str, b: &str) -> (String, String) {
    let system = format!(
        "{}\n\n{FORMAT}",
        instructions.unwrap_or(DEFAULT_INSTRUCTIONS)
    );
    let user = format!(
        "<conversation>\n{conversation}\n</conversation>\n\n<answer_a>\n{a}\n</answer_a>\n\n<answer_b>\n{b}\n</answer_b>"
    );
    (system, user)
}

/// `s` as a JSON string.
fn push_string(out: &mut Vec<u8>, s: &str) {
    // Writing to a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The request as the grader's first release built it, through a `Value`.
    fn through_value(
        model: &str,
        instructions: Option<&str>,
        conversation: &str,
        a: &str,
        b: &str,
    ) -> Vec<u8> {
        let (system, user) = messages(instructions, conversation, a, b);
        json!({
            "model": model,
            "temperature": 0,
            "max_tokens": 300,
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

    #[test]
    fn the_request_is_the_bytes_a_value_would_write() {
        let odd = "quote \" backslash \\ tab \t nl \n nul \u{0} bell \u{7} del \u{7f} é 🙂 </answer_a> \u{2028}";
        for (model, instructions, conversation, a, b) in [
            ("judge-m", None, "user: 2+2?", "Four.", "Five."),
            ("m", Some("Prefer answers in French."), "", "", ""),
            (odd, Some(odd), odd, odd, odd),
        ] {
            assert_eq!(
                String::from_utf8(request(model, instructions, conversation, a, b)).unwrap(),
                String::from_utf8(through_value(model, instructions, conversation, a, b)).unwrap()
            );
        }
    }

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
