//! Chat completions' shapes (`POST /v1/chat/completions`): what a stream chunk says before the
//! router commits ([`stream_event`]).

/// The wire shape of a stream chunk, as far as [`stream_event`] reads it: raw values, so that
/// nothing is decoded to tell whether it is empty.
mod chunk {
    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    pub struct Chunk<'a> {
        #[serde(borrow, default)]
        pub choices: Option<Vec<Choice<'a>>>,
    }

    #[derive(Deserialize)]
    pub struct Choice<'a> {
        #[serde(borrow, default)]
        pub delta: Option<Delta<'a>>,
        #[serde(borrow, default)]
        pub finish_reason: Option<&'a RawValue>,
    }

    #[derive(Deserialize)]
    pub struct Delta<'a> {
        #[serde(borrow, default)]
        pub content: Option<&'a RawValue>,
        #[serde(borrow, default)]
        pub refusal: Option<&'a RawValue>,
        #[serde(borrow, default)]
        pub tool_calls: Option<&'a RawValue>,
        #[serde(borrow, default)]
        pub function_call: Option<&'a RawValue>,
        /// DeepSeek's, Qwen's and vLLM's thinking tokens.
        #[serde(borrow, default)]
        pub reasoning_content: Option<&'a RawValue>,
        /// OpenRouter's and Ollama's.
        #[serde(borrow, default)]
        pub reasoning: Option<&'a RawValue>,
    }
}

/// What one chat completion chunk says before the router commits (see [`super::Carries`]). A
/// chunk carries the answer when a choice has content, a refusal, a tool or function call,
/// reasoning or a finish reason; the role chunk that opens OpenAI's streams (`"delta":
/// {"role": "assistant", "content": ""}`) and Azure's `"choices": []` filter results carry
/// nothing. `[DONE]` ends the stream. Data the router cannot read as a chunk is committed to,
/// as it always was: an unknown shape is the client's to read.
pub fn stream_event(data: &[u8]) -> super::Carries {
    use super::{is_blank, Carries};
    if data.trim_ascii() == b"[DONE]" {
        return Carries::End;
    }
    let Ok(chunk::Chunk {
        choices: Some(choices),
    }) = serde_json::from_slice::<chunk::Chunk>(data)
    else {
        return Carries::Answer;
    };
    let carries = |c: &chunk::Choice| {
        !is_blank(c.finish_reason)
            || c.delta.as_ref().is_some_and(|d| {
                [
                    d.content,
                    d.refusal,
                    d.tool_calls,
                    d.function_call,
                    d.reasoning_content,
                    d.reasoning,
                ]
                .into_iter()
                .any(|part| !is_blank(part))
            })
    };
    if choices.iter().any(carries) {
        Carries::Answer
    } else {
        Carries::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_carries_the_answer_once_it_says_something() {
        use crate::api::Carries::{self, *};
        let cases: [(&str, Carries); 14] = [
            // OpenAI's opening role chunk, with and without usage: nothing yet.
            (
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
                Nothing,
            ),
            (
                r#"{"choices":[{"delta":{"role":"assistant","content":null,"refusal":null}}],"usage":null}"#,
                Nothing,
            ),
            // Azure's prompt filter results, and a usage chunk.
            (r#"{"choices":[],"prompt_filter_results":[]}"#, Nothing),
            (r#"{"choices":[{"delta":{}}]}"#, Nothing),
            (r#"{"choices":[{"delta":{"content":"Hi"}}]}"#, Answer),
            (r#"{"choices":[{"delta":{"content":" "}}]}"#, Answer),
            (r#"{"choices":[{"delta":{"refusal":"No."}}]}"#, Answer),
            (
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}"#,
                Answer,
            ),
            (
                r#"{"choices":[{"delta":{"reasoning_content":"Let me think"}}]}"#,
                Answer,
            ),
            (r#"{"choices":[{"delta":{"reasoning":"hmm"}}]}"#, Answer),
            // An empty answer that says how it finished is an answer (the `empty` defect's).
            (
                r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
                Answer,
            ),
            ("[DONE]", End),
            // Shapes the router does not know are committed to, as before.
            ("not json", Answer),
            (r#"{"object":"chat.completion.chunk"}"#, Answer),
        ];
        for (data, want) in cases {
            assert_eq!(stream_event(data.as_bytes()), want, "{data}");
        }
    }
}
