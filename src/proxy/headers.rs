//! Which headers cross the proxy, in each direction, and the routing headers the router adds.
//! The rules are the core's (`bluegreen_core::request::headers`); this applies them to the runtime's
//! `Headers` objects with as few wasm-boundary crossings as it can.

use bluegreen_core::config::Config;
use bluegreen_core::request::auth::AuthMode;
use bluegreen_core::request::fallback::FallbackReason;
use bluegreen_core::request::headers::{
    connection_options, forward_request_header, forward_request_header_on_router_key,
    forward_response_header, names_the_request,
};
use bluegreen_core::Environment;
use worker::{Headers, Request};

use crate::error::Result;
use crate::http::header;

/// A copy of `headers` without the ones `keep` rejects and those its `Connection` header
/// names. Copying the JS object whole and deleting a few names crosses the wasm boundary far
/// less often than rebuilding it entry by entry; `Connection` is read only when present.
fn filtered(headers: &Headers, keep: fn(&str) -> bool) -> Result<Headers> {
    let out = headers.clone();
    let names = crate::js::header_names(&out.0);
    let hop_by_hop = if names.split('\n').any(|name| name == "connection") {
        connection_options(&headers.get("connection")?.unwrap_or_default())
    } else {
        Vec::new()
    };
    for name in names.split('\n') {
        if !name.is_empty() && (!keep(name) || hop_by_hop.iter().any(|h| h == name)) {
            out.delete(name)?;
        }
    }
    Ok(out)
}

/// Checks the client's credentials; returns the `Authorization` to send upstream.
pub fn authorize(req: &Request, cfg: &Config) -> Result<Option<String>> {
    Ok(cfg
        .auth
        .authorize(header(req, "authorization").as_deref())?)
}

/// The client's headers that go upstream, plus the upstream `Authorization`. With the router's
/// own upstream key, the client's account and project headers stay behind.
pub fn upstream(req: &Request, auth: &AuthMode, authorization: Option<&str>) -> Result<Headers> {
    let keep = match auth {
        AuthMode::Passthrough => forward_request_header,
        AuthMode::RouterKeys { .. } => forward_request_header_on_router_key,
    };
    let out = filtered(req.headers(), keep)?;
    if let Some(auth) = authorization {
        out.set("authorization", auth)?;
    }
    Ok(out)
}

/// The headers of a shadow copy: those `sent` upstream with the client's request, without the
/// ones that name that request ([`names_the_request`]).
pub fn for_copy(sent: &Headers) -> Result<Headers> {
    filtered(sent, |name| !names_the_request(name))
}

/// The upstream's headers that go back to the client, plus where the request went. `model` is
/// `None` for pass-through calls, which have no model of ours.
pub fn routing(
    upstream: &Headers,
    environment: Environment,
    model: Option<&str>,
    request_id: &str,
    fallback: Option<FallbackReason>,
) -> Result<Headers> {
    let out = filtered(upstream, forward_response_header)?;
    out.set("x-bluegreen-environment", environment.as_str())?;
    if let Some(model) = model {
        out.set("x-bluegreen-model", model)?;
    }
    out.set("x-bluegreen-request-id", request_id)?;
    if let Some(reason) = fallback {
        out.set("x-bluegreen-fallback", &reason.to_string())?;
    }
    Ok(out)
}
