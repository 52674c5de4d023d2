//! `GET /dashboard`: the operator's page, one self-contained HTML file (no external scripts,
//! fonts or CDNs) kept out of the wasm: Workers Static Assets holds it
//! (`assets/dashboard.html`) and this module reads it through the `ASSETS` binding. The Worker
//! runs first for every request (`run_worker_first` in wrangler.toml), so this route is the
//! only way to the page: the assets answer nothing by their own paths. The page holds no secret
//! and shows only a token prompt until the admin API accepts the token the operator types; the
//! token stays in the tab's sessionStorage and every number on the page comes from `/admin/*`.

use wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{web_sys, Env, Headers, Response};

use crate::error::{Error, Result};
use crate::js;

/// The static assets' binding (wrangler.toml `[assets] binding`).
const BINDING: &str = "ASSETS";

/// The page's file, asked for by its own name (`html_handling = "none"`: no redirects); the
/// host is never looked at.
const PAGE_URL: &str = "https://assets.invalid/dashboard.html";

/// The page, with headers that keep it from being framed, cached or loading anything but
/// itself and the admin API. Only the file's bytes come from the assets; the headers are set
/// here, as they were when the page was compiled in, whatever the assets would add. A missing
/// binding or page is a 500 that says so.
pub async fn page(env: &Env) -> Result<Response> {
    let promise = js::fetch_asset(env.as_ref(), BINDING, PAGE_URL).map_err(|_| {
        Error::runtime("dashboard", "no ASSETS binding ([assets] in wrangler.toml)")
    })?;
    let asset: web_sys::Response = JsFuture::from(promise).await?.unchecked_into();
    let (status, body) = (asset.status(), asset.body());
    let Some(body) = body.filter(|_| status == 200) else {
        return Err(Error::runtime(
            "dashboard",
            format!("the static assets answered {status} for dashboard.html"),
        ));
    };
    Ok(Response::builder()
        .with_status(200)
        .with_headers(headers()?)
        .stream(body))
}

fn headers() -> Result<Headers> {
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
    Ok(headers)
}
