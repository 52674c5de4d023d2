//! The texts a grader reads ([`crate::judge`]): a request's conversation and each side's answer, as plain text,
//! bounded so that a grader call stays small whatever the app sends ([`MAX_CONVERSATION_CHARS`],
//! [`MAX_ANSWER_CHARS`]). A conversation keeps its end (the turn being answered), an answer its
//! beginning; either says how much was cut.

use serde_json::Value;

use crate::util::json;

use crate::api::Api;

/// Most characters of the conversation the grader is shown (its last ones).
pub const MAX_CONVERSATION_CHARS: usize = 12_000;
/// Most characters of each answer the grader is shown (its first ones).
pub const MAX_ANSWER_CHARS: usize = 8_000;

/// The request's conversation as text, one turn a paragraph (`role: text`); `None` when the
/// body is not this API's request.
pub fn conversation(api: Api, body: &[u8]) -> Option<String> {
    let v: Value = json::from_slice(body).ok()?;
    let mut turns: Vec<String> = Vec::new();
    match api {
        Api::Chat => {
            for m in v.get("messages")?.as_array()? {
                turns.push(turn(m));
            }
        }
        Api::Responses => {
            if let Some(i) = v.get("instructions").and_then(Value::as_str) {
                turns.push(format!("system: {i}"));
            }
            match v.get("input")? {
                Value::String(s) => turns.push(format!("user: {s}")),
                Value::Array(items) => turns.extend(items.iter().map(turn)),
                _ => return None,
            }
        }
        Api::Embeddings => return None,
    }
    Some(keep_end(&turns.join("\n\n"), MAX_CONVERSATION_CHARS))
}

/// One message or input item: `role: text`, a tool call as `name(arguments)`, a tool's output.
fn turn(m: &Value) -> String {
    let role = m.get("role").and_then(Value::as_str);
    let kind = m.get("type").and_then(Value::as_str);
    let mut text = content(m.get("content"));
    push_tool_calls(&mut text, m);
    match (role, kind) {
        (Some(role), _) => format!("{role}: {text}"),
        (None, Some("function_call")) => {
            let mut t = String::new();
            push_call(&mut t, m);
            format!("assistant: {t}")
        }
        (None, Some("function_call_output")) => {
            format!("tool: {}", m.get("output").map(plain).unwrap_or_default())
        }
        (None, _) => format!("user: {text}"),
    }
}

/// A chat message's `tool_calls`, each as `[tool call] name(arguments)`.
fn push_tool_calls(text: &mut String, m: &Value) {
    let calls = m.get("tool_calls").and_then(Value::as_array);
    for f in calls
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("function"))
    {
        push_call(text, f);
    }
}

fn push_call(text: &mut String, f: &Value) {
    let name = f.get("name").and_then(Value::as_str).unwrap_or("?");
    let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(&format!("[tool call] {name}({args})"));
}

/// A string, or the texts of an array of parts (`text`, `input_text`, `output_text`,
/// `refusal`); other parts (images, files) as `[image]` and the like.
fn content(c: Option<&Value>) -> String {
    match c {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                let kind = p.get("type").and_then(Value::as_str).unwrap_or("part");
                p.get("text")
                    .or_else(|| p.get("refusal"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("[{kind}]"))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A successful answer's text, read whole: a chat completion's first choice (content, refusal,
/// tool calls) or a response's output (messages, refusals, function calls); `None` when the body
/// is not this API's answer.
pub fn answer(api: Api, body: &[u8]) -> Option<String> {
    let v: Value = json::from_slice(body).ok()?;
    let text = match api {
        Api::Chat => {
            let m = v.get("choices")?.as_array()?.first()?.get("message")?;
            let mut text = content(m.get("content"));
            if let Some(r) = m.get("refusal").and_then(Value::as_str) {
                text.push_str(&format!("[refusal] {r}"));
            }
            push_tool_calls(&mut text, m);
            text
        }
        Api::Responses => output_text(v.get("output")?)?,
        Api::Embeddings => return None,
    };
    Some(keep_start(&text, MAX_ANSWER_CHARS))
}

/// A response's `output` items as text.
fn output_text(output: &Value) -> Option<String> {
    let mut text = String::new();
    for item in output.as_array()? {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&content(item.get("content")));
            }
            Some("function_call") => push_call(&mut text, item),
            _ => {}
        }
    }
    Some(text)
}

/// A streamed answer's text, gathered event by event within [`MAX_ANSWER_CHARS`].
#[derive(Debug, Default, Clone)]
pub struct StreamText {
    text: String,
    /// Characters kept in `text`.
    chars: usize,
    /// Something was cut past the bound (characters, and events not read after it).
    cut: usize,
    /// A Responses stream's completed response, when no delta came.
    completed: Option<String>,
}

impl StreamText {
    /// Takes one event's `data`.
    pub fn feed(&mut self, api: Api, data: &str) {
        // Past the bound nothing more is kept: the rest of the stream is not even parsed (a
        // completed response is wanted only when no delta came).
        if self.cut > 0 {
            self.cut = self.cut.saturating_add(1);
            return;
        }
        let Ok(v) = json::from_slice::<Value>(data.as_bytes()) else {
            return;
        };
        match api {
            Api::Chat => {
                let Some(delta) = v
                    .get("choices")
                    .and_then(Value::as_array)
                    .and_then(|c| {
                        c.iter()
                            .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
                    })
                    .and_then(|c| c.get("delta"))
                else {
                    return;
                };
                for key in ["content", "refusal"] {
                    if let Some(s) = delta.get(key).and_then(Value::as_str) {
                        self.push(s);
                    }
                }
                for call in delta
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(f) = call.get("function") {
                        if let Some(name) = f.get("name").and_then(Value::as_str) {
                            self.push(&format!("\n[tool call] {name}("));
                        }
                        if let Some(args) = f.get("arguments").and_then(Value::as_str) {
                            self.push(args);
                        }
                    }
                }
            }
            Api::Responses => match v.get("type").and_then(Value::as_str) {
                Some(
                    "response.output_text.delta"
                    | "response.refusal.delta"
                    | "response.function_call_arguments.delta",
                ) => {
                    if let Some(d) = v.get("delta").and_then(Value::as_str) {
                        self.push(d);
                    }
                }
                Some("response.completed") => {
                    self.completed = v
                        .get("response")
                        .and_then(|r| r.get("output"))
                        .and_then(output_text);
                }
                _ => {}
            },
            Api::Embeddings => {}
        }
    }

    fn push(&mut self, s: &str) {
        let room = MAX_ANSWER_CHARS.saturating_sub(self.chars);
        let n = s.chars().count();
        if n <= room {
            self.text.push_str(s);
            self.chars += n;
        } else {
            self.text.extend(s.chars().take(room));
            self.chars += room;
            // At least one: what counts is that something was cut.
            self.cut = self.cut.saturating_add((n - room).max(1));
        }
    }

    /// The answer's text so far.
    pub fn finish(&self) -> String {
        if self.text.is_empty() {
            if let Some(c) = &self.completed {
                return keep_start(c, MAX_ANSWER_CHARS);
            }
        }
        match self.cut {
            0 => self.text.clone(),
            _ => format!("{}\n[… the rest cut]", self.text),
        }
    }
}

/// `s`'s first `max` characters, saying how many were cut.
pub fn keep_start(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max).collect();
    format!("{kept}\n[… {} more characters cut]", n - max)
}

/// `s`'s last `max` characters, saying how many were cut.
pub fn keep_end(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let kept: String = s.chars().skip(n - max).collect();
    format!("[… {} earlier characters cut]\n{kept}", n - max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_conversation_reads_turn_by_turn() {
        let body = br#"{"model":"m","messages":[
            {"role":"system","content":"Be brief."},
            {"role":"user","content":[{"type":"text","text":"What is 2+2?"},{"type":"image_url","image_url":{"url":"x"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"add","arguments":"{\"a\":2}"}}]},
            {"role":"tool","tool_call_id":"1","content":"4"}]}"#;
        let c = conversation(Api::Chat, body).unwrap();
        assert_eq!(
            c,
            "system: Be brief.\n\nuser: What is 2+2?\n[image_url]\n\nassistant: [tool call] add({\"a\":2})\n\ntool: 4"
        );
    }

    #[test]
    fn a_responses_conversation_reads_instructions_and_items() {
        let body = br#"{"model":"m","instructions":"Be brief.","input":[
            {"role":"user","content":[{"type":"input_text","text":"Hi"}]},
            {"type":"function_call","name":"f","arguments":"{}","call_id":"c"},
            {"type":"function_call_output","call_id":"c","output":"done"}]}"#;
        let c = conversation(Api::Responses, body).unwrap();
        assert_eq!(
            c,
            "system: Be brief.\n\nuser: Hi\n\nassistant: [tool call] f({})\n\ntool: done"
        );
        let c = conversation(Api::Responses, br#"{"model":"m","input":"Hello"}"#).unwrap();
        assert_eq!(c, "user: Hello");
        assert!(conversation(Api::Chat, b"not json").is_none());
        assert!(conversation(Api::Chat, br#"{"messages":3}"#).is_none());
    }

    #[test]
    fn a_long_conversation_keeps_its_end() {
        let long = "x".repeat(MAX_CONVERSATION_CHARS + 10);
        let body = serde_json::json!({"messages":[{"role":"user","content": long}, {"role":"user","content":"last"}]});
        let c = conversation(Api::Chat, body.to_string().as_bytes()).unwrap();
        assert!(c.ends_with("user: last"));
        assert!(c.starts_with("[… "), "{}", &c[..40]);
        assert!(c.chars().count() < MAX_CONVERSATION_CHARS + 60);
    }

    #[test]
    fn whole_answers_read_as_text() {
        let chat = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Four."}}]}"#;
        assert_eq!(answer(Api::Chat, chat).unwrap(), "Four.");
        let tool = br#"{"choices":[{"message":{"content":null,"tool_calls":[{"function":{"name":"add","arguments":"{}"}}]}}]}"#;
        assert_eq!(answer(Api::Chat, tool).unwrap(), "[tool call] add({})");
        let resp = br#"{"output":[{"type":"reasoning","summary":[]},{"type":"message","content":[{"type":"output_text","text":"Four."}]}]}"#;
        assert_eq!(answer(Api::Responses, resp).unwrap(), "Four.");
        assert!(answer(Api::Chat, br#"{"error":{}}"#).is_none());
        let long = serde_json::json!({"choices":[{"message":{"content":"é".repeat(MAX_ANSWER_CHARS + 5)}}]});
        let a = answer(Api::Chat, long.to_string().as_bytes()).unwrap();
        assert!(
            a.ends_with("[… 5 more characters cut]"),
            "{}",
            &a[a.len() - 40..]
        );
    }

    #[test]
    fn streamed_answers_gather_their_deltas_within_the_bound() {
        let mut t = StreamText::default();
        for d in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Fo"}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"other choice"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"ur."}}]}"#,
            "[DONE]",
        ] {
            t.feed(Api::Chat, d);
        }
        assert_eq!(t.finish(), "Four.");
        let mut r = StreamText::default();
        r.feed(
            Api::Responses,
            r#"{"type":"response.output_text.delta","delta":"Hi"}"#,
        );
        r.feed(
            Api::Responses,
            r#"{"type":"response.completed","response":{"output":[]}}"#,
        );
        assert_eq!(r.finish(), "Hi");
        let mut c = StreamText::default();
        c.feed(Api::Responses, r#"{"type":"response.completed","response":{"output":[{"type":"message","content":[{"type":"output_text","text":"Whole"}]}]}}"#);
        assert_eq!(c.finish(), "Whole");
        let mut big = StreamText::default();
        let chunk =
            serde_json::json!({"choices":[{"index":0,"delta":{"content":"y".repeat(3000)}}]})
                .to_string();
        for _ in 0..4 {
            big.feed(Api::Chat, &chunk);
        }
        let f = big.finish();
        assert!(f.ends_with("[… the rest cut]"), "{}", &f[f.len() - 40..]);
        assert_eq!(f.chars().count(), MAX_ANSWER_CHARS + 17);
    }
}
