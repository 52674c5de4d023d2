//! The Responses API's shapes (`POST /v1/responses`): what a stream event says before the
//! router commits ([`stream_event`]).
//!
//! OpenAI may answer `200`, send `response.created` and `response.in_progress`, and only then
//! fail. Its streams open with lifecycle events that carry nothing of the answer: `created`,
//! `in_progress`, `queued`, an output item or a content part `added` with nothing in it yet,
//! a tool call `in_progress` or `searching`. Those are held, as a chat stream's role chunk is,
//! until the first event that carries the answer (a text, refusal, function-call or reasoning
//! delta, anything `done`) or a terminal one: `response.completed` is an answer,
//! `response.failed` and a `response.incomplete` with no output are failures.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{is_blank, Carries};

/// A stream event, as far as [`stream_event`] reads it.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response: Option<Response<'a>>,
}

/// The `response` object of a lifecycle or terminal event.
#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(default)]
    incomplete_details: Option<Reason>,
    #[serde(default)]
    error: Option<Reason>,
}

/// `incomplete_details` (`reason`) or `error` (`message`, `code`).
#[derive(Deserialize, Default)]
struct Reason {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// Lifecycle events: alive, nothing of the answer yet.
fn is_lifecycle(kind: &str) -> bool {
    matches!(
        kind,
        "response.created" | "response.in_progress" | "response.queued"
    ) || [
        ".added",
        ".in_progress",
        ".searching",
        ".interpreting",
        ".generating",
    ]
    .iter()
    .any(|end| kind.ends_with(end))
}

/// What one Responses stream event says before the router commits (see [`Carries`]). Data that
/// is not such an event (no `type`, not JSON) is committed to: an unknown shape is the
/// client's to read. `[DONE]`, which some compatible providers append, ends the stream.
pub fn stream_event(data: &[u8]) -> Carries {
    if data.trim_ascii() == b"[DONE]" {
        return Carries::End;
    }
    let Ok(Event {
        kind: Some(kind),
        delta,
        response,
    }) = serde_json::from_slice::<Event>(data)
    else {
        return Carries::Answer;
    };
    let response = response.unwrap_or(Response {
        output: None,
        incomplete_details: None,
        error: None,
    });
    match kind.as_ref() {
        "error" => Carries::Failed("an error event".into()),
        "response.failed" => {
            let e = response.error.unwrap_or_default();
            let why = e
                .message
                .or(e.code)
                .unwrap_or_else(|| "no reason given".into());
            Carries::Failed(format!("response.failed: {why}"))
        }
        "response.incomplete" if is_blank(response.output) => {
            let reason = response.incomplete_details.and_then(|d| d.reason);
            let reason = reason.unwrap_or_else(|| "no reason given".into());
            Carries::Failed(format!("response.incomplete with no output ({reason})"))
        }
        kind if kind.ends_with(".delta") && is_blank(delta) => Carries::Nothing,
        kind if is_lifecycle(kind) => Carries::Nothing,
        _ => Carries::Answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Carries::*;

    #[test]
    fn lifecycle_events_are_held_and_the_first_part_of_the_answer_commits() {
        let failed = |m: &str| Failed(m.to_string());
        let cases: Vec<(&str, Carries)> = vec![
            (
                r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress","output":[],"error":null}}"#,
                Nothing,
            ),
            (
                r#"{"type":"response.in_progress","sequence_number":1,"response":{"output":[]}}"#,
                Nothing,
            ),
            (r#"{"type":"response.queued","response":{}}"#, Nothing),
            (
                r#"{"type":"response.output_item.added","output_index":0,"item":{"type":"message","content":[]}}"#,
                Nothing,
            ),
            (
                r#"{"type":"response.output_item.added","item":{"type":"function_call","name":"f","arguments":""}}"#,
                Nothing,
            ),
            (
                r#"{"type":"response.content_part.added","part":{"type":"output_text","text":""}}"#,
                Nothing,
            ),
            (
                r#"{"type":"response.reasoning_summary_part.added","part":{"text":""}}"#,
                Nothing,
            ),
            (
                r#"{"type":"response.web_search_call.in_progress"}"#,
                Nothing,
            ),
            (r#"{"type":"response.web_search_call.searching"}"#, Nothing),
            (
                r#"{"type":"response.output_text.delta","delta":""}"#,
                Nothing,
            ),
            (
                r#"{"type":"response.output_text.delta","delta":"Hel"}"#,
                Answer,
            ),
            (
                r#"{"type":"response.refusal.delta","delta":"I can't"}"#,
                Answer,
            ),
            (
                r#"{"type":"response.function_call_arguments.delta","delta":"{\""}"#,
                Answer,
            ),
            (
                r#"{"type":"response.reasoning_summary_text.delta","delta":"Thinking"}"#,
                Answer,
            ),
            (
                r#"{"type":"response.reasoning_text.delta","delta":"x"}"#,
                Answer,
            ),
            (
                r#"{"type":"response.output_item.done","item":{"type":"web_search_call"}}"#,
                Answer,
            ),
            (
                r#"{"type":"response.completed","response":{"output":[]}}"#,
                Answer,
            ),
            (
                r#"{"type":"response.incomplete","response":{"output":[{"type":"message"}],"incomplete_details":{"reason":"max_output_tokens"}}}"#,
                Answer,
            ),
            (
                r#"{"type":"response.incomplete","response":{"output":[],"incomplete_details":{"reason":"content_filter"}}}"#,
                failed("response.incomplete with no output (content_filter)"),
            ),
            (
                r#"{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"The model failed"}}}"#,
                failed("response.failed: The model failed"),
            ),
            (
                r#"{"type":"response.failed","response":{"error":{"code":"rate_limit_exceeded"}}}"#,
                failed("response.failed: rate_limit_exceeded"),
            ),
            (
                r#"{"type":"response.failed"}"#,
                failed("response.failed: no reason given"),
            ),
            (
                r#"{"type":"error","code":"server_error","message":"busy"}"#,
                failed("an error event"),
            ),
            ("[DONE]", End),
            // Shapes the router does not know are committed to.
            (
                r#"{"type":"response.image_generation_call.partial_image","partial_image_b64":"AA"}"#,
                Answer,
            ),
            (r#"{"object":"response"}"#, Answer),
            ("hello", Answer),
        ];
        for (data, want) in cases {
            assert_eq!(stream_event(data.as_bytes()), want, "{data}");
        }
    }
}
