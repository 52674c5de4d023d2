//! Relaying a server-sent-event stream from the upstream to the client.
//!
//! The relay forwards every complete event the moment its terminating blank line arrives and
//! holds back only the unfinished tail of the current event. That way a stream cut mid-event
//! never leaves half an event at the client: the relay drops the tail and ends the stream with
//! a well-formed `event: error` instead. On the way it reads the `usage` object that OpenAI
//! sends in the last chunk when `stream_options.include_usage` is set (every other chunk then
//! carries `"usage": null`, which is skipped without parsing). Lines may end in LF, CRLF or CR,
//! as the SSE specification allows.

use crate::openai::{usage_of, Usage};

/// Longest unfinished event held back (1 MiB). Past it the tail is forwarded as it is: a
/// pathological upstream must not make the relay buffer without bound.
const MAX_TAIL: usize = 1 << 20;

/// Incremental SSE relay; one per streamed response.
#[derive(Debug, Default)]
pub struct SseRelay {
    tail: Vec<u8>,
    usage: Option<Usage>,
}

impl SseRelay {
    /// A relay at the start of a stream.
    pub fn new() -> SseRelay {
        SseRelay::default()
    }

    /// Takes the next upstream chunk and returns the bytes to forward now (possibly empty).
    /// In the usual case — nothing held back, the chunk ends on an event boundary — the chunk
    /// itself is returned, without a copy.
    pub fn push(&mut self, chunk: Vec<u8>) -> Vec<u8> {
        let mut data = if self.tail.is_empty() {
            chunk
        } else {
            let mut joined = std::mem::take(&mut self.tail);
            joined.extend_from_slice(&chunk);
            joined
        };
        let cut = last_event_end(&data);
        self.scan(&data[..cut]);
        if data.len() - cut <= MAX_TAIL {
            self.tail = data.split_off(cut);
        }
        data
    }

    /// The upstream ended cleanly: returns whatever was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.tail);
        self.scan(&rest);
        rest
    }

    /// The upstream stream broke: drops the unfinished event and returns an SSE `error` event
    /// in OpenAI's error shape, so clients see a failure rather than a silent truncation.
    pub fn abort(&mut self, detail: &str) -> Vec<u8> {
        self.tail.clear();
        let body = serde_json::json!({"error": {
            "message": format!("The upstream stream was interrupted: {detail}"),
            "type": "server_error",
            "param": null,
            "code": "upstream_stream_interrupted",
        }});
        format!("event: error\ndata: {body}\n\n").into_bytes()
    }

    /// Token usage, when the upstream reported it.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn scan(&mut self, complete: &[u8]) {
        for line in complete.split(|&b| b == b'\n' || b == b'\r') {
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            if has_usage_object(data) {
                if let Some(u) = usage_of(data) {
                    self.usage = Some(u);
                }
            }
        }
    }
}

/// True when `data` holds `"usage"` followed by an object (not `null`): only such chunks are
/// worth parsing.
fn has_usage_object(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"usage\"";
    let mut rest = data;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[at + KEY.len()..];
        let after_key = rest.trim_ascii_start();
        if let Some(value) = after_key.strip_prefix(b":") {
            if value.trim_ascii_start().first() == Some(&b'{') {
                return true;
            }
        }
    }
    false
}

/// Index just past the last blank line in `data`, or 0. A blank line is two line terminators
/// in a row, each LF, CRLF or CR.
fn last_event_end(data: &[u8]) -> usize {
    let is_eol = |b: u8| b == b'\n' || b == b'\r';
    let mut i = data.len();
    while i >= 2 {
        if is_eol(data[i - 1]) {
            // The terminator that ends at i, then whether another one ends right before it.
            let len = if data[i - 1] == b'\n' && data[i - 2] == b'\r' {
                2
            } else {
                1
            };
            let j = i - len;
            if j >= 1 && is_eol(data[j - 1]) {
                return i;
            }
        }
        i -= 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK1: &[u8] =
        b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n";
    const CHUNK2: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n";
    const USAGE: &[u8] =
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n";
    const DONE: &[u8] = b"data: [DONE]\n\n";

    #[test]
    fn whole_events_pass_straight_through() {
        let mut r = SseRelay::new();
        assert_eq!(r.push(CHUNK1.to_vec()), CHUNK1);
        assert_eq!(r.usage(), None, "\"usage\":null is not usage");
        assert_eq!(r.push(CHUNK2.to_vec()), CHUNK2);
        assert_eq!(r.push(USAGE.to_vec()), USAGE);
        assert_eq!(r.push(DONE.to_vec()), DONE);
        assert!(r.finish().is_empty());
        assert_eq!(
            r.usage(),
            Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 2
            })
        );
    }

    #[test]
    fn split_events_are_forwarded_once_complete() {
        let mut all = Vec::new();
        all.extend_from_slice(CHUNK1);
        all.extend_from_slice(USAGE);
        all.extend_from_slice(DONE);
        // Feed in 7-byte pieces: the output must equal the input, event by event.
        let mut r = SseRelay::new();
        let mut out = Vec::new();
        for piece in all.chunks(7) {
            let forwarded = r.push(piece.to_vec());
            if !forwarded.is_empty() {
                assert!(forwarded.ends_with(b"\n\n"));
            }
            out.extend(forwarded);
        }
        out.extend(r.finish());
        assert_eq!(out, all);
        assert_eq!(r.usage().unwrap().prompt_tokens, 9);
    }

    #[test]
    fn crlf_and_cr_line_endings_are_understood() {
        for ending in ["\r\n", "\r"] {
            let ev = format!(
                "data: {{\"usage\": {{\"prompt_tokens\":1,\"completion_tokens\":1}}}}{ending}{ending}"
            );
            let mut r = SseRelay::new();
            assert_eq!(r.push(ev.as_bytes()[..10].to_vec()), b"");
            assert_eq!(
                r.push(ev.as_bytes()[10..].to_vec()),
                ev.as_bytes(),
                "{ending:?}"
            );
            assert_eq!(r.usage().unwrap().completion_tokens, 1, "{ending:?}");
        }
        // A single CRLF is one line ending, not a blank line.
        assert_eq!(last_event_end(b"data: x\r\n"), 0);
        assert_eq!(last_event_end(b"data: x\r\n\r\ndata: y"), 11);
        assert_eq!(last_event_end(b"data: x\n\r\n"), 10);
    }

    #[test]
    fn usage_null_is_not_parsed() {
        assert!(!has_usage_object(b"{\"choices\":[],\"usage\":null}"));
        assert!(!has_usage_object(
            b"{\"choices\":[{\"delta\":{\"content\":\"usage\"}}]}"
        ));
        assert!(has_usage_object(b"{\"usage\" : {\"prompt_tokens\":1}}"));
        assert!(has_usage_object(b"{\"x\":\"\\\"usage\\\"\",\"usage\":{}}"));
    }

    #[test]
    fn a_cut_drops_the_half_event_and_ends_with_an_error_event() {
        let mut r = SseRelay::new();
        let mut out = r.push(CHUNK1.to_vec());
        out.extend(r.push(b"data: {\"choices\":[{\"del".to_vec()));
        out.extend(r.abort("connection reset"));
        let text = String::from_utf8(out).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "{text}");
        assert!(events[1].starts_with("event: error\ndata: {"));
        let data = events[1].strip_prefix("event: error\ndata: ").unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["error"]["code"], "upstream_stream_interrupted");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection reset"));
    }

    #[test]
    fn an_unterminated_tail_is_flushed_at_a_clean_end() {
        let mut r = SseRelay::new();
        assert_eq!(r.push(b"data: [DONE]".to_vec()), b"");
        assert_eq!(r.finish(), b"data: [DONE]");
    }

    #[test]
    fn an_endless_event_is_not_held_forever() {
        let mut r = SseRelay::new();
        let big = vec![b'x'; MAX_TAIL + 1];
        assert_eq!(r.push(big.clone()).len(), big.len());
        assert!(r.finish().is_empty());
    }
}
