//! The request path as the client sent it, and the shapes of it refused before any routing.
//!
//! The router matches routes on the path as it came, never on a resolved or decoded one, and
//! forwards it upstream as it came. That is only safe when the router and the upstream cannot
//! read the same path differently, so a path is refused (400) when it holds an empty segment
//! (`/v1//chat/completions`, which an upstream may merge into the chat route the router did not
//! see), a dot segment, plain or percent-encoded (`/v1/%2e%2e/files`, which an upstream may
//! resolve), or a separator that is encoded or a backslash (`%2F`, `%5C`, `\`, which an upstream
//! may decode or treat as `/`). A trailing slash is not an empty segment: `/v1/models/` is
//! fine. URL parsers in front of a Worker (Cloudflare's URL normalization, Miniflare's entry
//! Worker) may resolve dot segments and backslashes before the router sees them; what reaches
//! it is checked all the same.
//!
//! Pure: the shell hands in the request's URL as the runtime gives it.

use std::fmt;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Two slashes in a row, somewhere other than a single trailing slash.
    EmptySegment,
    /// A segment that is `.` or `..`, with its dots written plainly or as `%2e`.
    DotSegment,
    /// `%2F` or `%5C` (any case): a slash or backslash in disguise.
    EncodedSeparator,
    /// A literal backslash, which some servers read as a slash.
    Backslash,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::EmptySegment => "it has an empty segment (two slashes in a row)",
            PathError::DotSegment => "it has a `.` or `..` segment",
            PathError::EncodedSeparator => "it has an encoded slash or backslash (%2F, %5C)",
            PathError::Backslash => "it has a backslash",
        })
    }
}

/// Splits a request URL as the runtime gives it (`http://host/v1/models?limit=5`) into its path
/// and query (without the `?`); a fragment is dropped. Nothing is decoded or resolved. A URL
/// without a path has the path `/`.
pub fn split_url(url: &str) -> (&str, Option<&str>) {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let Some(slash) = after_scheme.find(['/', '?', '#']) else {
        return ("/", None);
    };
    let target = &after_scheme[slash..];
    let target = target.split_once('#').map_or(target, |(before, _)| before);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    (if path.is_empty() { "/" } else { path }, query)
}

/// The value of the first `name` parameter of a query string (`a=1&b=2`, without its `?`), as
/// `application/x-www-form-urlencoded` reads it: `+` is a space, `%XX` a byte (a malformed
/// escape stays as it is). `None` when absent; `Some("")` for `name` or `name=`.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| form_decode(k) == name)
        .map(|(_, v)| form_decode(v))
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |i: usize| bytes.get(i).and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when `segment` is `.` or `..` once `%2e` is read as a dot.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

/// True when `segment` holds `%2F` or `%5C`, in any case. Scans bytes: this runs on every
/// request, so it allocates nothing.
fn has_encoded_separator(segment: &str) -> bool {
    segment.as_bytes().windows(3).any(|w| {
        matches!(
            (w[0], w[1], w[2].to_ascii_lowercase()),
            (b'%', b'2', b'f') | (b'%', b'5', b'c')
        )
    })
}

/// Checks a request path (from [`split_url`]) before any routing; `Ok` when no server could
/// read it as another path.
pub fn check(path: &str) -> Result<(), PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Ok(());
    };
    // One trailing slash is the route without it.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return if path.len() <= 1 {
            Ok(())
        } else {
            Err(PathError::EmptySegment)
        };
    }
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err(PathError::EmptySegment);
        }
        if segment.contains('\\') {
            return Err(PathError::Backslash);
        }
        if has_encoded_separator(segment) {
            return Err(PathError::EncodedSeparator);
        }
        if is_dot_segment(segment) {
            return Err(PathError::DotSegment);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn query_parameters_read_as_forms_do() {
        let q = "minutes=60&limit=%31%30&a+b=c%20d&flag&limit=7&bad=%zz%4";
        assert_eq!(query_param(q, "minutes").as_deref(), Some("60"));
        assert_eq!(
            query_param(q, "limit").as_deref(),
            Some("10"),
            "the first, decoded"
        );
        assert_eq!(query_param(q, "a b").as_deref(), Some("c d"));
        assert_eq!(query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(query_param(q, "bad").as_deref(), Some("%zz%4"));
        assert_eq!(query_param(q, "none"), None);
        assert_eq!(query_param("", "minutes"), None);
        assert_eq!(query_param("%C3%A9=1", "é").as_deref(), Some("1"));
    }

    use super::*;

    #[test]
    fn urls_split_into_path_and_query_as_they_came() {
        let cases: [(&str, &str, Option<&str>); 9] = [
            ("http://h/v1/models", "/v1/models", None),
            (
                "https://h:8443/v1/models?limit=5&a=/../b",
                "/v1/models",
                Some("limit=5&a=/../b"),
            ),
            ("http://h/v1/%2e%2e/files", "/v1/%2e%2e/files", None),
            (
                "http://h/v1//chat/completions",
                "/v1//chat/completions",
                None,
            ),
            ("http://h/v1/models\\x#frag", "/v1/models\\x", None),
            ("http://h/v1/x?q#f?g", "/v1/x", Some("q")),
            ("http://h", "/", None),
            ("http://h?x=1", "/", Some("x=1")),
            ("http://h/", "/", None),
        ];
        for (url, path, query) in cases {
            assert_eq!(split_url(url), (path, query), "{url}");
        }
    }

    #[test]
    fn paths_no_server_reads_differently_pass() {
        for path in [
            "/",
            "/healthz",
            "/v1/chat/completions",
            "/v1/chat/completions/",
            "/v1/models/ft:gpt-4o:org:x",
            "/v1/models/gpt-4.1",
            "/v1/models/...",
            "/v1/models/.x",
            "/v1/models/%2e%2e%2e",
            "/v1/models/a%20b",
            "/v1/models/%2",
            "/admin/status",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        use PathError::*;
        let cases: [(&str, PathError); 20] = [
            ("//", EmptySegment),
            ("//v1/models", EmptySegment),
            ("/v1//chat/completions", EmptySegment),
            ("/v1/chat//completions", EmptySegment),
            ("/v1/models//", EmptySegment),
            ("/v1/.", DotSegment),
            ("/v1/../files", DotSegment),
            ("/v1/%2e%2e/files", DotSegment),
            ("/v1/%2E%2E/files", DotSegment),
            ("/v1/.%2e/files", DotSegment),
            ("/v1/models/%2e", DotSegment),
            ("/v1/chat/completions/%2E/", DotSegment),
            ("/v1/models%2Fx", EncodedSeparator),
            ("/v1/models%2fx", EncodedSeparator),
            ("/v1/models%5Cx", EncodedSeparator),
            ("/v1/models%5cx", EncodedSeparator),
            ("/v1/files%2F..%2Fmodels", EncodedSeparator),
            ("/v1/models\\x", Backslash),
            ("/v1\\models", Backslash),
            ("/admin//status", EmptySegment),
        ];
        for (path, want) in cases {
            assert_eq!(check(path), Err(want), "{path}");
        }
    }
}
