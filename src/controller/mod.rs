//! The rollout controller: one Durable Object instance a route (class `RolloutController`,
//! SQLite storage; instance `global` for the default route, `route:<name>` for the others)
//! that owns the route's rollout.
//!
//! A route other than the default exists once `PUT /admin/routes/{name}` defined it at its
//! controller (`/internal/route`); until then, and after its deletion, the controller answers
//! 404 (410 to a stats batch, which the isolate then drops) and stores nothing. The default
//! route exists unless deleted: made from the vars, as before routes.
//!
//! It keeps the rollout state, the stats windows, per-minute stats and the event log in its
//! SQLite database ([`store`]), and a copy of the state and windows in memory. Every change is
//! decided by `bluegreen_core::controller::rollout`, stored in one transaction, and only then are the
//! effects that need the network performed: the split written to KV by a single writer
//! ([`kv_writer`]) and alerts posted from `waitUntil` ([`alerts`]). The handlers ([`api`]) are
//! a few lines each.
//!
//! It answers the Worker only (see `crate::control`): `/internal/stats` (batches from
//! isolates), `/internal/feedback` (verified scores), `/internal/tick` (cron), `/admin/*`,
//! which the Worker forwards after checking the admin token, and `/metrics`, after checking the
//! metrics token.

mod alerts;
mod api;
mod define;
mod recovery;
mod routing;
mod store;

use std::cell::{Cell, RefCell};

use bluegreen_core::config::Config;
use bluegreen_core::controller::rollout::{Effect, Event, State, Transition};
use bluegreen_core::controller::status::{self, Status};
use bluegreen_core::controller::windows::Scopes;
use bluegreen_core::error::ApiError;
use bluegreen_core::route::name::{instance_name, route_of_instance};
use bluegreen_core::route::registry::RouteKind;
use bluegreen_core::route::DEFAULT;
use bluegreen_core::util::rate::TokenBucket;
use worker::{durable_object, DurableObject, Env, Method, Request, Response};

use crate::control::{
    FEEDBACK_PATH, ROUTE_HEADER, ROUTE_PATH, ROUTING_PATH, STATS_PATH, TICK_PATH,
};
use crate::error::Result;
use crate::kv_writer::KvWriter;
use crate::runtime::random_id;
use crate::{http, settings};
use store::Store;

/// What the controller holds in memory between requests.
struct Memory {
    /// What the route serves (an embeddings route refuses live splits and steps).
    kind: RouteKind,
    state: State,
    scopes: Scopes,
    /// The state version last written to KV.
    kv_version: u64,
    /// The stored state, while it cannot be read: the controller holds until recovered.
    problem: Option<recovery::Unreadable>,
    /// The controller has written the routing document, and so owns it: ticks read it back.
    routing_owned: bool,
    /// The routing document was last seen (written, or read back) to hold the state's split.
    routing_verified: bool,
    /// When old rows were last pruned.
    pruned_at_ms: u64,
    /// When the last tick ran; `None` before the first.
    last_tick_ms: Option<u64>,
    /// At the last intake of a batch merged from the stats queue: when it was, and the age of
    /// its oldest part.
    queue_intake: Option<(u64, u64)>,
}

impl Memory {
    /// The latest split was written to KV and last seen there.
    fn routing_synced(&self) -> bool {
        self.kv_version == self.state.version() && self.routing_verified
    }
}

/// The rollout controller Durable Object.
#[durable_object]
pub struct RolloutController {
    state: worker::State,
    env: Env,
    store: Store,
    mem: RefCell<Option<Memory>>,
    writer: KvWriter,
    /// The scores it may still take ([`bluegreen_core::isolate::feedback::CONTROLLER_PER_MINUTE`]).
    score_intake: RefCell<TokenBucket>,
    /// The route it judges, known from its first request.
    route: RefCell<Option<String>>,
    /// The route was deleted while this object ran: new requests find no route (the memory is
    /// kept for requests still under way, which must never find it gone), and nothing is
    /// written to KV for it, until it is created again.
    gone: Cell<bool>,
}

impl DurableObject for RolloutController {
    fn new(state: worker::State, env: Env) -> Self {
        Self {
            store: Store::new(&state),
            state,
            env,
            mem: RefCell::new(None),
            writer: KvWriter::default(),
            score_intake: RefCell::new(TokenBucket::default()),
            route: RefCell::new(None),
            gone: Cell::new(false),
        }
    }

    // Called by the Worker through a stub, never over a client's connection: a refusal need not
    // read the body first (see `http::drain`).
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
    Feedback,
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
    Routing,
    Metrics,
    Define,
    Delete,
}

/// Every route, and the method it takes.
const ROUTES: [(&str, Method, Route); 17] = [
    (ROUTE_PATH, Method::Put, Route::Define),
    (ROUTE_PATH, Method::Delete, Route::Delete),
    (STATS_PATH, Method::Post, Route::Stats),
    (FEEDBACK_PATH, Method::Post, Route::Feedback),
    (TICK_PATH, Method::Post, Route::Tick),
    (ROUTING_PATH, Method::Get, Route::Routing),
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
    ("/metrics", Method::Get, Route::Metrics),
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
        self.identify(&req)?;
        let route = find_route(&req)?;
        if !self.ensure_loaded(&cfg)? {
            return match route {
                Route::Define => self.define(&cfg, &mut req).await,
                _ => Err(match route {
                    Route::Stats => ApiError::route_gone(&self.route_name()),
                    _ => ApiError::route_not_found(&self.route_name()),
                }
                .into()),
            };
        }
        if matches!(
            route,
            Route::Start
                | Route::Promote
                | Route::Rollback
                | Route::Pause
                | Route::Resume
                | Route::Split
        ) {
            self.refuse_while_unreadable()?;
        }
        match route {
            Route::Stats => self.ingest(&mut req).await,
            Route::Feedback => self.feedback(&mut req).await,
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
            Route::Routing => self.own_routing(),
            Route::Metrics => Ok(self.metrics()),
            Route::Define => self.define(&cfg, &mut req).await,
            Route::Delete => self.delete().await,
        }
    }

    /// Learns the route this instance judges, on its first request: from its own name, which
    /// the runtime passes to an instance addressed by name, else from the caller's
    /// `x-bluegreen-route` when that name leads here. A caller of a release before routes sends
    /// none: only the default route's instance existed then.
    fn identify(&self, req: &Request) -> Result<()> {
        if self.route.borrow().is_some() {
            return Ok(());
        }
        let named = self.state.id().name();
        let route = match named.as_deref().and_then(route_of_instance) {
            Some(route) => route.to_string(),
            None => {
                let claimed = http::header(req, ROUTE_HEADER)
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| DEFAULT.to_string());
                let namespace = self.env.durable_object("ROLLOUT")?;
                let id = namespace.id_from_name(&instance_name(&claimed))?;
                if id != self.state.id() {
                    return Err(ApiError::internal("a call for another route's controller").into());
                }
                claimed
            }
        };
        *self.route.borrow_mut() = Some(route);
        Ok(())
    }

    /// `event` naming this controller's route (the state machine does not know it).
    fn stamped(&self, event: Event) -> Event {
        Event {
            route: Some(self.route_name()),
            ..event
        }
    }

    /// The route this controller judges.
    fn route_name(&self) -> String {
        self.route
            .borrow()
            .clone()
            .unwrap_or_else(|| DEFAULT.into())
    }

    /// Loads the state and windows from storage on first use; `false` when the route does not
    /// exist (never created, or deleted), and nothing is loaded.
    fn ensure_loaded(&self, cfg: &Config) -> Result<bool> {
        if self.gone.get() {
            return Ok(false);
        }
        if self.mem.borrow().is_some() {
            return Ok(true);
        }
        // A name nobody created leaves no storage behind (no tables) for asking about it.
        if self.route_name() != DEFAULT && !self.store.exists()? {
            return Ok(false);
        }
        let loaded = self.store.open()?;
        let defaults = match (&loaded.route_def, self.route_name() == DEFAULT) {
            (_, true) if loaded.deleted => return Ok(false),
            (Some(def), _) => def.defaults(),
            (None, true) => cfg.defaults.clone(),
            (None, false) => return Ok(false),
        };
        let memory = self.memory_from(loaded, cfg, &defaults)?;
        *self.mem.borrow_mut() = Some(memory);
        Ok(true)
    }

    /// Runs `f` on the loaded memory. Every route loads it first ([`Self::ensure_loaded`]).
    fn with_mem<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> T {
        f(self.mem.borrow_mut().as_mut().expect("loaded before use"))
    }

    /// The status document at `now`.
    fn status_at(&self, now: u64) -> Status {
        let mut status = self.with_mem(|m| {
            let synced = m.routing_synced();
            let mut status = status::status(&m.state, &m.scopes, synced, now);
            status.storage_problem = m
                .problem
                .as_ref()
                .map(|p| format!("stored rollout state unreadable: {}", p.error));
            status
        });
        status.route = self.route_name();
        status.stats_transport = crate::stats_queue::transport(&self.env);
        let intake = self.with_mem(|m| m.queue_intake);
        status.stats_queue_lag_ms = intake.map(|(_, lag)| lag);
        status.stats_queue_intake_at =
            intake.map(|(at, _)| bluegreen_core::util::time::format_rfc3339_ms(at));
        // The log's newest entry; a status is still a status when it cannot be read.
        status.last_event = self
            .store
            .events(1)
            .ok()
            .and_then(|mut e| e.pop())
            .map(|e| e.event);
        status
    }

    /// Stores a transition, then performs what needs the network: alerts from `waitUntil`,
    /// and the split to KV when it changed.
    async fn commit(&self, cfg: &Config, transition: Transition, now: u64) -> Result<()> {
        // Never over an unreadable stored state: only a recovery replaces it.
        self.refuse_while_unreadable()?;
        let Transition { state, effects } = transition;
        // The new windows, computed aside: memory changes only once storage has the change.
        let scopes = self.with_mem(|m| m.scopes.after(&effects, state.version()));
        let events: Vec<Event> = effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Record(event) => Some(self.stamped(*event)),
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
        // The split first, so that an alert can say whether it is in force.
        let routing = if self.with_mem(|m| m.kv_version != m.state.version()) {
            Some(self.write_routing(now).await)
        } else {
            None
        };
        let alerts: Vec<Event> = events.into_iter().filter(|e| e.alert).collect();
        if let (Some(url), false) = (cfg.alert_webhook_url.clone(), alerts.is_empty()) {
            self.state.wait_until(alerts::send(url, alerts, routing));
        }
        Ok(())
    }
}
