//! The Responses API's answers judged for defects: a response object (a non-streamed body, or
//! the `response` of a stream's terminal event) read as one [`Choice`] of chat's checks.
//!
//! - `status: "incomplete"` maps by `incomplete_details.reason`: `max_output_tokens` is
//!   `truncated`, `content_filter` is `content_filter`;
//! - a non-empty `refusal` content part is `refusal`;
//! - no output text, no tool call, no refusal and no other output item (a web search, an
//!   image) is `empty`; reasoning alone is no answer;
//! - a function call whose arguments do not parse, or a function or custom tool the request
//!   did not offer, is `invalid_tool_call`;
//! - `text.format` asked for JSON and the output text does not parse is `invalid_json`.

use std::borrow::Cow;

use serde::Deserialize;

use super::{is_refusal, Call, Choice, Defect, Expectations, MAX_REASSEMBLED_BYTES, MAX_TRACKED};
use crate::util::json;

/// A response object, as far as the checks read it.
#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(default)]
    incomplete_details: Option<Incomplete>,
    #[serde(borrow, default)]
    output: Option<Vec<Item<'a>>>,
}

#[derive(Deserialize)]
struct Incomplete {
    #[serde(default)]
    reason: Option<String>,
}

/// One output item: a message, a tool call, reasoning, a built-in tool's call.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Vec<Part<'a>>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// A message's content part: `output_text` (`text`) or `refusal`.
#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
}

/// A stream's terminal event, as far as its `response` goes.
#[derive(Deserialize)]
struct Terminal<'a> {
    #[serde(borrow)]
    response: Response<'a>,
}

/// The defect of a non-streamed response body; `None` when it is usable or is not a response
/// object at all.
pub(super) fn classify_body(want: &Expectations, body: &[u8]) -> Option<Defect> {
    let response: Response = crate::util::json::from_slice(body).ok()?;
    defect_of(want, &response)
}

/// The defect named by a stream event's `data`, when it is a terminal event that carries the
/// whole response (`response.completed`, `response.incomplete`): `Some(defect or None)`;
/// `None` for any other event. Only events that name such a type are parsed.
pub(super) fn terminal(want: &Expectations, data: &str) -> Option<Option<Defect>> {
    if !(data.contains("\"response.completed\"") || data.contains("\"response.incomplete\"")) {
        return None;
    }
    let event: Terminal = json::parse(data).ok()?;
    Some(defect_of(want, &event.response))
}

fn defect_of(want: &Expectations, response: &Response) -> Option<Defect> {
    let reason = match (
        response.status.as_deref(),
        response
            .incomplete_details
            .as_ref()
            .and_then(|d| d.reason.as_deref()),
    ) {
        (Some("incomplete"), Some("max_output_tokens")) => "length",
        (Some("incomplete"), Some("content_filter")) => "content_filter",
        _ => "stop",
    };
    let mut choice = Choice {
        finish_reason: Some(reason.to_string()),
        ..Choice::default()
    };
    let mut checked = true;
    for item in response.output.iter().flatten().take(MAX_TRACKED * 4) {
        match item.kind.as_deref().unwrap_or_default() {
            "message" => {
                for part in item.content.iter().flatten() {
                    choice.refusal |= is_refusal(part.refusal.as_ref());
                    let text = part.text.as_deref().unwrap_or_default();
                    choice.content_seen |= !text.trim().is_empty();
                    if want.json && choice.content.len() + text.len() <= MAX_REASSEMBLED_BYTES {
                        choice.content.push_str(text);
                    } else if want.json {
                        checked = false;
                    }
                }
            }
            kind @ ("function_call" | "custom_tool_call") => choice.calls.push(Call {
                name: item.name.as_deref().unwrap_or_default().to_string(),
                arguments: item.arguments.as_deref().unwrap_or_default().to_string(),
                custom: kind == "custom_tool_call",
                ..Call::default()
            }),
            // Reasoning is the way to an answer, not one.
            "reasoning" => {}
            // A built-in tool's call (a web search, an image) is part of the answer.
            _ => choice.content_seen = true,
        }
    }
    choice.defect(want, checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::request::ApiRequest;
    use crate::api::Api;

    fn want(req: &str) -> Expectations {
        Expectations::of(&ApiRequest::parse(Api::Responses, req.as_bytes()).unwrap())
    }

    fn response(status: &str, extra: &str, output: &str) -> String {
        format!(
            r#"{{"id":"resp_1","object":"response","status":"{status}"{extra},"output":[{output}],"usage":{{"input_tokens":3,"output_tokens":5}}}}"#
        )
    }

    const TEXT: &str = r#"{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hello","annotations":[]}]}"#;

    #[test]
    fn reads_what_a_responses_request_asks_for() {
        let w = want(
            r#"{"input":"x","text":{"format":{"type":"json_schema","name":"r","schema":{}}},"tools":[{"type":"function","name":"get_weather","parameters":{}},{"type":"custom","name":"sql"},{"type":"web_search"}]}"#,
        );
        assert_eq!(w.api, Api::Responses);
        assert!(w.json);
        assert_eq!(w.tools, ["get_weather", "sql"]);
        assert!(!want(r#"{"input":"x","text":{"format":{"type":"text"}}}"#).json);
        // Chat's `response_format` means nothing to the Responses API.
        assert!(!want(r#"{"input":"x","response_format":{"type":"json_object"}}"#).json);
    }

    #[test]
    fn names_each_defect_of_a_response() {
        let plain = want(r#"{"input":"x"}"#);
        let json = want(r#"{"input":"x","text":{"format":{"type":"json_object"}}}"#);
        let tools =
            want(r#"{"input":"x","tools":[{"type":"function","name":"f","parameters":{}}]}"#);
        let call = |name: &str, args: &str| {
            format!(
                r#"{{"type":"function_call","call_id":"c1","name":"{name}","arguments":{}}}"#,
                serde_json::to_string(args).unwrap()
            )
        };
        let refusal = r#"{"type":"message","content":[{"type":"refusal","refusal":"I can't help with that."}]}"#;
        let reasoning = r#"{"type":"reasoning","summary":[]}"#;
        let json_text =
            r#"{"type":"message","content":[{"type":"output_text","text":"{\"a\": 1}"}]}"#;
        let fenced = r#"{"type":"message","content":[{"type":"output_text","text":"```json\n{\"a\": 1}\n```"}]}"#;
        let cases: Vec<(&Expectations, String, Option<Defect>)> = vec![
            (&plain, response("completed", "", TEXT), None),
            (
                &plain,
                response(
                    "incomplete",
                    r#","incomplete_details":{"reason":"max_output_tokens"}"#,
                    TEXT,
                ),
                Some(Defect::Truncated),
            ),
            (
                &plain,
                response(
                    "incomplete",
                    r#","incomplete_details":{"reason":"content_filter"}"#,
                    TEXT,
                ),
                Some(Defect::ContentFilter),
            ),
            (
                &plain,
                response("completed", "", refusal),
                Some(Defect::Refusal),
            ),
            (&plain, response("completed", "", ""), Some(Defect::Empty)),
            (
                &plain,
                response("completed", "", reasoning),
                Some(Defect::Empty),
            ),
            (
                &plain,
                response(
                    "completed",
                    "",
                    r#"{"type":"web_search_call","status":"completed"}"#,
                ),
                None,
            ),
            (
                &tools,
                response("completed", "", &call("f", r#"{"city":"Paris"}"#)),
                None,
            ),
            (
                &tools,
                response("completed", "", &call("f", r#"{"city":"#)),
                Some(Defect::InvalidToolCall),
            ),
            (
                &tools,
                response("completed", "", &call("g", "{}")),
                Some(Defect::InvalidToolCall),
            ),
            (&json, response("completed", "", json_text), None),
            (
                &json,
                response("completed", "", fenced),
                Some(Defect::InvalidJson),
            ),
            (&plain, response("completed", "", fenced), None),
        ];
        for (want, body, defect) in cases {
            assert_eq!(classify_body(want, body.as_bytes()), defect, "{body}");
        }
        assert_eq!(classify_body(&plain, b"<html>"), None);
    }

    #[test]
    fn a_streams_terminal_event_carries_the_whole_response() {
        let plain = want(r#"{"input":"x"}"#);
        let completed = format!(
            r#"{{"type":"response.completed","sequence_number":9,"response":{}}}"#,
            response("completed", "", TEXT)
        );
        assert_eq!(terminal(&plain, &completed), Some(None));
        let cut = format!(
            r#"{{"type":"response.incomplete","response":{}}}"#,
            response(
                "incomplete",
                r#","incomplete_details":{"reason":"max_output_tokens"}"#,
                TEXT
            )
        );
        assert_eq!(terminal(&plain, &cut), Some(Some(Defect::Truncated)));
        // Other events are not parsed.
        assert_eq!(
            terminal(
                &plain,
                r#"{"type":"response.output_text.delta","delta":"\"response.completed\""}"#
            ),
            None
        );
        assert_eq!(
            terminal(
                &plain,
                r#"{"type":"response.in_progress","response":{"output":[]}}"#
            ),
            None
        );
    }
}
