//! Which `/v1/*` calls besides the chat route the router forwards upstream unchanged: the
//! `PASS_THROUGH` setting, a list of `METHOD /v1/path` entries, and the match of a request
//! against it.
//!
//! The pass-through spends the router's upstream key (or the client's own), with no split, no
//! fallback and no stats, so it forwards only what it is told to. The default is what an
//! OpenAI SDK user of a chat router reaches for besides chat: listing models and reading one,
//! embeddings, legacy completions and moderations, all stateless. Not files, batches, uploads,
//! fine-tuning, assistants, threads, vector stores or stored responses, which read and change
//! what the upstream account keeps for every tenant of the router; not `/v1/responses`, which
//! the router routes itself (an entry written for it before is ignored); not audio or images, which a chat router's users do
//! not need and which cost far more per call. Operators can list them.
//!
//! A pattern's segments are literal, or `{name}` for any one segment. Paths are compared as
//! they came (case and percent-encoding included), after [`crate::request::path::check`] has refused the
//! ambiguous ones; a single trailing slash is ignored, as on every route.
//!
//! Parsing happens once per isolate ([`crate::config`]); matching is a few string compares.

use std::fmt;

use crate::request::path;

/// The default allowlist, used when `PASS_THROUGH` is unset.
pub const DEFAULT: &str = "POST /v1/embeddings, POST /v1/completions, POST /v1/moderations";

/// The calls the router answers itself, whatever `PASS_THROUGH` says: a method, a path to
/// match, and the call as the log names it.
const ROUTED: [(&str, &str, &str); 3] = [
    ("GET", "/v1/models", "GET /v1/models"),
    ("GET", "/v1/models/any", "GET /v1/models/{model}"),
    ("POST", "/v1/responses", "POST /v1/responses"),
];

/// The value of `PASS_THROUGH` that forwards nothing.
pub const NONE: &str = "none";

/// The methods an entry may name.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The chat route, which is the router's own and never passed through.
const CHAT_PATH: &str = "/v1/chat/completions";

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// This exact text.
    Literal(String),
    /// Any one non-empty segment (`{name}`).
    Any,
}

/// One entry: a method and a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    method: String,
    segments: Vec<Segment>,
}

impl Rule {
    fn matches_path(&self, path: &str) -> bool {
        let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
        let all_match = self.segments.iter().all(|want| match (want, parts.next()) {
            (_, None) => false,
            (Segment::Any, Some(got)) => !got.is_empty(),
            (Segment::Literal(text), Some(got)) => text == got,
        });
        all_match && parts.next().is_none()
    }
}

/// The calls the pass-through forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassThrough {
    rules: Vec<Rule>,
}

/// Why an entry of `PASS_THROUGH` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// The entry as written (trimmed): for the tests, never for a message (a setting's
    /// errors name the rule, never the value).
    pub entry: String,
    /// Its place in the list, from 1.
    pub position: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {} {}", self.position, self.reason)
    }
}

impl Default for PassThrough {
    /// The [`DEFAULT`] allowlist.
    fn default() -> PassThrough {
        // A test parses it; matched rather than `expect`ed so that the wasm carries no
        // formatting of the error for a case that cannot happen.
        match PassThrough::parse(DEFAULT) {
            Ok(list) => list,
            Err(_) => unreachable!("the default allowlist parses"),
        }
    }
}

/// True for a character a pattern's literal segment may hold: RFC 3986's unreserved and
/// sub-delimiters (but the list's `,`), `:` and `@`. No `%`: a pattern names paths as they are
/// written, and an encoded character matches nothing a client sends plainly.
fn literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+;=:@".contains(c)
}

fn parse_segment(text: &str) -> Result<Segment, String> {
    if let Some(name) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Ok(Segment::Any);
        }
        return Err("has a bad placeholder (write {name})".into());
    }
    if text.chars().any(|c| !literal_char(c)) {
        return Err(
            "has a character in a path segment that is not a letter, a digit or one of \
             -._~!$&'()*+;=:@ ({name} segments aside)"
                .into(),
        );
    }
    Ok(Segment::Literal(text.to_string()))
}

fn parse_rule(entry: &str) -> Result<Rule, String> {
    let mut words = entry.split_whitespace();
    let (Some(method), Some(pattern), None) = (words.next(), words.next(), words.next()) else {
        return Err("must be a method and a path, e.g. \"GET /v1/models\"".into());
    };
    let method = method.to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(format!(
            "has an unknown method (one of {})",
            METHODS.join(", ")
        ));
    }
    let Some(rest) = pattern.strip_prefix("/v1/") else {
        return Err("must have a path under /v1/".into());
    };
    if pattern.ends_with('/') {
        return Err("must not end with a slash".into());
    }
    if let Err(e) = path::check(pattern) {
        return Err(format!("is an ambiguous path: {e}"));
    }
    let mut segments = vec![Segment::Literal("v1".into())];
    for text in rest.split('/') {
        segments.push(parse_segment(text)?);
    }
    let rule = Rule { method, segments };
    if rule.matches_path(CHAT_PATH) {
        return Err(format!(
            "covers {CHAT_PATH}, the router's own route (split, fallback, stats)"
        ));
    }
    Ok(rule)
}

impl PassThrough {
    /// Reads `PASS_THROUGH`: entries `METHOD /v1/path` separated by commas or new lines, or
    /// `none` to forward nothing. Methods are case-insensitive; paths are not.
    pub fn parse(text: &str) -> Result<PassThrough, EntryError> {
        if text.trim().eq_ignore_ascii_case(NONE) {
            return Ok(PassThrough { rules: Vec::new() });
        }
        let mut rules = Vec::new();
        for (i, entry) in text.split([',', '\n']).map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let rule = parse_rule(entry).map_err(|reason| EntryError {
                entry: entry.to_string(),
                position: i + 1,
                reason,
            })?;
            rules.push(rule);
        }
        if rules.is_empty() {
            return Err(EntryError {
                entry: text.trim().to_string(),
                position: 1,
                reason: format!("lists no entry (write {NONE} to forward nothing)"),
            });
        }
        Ok(PassThrough { rules })
    }

    /// The calls this list names that the router now answers itself (`GET /v1/models` lists
    /// the routes; `POST /v1/responses` is a routed API): their entries are ignored, which
    /// the shell logs once. A list written before the router answered them is not an error.
    pub fn routed_entries(&self) -> Vec<&'static str> {
        ROUTED
            .iter()
            .filter(|(method, path, _)| self.allows(method, path))
            .map(|(_, _, name)| *name)
            .collect()
    }

    /// Called for every `/v1/*` request but the chat route, with its method and its path as it
    /// came (already past [`path::check`]): true when an entry lists it, so that it may go
    /// upstream; false means a 404 that reaches no upstream.
    pub fn allows(&self, method: &str, path: &str) -> bool {
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        self.rules
            .iter()
            .any(|rule| rule.method == method && rule.matches_path(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_forwards_what_a_chat_routers_sdk_user_needs_and_nothing_else() {
        let list = PassThrough::default();
        // (method, path, forwarded)
        let cases = [
            // Answered from the routes, not forwarded.
            ("GET", "/v1/models", false),
            ("GET", "/v1/models/gpt-4.1", false),
            ("POST", "/v1/embeddings", true),
            ("POST", "/v1/completions", true),
            ("POST", "/v1/moderations", true),
            ("POST", "/v1/models", false),
            ("DELETE", "/v1/models/ft:gpt-4o-mini:org:custom:id", false),
            ("HEAD", "/v1/models", false),
            ("get", "/v1/models", false),
            ("GET", "/v1/models/a/b", false),
            ("GET", "/v1/Models", false),
            ("GET", "/v1/embeddings", false),
            ("GET", "/v1", false),
            ("GET", "/v1/", false),
            ("GET", "/v1/files", false),
            ("POST", "/v1/files", false),
            ("DELETE", "/v1/files/file-1", false),
            ("GET", "/v1/files/file-1/content", false),
            ("POST", "/v1/uploads", false),
            ("GET", "/v1/batches", false),
            ("POST", "/v1/batches/batch_1/cancel", false),
            ("POST", "/v1/responses", false),
            ("GET", "/v1/responses/resp_1", false),
            ("POST", "/v1/assistants", false),
            ("POST", "/v1/threads/runs", false),
            ("POST", "/v1/fine_tuning/jobs", false),
            ("GET", "/v1/vector_stores", false),
            ("POST", "/v1/audio/transcriptions", false),
            ("POST", "/v1/images/generations", false),
            ("POST", "/v1/chat/completions", false),
            ("GET", "/v1/chat/completions/chatcmpl-1", false),
            ("POST", "/v2/embeddings", false),
            ("POST", "/embeddings", false),
        ];
        for (method, path, forwarded) in cases {
            assert_eq!(list.allows(method, path), forwarded, "{method} {path}");
        }
    }

    #[test]
    fn a_list_from_before_routes_names_the_calls_now_routed() {
        assert!(PassThrough::default().routed_entries().is_empty());
        let old = PassThrough::parse(
            "GET /v1/models, GET /v1/models/{model}, POST /v1/embeddings, POST /v1/responses",
        )
        .unwrap();
        assert_eq!(
            old.routed_entries(),
            [
                "GET /v1/models",
                "GET /v1/models/{model}",
                "POST /v1/responses"
            ]
        );
        // A placeholder that covers it is named too.
        let wide = PassThrough::parse("POST /v1/{call}").unwrap();
        assert_eq!(wide.routed_entries(), ["POST /v1/responses"]);
    }

    #[test]
    fn a_custom_list_replaces_the_default() {
        let list = PassThrough::parse(
            " get /v1/models ,POST /v1/audio/{kind}\n\n  GET /v1/files/{id}/content,",
        )
        .unwrap();
        let cases = [
            ("GET", "/v1/models", true),
            ("POST", "/v1/audio/transcriptions", true),
            ("POST", "/v1/audio/speech/", true),
            ("GET", "/v1/files/file-1/content", true),
            ("GET", "/v1/models/gpt-4.1", false),
            ("POST", "/v1/embeddings", false),
            ("POST", "/v1/audio", false),
            ("POST", "/v1/audio/a/b", false),
            ("GET", "/v1/files/file-1", false),
            ("GET", "/v1/files/content", false),
        ];
        for (method, path, forwarded) in cases {
            assert_eq!(list.allows(method, path), forwarded, "{method} {path}");
        }
        let off = PassThrough::parse(" None ").unwrap();
        assert_eq!(off, PassThrough { rules: Vec::new() });
        assert!(!off.allows("GET", "/v1/models"));
    }

    #[test]
    fn bad_entries_are_named_with_the_reason() {
        // (value, the entry named, part of the reason)
        let cases = [
            ("GET", "GET", "a method and a path"),
            (
                "GET /v1/models extra",
                "GET /v1/models extra",
                "a method and a path",
            ),
            (
                "GET /v1/files, FETCH /v1/models",
                "FETCH /v1/models",
                "unknown method",
            ),
            ("GET v1/models", "GET v1/models", "under /v1/"),
            ("GET /v2/models", "GET /v2/models", "under /v1/"),
            ("GET /v1/", "GET /v1/", "end with a slash"),
            ("GET /v1/models/", "GET /v1/models/", "end with a slash"),
            ("GET /v1//models", "GET /v1//models", "empty segment"),
            ("GET /v1/a/../files", "GET /v1/a/../files", "`.` or `..`"),
            ("GET /v1/a%2Fb", "GET /v1/a%2Fb", "encoded slash"),
            ("GET /v1/a\\b", "GET /v1/a\\b", "backslash"),
            ("GET /v1/a%20b", "GET /v1/a%20b", "character"),
            ("GET /v1/models?x=1", "GET /v1/models?x=1", "character"),
            ("GET /v1/models/{}", "GET /v1/models/{}", "placeholder"),
            ("GET /v1/models/x{id}", "GET /v1/models/x{id}", "character"),
            (
                "POST /v1/chat/completions",
                "POST /v1/chat/completions",
                "router's own",
            ),
            ("GET /v1/{a}/{b}", "GET /v1/{a}/{b}", "router's own"),
            ("GET /v1/chat/{x}", "GET /v1/chat/{x}", "router's own"),
            (" , \n ", ",", "lists no entry"),
        ];
        for (value, entry, reason) in cases {
            let e = PassThrough::parse(value).unwrap_err();
            assert_eq!(e.entry, entry, "{value:?}: {e}");
            assert!(e.reason.contains(reason), "{value:?}: {e}");
        }
        // A placeholder that does not reach the chat route is fine.
        assert!(PassThrough::parse("GET /v1/chat/completions/{id}").is_ok());
    }
}
