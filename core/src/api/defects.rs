//! Answer defects: a successful (2xx) answer the app still cannot use.
//!
//! A model migration mostly fails in answers, not in HTTP statuses: JSON mode that comes back
//! wrapped in code fences, tool calls whose arguments do not parse or name a tool that was not
//! offered, answers cut at `max_tokens`, empty answers, refusals, content filters. This module
//! reads what the request asked for ([`Expectations`]) and the answer (a non-streamed body with
//! [`classify_body`], or a stream's `data:` payloads fed one by one into a [`StreamAnswer`]) and
//! names at most one [`Defect`] per answer: its root cause, in the order of [`Defect::ALL`]. A
//! truncated JSON answer is `truncated`, not `invalid_json`, so that a policy that accepts
//! truncation (some apps expect `length`) does not count its consequence either.
//!
//! Streams are reassembled only as far as a check needs, within [`MAX_REASSEMBLED_BYTES`] per
//! answer: content only when JSON was asked for, tool call arguments only when tools were
//! called. Past the bound the JSON checks of that answer are skipped (the answer is not called
//! invalid for what was not read); the other checks need no text and always run.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::api::request::ApiRequest;
use crate::api::Api;
use crate::util::json;

mod embeddings;
mod responses;

/// Bytes of one streamed answer's content and tool arguments kept for the JSON checks.
pub const MAX_REASSEMBLED_BYTES: usize = 1 << 20;
/// Choices (`n`) and tool calls per choice a stream is followed for; more are not checked.
const MAX_TRACKED: usize = 16;
/// Longest tool name (and call id) kept.
const MAX_NAME_CHARS: usize = 256;
/// Most bytes of a request's `tools` (or `functions`, or `response_format`) read to learn what
/// it asks of the answer: every request pays for this before any check, so it is bounded. 256
/// KiB holds 128 tools (OpenAI's own limit) with schemas of 2 KiB each.
pub const MAX_EXPECTATION_BYTES: usize = 256 * 1024;
/// Most tools read for their names: four times OpenAI's limit of 128.
pub const MAX_TOOLS: usize = 512;

/// Why a successful answer is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Defect {
    /// `finish_reason` `content_filter`: the provider withheld (part of) the answer.
    ContentFilter,
    /// A non-empty `refusal`: the model declined.
    Refusal,
    /// `finish_reason` `length`: cut at `max_tokens` (or the model's limit).
    Truncated,
    /// No content, no tool call and no refusal.
    Empty,
    /// A tool call whose arguments do not parse as JSON, or that names a function the request
    /// did not offer.
    InvalidToolCall,
    /// JSON was asked for (`response_format` `json_object` or `json_schema`) and the content
    /// does not parse as JSON (code fences, prose around it, a cut object).
    InvalidJson,
    /// Embedding vectors of mixed lengths, or not of the requested `dimensions`: an index
    /// cannot hold them.
    DimensionMismatch,
}

impl Defect {
    /// Every class, root causes first: an answer is named by the first that applies.
    pub const ALL: [Defect; 7] = [
        Defect::ContentFilter,
        Defect::Refusal,
        Defect::Truncated,
        Defect::Empty,
        Defect::InvalidToolCall,
        Defect::InvalidJson,
        Defect::DimensionMismatch,
    ];

    /// The name used in records, stats, settings and reasons.
    pub fn name(self) -> &'static str {
        match self {
            Defect::ContentFilter => "content_filter",
            Defect::Refusal => "refusal",
            Defect::Truncated => "truncated",
            Defect::Empty => "empty",
            Defect::InvalidToolCall => "invalid_tool_call",
            Defect::InvalidJson => "invalid_json",
            Defect::DimensionMismatch => "dimension_mismatch",
        }
    }

    /// The class named `name`.
    pub fn parse(name: &str) -> Option<Defect> {
        Defect::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// What the request asked of the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// The API the request was sent to: whose shapes the answer has.
    pub api: Api,
    /// `response_format` asked for JSON (and was small enough to read: see
    /// [`MAX_EXPECTATION_BYTES`]; past it the answer is not judged as JSON).
    pub json: bool,
    /// Names of the tools (functions and custom tools) the request offered.
    pub tools: Vec<String>,
    /// The request's `tools` or `functions` could not be read, or were past
    /// [`MAX_EXPECTATION_BYTES`] or [`MAX_TOOLS`]: any name counts as offered.
    pub tools_unread: bool,
    /// The vector length an embeddings request asked for (`dimensions`).
    pub dimensions: Option<u64>,
}

#[derive(Deserialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
}

/// The Responses API's `text` parameter, as far as its `format` goes.
#[derive(Deserialize)]
struct TextParam<'a> {
    #[serde(borrow)]
    format: Option<ResponseFormat<'a>>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
}

/// A tool offered: chat's `{"type": "function", "function": {"name"}}` (or `custom`), or the
/// Responses API's flat `{"type": "function", "name"}`.
#[derive(Deserialize)]
struct Tool {
    function: Option<Named>,
    custom: Option<Named>,
    name: Option<String>,
}

/// A JSON array of at most [`MAX_TOOLS`] `T`s in at most [`MAX_EXPECTATION_BYTES`]; `None`
/// past either bound (the reading stops at the first element past the count) or when it is not
/// such an array.
fn bounded_list<'de, T: Deserialize<'de>>(raw: &'de str) -> Option<Vec<T>> {
    use serde::de::{SeqAccess, Visitor};
    struct Bounded<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an array of at most {MAX_TOOLS} elements")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                if out.len() == MAX_TOOLS {
                    return Err(serde::de::Error::custom("too many elements"));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    if raw.len() > MAX_EXPECTATION_BYTES {
        return None;
    }
    json::read_seq(raw, Bounded(std::marker::PhantomData)).ok()
}

impl Expectations {
    /// What `req` asks for: JSON from `response_format` (the Responses API's `text.format`),
    /// tool names from `tools` (and chat's legacy `functions`). Fields it cannot read ask for nothing: the upstream judges the
    /// request, this only judges answers.
    /// Each field is read only within [`MAX_EXPECTATION_BYTES`] (and [`MAX_TOOLS`]), so that
    /// the cost is bounded whatever the body holds.
    pub fn of(req: &ApiRequest) -> Expectations {
        let parse = |name: &str| req.field(name).map(RawValue::get);
        let format = match req.api {
            Api::Chat => parse("response_format")
                .filter(|f| f.len() <= MAX_EXPECTATION_BYTES)
                .and_then(|f| json::parse::<ResponseFormat>(f).ok()),
            Api::Responses => parse("text")
                .filter(|f| f.len() <= MAX_EXPECTATION_BYTES)
                .and_then(|f| json::parse::<TextParam>(f).ok())
                .and_then(|t| t.format),
            Api::Embeddings => None,
        };
        let json = format.is_some_and(|f| matches!(f.kind, Some("json_object" | "json_schema")));
        let mut tools_unread = false;
        let mut tools: Vec<String> = Vec::new();
        if let Some(t) = parse("tools") {
            match bounded_list::<Tool>(t) {
                Some(list) => tools.extend(
                    list.into_iter()
                        .filter_map(|t| t.function.or(t.custom).and_then(|n| n.name).or(t.name)),
                ),
                None => tools_unread = t != "null",
            }
        }
        if let Some(f) = parse("functions") {
            match bounded_list::<Named>(f) {
                Some(list) => tools.extend(list.into_iter().filter_map(|f| f.name)),
                None => tools_unread |= f != "null",
            }
        }
        Expectations {
            api: req.api,
            json,
            tools,
            tools_unread,
            dimensions: parse("dimensions").and_then(|d| d.parse().ok()),
        }
    }

    fn offers(&self, name: &str) -> bool {
        self.tools_unread || self.tools.iter().any(|t| t == name)
    }
}

/// One choice of an answer, as far as the checks need it.
#[derive(Debug, Default, Clone)]
struct Choice {
    finish_reason: Option<String>,
    refusal: bool,
    /// Some non-whitespace content was seen.
    content_seen: bool,
    /// The content, when JSON was asked for and it fit.
    content: String,
    calls: Vec<Call>,
}

/// One tool call of a choice.
#[derive(Debug, Default, Clone)]
struct Call {
    name: String,
    /// The call's `id`, when the stream gave one: a new id without an `index` opens a new call.
    id: String,
    arguments: String,
    /// A custom tool: its input is free text, not JSON.
    custom: bool,
}

impl Choice {
    /// The first defect of this choice, against `want`; `checked` false when its text was
    /// not all kept (the JSON checks are skipped).
    fn defect(&self, want: &Expectations, checked: bool) -> Option<Defect> {
        let bad_call =
            |c: &Call| !want.offers(&c.name) || (checked && !c.custom && !parses(&c.arguments));
        let found = [
            (
                self.finish_reason.as_deref() == Some("content_filter"),
                Defect::ContentFilter,
            ),
            (self.refusal, Defect::Refusal),
            (
                self.finish_reason.as_deref() == Some("length"),
                Defect::Truncated,
            ),
            (!self.content_seen && self.calls.is_empty(), Defect::Empty),
            (self.calls.iter().any(bad_call), Defect::InvalidToolCall),
            (
                want.json && checked && self.content_seen && !parses(&self.content),
                Defect::InvalidJson,
            ),
        ];
        found.into_iter().find(|(hit, _)| *hit).map(|(_, d)| d)
    }
}

fn parses(text: &str) -> bool {
    json::parse::<serde::de::IgnoredAny>(text).is_ok()
}

/// The wire shapes the checks read, borrowed from the answer's bytes where they hold no
/// escapes: one typed parse per body or chunk, no tree of values. A field of an unexpected type
/// makes the whole body or chunk unreadable, and so judged by nothing.
mod wire {
    use std::borrow::Cow;

    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    pub struct Completion<'a> {
        #[serde(borrow, default)]
        pub choices: Option<Vec<Choice<'a>>>,
    }

    #[derive(Deserialize)]
    pub struct Choice<'a> {
        #[serde(default)]
        pub index: Option<u64>,
        #[serde(borrow, default)]
        pub finish_reason: Option<Cow<'a, str>>,
        /// A non-streamed answer's message.
        #[serde(borrow, default)]
        pub message: Option<Message<'a>>,
        /// A stream chunk's piece of it.
        #[serde(borrow, default)]
        pub delta: Option<Message<'a>>,
    }

    #[derive(Deserialize)]
    pub struct Message<'a> {
        /// A string, an array of parts, or null: read only as far as needed.
        #[serde(borrow, default)]
        pub content: Option<&'a RawValue>,
        #[serde(borrow, default)]
        pub refusal: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub tool_calls: Option<Vec<Call<'a>>>,
        #[serde(borrow, default)]
        pub function_call: Option<Function<'a>>,
    }

    #[derive(Deserialize)]
    pub struct Call<'a> {
        #[serde(default)]
        pub index: Option<u64>,
        #[serde(borrow, default)]
        pub id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub function: Option<Function<'a>>,
        #[serde(borrow, default)]
        pub custom: Option<Function<'a>>,
    }

    #[derive(Deserialize)]
    pub struct Function<'a> {
        #[serde(borrow, default)]
        pub name: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub arguments: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    pub struct Part<'a> {
        #[serde(borrow, default)]
        pub text: Option<Cow<'a, str>>,
    }
}

/// The text of a message's `content`: a string, or the `text` of an array of parts.
fn content_text(content: Option<&RawValue>) -> String {
    let Some(raw) = content.map(RawValue::get) else {
        return String::new();
    };
    match raw.as_bytes().first() {
        Some(b'"') => json::parse::<std::borrow::Cow<str>>(raw)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        Some(b'[') => json::parse::<Vec<wire::Part>>(raw)
            .map(|parts| parts.into_iter().filter_map(|p| p.text).collect())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn is_refusal(refusal: Option<&std::borrow::Cow<str>>) -> bool {
    refusal.is_some_and(|r| !r.trim().is_empty())
}

/// The defect of a non-streamed chat completion body, `None` when it is usable or is not a
/// chat completion at all (an answer the checks cannot read is the transport's business).
/// With several choices, the first defective one names the answer.
pub fn classify_body(want: &Expectations, body: &[u8]) -> Option<Defect> {
    match want.api {
        Api::Responses => return responses::classify_body(want, body),
        Api::Embeddings => return embeddings::classify_body(want, body),
        Api::Chat => {}
    }
    let completion: wire::Completion = crate::util::json::from_slice(body).ok()?;
    let mut first = None;
    for c in completion.choices?.iter().take(MAX_TRACKED) {
        let Some(message) = &c.message else {
            continue;
        };
        let content = content_text(message.content);
        let mut calls: Vec<Call> = message.tool_calls.iter().flatten().map(call_of).collect();
        if let Some(f) = &message.function_call {
            calls.push(Call {
                name: f.name.as_deref().unwrap_or_default().to_string(),
                arguments: f.arguments.as_deref().unwrap_or_default().to_string(),
                ..Call::default()
            });
        }
        let choice = Choice {
            finish_reason: c.finish_reason.as_deref().map(str::to_string),
            refusal: is_refusal(message.refusal.as_ref()),
            content_seen: !content.trim().is_empty(),
            content,
            calls,
        };
        first = first.or(choice.defect(want, true));
    }
    first
}

/// What a whole answer says, as the stats count it: its defect ([`classify_body`]) and, for
/// embeddings, its vectors' length when they have one and the request did not choose it with
/// `dimensions` (checked against the answer instead). The body is parsed once.
pub fn classify_answer(want: &Expectations, body: &[u8]) -> (Option<Defect>, Option<u64>) {
    if want.api != Api::Embeddings {
        return (classify_body(want, body), None);
    }
    match crate::api::embeddings::vectors(body) {
        // A length the request chose (`dimensions`) says nothing of the model: only the model's
        // own lengths must agree across answers.
        Some(v) => (
            embeddings::classify_vectors(want, &v),
            v.length.filter(|_| want.dimensions.is_none()),
        ),
        None => (None, None),
    }
}

fn call_of(call: &wire::Call) -> Call {
    if let Some(custom) = &call.custom {
        return Call {
            name: custom.name.as_deref().unwrap_or_default().to_string(),
            arguments: String::new(),
            custom: true,
            ..Call::default()
        };
    }
    let f = call.function.as_ref();
    Call {
        name: f
            .and_then(|f| f.name.as_deref())
            .unwrap_or_default()
            .to_string(),
        arguments: f
            .and_then(|f| f.arguments.as_deref())
            .unwrap_or_default()
            .to_string(),
        ..Call::default()
    }
}

/// A streamed answer, reassembled from its `data:` payloads as far as the checks need.
#[derive(Debug, Clone)]
pub struct StreamAnswer {
    want: Expectations,
    choices: Vec<Choice>,
    /// Bytes of content and arguments kept so far.
    kept: usize,
    /// Some text was not kept: the JSON checks are skipped.
    overflowed: bool,
    /// An event was not read at all (longer than the relay holds): nothing is judged.
    skipped: bool,
    /// A Responses stream's terminal event came, with the defect of the response it carries.
    terminal: Option<Option<Defect>>,
}

impl StreamAnswer {
    /// An answer to a request that asked for `want`.
    pub fn new(want: Expectations) -> StreamAnswer {
        StreamAnswer {
            want,
            choices: Vec::new(),
            kept: 0,
            overflowed: false,
            skipped: false,
            terminal: None,
        }
    }

    /// An event went by unread (the relay forwards an oversized event as it comes): the answer
    /// cannot be judged.
    pub fn skip(&mut self) {
        self.skipped = true;
    }

    /// Adds one event's `data:` payload (`[DONE]`, error events and anything that is not a
    /// chunk add nothing).
    pub fn feed(&mut self, data: &str) {
        if self.want.api == Api::Responses {
            if let Some(defect) = responses::terminal(&self.want, data) {
                self.terminal = Some(defect);
            }
            return;
        }
        let Ok(chunk) = json::parse::<wire::Completion>(data) else {
            return;
        };
        for c in chunk.choices.iter().flatten() {
            let index = c.index.unwrap_or(0) as usize;
            if index >= MAX_TRACKED {
                continue;
            }
            if self.choices.len() <= index {
                self.choices.resize_with(index + 1, Choice::default);
            }
            if let Some(reason) = &c.finish_reason {
                self.choices[index].finish_reason = Some(reason.to_string());
            }
            if let Some(delta) = &c.delta {
                self.delta(index, delta);
            }
        }
    }

    fn delta(&mut self, index: usize, delta: &wire::Message) {
        if is_refusal(delta.refusal.as_ref()) {
            self.choices[index].refusal = true;
        }
        // The text is copied only when a check needs it: JSON asked for, or none seen yet.
        if delta.content.is_some() && (self.want.json || !self.choices[index].content_seen) {
            let text = content_text(delta.content);
            if !text.trim().is_empty() {
                self.choices[index].content_seen = true;
            }
            if self.want.json && self.keep(text.len()) {
                self.choices[index].content.push_str(&text);
            }
        }
        for call in delta.tool_calls.iter().flatten() {
            let calls = &self.choices[index].calls;
            let id = call.id.as_deref().unwrap_or_default();
            // Without an index, a new id is a new call; otherwise the pieces are the last one's.
            let at = match call.index {
                Some(i) => i as usize,
                None if !id.is_empty() && calls.last().is_none_or(|c| c.id != id) => calls.len(),
                None => calls.len().saturating_sub(1),
            };
            if at >= MAX_TRACKED {
                continue;
            }
            let part = call_of(call);
            self.add_call_piece(index, at, id, part);
        }
        // The legacy `function_call`: one call, in pieces like a tool call's.
        if let Some(f) = &delta.function_call {
            let part = Call {
                name: f.name.as_deref().unwrap_or_default().to_string(),
                arguments: f.arguments.as_deref().unwrap_or_default().to_string(),
                ..Call::default()
            };
            self.add_call_piece(index, 0, "", part);
        }
    }

    /// Adds a piece of call `at` of choice `index`: its name once (providers that repeat it in
    /// every piece are not read as a longer name), its arguments within the bound.
    fn add_call_piece(&mut self, index: usize, at: usize, id: &str, part: Call) {
        let keep = self.keep(part.arguments.len());
        let calls = &mut self.choices[index].calls;
        if calls.len() <= at {
            calls.resize_with(at + 1, Call::default);
        }
        let kept = &mut calls[at];
        if kept.name.is_empty() {
            kept.name = part.name.chars().take(MAX_NAME_CHARS).collect();
        }
        if kept.id.is_empty() && !id.is_empty() {
            kept.id = id.chars().take(MAX_NAME_CHARS).collect();
        }
        kept.custom |= part.custom;
        if keep {
            kept.arguments.push_str(&part.arguments);
        }
    }

    /// Whether `len` more bytes fit the bound; once one does not, nothing more is kept.
    fn keep(&mut self, len: usize) -> bool {
        if self.overflowed || self.kept.saturating_add(len) > MAX_REASSEMBLED_BYTES {
            self.overflowed = true;
            return false;
        }
        self.kept += len;
        true
    }

    /// The answer's defect once the stream has ended normally; `None` for a stream that said
    /// nothing the checks can read (no chunk at all is the transport's failure, not a defect).
    pub fn finish(&self) -> Option<Defect> {
        // An event went by unread, or a choice never said how it finished (the upstream closed
        // cleanly mid-answer): that is the transport's failure, not the model's answer.
        if self.skipped || self.choices.iter().any(|c| c.finish_reason.is_none()) {
            return None;
        }
        // A Responses stream is judged by the response its terminal event carries; without
        // one, the stream ended mid-answer.
        if self.want.api == Api::Responses {
            return self.terminal.flatten();
        }
        let checked = !self.overflowed;
        self.choices
            .iter()
            .find_map(|c| c.defect(&self.want, checked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Api;

    fn want(req: &str) -> Expectations {
        Expectations::of(&ApiRequest::parse(Api::Chat, req.as_bytes()).unwrap())
    }

    const JSON_MODE: &str = r#"{"messages":[],"response_format":{"type":"json_object"}}"#;
    const TOOLS: &str = r#"{"messages":[],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}},{"type":"custom","custom":{"name":"sql"}}]}"#;

    #[test]
    fn reads_what_the_request_asks_for() {
        assert_eq!(want(r#"{"messages":[]}"#), Expectations::default());
        assert!(want(JSON_MODE).json);
        assert!(
            want(r#"{"messages":[],"response_format":{"type":"json_schema","json_schema":{}}}"#)
                .json
        );
        assert!(!want(r#"{"messages":[],"response_format":{"type":"text"}}"#).json);
        assert!(!want(r#"{"messages":[],"response_format":"json"}"#).json);
        assert_eq!(want(TOOLS).tools, ["get_weather", "sql"]);
        // Past the count or the bytes, the tools are not read: any name counts as offered.
        let many = |n: usize, pad: usize| {
            let tool = format!(
                r#"{{"type":"function","function":{{"name":"f","description":"{}"}}}}"#,
                "x".repeat(pad)
            );
            format!(r#"{{"messages":[],"tools":[{}]}}"#, vec![tool; n].join(","))
        };
        let at_count = want(&many(MAX_TOOLS, 0));
        assert_eq!(
            (at_count.tools.len(), at_count.tools_unread),
            (MAX_TOOLS, false)
        );
        let past_count = want(&many(MAX_TOOLS + 1, 0));
        assert_eq!((past_count.tools.len(), past_count.tools_unread), (0, true));
        let past_bytes = want(&many(2, MAX_EXPECTATION_BYTES / 2));
        assert_eq!((past_bytes.tools.len(), past_bytes.tools_unread), (0, true));
        assert!(past_bytes.offers("anything"));
        let big_format = format!(
            r#"{{"messages":[],"response_format":{{"type":"json_object","x":"{}"}}}}"#,
            "x".repeat(MAX_EXPECTATION_BYTES)
        );
        assert!(
            !want(&big_format).json,
            "past the bound, not judged as JSON"
        );
        assert_eq!(
            want(r#"{"messages":[],"functions":[{"name":"f"}],"tools":7}"#).tools,
            ["f"]
        );
    }

    fn body(message: &str, finish: &str) -> String {
        format!(
            r#"{{"id":"c","choices":[{{"index":0,"message":{message},"finish_reason":"{finish}"}}],"usage":{{"prompt_tokens":1}}}}"#
        )
    }

    #[test]
    fn names_each_defect_of_a_body() {
        let plain = Expectations::default();
        let json = want(JSON_MODE);
        let tools = want(TOOLS);
        let functions = want(r#"{"messages":[],"functions":[{"name":"f"}]}"#);
        let call = |name: &str, args: &str| {
            format!(
                r#"{{"role":"assistant","content":null,"tool_calls":[{{"id":"t","type":"function","function":{{"name":"{name}","arguments":{}}}}}]}}"#,
                serde_json::to_string(args).unwrap()
            )
        };
        let cases: Vec<(&Expectations, String, Option<Defect>)> = vec![
            (&plain, body(r#"{"content":"Hello"}"#, "stop"), None),
            (
                &plain,
                body(r#"{"content":"Hel"}"#, "length"),
                Some(Defect::Truncated),
            ),
            (
                &plain,
                body(r#"{"content":""}"#, "content_filter"),
                Some(Defect::ContentFilter),
            ),
            (
                &plain,
                body(
                    r#"{"content":null,"refusal":"I can't help with that."}"#,
                    "stop",
                ),
                Some(Defect::Refusal),
            ),
            (
                &plain,
                body(r#"{"content":"ok","refusal":null}"#, "stop"),
                None,
            ),
            (
                &plain,
                body(r#"{"content":"  \n"}"#, "stop"),
                Some(Defect::Empty),
            ),
            (
                &plain,
                body(r#"{"content":null}"#, "stop"),
                Some(Defect::Empty),
            ),
            (&json, body(r#"{"content":"{\"a\": 1}"}"#, "stop"), None),
            (
                &json,
                body(r#"{"content":"```json\n{\"a\": 1}\n```"}"#, "stop"),
                Some(Defect::InvalidJson),
            ),
            (
                &json,
                body(r#"{"content":"Sure! {\"a\": 1}"}"#, "stop"),
                Some(Defect::InvalidJson),
            ),
            // Cut JSON: the root cause is the truncation.
            (
                &json,
                body(r#"{"content":"{\"a\": "}"#, "length"),
                Some(Defect::Truncated),
            ),
            (
                &plain,
                body(r#"{"content":"```json\n{}\n```"}"#, "stop"),
                None,
            ),
            (
                &tools,
                body(&call("get_weather", r#"{"city":"Paris"}"#), "tool_calls"),
                None,
            ),
            (
                &tools,
                body(&call("get_weather", r#"{"city":"Par"#), "tool_calls"),
                Some(Defect::InvalidToolCall),
            ),
            (
                &tools,
                body(&call("get_weather", ""), "tool_calls"),
                Some(Defect::InvalidToolCall),
            ),
            (
                &tools,
                body(&call("get_wether", "{}"), "tool_calls"),
                Some(Defect::InvalidToolCall),
            ),
            (
                &plain,
                body(&call("get_weather", "{}"), "tool_calls"),
                Some(Defect::InvalidToolCall),
            ),
            (
                &tools,
                body(
                    r#"{"content":null,"tool_calls":[{"id":"t","type":"custom","custom":{"name":"sql","input":"SELECT 1"}}]}"#,
                    "tool_calls",
                ),
                None,
            ),
            (
                &functions,
                body(
                    r#"{"content":null,"function_call":{"name":"f","arguments":"{\"x\":"}}"#,
                    "function_call",
                ),
                Some(Defect::InvalidToolCall),
            ),
            // JSON mode and a tool call without content: nothing to parse.
            (
                &json,
                body(&call("x", "{}"), "tool_calls"),
                Some(Defect::InvalidToolCall),
            ),
            // Content as an array of parts.
            (
                &json,
                body(
                    r#"{"content":[{"type":"text","text":"{\"a\""},{"type":"text","text":":1}"}]}"#,
                    "stop",
                ),
                None,
            ),
        ];
        for (want, body, defect) in cases {
            assert_eq!(classify_body(want, body.as_bytes()), defect, "{body}");
        }
    }

    #[test]
    fn a_body_that_is_not_a_completion_has_no_defect() {
        let w = want(JSON_MODE);
        for body in [
            "",
            "<html>",
            r#"{"error":{"message":"x"}}"#,
            r#"{"choices":"x"}"#,
            r#"{"choices":[]}"#,
        ] {
            assert_eq!(classify_body(&w, body.as_bytes()), None, "{body}");
        }
    }

    #[test]
    fn the_first_defective_choice_names_the_answer() {
        let b = r#"{"choices":[{"message":{"content":"fine"},"finish_reason":"stop"},{"message":{"content":"cut"},"finish_reason":"length"}]}"#;
        assert_eq!(
            classify_body(&Expectations::default(), b.as_bytes()),
            Some(Defect::Truncated)
        );
    }

    fn chunk(delta: &str, finish: Option<&str>) -> String {
        let finish = finish.map_or("null".to_string(), |f| format!("\"{f}\""));
        format!(
            r#"{{"id":"c","object":"chat.completion.chunk","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
        )
    }

    fn stream(want: Expectations, events: &[String]) -> Option<Defect> {
        let mut a = StreamAnswer::new(want);
        for e in events {
            a.feed(e);
        }
        a.feed("[DONE]");
        a.finish()
    }

    #[test]
    fn names_each_defect_of_a_stream() {
        let text = |t: &str| {
            chunk(
                &format!(r#"{{"content":{}}}"#, serde_json::to_string(t).unwrap()),
                None,
            )
        };
        let end = |f: &str| chunk("{}", Some(f));
        let json = want(JSON_MODE);
        let tools = want(TOOLS);
        let role = chunk(r#"{"role":"assistant","content":""}"#, None);
        assert_eq!(
            stream(
                Expectations::default(),
                &[role.clone(), text("Hi"), text(" there"), end("stop")]
            ),
            None
        );
        assert_eq!(
            stream(Expectations::default(), &[role.clone(), end("stop")]),
            Some(Defect::Empty)
        );
        assert_eq!(
            stream(Expectations::default(), &[text("Hi"), end("length")]),
            Some(Defect::Truncated)
        );
        assert_eq!(
            stream(Expectations::default(), &[end("content_filter")]),
            Some(Defect::ContentFilter)
        );
        assert_eq!(
            stream(
                Expectations::default(),
                &[chunk(r#"{"refusal":"No."}"#, None), end("stop")]
            ),
            Some(Defect::Refusal)
        );
        assert_eq!(
            stream(
                json.clone(),
                &[text("{\"a\""), text(": [1, 2]}"), end("stop")]
            ),
            None
        );
        assert_eq!(
            stream(
                json.clone(),
                &[text("```json\n"), text("{}"), text("\n```"), end("stop")]
            ),
            Some(Defect::InvalidJson)
        );
        // Tool calls arrive in pieces: the name first, the arguments over several chunks.
        let call = |name: &str, args: &str| {
            chunk(
                &format!(
                    r#"{{"tool_calls":[{{"index":0,"id":"t","type":"function","function":{{"name":"{name}","arguments":{}}}}}]}}"#,
                    serde_json::to_string(args).unwrap()
                ),
                None,
            )
        };
        let ok = [
            call("get_weather", ""),
            call("", "{\"city\""),
            call("", ":\"Paris\"}"),
            end("tool_calls"),
        ];
        assert_eq!(stream(tools.clone(), &ok), None);
        let cut = [
            call("get_weather", ""),
            call("", "{\"city\""),
            end("tool_calls"),
        ];
        assert_eq!(stream(tools.clone(), &cut), Some(Defect::InvalidToolCall));
        let unknown = [call("rm_rf", "{}"), end("tool_calls")];
        assert_eq!(stream(tools, &unknown), Some(Defect::InvalidToolCall));
        // Error events and junk add nothing; a stream with no chunk has no answer to judge.
        assert_eq!(
            stream(
                json,
                &[
                    r#"{"error":{"message":"overloaded"}}"#.into(),
                    "junk".into()
                ]
            ),
            None
        );
    }

    #[test]
    fn streams_as_providers_send_them() {
        let tools = want(TOOLS);
        let end = |f: &str| chunk("{}", Some(f));
        // Legacy function_call deltas, as tool calls are.
        let f = |name: &str, args: &str| {
            chunk(
                &format!(
                    r#"{{"function_call":{{"name":"{name}","arguments":{}}}}}"#,
                    serde_json::to_string(args).unwrap()
                ),
                None,
            )
        };
        let functions = want(r#"{"messages":[],"functions":[{"name":"f"}]}"#);
        assert_eq!(
            stream(
                functions.clone(),
                &[
                    f("f", ""),
                    f("", "{\"x\":"),
                    f("", "1}"),
                    end("function_call")
                ]
            ),
            None
        );
        assert_eq!(
            stream(functions, &[f("f", "{\"x\":"), end("function_call")]),
            Some(Defect::InvalidToolCall)
        );
        // Tool calls without an index, told apart by id; a name repeated in every piece.
        let call = |id: &str, name: &str, args: &str| {
            chunk(
                &format!(
                    r#"{{"tool_calls":[{{"id":"{id}","type":"function","function":{{"name":"{name}","arguments":{}}}}}]}}"#,
                    serde_json::to_string(args).unwrap()
                ),
                None,
            )
        };
        let parallel = [
            call("a", "get_weather", "{}"),
            call("b", "sql", "{"),
            call("b", "sql", "}"),
            end("tool_calls"),
        ];
        assert_eq!(stream(tools.clone(), &parallel), None);
        let repeated = [
            call("a", "get_weather", "{\"city\""),
            call("a", "get_weather", ":\"Paris\"}"),
            end("tool_calls"),
        ];
        assert_eq!(stream(tools.clone(), &repeated), None);
        // A stream that closed cleanly mid-answer (no finish_reason) is not judged: cut JSON
        // there is the transport's fault.
        let json = want(JSON_MODE);
        let text = chunk(r#"{"content":"{\"a\": "}"#, None);
        assert_eq!(stream(json.clone(), std::slice::from_ref(&text)), None);
        assert_eq!(
            stream(json, &[text, end("stop")]),
            Some(Defect::InvalidJson)
        );
        // Unreadable tools: any name counts as offered.
        let unread = want(r#"{"messages":[],"tools":[{"type":"function","function":7}]}"#);
        assert!(unread.tools_unread);
        assert_eq!(
            stream(unread, &[call("a", "anything", "{}"), end("tool_calls")]),
            None
        );
        // An event the relay could not read: nothing judged.
        let mut a = StreamAnswer::new(Expectations::default());
        a.feed(&end("stop"));
        a.skip();
        assert_eq!(a.finish(), None);
    }

    #[test]
    fn past_the_bound_the_json_checks_are_skipped_and_memory_stays_bounded() {
        let piece = "x".repeat(64 * 1024);
        let mut a = StreamAnswer::new(want(JSON_MODE));
        a.feed(&chunk(r#"{"content":"not json "}"#, None));
        for _ in 0..40 {
            a.feed(&chunk(&format!(r#"{{"content":"{piece}"}}"#), None));
        }
        a.feed(&chunk("{}", Some("stop")));
        assert!(a.kept <= MAX_REASSEMBLED_BYTES);
        assert!(a.choices[0].content.len() <= MAX_REASSEMBLED_BYTES);
        assert_eq!(a.finish(), None, "not read, not judged");
        // The checks that need no text still run past it.
        a.feed(&chunk("{}", Some("length")));
        assert_eq!(a.finish(), Some(Defect::Truncated));
        // Choices and calls beyond the tracked number are ignored, not grown into.
        a.feed(r#"{"choices":[{"index":1000000000,"delta":{"content":"x"}}]}"#);
        assert!(a.choices.len() <= MAX_TRACKED);
    }

    #[test]
    fn names_round_trip() {
        for d in Defect::ALL {
            assert_eq!(Defect::parse(d.name()), Some(d));
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.name())
            );
        }
        assert_eq!(Defect::parse("nope"), None);
    }
}
