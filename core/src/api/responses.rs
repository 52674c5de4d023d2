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
//!
//! A response lives with the model that made it: a follow-up (`previous_response_id`) and its
//! encrypted reasoning items must go back to that model. So the ids the client sees name the
//! environment that made them ([`ResponseId`]): `resp_bgg_<upstream id>` for green,
//! `resp_bgb_<upstream id>` for blue. Any isolate reads the environment back from the id
//! alone; the upstream gets its own id back. The id is changed the same way in a non-streamed
//! body and in every event of a stream ([`IdRewrite`]), and nowhere else.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{is_blank, Carries};
use crate::environment::Environment;

/// What a response id the router issued starts with, before the environment's letter.
const ID_PREFIX: &str = "resp_bg";

/// A response id as the client sees it: the environment that made it and the upstream's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseId<'a> {
    pub environment: Environment,
    pub upstream: &'a str,
}

impl<'a> ResponseId<'a> {
    /// Reads an id the router issued; `None` for any other (made elsewhere, or before).
    pub fn decode(id: &'a str) -> Option<ResponseId<'a>> {
        let rest = id.strip_prefix(ID_PREFIX)?;
        let (environment, upstream) = match rest.as_bytes() {
            [b'g', b'_', ..] => (Environment::Green, &rest[2..]),
            [b'b', b'_', ..] => (Environment::Blue, &rest[2..]),
            _ => return None,
        };
        (!upstream.is_empty()).then_some(ResponseId {
            environment,
            upstream,
        })
    }

    /// The id the client sees.
    pub fn encode(&self) -> String {
        let letter = match self.environment {
            Environment::Green => 'g',
            Environment::Blue => 'b',
        };
        format!("{ID_PREFIX}{letter}_{}", self.upstream)
    }
}

/// A call on a stored response the router issued: `GET` or `DELETE /v1/responses/{id}`,
/// `POST /v1/responses/{id}/cancel`, `GET /v1/responses/{id}/input_items`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCall<'a> {
    pub id: ResponseId<'a>,
    /// The path to call upstream, after `/v1/responses/{upstream id}`: `""`, `/cancel` or
    /// `/input_items`.
    pub rest: &'static str,
}

impl<'a> StoredCall<'a> {
    /// Reads `method` and `path` (as the client sent it, already checked) as such a call;
    /// `None` for anything else, an id the router did not issue included.
    pub fn of(method: &str, path: &'a str) -> Option<StoredCall<'a>> {
        let tail = path.strip_prefix("/v1/responses/")?;
        let tail = tail.strip_suffix('/').unwrap_or(tail);
        let (id, rest) = match tail.split_once('/') {
            None => (tail, ""),
            Some((id, "cancel")) => (id, "/cancel"),
            Some((id, "input_items")) => (id, "/input_items"),
            Some(_) => return None,
        };
        let allowed = matches!(
            (method, rest),
            ("GET" | "DELETE", "") | ("POST", "/cancel") | ("GET", "/input_items")
        );
        let id = ResponseId::decode(id)?;
        allowed.then_some(StoredCall { id, rest })
    }

    /// The upstream path (after `/v1`).
    pub fn upstream_path(&self) -> String {
        format!("/responses/{}{}", self.id.upstream, self.rest)
    }
}

/// Changes one response id into the id the client sees, in the bytes of a body or of whole
/// stream events: every JSON string that is exactly the upstream's id (`"resp_…"`, quotes
/// included), so that a text that merely contains it is left alone. Learned from the body's
/// top-level `id`, or from the first stream event whose `response` has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdRewrite {
    /// `"<upstream id>"` and `"<client id>"`, quoted; empty until the id is known.
    from: Vec<u8>,
    to: Vec<u8>,
}

#[derive(Deserialize)]
struct WithId<'a> {
    #[serde(borrow, default)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    response: Option<Box<WithId<'a>>>,
}

impl IdRewrite {
    /// The rewrite of an id already known (a call on a stored response).
    pub fn of(id: ResponseId) -> IdRewrite {
        let mut r = IdRewrite::default();
        r.set(id);
        r
    }

    fn set(&mut self, id: ResponseId) {
        // Ids are plain ASCII tokens; one that needs escaping is not rewritten.
        if id
            .upstream
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || b < 0x20)
        {
            return;
        }
        self.from = format!("\"{}\"", id.upstream).into_bytes();
        self.to = format!("\"{}\"", id.encode()).into_bytes();
    }

    /// True once the id to change is known.
    pub fn knows(&self) -> bool {
        !self.from.is_empty()
    }

    /// Learns the id from a response object or a stream event's data (its `response.id`),
    /// to be issued as made by `environment`. Only the first id learned counts.
    pub fn learn(&mut self, environment: Environment, json: &[u8]) {
        if self.knows() {
            return;
        }
        let Ok(w) = crate::util::json::from_slice::<WithId>(json) else {
            return;
        };
        let id = match (w.response.and_then(|r| r.id), w.id) {
            (Some(id), _) if !id.is_empty() => id,
            (None, Some(id)) if !id.is_empty() => id,
            _ => return,
        };
        self.set(ResponseId {
            environment,
            upstream: &id,
        });
    }

    /// Changes every occurrence of the id in `bytes` (whole events, or a whole body). Linear in
    /// `bytes`; returns them unchanged (no copy) when the id does not occur.
    pub fn apply(&self, bytes: Vec<u8>) -> Vec<u8> {
        if !self.knows() {
            return bytes;
        }
        let first = self.from[0];
        let mut at = 0;
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        while let Some(i) = bytes[at..].iter().position(|&b| b == first) {
            let start = at + i;
            if bytes[start..].starts_with(&self.from) {
                let o = out.get_or_insert_with(|| Vec::with_capacity(bytes.len() + 64));
                o.extend_from_slice(&bytes[copied..start]);
                o.extend_from_slice(&self.to);
                copied = start + self.from.len();
                at = copied;
            } else {
                at = start + 1;
            }
        }
        match out {
            None => bytes,
            Some(mut o) => {
                o.extend_from_slice(&bytes[copied..]);
                o
            }
        }
    }
}

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
    }) = crate::util::json::from_slice::<Event>(data)
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
    fn an_id_names_the_environment_that_made_it_and_gives_the_upstream_its_own() {
        let green = ResponseId {
            environment: Environment::Green,
            upstream: "resp_67ccd2bed1ec8190",
        };
        assert_eq!(green.encode(), "resp_bgg_resp_67ccd2bed1ec8190");
        assert_eq!(
            ResponseId::decode("resp_bgg_resp_67ccd2bed1ec8190"),
            Some(green)
        );
        let blue = ResponseId::decode("resp_bgb_x").unwrap();
        assert_eq!((blue.environment, blue.upstream), (Environment::Blue, "x"));
        for other in [
            "resp_67cc",
            "resp_bgx_1",
            "resp_bgg_",
            "resp_bgg",
            "",
            "resp_bggresp_1",
        ] {
            assert_eq!(ResponseId::decode(other), None, "{other}");
        }
    }

    #[test]
    fn calls_on_a_stored_response_are_read_from_the_path() {
        let call = StoredCall::of("GET", "/v1/responses/resp_bgg_resp_1").unwrap();
        assert_eq!(call.id.environment, Environment::Green);
        assert_eq!(call.upstream_path(), "/responses/resp_1");
        let cases = [
            ("DELETE", "/v1/responses/resp_bgb_r/", Some("/responses/r")),
            (
                "POST",
                "/v1/responses/resp_bgb_r/cancel",
                Some("/responses/r/cancel"),
            ),
            (
                "GET",
                "/v1/responses/resp_bgb_r/input_items",
                Some("/responses/r/input_items"),
            ),
            ("POST", "/v1/responses/resp_bgb_r", None),
            ("GET", "/v1/responses/resp_bgb_r/cancel", None),
            ("GET", "/v1/responses/resp_bgb_r/other", None),
            ("GET", "/v1/responses/resp_r", None),
            ("GET", "/v1/responses/", None),
            ("GET", "/v1/responses", None),
        ];
        for (method, path, want) in cases {
            let got = StoredCall::of(method, path).map(|c| c.upstream_path());
            assert_eq!(got.as_deref(), want, "{method} {path}");
        }
    }

    #[test]
    fn the_id_is_changed_in_every_event_and_nowhere_else() {
        let created = br#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_9","status":"in_progress","previous_response_id":"resp_1"}}"#;
        let mut r = IdRewrite::default();
        assert!(!r.knows());
        // An event without a response teaches nothing.
        r.learn(
            Environment::Green,
            br#"{"type":"response.output_text.delta","delta":"x"}"#,
        );
        assert!(!r.knows());
        r.learn(Environment::Green, created);
        assert!(r.knows());
        let stream = [
            &b"event: response.created\ndata: "[..],
            created,
            b"\n\nevent: response.output_text.delta\ndata: {\"delta\":\"the id resp_9 and \\\"resp_9\\\"\"}\n\n",
        ]
        .concat();
        let out = String::from_utf8(r.apply(stream)).unwrap();
        assert!(out.contains(r#""id":"resp_bgg_resp_9""#), "{out}");
        // The previous id and a text that mentions the id are left alone.
        assert!(out.contains(r#""previous_response_id":"resp_1""#));
        assert!(out.contains(r#"the id resp_9 and \"resp_9\""#), "{out}");
        // A body: its top-level id; later ids learned are ignored.
        let mut r = IdRewrite::default();
        r.learn(
            Environment::Blue,
            br#"{"id":"resp_2","object":"response","output":[]}"#,
        );
        r.learn(Environment::Blue, br#"{"id":"resp_3"}"#);
        let body = r.apply(br#"{"id":"resp_2","object":"response","output":[]}"#.to_vec());
        assert_eq!(
            body,
            br#"{"id":"resp_bgb_resp_2","object":"response","output":[]}"#
        );
        // Nothing to change: the same bytes back.
        let plain = b"data: {}

"
        .to_vec();
        assert_eq!(r.apply(plain.clone()), plain);
    }

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
