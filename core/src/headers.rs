//! Which headers cross the proxy.
//!
//! Requests: the client's headers go upstream except those that describe the client's own
//! connection (hop-by-hop, length, host, Cloudflare's and proxies' client-address headers),
//! the router's own `x-bluegreen-*` controls and `authorization`, which [`crate::auth`]
//! decides. Responses: everything but framing headers, which the runtime sets for the body it
//! actually sends.

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
    ) || name.starts_with("proxy-")
        || name.starts_with("cf-")
        || name.starts_with("x-forwarded-")
        || name.starts_with("x-bluegreen-"))
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
    ) && !name.starts_with("x-bluegreen-")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            assert!(!forward_request_header(h), "{h}");
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
        ] {
            assert!(!forward_response_header(h), "{h}");
        }
    }
}
