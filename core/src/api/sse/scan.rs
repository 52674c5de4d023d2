//! Reading an SSE byte stream as events: where each event ends, and what an event's lines say
//! (whether it carries data, an in-band error, a `usage` object).
//!
//! [`Boundaries`] is fed every byte of a stream once, in order, and carries its state across
//! chunks, so that whoever uses it (the relay, the first-event gate) does work linear in the
//! size of the stream however the upstream chunks it. Nothing here holds bytes or decides what
//! to do with an event; it only reads.

use serde::Deserialize;

use crate::api::usage::{usage_of, Usage};

/// Where the bytes seen so far stand against SSE's line and event boundaries. Lines end in LF,
/// CRLF or CR, as the SSE specification allows; an event ends at a blank line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Boundaries {
    /// No line content since the last line ended (or since the stream began).
    line_start: bool,
    /// The last byte was a CR: an LF now completes that terminator rather than ending a line.
    after_cr: bool,
}

impl Default for Boundaries {
    fn default() -> Boundaries {
        Boundaries {
            line_start: true,
            after_cr: false,
        }
    }
}

impl Boundaries {
    /// Feeds the next `bytes` of the stream and calls `event_end(i)` for every event that ends
    /// in them, `i` being the index just past its blank line (past the LF of a final CRLF when
    /// that LF is in `bytes` too). Each byte is examined once.
    pub(crate) fn feed(&mut self, bytes: &[u8], mut event_end: impl FnMut(usize)) {
        let mut i = 0;
        while i < bytes.len() {
            if self.after_cr {
                self.after_cr = false;
                if bytes[i] == b'\n' {
                    i += 1;
                    continue;
                }
            }
            // Everything before the next terminator is line content.
            match bytes[i..].iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.line_start = false;
                    return;
                }
                Some(0) => {}
                Some(n) => {
                    self.line_start = false;
                    i += n;
                }
            }
            let terminator = bytes[i];
            i += 1;
            if self.line_start {
                // A blank line: an event ends here.
                if terminator == b'\r' && bytes.get(i) == Some(&b'\n') {
                    i += 1;
                } else {
                    self.after_cr = terminator == b'\r';
                }
                event_end(i);
            } else {
                self.after_cr = terminator == b'\r';
            }
            self.line_start = true;
        }
    }
}

/// What the lines of one or more complete events say.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Said {
    /// At least one `data:` line.
    pub data: bool,
    /// The message of an in-band error in a `data:` line: a JSON object whose top-level
    /// `error` is set.
    pub error: Option<String>,
    /// An `event: error` line.
    pub error_event: bool,
    /// The last `usage` object reported.
    pub usage: Option<Usage>,
}

/// Longest upstream error message kept for our own error answer and the log.
const MAX_MESSAGE: usize = 300;

impl Said {
    /// Reads the lines of complete events (`bytes` starts at a line start and ends at an event
    /// end). Each byte is examined once, plus a parse of the rare lines that may say something.
    #[cfg(test)]
    pub(crate) fn read(&mut self, bytes: &[u8]) {
        self.read_with(bytes, |_| {});
    }

    /// [`Said::read`], handing each event's data to `on_data` as well. An event's data is its
    /// `data:` lines joined by LF, as the SSE specification says: an event with one such line
    /// (every OpenAI-style stream) is read in place, one whose JSON is spread over several lines
    /// is joined first (each line losing one leading space), so that an error or a usage object
    /// pretty-printed over several lines is still read. Complete events are at most the relay's
    /// held tail, so the copy is bounded by it.
    pub(crate) fn read_with(&mut self, bytes: &[u8], mut on_data: impl FnMut(&[u8])) {
        let mut event = EventData::default();
        for line in lines(bytes) {
            if line.is_empty() {
                // A blank line ends the event.
                if let Some(data) = event.take() {
                    self.said_data(&data, &mut on_data);
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                event.push(value);
            } else if let Some(value) = line.strip_prefix(b"event:") {
                // A field's value loses one leading space.
                let value = value.strip_prefix(b" ").unwrap_or(value);
                self.error_event |= value == b"error";
            }
        }
        if let Some(data) = event.take() {
            self.said_data(&data, &mut on_data);
        }
    }

    /// Reads one event's data.
    fn said_data(&mut self, value: &[u8], on_data: &mut impl FnMut(&[u8])) {
        on_data(value);
        self.data = true;
        let m = Mentions::of(value);
        if m.usage_object {
            if let Some(u) = usage_of(value) {
                self.usage = Some(u);
            }
        }
        if m.error && self.error.is_none() {
            self.error = error_of(value);
        }
    }

    /// True when an in-band error was seen.
    pub(crate) fn is_error(&self) -> bool {
        self.error.is_some() || self.error_event
    }

    /// The in-band error seen, in words: its message when it had one.
    pub(crate) fn failure(self) -> Option<String> {
        self.error.or_else(|| {
            self.error_event
                .then(|| "an `event: error` without a message".into())
        })
    }
}

/// The lines of `bytes`, each without its terminator (LF, CRLF or CR).
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    let mut done = bytes.is_empty();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            None => {
                done = true;
                Some(rest)
            }
            Some(at) => {
                let line = &rest[..at];
                let skip = if rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[at + skip..];
                done = rest.is_empty();
                Some(line)
            }
        }
    })
}

/// The `data:` lines of the event being read: the first in place, later ones joined to it.
#[derive(Default)]
struct EventData<'a> {
    first: Option<&'a [u8]>,
    joined: Option<Vec<u8>>,
}

impl<'a> EventData<'a> {
    fn push(&mut self, value: &'a [u8]) {
        let unspaced = |v: &'a [u8]| v.strip_prefix(b" ").unwrap_or(v);
        match (&mut self.joined, self.first) {
            (Some(joined), _) => {
                joined.push(b'\n');
                joined.extend_from_slice(unspaced(value));
            }
            (None, Some(first)) => {
                let mut joined = unspaced(first).to_vec();
                joined.push(b'\n');
                joined.extend_from_slice(unspaced(value));
                self.joined = Some(joined);
            }
            (None, None) => self.first = Some(value),
        }
    }

    /// The event's data, if it had any; the next event starts empty.
    fn take(&mut self) -> Option<std::borrow::Cow<'a, [u8]>> {
        let first = self.first.take()?;
        Some(match self.joined.take() {
            Some(joined) => std::borrow::Cow::Owned(joined),
            None => std::borrow::Cow::Borrowed(first),
        })
    }
}

/// Which keys worth parsing for a `data:` value mentions: `"usage"` followed by an object (not
/// `null`: OpenAI sends `"usage": null` in every chunk but the last), and `"error"`. Only such
/// values are parsed.
#[derive(Debug, Default, PartialEq)]
struct Mentions {
    usage_object: bool,
    error: bool,
}

impl Mentions {
    fn of(data: &[u8]) -> Mentions {
        let mut m = Mentions::default();
        let mut rest = data;
        while let Some(at) = rest.iter().position(|&b| b == b'"') {
            rest = &rest[at..];
            if let Some(after_key) = rest.strip_prefix(b"\"usage\"") {
                let value = after_key.trim_ascii_start().strip_prefix(b":");
                if value.is_some_and(|v| v.trim_ascii_start().first() == Some(&b'{')) {
                    m.usage_object = true;
                }
            } else if rest.starts_with(b"\"error\"") {
                m.error = true;
            }
            rest = &rest[1..];
        }
        m
    }
}

/// The message of a `data:` value that names an error, else `None`. Three shapes are read:
/// a non-null top-level `error` (OpenAI's chat shape `{"error": {"message": ...}}`, the
/// Responses API's nested `{"type": "error", "error": {...}}`, or an error given as a string);
/// the Responses API's flat `{"type": "error", "code": ..., "message": ...}`; and its
/// `{"type": "response.failed", "response": {"error": {...}}}`.
fn error_of(data: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        error: Option<serde_json::Value>,
        #[serde(rename = "type", default)]
        kind: Option<String>,
        #[serde(default)]
        message: Option<serde_json::Value>,
        #[serde(default)]
        code: Option<serde_json::Value>,
        #[serde(default)]
        response: Option<Failed>,
    }
    #[derive(Deserialize)]
    struct Failed {
        #[serde(default)]
        error: Option<serde_json::Value>,
    }
    let e = crate::util::json::from_slice::<Envelope>(data).ok()?;
    let error = match (e.error, e.kind.as_deref()) {
        (Some(error), _) => error,
        (None, Some("error")) => match e.message.or(e.code) {
            Some(said) => said,
            None => "an error event without a message".into(),
        },
        (None, Some("response.failed")) => e
            .response
            .and_then(|r| r.error)
            .unwrap_or_else(|| "response.failed without a reason".into()),
        _ => return None,
    };
    let message = match error.get("message").and_then(|m| m.as_str()) {
        Some(m) => m.to_string(),
        None => match error
            .get("code")
            .and_then(|c| c.as_str())
            .or(error.as_str())
        {
            Some(s) => s.to_string(),
            None => error.to_string(),
        },
    };
    Some(truncate(message, MAX_MESSAGE))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event ends `feed` reports for `parts` fed in order, as offsets in their
    /// concatenation.
    fn ends(parts: &[&[u8]]) -> Vec<usize> {
        let mut b = Boundaries::default();
        let mut out = Vec::new();
        let mut offset = 0;
        for part in parts {
            b.feed(part, |i| out.push(offset + i));
            offset += part.len();
        }
        out
    }

    #[test]
    fn events_end_at_blank_lines_in_every_line_ending() {
        assert_eq!(ends(&[b"data: x\n\ndata: y\n\n"]), [9, 18]);
        assert_eq!(ends(&[b"data: x\r\n\r\ndata: y"]), [11]);
        assert_eq!(ends(&[b"data: x\r\rdata: y\r\r"]), [9, 18]);
        // A single CRLF is one line ending, not a blank line.
        assert_eq!(ends(&[b"data: x\r\n"]), Vec::<usize>::new());
        assert_eq!(ends(&[b"data: x\n\r\n"]), [10]);
        // Mixed: LF then CR is a blank line.
        assert_eq!(ends(&[b"data: x\n\r"]), [9]);
    }

    #[test]
    fn the_same_ends_whatever_the_chunking() {
        let stream: &[u8] =
            b"data: a\r\n\r\n: ping\r\rdata: b\n\ndata: c\r\n\r\nevent: x\ndata: d\r\n\n";
        let whole = ends(&[stream]);
        assert_eq!(whole.len(), 5, "{whole:?}");
        for size in 1..stream.len() {
            let parts: Vec<&[u8]> = stream.chunks(size).collect();
            let got = ends(&parts);
            // A CRLF cut between its CR and its LF ends the event after the CR: the LF then
            // opens the next chunk and is read as the rest of that terminator.
            let norm = |v: &[usize]| -> Vec<usize> {
                v.iter()
                    .map(|&i| {
                        if stream.get(i) == Some(&b'\n') && stream[i - 1] == b'\r' {
                            i + 1
                        } else {
                            i
                        }
                    })
                    .collect()
            };
            assert_eq!(norm(&got), norm(&whole), "chunks of {size}");
        }
    }

    #[test]
    fn what_lines_say() {
        let read = |bytes: &[u8]| {
            let mut s = Said::default();
            s.read(bytes);
            s
        };
        let plain =
            read(b"data: {\"choices\":[{\"delta\":{\"content\":\"error\"}}],\"usage\":null}\n\n");
        assert_eq!(
            plain,
            Said {
                data: true,
                ..Said::default()
            },
            "a content of \"error\" is not an error"
        );
        let usage = read(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n",
        );
        assert_eq!(usage.usage.map(|u| u.completion_tokens), Some(2));
        let error = read(
            b"data: {\"error\": {\"message\": \"overloaded\", \"type\": \"server_error\"}}\n\n",
        );
        assert_eq!(error.error.as_deref(), Some("overloaded"));
        let string_error = read(b"data:{\"error\":\"rate limited\"}\r\n\r\n");
        assert_eq!(string_error.error.as_deref(), Some("rate limited"));
        let null_error = read(b"data: {\"error\": null, \"choices\": []}\n\n");
        assert_eq!(null_error.error, None);
        let typed = read(b"event: error\ndata: {\"type\":\"error\"}\n\n");
        assert!(typed.is_error() && typed.data);
        assert_eq!(
            typed.failure().as_deref(),
            Some("an error event without a message")
        );
        let bare = read(b"event: error\ndata: {}\n\n");
        assert_eq!(
            bare.failure().as_deref(),
            Some("an `event: error` without a message")
        );
        let typed =
            read(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"busy\"}}\n\n");
        assert_eq!(typed.failure().as_deref(), Some("busy"));
        // The Responses API's error events: flat, nested, and a failed response.
        let flat = read(b"event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"The server had an error\",\"param\":null,\"sequence_number\":2}\n\n");
        assert_eq!(flat.failure().as_deref(), Some("The server had an error"));
        let flat = read(b"data: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\"}\n\n");
        assert_eq!(flat.failure().as_deref(), Some("rate_limit_exceeded"));
        let nested = read(b"data: {\"type\":\"error\",\"error\":{\"type\":\"server_error\",\"code\":\"x\",\"message\":\"nested\"}}\n\n");
        assert_eq!(nested.failure().as_deref(), Some("nested"));
        let failed = read(b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"Model crashed\"}}}\n\n");
        assert_eq!(failed.failure().as_deref(), Some("Model crashed"));
        // A lifecycle event's `"error": null` is no error.
        let created = read(b"data: {\"type\":\"response.created\",\"response\":{\"error\":null,\"output\":[]}}\n\n");
        assert_eq!(created.error, None);
        let keep_alive = read(b": OPENROUTER PROCESSING\n\n");
        assert_eq!(keep_alive, Said::default());
        let done = read(b"data: [DONE]\n\n");
        assert_eq!(
            done,
            Said {
                data: true,
                ..Said::default()
            }
        );
        let long = read(
            format!(
                "data: {{\"error\": {{\"message\": \"{}\"}}}}\n\n",
                "é".repeat(400)
            )
            .as_bytes(),
        );
        assert!(long.error.unwrap().chars().count() <= MAX_MESSAGE / 2 + 1);
    }

    #[test]
    fn an_events_data_lines_are_read_joined() {
        let read = |bytes: &[u8]| {
            let mut s = Said::default();
            let mut seen = Vec::new();
            s.read_with(bytes, |d| {
                seen.push(String::from_utf8_lossy(d).into_owned())
            });
            (s, seen)
        };
        // An error pretty-printed over several lines, in every line ending.
        for nl in ["\n", "\r\n", "\r"] {
            let text = [
                "data: {",
                "data:   \"error\": {",
                "data:     \"message\": \"quota\"",
                "data: }}",
                "",
                "",
            ]
            .join(nl);
            let (said, seen) = read(text.as_bytes());
            assert_eq!(said.error.as_deref(), Some("quota"), "{nl:?}");
            assert_eq!(seen.len(), 1, "one event, one data value: {seen:?}");
        }
        // Usage spread over two lines; then a one-line event is read on its own.
        let (said, seen) = read(
            b"data: {\"choices\":[],\ndata: \"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n",
        );
        assert_eq!(said.usage.map(|u| u.completion_tokens), Some(4));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].trim(), "[DONE]");
        // Two events each of one line are not joined.
        let (said, seen) = read(b"data: {\"a\":1}\n\ndata: {\"error\":\"x\"}\n\n");
        assert_eq!((said.error.as_deref(), seen.len()), (Some("x"), 2));
    }

    #[test]
    fn only_usage_objects_and_errors_are_worth_parsing() {
        let m = |d: &[u8]| Mentions::of(d);
        assert!(!m(b"{\"choices\":[],\"usage\":null}").usage_object);
        assert!(!m(b"{\"choices\":[{\"delta\":{\"content\":\"usage\"}}]}").usage_object);
        assert!(m(b"{\"usage\" : {\"prompt_tokens\":1}}").usage_object);
        assert!(m(b"{\"x\":\"\\\"usage\\\"\",\"usage\":{}}").usage_object);
        assert!(!m(b"{\"content\":\"an \\\"error\\\" here\"}").error);
        assert!(m(b"{\"error\":{}}").error);
    }
}
