//! `GET /dashboard`: the operator's page, one self-contained HTML file compiled into the
//! Worker (no external scripts, fonts or CDNs). The page holds no secret and shows only a token
//! prompt until the admin API accepts the token the operator types; the token stays in the
//! tab's sessionStorage and every number on the page comes from `/admin/*`.

use worker::{Headers, Response};

use crate::error::Result;

const PAGE: &str = include_str!("dashboard.html");

/// The page, with headers that keep it from being framed, cached or loading anything but
/// itself and the admin API.
pub fn page() -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in [
        ("content-type", "text/html; charset=utf-8"),
        ("cache-control", "no-store"),
        (
            "content-security-policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.set(name, value)?;
    }
    Ok(Response::builder()
        .with_status(200)
        .with_headers(headers)
        .fixed(PAGE.as_bytes().to_vec()))
}
