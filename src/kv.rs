//! The routing document as this isolate sees it: read from KV at most once per
//! `ROUTING_CACHE_SECONDS`, validated, and replaced only by a valid document.
//!
//! When the document goes stale, the first request to notice claims the refresh and reads KV;
//! requests arriving meanwhile keep using the document they have. (They cannot wait for that
//! read instead: the Workers runtime cancels a request that waits on another request's I/O as
//! hung.) So on a cold isolate, the requests that arrive before the first read lands each read
//! KV once. Reads are numbered, and an older read landing after a newer one is ignored. A
//! document that fails validation is ignored too (the last good one, or the defaults, stays in
//! force); the reason is logged once and reported by `GET /healthz`.

use std::cell::RefCell;
use std::rc::Rc;

use std::fmt;

use bluegreen_core::auth::AuthMode;
use bluegreen_core::config::Config;
use bluegreen_core::routing::{RoutingDoc, RoutingError, ROUTING_KEY};
use serde::Serialize;
use worker::{Env, Response};

use crate::error::Result;
use crate::runtime::now_ms;
use crate::settings;

/// Where the document in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The `routing` key in KV.
    Kv,
    /// The BLUE_MODEL / GREEN_MODEL / GREEN_PERCENT vars (no document in KV yet).
    Defaults,
}

/// The document in force and what is known about the one in KV.
#[derive(Clone)]
struct Cached {
    doc: Rc<RoutingDoc>,
    source: Source,
    fetched_at_ms: u64,
    problem: Option<Rc<str>>,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    /// Number of the last read started.
    started: u64,
    /// Number of the read whose result is in `cached`.
    landed: u64,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// The routing document to use now.
pub async fn current(env: &Env, cfg: &Config) -> Rc<RoutingDoc> {
    refreshed(env, cfg).await.doc
}

async fn refreshed(env: &Env, cfg: &Config) -> Cached {
    let now = now_ms();
    let claim = STATE.with(|s| {
        let mut s = s.borrow_mut();
        if let Some(cached) = s.cached.as_mut() {
            if now.saturating_sub(cached.fetched_at_ms) < cfg.routing_cache_ms {
                return Err(cached.clone());
            }
            // Claim the refresh: requests arriving meanwhile see a fresh stamp.
            cached.fetched_at_ms = now;
        }
        s.started += 1;
        Ok(s.started)
    });
    let number = match claim {
        Err(fresh) => return fresh,
        Ok(number) => number,
    };
    let read = read_document(env).await;
    let now = now_ms();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if number < s.landed {
            // A newer read landed first: it stands.
            if let Some(cached) = &s.cached {
                return cached.clone();
            }
        }
        s.landed = number;
        let current = s.cached.take();
        let last_good = || {
            current
                .as_ref()
                .map(|c| (c.doc.clone(), c.source))
                .unwrap_or_else(|| (Rc::new(cfg.defaults.clone()), Source::Defaults))
        };
        let ((doc, source), problem): (_, Option<Rc<str>>) = match read {
            Ok(None) => ((Rc::new(cfg.defaults.clone()), Source::Defaults), None),
            Ok(Some(doc)) => ((Rc::new(doc), Source::Kv), None),
            Err(problem) => (last_good(), Some(problem.to_string().into())),
        };
        if problem != current.as_ref().and_then(|c| c.problem.clone()) {
            match &problem {
                Some(p) => worker::console_error!(
                    "routing: {p}; still serving version {} from {source:?}",
                    doc.version
                ),
                None => worker::console_log!("routing: document ok"),
            }
        }
        if current.as_ref().is_none_or(|c| *c.doc != *doc) {
            worker::console_log!(
                "routing: version {} ({source:?}) blue={} green={} green_percent={}",
                doc.version,
                doc.blue_model,
                doc.green_model,
                doc.green_percent
            );
        }
        let cached = Cached {
            doc,
            source,
            fetched_at_ms: now,
            problem,
        };
        s.cached = Some(cached.clone());
        cached
    })
}

/// Why the document in KV is not in force.
#[derive(Debug)]
pub enum DocProblem {
    /// The `ROUTER_KV` binding is missing from the deployment.
    Binding(worker::Error),
    /// KV did not answer the read.
    Read(worker::KvError),
    /// The stored text is not a valid routing document.
    Invalid(RoutingError),
}

impl fmt::Display for DocProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocProblem::Binding(e) => write!(f, "the ROUTER_KV binding is missing: {e}"),
            DocProblem::Read(e) => write!(f, "reading KV key `{ROUTING_KEY}` failed: {e}"),
            DocProblem::Invalid(e) => write!(f, "KV document `{ROUTING_KEY}` ignored: {e}"),
        }
    }
}

/// The routing namespace.
pub fn store(env: &Env) -> Result<worker::kv::KvStore, DocProblem> {
    env.kv("ROUTER_KV").map_err(DocProblem::Binding)
}

/// The validated document in KV: `Ok(None)` when the key is absent, `Err` with the reason when
/// it cannot be read or is invalid.
pub async fn read_document(env: &Env) -> Result<Option<RoutingDoc>, DocProblem> {
    let text = store(env)?
        .get(ROUTING_KEY)
        .text()
        .await
        .map_err(DocProblem::Read)?;
    text.map(|t| RoutingDoc::parse(&t))
        .transpose()
        .map_err(DocProblem::Invalid)
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    routing: &'a RoutingDoc,
    routing_source: Source,
    routing_problem: Option<&'a str>,
    routing_cache_seconds: f64,
    upstream: String,
    auth: &'a str,
}

/// `GET /healthz`: the routing document in force, where it came from and any problem with the
/// one in KV. Never shows a secret.
pub async fn healthz(env: &Env) -> Result<Response> {
    let cfg = settings::load(env)?;
    let state = refreshed(env, &cfg).await;
    let body = Health {
        status: if state.problem.is_some() {
            "degraded"
        } else {
            "ok"
        },
        routing: &state.doc,
        routing_source: state.source,
        routing_problem: state.problem.as_deref(),
        routing_cache_seconds: cfg.routing_cache_ms as f64 / 1000.0,
        upstream: cfg.upstream_display(),
        auth: match cfg.auth {
            AuthMode::Passthrough => "passthrough",
            AuthMode::RouterKeys { .. } => "router_keys",
        },
    };
    Ok(Response::from_json(&body)?)
}

/// Reads and validates the KV document now, bypassing the cache (for the cron handler).
pub async fn check_document(env: &Env) -> Result<String, DocProblem> {
    Ok(match read_document(env).await? {
        None => "no routing document in KV; defaults in force".into(),
        Some(d) => format!(
            "routing document version {} is valid ({}% green)",
            d.version, d.green_percent
        ),
    })
}
