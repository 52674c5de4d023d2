//! The shapes of the OpenAI APIs the router speaks: a request read and rewritten
//! ([`request`]), a stream's events ([`sse`]), what each API's stream events say before the
//! router commits ([`chat::stream_event`], [`responses::stream_event`]), whether a 2xx body is
//! an answer ([`Api::answer_object`]), the usage it reports ([`usage`]) and what makes a
//! successful answer one the app cannot use ([`defects`]). Nothing here routes or counts.

pub mod chat;
pub mod defects;
pub mod embeddings;
pub mod request;
pub mod responses;
pub mod sse;
pub mod text;
pub mod usage;

/// Most bytes of a successful non-streamed answer read whole before the router commits to it
/// (4 MiB: a chat completion or a response is a few KiB; `max_tokens` bounds it). A longer
/// answer is served unread and judged from a copy once sent.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// A routed API: one request path, each API's shapes plugged in. Named in outcome records as
/// `chat`, `responses` or `embeddings`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `POST /v1/chat/completions`.
    #[default]
    Chat,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/embeddings`, on a route of kind `embeddings` (never split per request).
    Embeddings,
}

impl Api {
    /// The API's path under `/v1`, as the client calls it and the upstream is called.
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/chat/completions",
            Api::Responses => "/responses",
            Api::Embeddings => "/embeddings",
        }
    }

    /// What one complete SSE event's `data` says of the answer before the router commits.
    pub fn stream_event(self, data: &[u8]) -> Carries {
        match self {
            Api::Chat => chat::stream_event(data),
            Api::Responses => responses::stream_event(data),
            // Embeddings are never streamed: whatever comes is the answer's.
            Api::Embeddings => Carries::Answer,
        }
    }

    /// Whether a 2xx `body` is this API's answer object (a chat completion with `choices`, a
    /// response with `output` that did not fail, an embeddings list with `data`); `Err` says what it is instead, in a few
    /// words for the log and the client's 502.
    pub fn answer_object(self, body: &[u8]) -> Result<(), String> {
        let top = match crate::util::json::from_slice::<Top>(body) {
            Ok(_) if body.trim_ascii_start().first() != Some(&b'{') => {
                return Err("JSON that is not an object".into())
            }
            Ok(top) => top,
            Err(e) if e.classify() == serde_json::error::Category::Data => {
                return Err("JSON that is not an object".into())
            }
            Err(_) => return Err(format!("not JSON ({})", opening_words(body))),
        };
        let (field, value) = match self {
            Api::Chat => ("choices", top.choices),
            Api::Responses => ("output", top.output),
            Api::Embeddings => ("data", top.data),
        };
        if let Some(Some(message)) = top.error.as_ref().map(error_message) {
            return Err(format!("an error object: {message}"));
        }
        if self == Api::Responses && top.status.as_deref() == Some("failed") {
            return Err("a response whose status is failed".into());
        }
        match value.map(|v| v.get().as_bytes()[0]) {
            Some(b'[') => Ok(()),
            _ => Err(format!("JSON without `{field}`")),
        }
    }
}

/// The top level of a 2xx body, as far as [`Api::answer_object`] reads it.
#[derive(serde::Deserialize)]
struct Top<'a> {
    #[serde(borrow, default)]
    choices: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    output: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The message of a non-null `error` value (its `message`, its `code`, or the string it is).
fn error_message(error: &serde_json::Value) -> Option<String> {
    let text = error
        .get("message")
        .or_else(|| error.get("code"))
        .unwrap_or(error);
    match text {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.chars().take(200).collect()),
        other => Some(other.to_string().chars().take(200).collect()),
    }
}

/// The first few printable characters of a body, to say what it was.
fn opening_words(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    let words: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match words.chars().count() {
        0 => "an empty body".into(),
        n if n > 40 => format!("begins `{}…`", words.chars().take(40).collect::<String>()),
        _ => format!("`{words}`"),
    }
}

/// What one event of a stream says of the answer, while the router has not yet committed to
/// the stream. An event that names an error is read before this, by the SSE scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carries {
    /// Part of the answer (text, a refusal, a tool call, reasoning, a finish reason), a
    /// terminal event that is an answer, or a shape the router does not know: commit.
    Answer,
    /// Nothing of the answer yet: a role chunk, a lifecycle event, an item with nothing in
    /// it. Held, and a sign that the upstream is alive.
    Nothing,
    /// The stream says it is over (`data: [DONE]`) before any part of the answer.
    End,
    /// A terminal failure that is not an error event (`response.failed`, `response.incomplete`
    /// with no output): its message.
    Failed(String),
}

/// Whether a JSON value is "empty" as an answer's part: absent, `null`, `""`, `[]` or `{}`.
pub(crate) fn is_blank(raw: Option<&serde_json::value::RawValue>) -> bool {
    raw.is_none_or(|r| matches!(r.get().trim(), "null" | "\"\"" | "[]" | "{}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2xx_body_is_an_answer_only_when_it_is_the_apis_answer_object() {
        let chat = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"content":""}}]}"#;
        let response =
            r#"{"id":"resp_1","object":"response","status":"completed","error":null,"output":[]}"#;
        let cases: [(Api, &str, Result<(), &str>); 13] = [
            (Api::Embeddings, r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AACAPw=="}]}"#, Ok(())),
            (Api::Embeddings, chat, Err("JSON without `data`")),
            (Api::Chat, chat, Ok(())),
            (Api::Responses, response, Ok(())),
            // A proxy's page sent as `200 application/json`.
            (Api::Chat, "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", Err("not JSON (begins `<!DOCTYPE html> <html><head><title>502 B…`)")),
            (Api::Chat, "", Err("not JSON (an empty body)")),
            (Api::Chat, "  OK ", Err("not JSON (`OK`)")),
            (Api::Chat, "[1]", Err("JSON that is not an object")),
            (Api::Chat, r#"{"error":{"message":"Rate limit reached","code":429}}"#, Err("an error object: Rate limit reached")),
            (Api::Chat, r#"{"id":"x","object":"chat.completion"}"#, Err("JSON without `choices`")),
            (Api::Chat, response, Err("JSON without `choices`")),
            (Api::Responses, r#"{"object":"response","status":"failed","error":{"code":"server_error","message":"boom"},"output":[]}"#, Err("an error object: boom")),
            (Api::Responses, r#"{"object":"response","status":"failed","error":null,"output":[]}"#, Err("a response whose status is failed")),
        ];
        for (api, body, want) in cases {
            let got = api.answer_object(body.as_bytes());
            assert_eq!(
                got.as_ref().map_err(String::as_str).copied(),
                want,
                "{body}"
            );
        }
    }
}
