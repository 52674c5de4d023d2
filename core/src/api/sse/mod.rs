//! Relaying a server-sent-event stream from the upstream to the client.
//!
//! The relay forwards every complete event the moment its terminating blank line arrives and
//! holds back only the unfinished tail of the current event. That way a stream cut mid-event
//! never leaves half an event at the client: the relay drops the tail and ends the stream with
//! a well-formed `event: error` instead, which always starts on a fresh line as an event of its
//! own. On the way it reads the `usage` object that OpenAI sends in the last chunk when
//! `stream_options.include_usage` is set (every other chunk then carries `"usage": null`, which
//! is skipped without parsing), and notices in-band error events (`data: {"error": ...}`,
//! `event: error`), which it forwards as they are. Lines may end in LF, CRLF or CR, as the SSE
//! specification allows.
//!
//! The work is linear in the size of the stream whatever its chunking: each byte is scanned for
//! event boundaries once as it arrives ([`scan::Boundaries`] keeps its state across chunks),
//! copied at most twice (into the held tail, and out with the rest of its event), and read for
//! usage and errors once, when its event is complete. Nothing already held is rescanned.
//!
//! Before the relay takes over, the stream's first event is judged by [`opening`].

pub mod opening;
mod scan;

use crate::api::defects::{Defect, Expectations, StreamAnswer};
use crate::api::responses::IdRewrite;
use crate::api::text::StreamText;
use crate::api::usage::Usage;
use crate::api::Api;
use crate::environment::Environment;
use scan::{Boundaries, Said};

/// Longest unfinished event held back (1 MiB). Past it the event is forwarded as it arrives: a
/// pathological upstream must not make the relay buffer without bound.
const MAX_TAIL: usize = 1 << 20;

/// Incremental SSE relay; one per streamed response.
#[derive(Debug, Default)]
pub struct SseRelay {
    /// The bytes of the unfinished event, not yet forwarded.
    held: Vec<u8>,
    /// Line and event boundaries after the last byte received.
    bounds: Boundaries,
    /// The current event outgrew [`MAX_TAIL`]: its bytes go out as they arrive, so the client
    /// holds part of an unfinished event.
    oversized: bool,
    /// What the complete events said: usage, an in-band error.
    said: Said,
    /// The answer reassembled as far as its defect checks need, when they were asked for.
    answer: Option<StreamAnswer>,
    /// The answer's text for the grader ([`crate::judge`]), when asked for.
    text: Option<(Api, StreamText)>,
    /// A Responses stream's id, changed in every event into the id the client sees (learned
    /// from the first event that carries it), for the environment that serves it.
    ids: Option<(Environment, IdRewrite)>,
    /// Bytes scanned or copied so far: the work, counted where it is done.
    #[cfg(test)]
    work: usize,
}

impl SseRelay {
    /// A relay at the start of a stream.
    pub fn new() -> SseRelay {
        SseRelay::default()
    }

    /// A relay that also checks the answer for defects against what the request asked.
    pub fn checking(want: Expectations) -> SseRelay {
        SseRelay {
            answer: Some(StreamAnswer::new(want)),
            ..SseRelay::default()
        }
    }

    /// A relay that also gathers the answer's text for the grader (`api`'s events).
    pub fn gathering_text(mut self, api: Api) -> SseRelay {
        self.text = Some((api, StreamText::default()));
        self
    }

    /// The answer's text gathered so far, when asked for.
    pub fn text(&self) -> Option<String> {
        self.text.as_ref().map(|(_, t)| t.finish())
    }

    /// A relay that also issues the stream's response id as made by `environment`
    /// ([`crate::api::responses`]).
    pub fn issuing_ids(mut self, environment: Environment) -> SseRelay {
        self.ids = Some((environment, IdRewrite::default()));
        self
    }

    /// Reads complete events for usage, errors, the response id and (when checking) the
    /// answer.
    fn read(&mut self, bytes: &[u8]) {
        let (answer, ids, gathered) = (&mut self.answer, &mut self.ids, &mut self.text);
        self.said.read_with(bytes, |data| {
            if let (Some((api, t)), Ok(text)) = (gathered.as_mut(), std::str::from_utf8(data)) {
                t.feed(*api, text.trim_start());
            }
            if let Some((environment, ids)) = ids.as_mut().filter(|(_, ids)| !ids.knows()) {
                ids.learn(*environment, data);
            }
            if let (Some(a), Ok(text)) = (answer.as_mut(), std::str::from_utf8(data)) {
                a.feed(text.trim_start());
            }
        });
    }

    /// Complete events on their way out, with the response id changed when it is issued.
    fn issued(&self, out: Vec<u8>) -> Vec<u8> {
        match &self.ids {
            Some((_, ids)) => ids.apply(out),
            None => out,
        }
    }

    /// The answer's defect, once the stream ended normally (see [`StreamAnswer::finish`]).
    pub fn defect(&self) -> Option<Defect> {
        self.answer.as_ref().and_then(StreamAnswer::finish)
    }

    /// Takes the next upstream chunk and returns the bytes to forward now (possibly empty).
    /// In the usual case — nothing held back, the chunk ends on an event boundary — the chunk
    /// itself is returned, without a copy.
    pub fn push(&mut self, chunk: Vec<u8>) -> Vec<u8> {
        let (mut first_end, mut last_end) = (None, None);
        self.bounds.feed(&chunk, |i| {
            first_end.get_or_insert(i);
            last_end = Some(i);
        });
        self.count(chunk.len());
        let Some(last_end) = last_end else {
            return self.hold(chunk);
        };
        let after_last = chunk.len() - last_end;
        // An oversized event was forwarded as it came and ends at the first end: the complete
        // events to read start there. Otherwise they start with what was held.
        let read_from = if self.oversized {
            first_end.unwrap_or(last_end)
        } else {
            0
        };
        self.oversized = false;
        let mut out = if self.held.is_empty() {
            chunk
        } else {
            let mut joined = std::mem::take(&mut self.held);
            joined.extend_from_slice(&chunk);
            self.count(chunk.len());
            joined
        };
        let cut = out.len() - after_last;
        self.read(&out[read_from..cut]);
        self.count(cut - read_from);
        self.held = out.split_off(cut);
        self.count(after_last);
        if self.held.len() > MAX_TAIL {
            out.append(&mut self.held);
            self.oversize();
        }
        self.issued(out)
    }

    /// A chunk in which no event ends: held, unless the event outgrows [`MAX_TAIL`].
    fn hold(&mut self, chunk: Vec<u8>) -> Vec<u8> {
        if self.oversized {
            return chunk;
        }
        if self.held.len() + chunk.len() > MAX_TAIL {
            self.oversize();
            let mut out = std::mem::take(&mut self.held);
            out.extend_from_slice(&chunk);
            self.count(chunk.len());
            return out;
        }
        if self.held.is_empty() {
            self.held = chunk;
        } else {
            self.held.extend_from_slice(&chunk);
            self.count(chunk.len());
        }
        Vec::new()
    }

    /// The current event outgrew [`MAX_TAIL`]: it goes out unread, so the answer it is part
    /// of cannot be judged.
    fn oversize(&mut self) {
        self.oversized = true;
        if let Some(a) = self.answer.as_mut() {
            a.skip();
        }
    }

    /// The upstream ended cleanly: returns whatever was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        if !self.oversized {
            self.read(&rest);
            self.count(rest.len());
        }
        self.issued(rest)
    }

    /// The upstream stream broke, or went silent for too long: drops the unfinished event and
    /// returns an SSE `error` event in OpenAI's error shape, so clients see a failure rather
    /// than a silent truncation. The event starts on a fresh line and is an event of its own:
    /// when the client holds part of an oversized event, a blank line ends that event first.
    pub fn abort(&mut self, detail: &str) -> Vec<u8> {
        self.held.clear();
        let fresh = if self.oversized { "\n\n" } else { "" };
        self.oversized = false;
        let body = serde_json::json!({"error": {
            "message": format!("The upstream stream was interrupted: {detail}"),
            "type": "server_error",
            "param": null,
            "code": "upstream_stream_interrupted",
        }});
        format!("{fresh}event: error\ndata: {body}\n\n").into_bytes()
    }

    /// Token usage, when the upstream reported it.
    pub fn usage(&self) -> Option<Usage> {
        self.said.usage
    }

    /// True once the upstream sent an in-band error event (relayed as it is): the answer
    /// failed after it began.
    pub fn saw_error_event(&self) -> bool {
        self.said.is_error()
    }

    #[inline]
    fn count(&mut self, _bytes: usize) {
        #[cfg(test)]
        {
            self.work += _bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    /// The relay checks the answer from the events it reads once, whatever the chunking.
    #[test]
    fn a_checking_relay_names_the_answers_defect_whatever_the_chunking() {
        use crate::api::defects::{Defect, Expectations};
        let want = Expectations {
            json: true,
            ..Expectations::default()
        };
        let stream = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"```json\\n{\\\"a\\\": \"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"1}\\n```\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        )
        .as_bytes();
        for size in [1, 7, 64, stream.len()] {
            let mut r = SseRelay::checking(want.clone());
            let mut out = Vec::new();
            for chunk in stream.chunks(size) {
                out.extend(r.push(chunk.to_vec()));
            }
            out.extend(r.finish());
            assert_eq!(out, stream, "relayed unchanged");
            assert_eq!(r.defect(), Some(Defect::InvalidJson), "chunks of {size}");
        }
        // The same answer unfenced is fine; a relay that is not checking says nothing.
        let plain = SseRelay::new();
        assert_eq!(plain.defect(), None);
    }

    use super::*;

    #[test]
    fn a_responses_stream_is_relayed_with_the_id_the_client_sees_in_every_event() {
        let stream = concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_7\",\"output\":[]}}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"Hi\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_7\",\"output\":[]}}\n\n"
        );
        let want = stream.replace("\"resp_7\"", "\"resp_bgg_resp_7\"");
        for size in [1, 5, 64, stream.len()] {
            let mut r = SseRelay::new().issuing_ids(Environment::Green);
            let mut out = Vec::new();
            for piece in stream.as_bytes().chunks(size) {
                out.extend(r.push(piece.to_vec()));
            }
            out.extend(r.finish());
            assert_eq!(String::from_utf8(out).unwrap(), want, "chunks of {size}");
        }
    }

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

    #[test]
    fn an_error_event_after_the_stream_began_is_relayed_as_it_is_and_noticed() {
        let mut r = SseRelay::new();
        assert_eq!(r.push(CHUNK1.to_vec()), CHUNK1);
        assert!(!r.saw_error_event());
        let error = b"data: {\"error\": {\"message\": \"overloaded\", \"code\": 529}}\n\n";
        assert_eq!(r.push(error.to_vec()), error);
        assert!(r.saw_error_event());
        assert!(r.finish().is_empty());
    }

    /// The events a client that follows the SSE specification dispatches from `bytes`, as
    /// (type, data): lines end in CRLF, CR or LF; a blank line dispatches the event when it has
    /// data; an event not ended by a blank line when the stream ends is dropped.
    fn dispatched(bytes: &[u8]) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = Vec::new();
        let mut line = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' | '\n' => {
                    if c == '\r' && chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    lines.push(std::mem::take(&mut line));
                }
                c => line.push(c),
            }
        }
        let (mut events, mut kind, mut data) = (Vec::new(), String::new(), Vec::<String>::new());
        for line in lines {
            if line.is_empty() {
                if !data.is_empty() {
                    let name = if kind.is_empty() { "message" } else { &kind };
                    events.push((name.to_string(), data.join("\n")));
                }
                kind.clear();
                data.clear();
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => kind = value.to_string(),
                "data" => data.push(value.to_string()),
                _ => {}
            }
        }
        events
    }

    /// Checks that the router's error event, the last thing in `out`, starts on a fresh line
    /// and reaches a client as an `error` event of its own.
    fn ends_with_our_error_event(out: &[u8]) {
        let text = String::from_utf8_lossy(out);
        let at = text.rfind("event: error").expect("an error event");
        assert!(
            at == 0 || matches!(out[at - 1], b'\n' | b'\r'),
            "glued to an unfinished line: {:?}",
            &text[at.saturating_sub(20)..]
        );
        let events = dispatched(out);
        let (kind, data) = events.last().expect("events");
        assert_eq!(kind, "error");
        let v: serde_json::Value = serde_json::from_str(data).expect("the error's data is JSON");
        assert_eq!(v["error"]["code"], "upstream_stream_interrupted");
    }

    #[test]
    fn the_error_event_added_on_a_cut_always_starts_on_a_fresh_line_as_an_event_of_its_own() {
        // A cut anywhere in an ordinary stream, whatever the chunking and line endings.
        for ending in ["\n", "\r\n", "\r"] {
            let stream = [CHUNK1, CHUNK2, USAGE, DONE]
                .concat()
                .iter()
                .map(|&b| b as char)
                .collect::<String>()
                .replace("\n", ending);
            let stream = stream.as_bytes();
            for cut in 0..=stream.len() {
                for size in [1, 5, 64] {
                    let mut r = SseRelay::new();
                    let mut out = Vec::new();
                    for piece in stream[..cut].chunks(size) {
                        out.extend(r.push(piece.to_vec()));
                    }
                    out.extend(r.abort("reset"));
                    ends_with_our_error_event(&out);
                }
            }
        }
        // After an oversized event the relay forwarded as it came: cut mid-line, and cut just
        // after a line's CR (whose LF, were it an LF, would be swallowed by the CRLF).
        for tail in ["", "\r", "\n", "\ndata: more"] {
            let mut r = SseRelay::new();
            let mut out = r.push(CHUNK1.to_vec());
            let mut big = b"data: ".to_vec();
            big.extend(vec![b'x'; MAX_TAIL + 10]);
            big.extend(tail.as_bytes());
            for piece in big.chunks(4096) {
                out.extend(r.push(piece.to_vec()));
            }
            assert!(
                out.len() > MAX_TAIL,
                "the oversized event went out as it came"
            );
            out.extend(r.abort("reset"));
            ends_with_our_error_event(&out);
            assert_eq!(
                dispatched(&out).len(),
                3,
                "{tail:?}: chunk, the cut event, the error"
            );
        }
    }

    #[test]
    fn the_work_is_linear_in_the_stream_whatever_the_chunking() {
        // A 1 MiB event just under the hold limit, a 2 MiB one over it (forwarded as it comes),
        // then a thousand small events.
        let mut stream = b"data: ".to_vec();
        stream.extend(vec![b'x'; MAX_TAIL - 100]);
        stream.extend(b"\n\ndata: ");
        stream.extend(vec![b'y'; 2 * MAX_TAIL]);
        stream.extend(b"\r\n\r\n");
        for _ in 0..1000 {
            stream.extend(CHUNK2);
        }
        stream.extend(USAGE);
        for size in [3, 100, 4096, 65536, stream.len()] {
            let mut r = SseRelay::new();
            let mut out = Vec::new();
            for piece in stream.chunks(size) {
                out.extend(r.push(piece.to_vec()));
            }
            out.extend(r.finish());
            assert!(out == stream, "chunks of {size}: the output is the input");
            assert_eq!(r.usage().map(|u| u.prompt_tokens), Some(9));
            // Each byte is scanned for boundaries once, copied at most twice and read for
            // usage and errors at most once: at most 4 bytes of work a byte, whatever the
            // chunking. Rescanning the held tail on every chunk (as the relay once did) costs
            // about n²/2c for an n-byte event in c-byte chunks: 128 bytes a byte for 1 MiB in
            // 4 KiB chunks.
            assert!(
                r.work <= 4 * stream.len(),
                "chunks of {size}: {} bytes of work for {} bytes",
                r.work,
                stream.len()
            );
        }
    }
}
