//! Relaying a server-sent-event stream from the upstream to the client.
//!
//! The relay forwards every complete event the moment its terminating blank line arrives and
//! holds back only the unfinished tail of the current event. That way a stream cut mid-event
//! never leaves half an event at the client: the relay drops the tail and ends the stream with
//! a well-formed `event: error` instead. On the way it reads the `usage` object that OpenAI
//! sends in the last chunk when `stream_options.include_usage` is set, and notes `[DONE]`.

use crate::openai::{usage_of, Usage};

/// Longest unfinished event held back (1 MiB). Past it the tail is forwarded as it is: a
/// pathological upstream must not make the relay buffer without bound.
const MAX_TAIL: usize = 1 << 20;

/// Incremental SSE relay; one per streamed response.
#[derive(Debug, Default)]
pub struct SseRelay {
    tail: Vec<u8>,
    usage: Option<Usage>,
    done: bool,
    events: u64,
}

impl SseRelay {
    /// A relay at the start of a stream.
    pub fn new() -> SseRelay {
        SseRelay::default()
    }

    /// Takes the next upstream chunk and returns the bytes to forward now (possibly empty).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        // Fast path: nothing held and the chunk ends on an event boundary (the usual case).
        let joined;
        let data: &[u8] = if self.tail.is_empty() {
            chunk
        } else {
            self.tail.extend_from_slice(chunk);
            joined = std::mem::take(&mut self.tail);
            &joined
        };
        let cut = last_event_end(data);
        let (complete, rest) = data.split_at(cut);
        self.scan(complete);
        let mut out = complete.to_vec();
        if rest.len() > MAX_TAIL {
            out.extend_from_slice(rest);
        } else {
            self.tail = rest.to_vec();
        }
        out
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

    /// Whether `data: [DONE]` was seen.
    pub fn saw_done(&self) -> bool {
        self.done
    }

    /// Complete events forwarded so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    fn scan(&mut self, complete: &[u8]) {
        for line in complete.split_inclusive(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                self.events += 1;
                continue;
            }
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let data = data.strip_prefix(b" ").unwrap_or(data);
            if data == b"[DONE]" {
                self.done = true;
            } else if contains(data, b"\"usage\"") {
                if let Some(u) = usage_of(data) {
                    self.usage = Some(u);
                }
            }
        }
    }
}

/// Index just past the last blank line (`\n\n` or `\r\n\r\n`) in `data`, or 0.
fn last_event_end(data: &[u8]) -> usize {
    let mut i = data.len();
    while i >= 2 {
        if data[i - 1] == b'\n' {
            if data[i - 2] == b'\n' {
                return i;
            }
            if i >= 4 && &data[i - 4..i - 1] == b"\r\n\r" {
                return i;
            }
        }
        i -= 1;
    }
    0
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
        assert_eq!(r.push(CHUNK1), CHUNK1);
        assert_eq!(r.push(CHUNK2), CHUNK2);
        assert_eq!(r.push(USAGE), USAGE);
        assert_eq!(r.push(DONE), DONE);
        assert!(r.finish().is_empty());
        assert!(r.saw_done());
        assert_eq!(r.events(), 4);
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
            let forwarded = r.push(piece);
            if !forwarded.is_empty() {
                assert!(forwarded.ends_with(b"\n\n"));
            }
            out.extend(forwarded);
        }
        out.extend(r.finish());
        assert_eq!(out, all);
        assert_eq!(r.usage().unwrap().prompt_tokens, 9);
        assert!(r.saw_done());
    }

    #[test]
    fn crlf_events_are_understood() {
        let mut r = SseRelay::new();
        let ev = b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\r\n\r\n";
        assert_eq!(r.push(&ev[..10]), b"");
        assert_eq!(r.push(&ev[10..]), ev.to_vec());
        assert_eq!(r.usage().unwrap().completion_tokens, 1);
    }

    #[test]
    fn a_cut_drops_the_half_event_and_ends_with_an_error_event() {
        let mut r = SseRelay::new();
        let mut out = r.push(CHUNK1);
        out.extend(r.push(b"data: {\"choices\":[{\"del"));
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
        assert_eq!(r.push(b"data: [DONE]"), b"");
        assert_eq!(r.finish(), b"data: [DONE]");
        assert!(r.saw_done());
    }

    #[test]
    fn an_endless_event_is_not_held_forever() {
        let mut r = SseRelay::new();
        let big = vec![b'x'; MAX_TAIL + 1];
        assert_eq!(r.push(&big).len(), big.len());
        assert!(r.finish().is_empty());
    }
}
