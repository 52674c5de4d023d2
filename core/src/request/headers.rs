//! Which headers cross the proxy.
//!
//! Requests: the client's headers go upstream except those that describe the client's own
//! connection (hop-by-hop, length, host, Cloudflare's and proxies' client-address headers),
//! the router's own `x-bluegreen-*` controls, `cookie` (the router's clients' cookies are not
//! the upstream's business) and `authorization`, which [`crate::request::auth`] decides. Responses:
//! everything but framing headers, which the runtime sets for the body it actually sends, and
//! `set-cookie` (an upstream's cookie would be set on the router's origin, for every client of
//! it). In both directions, the headers a message's `Connection` header names are hop-by-hop
//! too ([`connection_options`]).

/// True when the client's request header `name` (lowercase) is sent upstream.
pub fn forward_request_header(name: &str) -> bool {
    !(matches!(
        name,
        "host"
            | "authorization"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
            | "accept-encoding"
            | "x-real-ip"
            | "true-client-ip"
            | "forwarded"
            | "cookie"
    ) || name.starts_with("proxy-")
        || name.starts_with("cf-")
        || name.starts_with("x-forwarded-")
        || name.starts_with("x-bluegreen-"))
}

/// True when the client's request header `name` (lowercase) picks which upstream account or
/// project a request is billed to and governed by (OpenAI's `openai-organization` and
/// `openai-project`). With the router's own upstream key, the router's operator chose the
/// account: a client must not steer its key into another organisation or project, so these are
/// dropped. In pass-through mode they go with the client's own key, as ever.
pub fn picks_upstream_account(name: &str) -> bool {
    matches!(name, "openai-organization" | "openai-project")
}

/// [`forward_request_header`] when the router's own upstream key is sent: also without the
/// headers that pick an account ([`picks_upstream_account`]).
pub fn forward_request_header_on_router_key(name: &str) -> bool {
    forward_request_header(name) && !picks_upstream_account(name)
}

/// True when the request header `name` (lowercase), sent upstream with the client's request,
/// names that request: an idempotency key (an upstream that honours it would answer a shadow
/// copy with blue's cached answer, or refuse it as a conflicting retry) or the client's request
/// id (the copy is another request, and must not be logged or billed as the client's). A
/// shadow copy goes without them.
pub fn names_the_request(name: &str) -> bool {
    matches!(
        name,
        "idempotency-key" | "x-idempotency-key" | "x-request-id" | "x-client-request-id"
    )
}

/// True when the upstream's response header `name` (lowercase) is returned to the client.
pub fn forward_response_header(name: &str) -> bool {
    !matches!(
        name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "trailer"
            | "upgrade"
            | "set-cookie"
    ) && !name.starts_with("x-bluegreen-")
}

/// The header names (lowercase) that a `Connection` header's `value` lists: options of that
/// one connection, which a proxy must drop along with `Connection` itself (RFC 9110, 7.6.1).
/// Called only for a message that carries a `Connection` header.
pub fn connection_options(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routers_key_goes_without_the_clients_account_headers() {
        for name in ["openai-organization", "openai-project"] {
            assert!(
                forward_request_header(name),
                "{name}: the client's own key takes it"
            );
            assert!(!forward_request_header_on_router_key(name), "{name}");
        }
        for name in ["openai-beta", "content-type", "x-stainless-lang"] {
            assert!(forward_request_header_on_router_key(name), "{name}");
        }
        assert!(!forward_request_header_on_router_key("authorization"));
    }

    #[test]
    fn a_shadow_copy_drops_what_names_the_clients_request() {
        for h in [
            "idempotency-key",
            "x-idempotency-key",
            "x-request-id",
            "x-client-request-id",
        ] {
            assert!(names_the_request(h), "{h}");
        }
        for h in [
            "content-type",
            "authorization",
            "openai-organization",
            "user-agent",
        ] {
            assert!(!names_the_request(h), "{h}");
        }
    }

    #[test]
    fn request_headers() {
        for h in [
            "content-type",
            "accept",
            "openai-organization",
            "openai-beta",
            "x-stainless-os",
            "user-agent",
            "x-custom",
        ] {
            assert!(forward_request_header(h), "{h}");
        }
        for h in [
            "host",
            "authorization",
            "content-length",
            "cf-connecting-ip",
            "x-forwarded-for",
            "x-bluegreen-environment",
            "x-bluegreen-sticky-key",
            "proxy-authorization",
            "transfer-encoding",
            "accept-encoding",
            "cookie",
        ] {
            assert!(!forward_request_header(h), "{h}");
        }
    }

    #[test]
    fn connection_options_are_the_listed_names() {
        let cases: [(&str, &[&str]); 5] = [
            ("close", &["close"]),
            ("keep-alive, X-Client-Hop", &["keep-alive", "x-client-hop"]),
            (" Upgrade ,,\tx-a,x-b ", &["upgrade", "x-a", "x-b"]),
            ("", &[]),
            (" , ", &[]),
        ];
        for (value, names) in cases {
            assert_eq!(connection_options(value), names, "{value:?}");
        }
    }

    #[test]
    fn response_headers() {
        for h in [
            "content-type",
            "x-request-id",
            "openai-processing-ms",
            "x-ratelimit-remaining-requests",
        ] {
            assert!(forward_response_header(h), "{h}");
        }
        for h in [
            "content-length",
            "transfer-encoding",
            "x-bluegreen-environment",
            "set-cookie",
            "connection",
        ] {
            assert!(!forward_response_header(h), "{h}");
        }
    }
}
