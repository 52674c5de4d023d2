//! The rollout controller: one Durable Object (class `RolloutController`, SQLite storage,
//! instance `global`) that owns the rollout.
//!
//! It keeps the rollout state, the stats windows, per-minute stats and the event log in its
//! SQLite database ([`store`]), and a copy of the state and windows in memory. Every change is
//! decided by `bluegreen_core::rollout`, stored in one transaction, and only then are the
//! effects that need the network performed: the split written to KV by a single writer
//! ([`kv_writer`]) and alerts posted from `waitUntil` ([`alerts`]). The handlers ([`api`]) are
//! a few lines each.
//!
//! It answers the Worker only (see `crate::control`): `/internal/stats` (batches from
//! isolates), `/internal/tick` (cron) and `/admin/*`, which the Worker forwards after checking
//! the admin token.

mod alerts;
mod api;
mod kv_writer;
mod recovery;
mod store;

use std::cell::RefCell;

use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use bluegreen_core::rollout::{Effect, Event, State, Transition};
use bluegreen_core::routing::RoutingDoc;
use bluegreen_core::status::{self, Status};
use bluegreen_core::windows::Scopes;
use worker::{durable_object, DurableObject, Env, Method, Request, Response};

use crate::control::{STATS_PATH, TICK_PATH};
use crate::error::Result;
use crate::runtime::{now_ms, random_id};
use crate::{http, kv, settings};
use kv_writer::KvWriter;
use store::Store;

/// What the controller holds in memory between requests.
struct Memory {
    state: State,
    scopes: Scopes,
    /// The state version last written to KV.
    kv_version: u64,
    /// The stored state, while it cannot be read: the controller holds until recovered.
    problem: Option<recovery::Unreadable>,
    /// When old rows were last pruned.
    pruned_at_ms: u64,
}

/// The rollout controller Durable Object.
#[durable_object]
pub struct RolloutController {
    state: worker::State,
    env: Env,
    store: Store,
    mem: RefCell<Option<Memory>>,
    writer: KvWriter,
}

impl DurableObject for RolloutController {
    fn new(state: worker::State, env: Env) -> Self {
        Self {
            store: Store::new(&state),
            state,
            env,
            mem: RefCell::new(None),
            writer: KvWriter::default(),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        Ok(self
            .route(req)
            .await
            .unwrap_or_else(|e| e.respond(&random_id())))
    }
}

/// The controller's routes.
#[derive(Clone, Copy)]
enum Route {
    Stats,
    Tick,
    Status,
    Start,
    Promote,
    Rollback,
    Pause,
    Resume,
    Split,
    Events,
    History,
    Recover,
}

/// Every route, and the method it takes.
const ROUTES: [(&str, Method, Route); 12] = [
    (STATS_PATH, Method::Post, Route::Stats),
    (TICK_PATH, Method::Post, Route::Tick),
    ("/admin/status", Method::Get, Route::Status),
    ("/admin/rollouts", Method::Post, Route::Start),
    ("/admin/promote", Method::Post, Route::Promote),
    ("/admin/rollback", Method::Post, Route::Rollback),
    ("/admin/pause", Method::Post, Route::Pause),
    ("/admin/resume", Method::Post, Route::Resume),
    ("/admin/split", Method::Put, Route::Split),
    ("/admin/events", Method::Get, Route::Events),
    ("/admin/history", Method::Get, Route::History),
    ("/admin/recover", Method::Post, Route::Recover),
];

/// The route for a request, or the 404/405 it gets.
fn find_route(req: &Request) -> Result<Route> {
    let path = req.path();
    let trimmed = path.strip_suffix('/').filter(|p| !p.is_empty());
    let wanted = trimmed.unwrap_or(&path);
    let method = req.method();
    let same_path = || ROUTES.iter().filter(|(p, _, _)| *p == wanted);
    if let Some((_, _, route)) = same_path().find(|(_, m, _)| *m == method) {
        return Ok(*route);
    }
    let allowed: Vec<&str> = same_path().map(|(_, m, _)| m.as_ref()).collect();
    Err(if allowed.is_empty() {
        ApiError::not_found(&path)
    } else {
        ApiError::method_not_allowed(method.as_ref(), &path, &allowed.join(", "))
    }
    .into())
}

impl RolloutController {
    async fn route(&self, mut req: Request) -> Result<Response> {
        let cfg = settings::load(&self.env)?;
        self.ensure_loaded(&cfg)?;
        let route = match find_route(&req) {
            Ok(route) => route,
            Err(e) => {
                http::drain(&mut req).await;
                return Err(e);
            }
        };
        if matches!(
            route,
            Route::Start
                | Route::Promote
                | Route::Rollback
                | Route::Pause
                | Route::Resume
                | Route::Split
        ) {
            if let Err(refusal) = self.refuse_while_unreadable() {
                // A client still sending its body gets the refusal, not a reset connection.
                http::drain(&mut req).await;
                return Err(refusal);
            }
        }
        match route {
            Route::Stats => self.ingest(&mut req).await,
            Route::Tick => self.tick(&cfg).await,
            Route::Status => self.status().await,
            Route::Start => self.start(&cfg, &mut req).await,
            Route::Promote => self.promote(&cfg).await,
            Route::Rollback => self.rollback(&cfg).await,
            Route::Pause => self.pause(&cfg).await,
            Route::Resume => self.resume(&cfg).await,
            Route::Split => self.split(&cfg, &mut req).await,
            Route::Events => self.events(&req),
            Route::History => self.history(&req),
            Route::Recover => self.recover(&cfg).await,
        }
    }

    /// Loads the state and windows from storage on first use.
    fn ensure_loaded(&self, cfg: &Config) -> Result<()> {
        if self.mem.borrow().is_some() {
            return Ok(());
        }
        let memory = self.memory_from(self.store.open()?, cfg)?;
        *self.mem.borrow_mut() = Some(memory);
        Ok(())
    }

    /// Runs `f` on the loaded memory. Every route loads it first ([`Self::ensure_loaded`]).
    fn with_mem<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> T {
        f(self.mem.borrow_mut().as_mut().expect("loaded before use"))
    }

    /// The status document at `now`.
    fn status_at(&self, now: u64) -> Status {
        self.with_mem(|m| {
            let synced = m.kv_version == m.state.version();
            let mut status = status::status(&m.state, &m.scopes, synced, now);
            status.storage_problem = m
                .problem
                .as_ref()
                .map(|p| format!("stored rollout state unreadable: {}", p.error));
            status
        })
    }

    /// Before any rollout, the controller shows (and starts from) the split the request path
    /// uses: the KV document if there is a valid one, else the vars.
    async fn adopt_routing_while_unused(&self) {
        if self.with_mem(|m| m.state.rollout_id().is_some()) {
            return;
        }
        if let Ok(Some(doc)) = kv::read_document(&self.env).await {
            self.with_mem(|m| {
                if m.state.rollout_id().is_none() {
                    m.state = State::initial(&doc);
                    m.kv_version = doc.version;
                }
            });
        }
    }

    /// The split in force, for a new rollout's blue model. Once the controller has run a
    /// rollout its own state is the truth (KV may lag it, or a failed write may have left KV
    /// behind: reading KV then could undo a promotion); before that, KV's document if valid.
    async fn routing_in_force(&self) -> RoutingDoc {
        let own = || self.with_mem(|m| m.state.routing_doc(now_ms()));
        if self.with_mem(|m| m.state.rollout_id().is_some()) {
            return own();
        }
        match kv::read_document(&self.env).await {
            Ok(Some(doc)) if self.with_mem(|m| m.state.rollout_id().is_none()) => doc,
            _ => own(),
        }
    }

    /// Stores a transition, then performs what needs the network: alerts from `waitUntil`,
    /// and the split to KV when it changed.
    async fn commit(&self, cfg: &Config, transition: Transition, now: u64) -> Result<()> {
        // Never over an unreadable stored state: only a recovery replaces it.
        self.refuse_while_unreadable()?;
        let Transition { state, effects } = transition;
        // The new windows, computed aside: memory changes only once storage has the change.
        let scopes = self.with_mem(|m| m.scopes.after(&effects));
        let events: Vec<Event> = effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Record(event) => Some(*event),
                _ => None,
            })
            .collect();
        self.store.commit(&events, &state, &scopes)?;
        self.with_mem(|m| {
            m.state = state;
            m.scopes = scopes;
        });
        for event in &events {
            worker::console_log!("rollout event: {}", event.message);
        }
        let alerts: Vec<Event> = events.into_iter().filter(|e| e.alert).collect();
        if let (Some(url), false) = (cfg.alert_webhook_url.clone(), alerts.is_empty()) {
            self.state.wait_until(alerts::send(url, alerts));
        }
        if self.with_mem(|m| m.kv_version != m.state.version()) {
            if let Err(e) = self.write_routing(now).await {
                worker::console_error!(
                    "writing the split to KV failed (retried on the next tick): {e}"
                );
            }
        }
        Ok(())
    }

    /// Writes the newest state's split to KV and records the version that landed.
    async fn write_routing(&self, now: u64) -> Result<()> {
        let newest = || self.with_mem(|m| m.state.routing_doc(now.max(now_ms())));
        let written = |version: u64| {
            self.with_mem(|m| m.kv_version = version);
            self.store.set_kv_version(version)
        };
        self.writer.write(&self.env, newest, written).await
    }
}
