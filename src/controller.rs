//! The rollout controller: one Durable Object (class `RolloutController`, SQLite storage,
//! instance `global`) that owns the rollout.
//!
//! It keeps the rollout state, the stats windows, per-minute stats and the event log in its
//! SQLite database, and a copy of the state and windows in memory. Every change is made and
//! written synchronously (the SQL API is synchronous, so no other request can interleave), and
//! only then are the effects that need the network performed: the split written to KV by a
//! single writer that always writes the newest state, and alerts posted from `waitUntil` so
//! that a slow webhook never holds up a tick. Decisions come from `bluegreen_core::rollout`;
//! this file loads, calls, stores and performs.
//!
//! It answers the Worker only: `/internal/stats` (batches from isolates), `/internal/tick`
//! (cron) and `/admin/*`, which the Worker forwards after checking the admin token.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use bluegreen_core::config::Config;
use bluegreen_core::fields::{parse_body, FieldError};
use bluegreen_core::openai::ApiError;
use bluegreen_core::rollout::{apply, Command, Effect, Event, Refusal, RolloutSpec, State};
use bluegreen_core::routing::{RoutingDoc, ROUTING_KEY};
use bluegreen_core::split::Environment;
use bluegreen_core::stats::{Batch, EnvStats};
use bluegreen_core::status::{self, Scopes, SPLIT_KINDS};
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, DurableObject, Env, Method, Request, Response, SqlStorage, SqlStorageValue,
    Stub,
};

use crate::proxy::now_ms;
use crate::{kv, settings};

/// Where isolates post their stats batches.
pub const STATS_URL: &str = "https://controller/internal/stats";
/// Where the cron handler asks for a tick.
pub const TICK_URL: &str = "https://controller/internal/tick";

/// Minutes of per-minute stats kept: 25 hours.
const KEEP_MINUTES: u64 = 25 * 60;
/// Events kept.
const KEEP_EVENTS: u64 = 10_000;
/// Batch ids remembered for deduplication: an hour, far longer than any retry.
const KEEP_BATCH_IDS_MS: u64 = 3_600_000;
/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;
/// Waits before each webhook attempt: three attempts over about 4 s.
const ALERT_WAITS_MS: [u64; 3] = [0, 1000, 3000];
/// Per-attempt webhook timeout.
const ALERT_TIMEOUT_MS: u32 = 5000;

/// The `global` controller's stub.
pub fn stub(env: &Env) -> worker::Result<Stub> {
    env.durable_object("ROLLOUT")?
        .id_from_name("global")?
        .get_stub()
}

/// Asks the controller to tick; returns its one-line summary. Called by the cron handler.
pub async fn tick(env: &Env) -> Result<String, String> {
    let mut init = worker::RequestInit::new();
    init.with_method(Method::Post);
    let req = Request::new_with_init(TICK_URL, &init).map_err(|e| e.to_string())?;
    let mut resp = stub(env)
        .map_err(|e| e.to_string())?
        .fetch_with_request(req)
        .await
        .map_err(|e| e.to_string())?;
    let text = resp.text().await.map_err(|e| e.to_string())?;
    match resp.status_code() {
        200 => Ok(text),
        s => Err(format!("the controller answered {s}: {text}")),
    }
}

/// What the controller holds in memory between requests.
struct Memory {
    state: State,
    scopes: Scopes,
    /// The state version last written to KV.
    kv_version: u64,
}

/// The rollout controller Durable Object.
#[durable_object]
pub struct RolloutController {
    state: worker::State,
    env: Env,
    mem: RefCell<Option<Memory>>,
    /// A KV write is in flight.
    kv_busy: Cell<bool>,
    /// The state changed while it was: write again.
    kv_again: Cell<bool>,
}

impl DurableObject for RolloutController {
    fn new(state: worker::State, env: Env) -> Self {
        Self {
            state,
            env,
            mem: RefCell::new(None),
            kv_busy: Cell::new(false),
            kv_again: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let id = crate::proxy::Tag::new().id;
        Ok(self
            .handle(req)
            .await
            .unwrap_or_else(|e| crate::error::respond(&e, &id)))
    }
}

/// The routes and the methods each takes.
const ROUTES: [(&str, Method); 11] = [
    ("/internal/stats", Method::Post),
    ("/internal/tick", Method::Post),
    ("/admin/status", Method::Get),
    ("/admin/rollouts", Method::Post),
    ("/admin/promote", Method::Post),
    ("/admin/rollback", Method::Post),
    ("/admin/pause", Method::Post),
    ("/admin/resume", Method::Post),
    ("/admin/split", Method::Put),
    ("/admin/events", Method::Get),
    ("/admin/history", Method::Get),
];

fn json_response<T: Serialize>(status: u16, body: &T) -> Result<Response, ApiError> {
    let text = serde_json::to_string(body).map_err(|e| ApiError::internal(&e.to_string()))?;
    let headers = worker::Headers::new();
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set("cache-control", "no-store");
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(text.into_bytes()))
}

fn sql_err(e: worker::Error) -> ApiError {
    ApiError::internal(&format!("controller storage: {e}"))
}

fn invalid(e: FieldError) -> ApiError {
    ApiError::invalid_value(&e.field, &e.rule)
}

fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::Conflict(msg) => ApiError::conflict(msg),
        Refusal::Invalid(e) => invalid(e),
    }
}

/// Reads `name` from the query string as a whole number in `[min, max]`, or `default`.
fn query_number(
    req: &Request,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ApiError> {
    let url = req.url().map_err(crate::error::internal)?;
    match url.query_pairs().find(|(k, _)| k == name) {
        None => Ok(default),
        Some((_, v)) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_value(
                    name,
                    &format!("must be a whole number from {min} to {max}"),
                )
            }),
    }
}

#[derive(Deserialize)]
struct TextRow {
    v: String,
}

#[derive(Deserialize)]
struct MinuteRow {
    minute: f64,
    env: String,
    doc: String,
}

#[derive(Deserialize)]
struct EventRow {
    seq: f64,
    doc: String,
}

/// An event as `GET /admin/events` lists it.
#[derive(Serialize)]
struct NumberedEvent {
    seq: u64,
    #[serde(flatten)]
    event: Event,
}

/// The Slack-compatible alert body.
#[derive(Serialize)]
struct Alert<'a> {
    text: String,
    event: &'a Event,
}

impl RolloutController {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// Runs `body`'s SQL in one storage transaction: all of its writes land, or none do.
    fn atomically(&self, mut body: impl FnMut() -> Result<(), ApiError>) -> Result<(), ApiError> {
        let mut failure = None;
        let storage = self.state.storage();
        let result = crate::js::transaction_sync(storage.as_raw().as_ref(), &mut || match body() {
            Ok(()) => None,
            Err(e) => {
                let message = e.message.clone();
                failure = Some(e);
                Some(message)
            }
        });
        match (result, failure) {
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(ApiError::internal(&format!("controller storage: {e:?}"))),
            (Ok(()), None) => Ok(()),
        }
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, ApiError> {
        let rows: Vec<TextRow> = self
            .sql()
            .exec("SELECT v FROM meta WHERE k = ?", vec![key.into()])
            .and_then(|c| c.to_array())
            .map_err(sql_err)?;
        Ok(rows.into_iter().next().map(|r| r.v))
    }

    fn meta_put(&self, key: &str, value: String) -> Result<(), ApiError> {
        self.sql()
            .exec(
                "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                vec![key.into(), value.into()],
            )
            .map(drop)
            .map_err(sql_err)
    }

    /// Creates the tables and loads the state on first use.
    fn ensure_loaded(&self, cfg: &Config) -> Result<(), ApiError> {
        if self.mem.borrow().is_some() {
            return Ok(());
        }
        let sql = self.sql();
        for ddl in [
            "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS minutes (minute INTEGER NOT NULL, env TEXT NOT NULL, \
             doc TEXT NOT NULL, PRIMARY KEY (minute, env))",
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
             at_ms INTEGER NOT NULL, kind TEXT NOT NULL, doc TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, at_ms INTEGER NOT NULL)",
        ] {
            sql.exec(ddl, None).map_err(sql_err)?;
        }
        let parse_err = |what: &str, e: serde_json::Error| {
            ApiError::internal(&format!("stored {what} unreadable: {e}"))
        };
        let state = match self.meta_get("state")? {
            Some(json) => serde_json::from_str(&json).map_err(|e| parse_err("state", e))?,
            None => State::initial(&cfg.defaults),
        };
        let scopes = match self.meta_get("scopes")? {
            Some(json) => serde_json::from_str(&json).map_err(|e| parse_err("stats", e))?,
            None => Scopes::default(),
        };
        let kv_version = self
            .meta_get("kv_version")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(state.version());
        *self.mem.borrow_mut() = Some(Memory {
            state,
            scopes,
            kv_version,
        });
        Ok(())
    }

    fn with_mem<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> T {
        f(self.mem.borrow_mut().as_mut().expect("loaded before use"))
    }

    /// Before any rollout, the controller shows (and starts from) the split the request path
    /// uses: the KV document if there is a valid one, else the vars.
    async fn adopt_routing_while_unused(&self) {
        let unused = self.with_mem(|m| m.state.rollout_id().is_none());
        if !unused {
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
        if self.with_mem(|m| m.state.rollout_id().is_some()) {
            return self.with_mem(|m| m.state.routing_doc(now_ms()));
        }
        match kv::read_document(&self.env).await {
            Ok(Some(doc)) if self.with_mem(|m| m.state.rollout_id().is_none()) => doc,
            _ => self.with_mem(|m| m.state.routing_doc(now_ms())),
        }
    }

    async fn handle(&self, mut req: Request) -> Result<Response, ApiError> {
        let cfg = settings::load(&self.env)?;
        self.ensure_loaded(&cfg)?;
        let path = req.path();
        let route = path
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(&path);
        let method = req.method();
        let Some((route, _)) = ROUTES.iter().find(|(p, m)| *p == route && *m == method) else {
            crate::admin::drain(&mut req).await;
            let allowed: Vec<&str> = ROUTES
                .iter()
                .filter(|(p, _)| *p == route)
                .map(|(_, m)| m.as_ref())
                .collect();
            return Err(if allowed.is_empty() {
                ApiError::not_found(&path)
            } else {
                ApiError::method_not_allowed(method.as_ref(), &path, &allowed.join(", "))
            });
        };
        match *route {
            "/internal/stats" => self.ingest(&mut req).await,
            "/internal/tick" => self.tick(&cfg).await,
            "/admin/status" => {
                self.adopt_routing_while_unused().await;
                self.status()
            }
            "/admin/rollouts" => {
                let body = read_admin_body(&mut req).await?;
                let spec = RolloutSpec::from_json(&body).map_err(invalid)?;
                let routing = self.routing_in_force().await;
                self.command(&cfg, Command::Start { spec, routing }, 201)
                    .await
            }
            "/admin/promote" => self.command(&cfg, Command::Promote, 200).await,
            "/admin/rollback" => self.command(&cfg, Command::Rollback, 200).await,
            "/admin/pause" => self.command(&cfg, Command::Pause, 200).await,
            "/admin/resume" => self.command(&cfg, Command::Resume, 200).await,
            "/admin/split" => {
                let body = read_admin_body(&mut req).await?;
                let o = bluegreen_core::fields::Obj::new(&body, "").map_err(invalid)?;
                o.only(&["green_percent"]).map_err(invalid)?;
                let green_percent = o
                    .number("green_percent", 0.0, 100.0)
                    .map_err(invalid)?
                    .ok_or_else(|| {
                        ApiError::invalid_value("green_percent", "is required (0 to 100)")
                    })?;
                self.command(&cfg, Command::SetSplit { green_percent }, 200)
                    .await
            }
            "/admin/events" => {
                let limit = query_number(&req, "limit", 50, 1, 1000)?;
                self.events(limit)
            }
            "/admin/history" => {
                let minutes = query_number(&req, "minutes", 60, 1, 1440)?;
                self.history(minutes)
            }
            _ => Err(ApiError::not_found(&path)),
        }
    }

    fn status(&self) -> Result<Response, ApiError> {
        let now = now_ms();
        let body = self.with_mem(|m| {
            status::status(&m.state, &m.scopes, m.kv_version == m.state.version(), now)
        });
        json_response(200, &body)
    }

    /// Runs an operator's command; answers the new status, or the refusal.
    async fn command(
        &self,
        cfg: &Config,
        cmd: Command,
        ok_status: u16,
    ) -> Result<Response, ApiError> {
        let now = now_ms();
        let transition = self
            .with_mem(|m| apply(&m.state, cmd, now))
            .map_err(refused)?;
        self.commit(cfg, transition.state, transition.effects, now)
            .await?;
        let body = self.with_mem(|m| {
            status::status(&m.state, &m.scopes, m.kv_version == m.state.version(), now)
        });
        json_response(ok_status, &body)
    }

    /// A cron tick: judge the window, maybe move; retry a failed KV write; prune old rows.
    async fn tick(&self, cfg: &Config) -> Result<Response, ApiError> {
        self.adopt_routing_while_unused().await;
        let now = now_ms();
        let transition = self
            .with_mem(|m| apply(&m.state, m.scopes.tick(), now))
            .map_err(refused)?;
        let events = transition.effects.len();
        self.commit(cfg, transition.state, transition.effects, now)
            .await?;
        self.prune(now)?;
        #[derive(Serialize)]
        struct Ticked<'a> {
            phase: &'a str,
            green_percent: f64,
            verdict: Option<bluegreen_core::health::VerdictStatus>,
            effects: usize,
            routing_synced: bool,
        }
        let body = self.with_mem(|m| {
            serde_json::to_string(&Ticked {
                phase: m.state.phase().name(),
                green_percent: m.state.green_percent(),
                verdict: m.state.verdict_status(),
                effects: events,
                routing_synced: m.kv_version == m.state.version(),
            })
            .expect("serializes")
        });
        Response::ok(body).map_err(crate::error::internal)
    }

    /// Stores a transition, then performs what needs the network.
    async fn commit(
        &self,
        cfg: &Config,
        next: State,
        effects: Vec<Effect>,
        now: u64,
    ) -> Result<(), ApiError> {
        // The new windows, computed aside: memory changes only once storage has the change.
        let scopes = self.with_mem(|m| m.scopes.after(&effects));
        let events: Vec<Event> = effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Record(event) => Some(*event),
                _ => None,
            })
            .collect();
        let state_json = serde_json::to_string(&next).expect("state serializes");
        let scopes_json = serde_json::to_string(&scopes).expect("stats serialize");
        self.atomically(|| {
            let sql = self.sql();
            for event in &events {
                let doc = serde_json::to_string(event).expect("events serialize");
                let kind = serde_json::to_value(event.kind).expect("kinds serialize");
                sql.exec(
                    "INSERT INTO events (at_ms, kind, doc) VALUES (?, ?, ?)",
                    vec![
                        (event.at_ms as i64).into(),
                        kind.as_str().unwrap_or("").into(),
                        doc.into(),
                    ],
                )
                .map_err(sql_err)?;
            }
            self.meta_put("state", state_json.clone())?;
            self.meta_put("scopes", scopes_json.clone())
        })?;
        self.with_mem(|m| {
            m.state = next;
            m.scopes = scopes;
        });
        let mut alerts = Vec::new();
        for event in events {
            worker::console_log!("rollout event: {}", event.message);
            if event.alert {
                alerts.push(event);
            }
        }
        // Everything is stored; from here on only the network.
        if let (Some(url), false) = (cfg.alert_webhook_url.clone(), alerts.is_empty()) {
            self.state.wait_until(send_alerts(url, alerts));
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

    /// Writes the newest state's split to KV. One writer at a time: a change made while a
    /// write is in flight makes that writer write again, so KV always ends on the newest split
    /// and an older write never lands after a newer one.
    async fn write_routing(&self, now: u64) -> Result<(), String> {
        if self.kv_busy.get() {
            self.kv_again.set(true);
            return Ok(());
        }
        self.kv_busy.set(true);
        let result = async {
            let store = self
                .env
                .kv("ROUTER_KV")
                .map_err(|e| format!("the ROUTER_KV binding is missing: {e}"))?;
            loop {
                self.kv_again.set(false);
                let (json, version) = self.with_mem(|m| {
                    let doc = m.state.routing_doc(now.max(now_ms()));
                    (
                        serde_json::to_string(&doc).expect("documents serialize"),
                        m.state.version(),
                    )
                });
                store
                    .put(ROUTING_KEY, json)
                    .map_err(|e| e.to_string())?
                    .execute()
                    .await
                    .map_err(|e| e.to_string())?;
                self.with_mem(|m| m.kv_version = version);
                self.meta_put("kv_version", version.to_string())
                    .map_err(|e| e.to_string())?;
                if !self.kv_again.get() {
                    return Ok(());
                }
            }
        }
        .await;
        self.kv_busy.set(false);
        result
    }

    /// `POST /internal/stats`: adds a batch to every window and its minutes, once.
    async fn ingest(&self, req: &mut Request) -> Result<Response, ApiError> {
        let text = req.text().await.map_err(crate::error::internal)?;
        let batch: Batch =
            serde_json::from_str(&text).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
        let now = now_ms();
        let mut scopes = self.with_mem(|m| m.scopes.clone());
        for entry in &batch.entries {
            scopes.add(entry.env, &entry.stats);
        }
        let scopes_json = serde_json::to_string(&scopes).expect("stats serialize");
        // The batch id, its minutes and the windows are stored together or not at all, so a
        // retried batch is either counted once already (and refused as a duplicate) or not.
        let mut duplicate = false;
        self.atomically(|| {
            let sql = self.sql();
            let inserted = sql
                .exec(
                    "INSERT OR IGNORE INTO batches (id, at_ms) VALUES (?, ?)",
                    vec![batch.id.as_str().into(), (now as i64).into()],
                )
                .map_err(sql_err)?
                .rows_written();
            if inserted == 0 {
                duplicate = true;
                return Ok(());
            }
            for entry in &batch.entries {
                let env = env_name(entry.env);
                let rows: Vec<TextRow> = sql
                    .exec(
                        "SELECT doc AS v FROM minutes WHERE minute = ? AND env = ?",
                        vec![(entry.minute as i64).into(), env.into()],
                    )
                    .and_then(|c| c.to_array())
                    .map_err(sql_err)?;
                let mut minute: EnvStats = match rows.first() {
                    Some(r) => serde_json::from_str(&r.v).unwrap_or_default(),
                    None => EnvStats::default(),
                };
                minute.merge(&entry.stats);
                sql.exec(
                    "INSERT INTO minutes (minute, env, doc) VALUES (?, ?, ?) \
                     ON CONFLICT(minute, env) DO UPDATE SET doc = excluded.doc",
                    vec![
                        (entry.minute as i64).into(),
                        env.into(),
                        serde_json::to_string(&minute)
                            .expect("stats serialize")
                            .into(),
                    ],
                )
                .map_err(sql_err)?;
            }
            self.meta_put("scopes", scopes_json.clone())
        })?;
        if duplicate {
            return json_response(200, &serde_json::json!({"duplicate": true}));
        }
        self.with_mem(|m| m.scopes = scopes);
        json_response(200, &serde_json::json!({"accepted": batch.requests()}))
    }

    fn events(&self, limit: u64) -> Result<Response, ApiError> {
        let rows: Vec<EventRow> = self
            .sql()
            .exec(
                "SELECT seq, doc FROM events ORDER BY seq DESC LIMIT ?",
                vec![(limit as i64).into()],
            )
            .and_then(|c| c.to_array())
            .map_err(sql_err)?;
        let events: Vec<NumberedEvent> = rows
            .into_iter()
            .filter_map(|r| {
                Some(NumberedEvent {
                    seq: r.seq as u64,
                    event: serde_json::from_str(&r.doc).ok()?,
                })
            })
            .collect();
        json_response(200, &serde_json::json!({ "events": events }))
    }

    fn history(&self, minutes: u64) -> Result<Response, ApiError> {
        let now = now_ms();
        let first = (now / 60_000 + 1).saturating_sub(minutes);
        let sql = self.sql();
        let rows: Vec<MinuteRow> = sql
            .exec(
                "SELECT minute, env, doc FROM minutes WHERE minute >= ? ORDER BY minute",
                vec![(first as i64).into()],
            )
            .and_then(|c| c.to_array())
            .map_err(sql_err)?;
        let rows: Vec<(u64, Environment, EnvStats)> = rows
            .into_iter()
            .filter_map(|r| {
                Some((
                    r.minute as u64,
                    Environment::parse(&r.env)?,
                    serde_json::from_str(&r.doc).ok()?,
                ))
            })
            .collect();
        let kinds: Vec<SqlStorageValue> = SPLIT_KINDS
            .iter()
            .map(|k| {
                serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
                    .into()
            })
            .collect();
        let mut args = vec![((first * 60_000) as i64).into()];
        args.extend(kinds);
        let placeholders = vec!["?"; SPLIT_KINDS.len()].join(", ");
        let events: Vec<Event> = sql
            .exec(
                &format!(
                    "SELECT seq, doc FROM events WHERE at_ms >= ? AND kind IN ({placeholders}) \
                     ORDER BY seq"
                ),
                args,
            )
            .and_then(|c| c.to_array::<EventRow>())
            .map_err(sql_err)?
            .into_iter()
            .filter_map(|r| serde_json::from_str(&r.doc).ok())
            .collect();
        json_response(200, &status::history(&rows, &events, minutes, now))
    }

    /// Drops minutes older than [`KEEP_MINUTES`], events beyond [`KEEP_EVENTS`] and batch ids
    /// older than an hour.
    fn prune(&self, now: u64) -> Result<(), ApiError> {
        let sql = self.sql();
        let oldest_minute = (now / 60_000).saturating_sub(KEEP_MINUTES);
        sql.exec(
            "DELETE FROM minutes WHERE minute < ?",
            vec![(oldest_minute as i64).into()],
        )
        .map_err(sql_err)?;
        sql.exec(
            "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?",
            vec![(KEEP_EVENTS as i64).into()],
        )
        .map_err(sql_err)?;
        sql.exec(
            "DELETE FROM batches WHERE at_ms < ?",
            vec![(now.saturating_sub(KEEP_BATCH_IDS_MS) as i64).into()],
        )
        .map_err(sql_err)?;
        Ok(())
    }
}

fn env_name(env: Environment) -> &'static str {
    match env {
        Environment::Blue => "blue",
        Environment::Green => "green",
    }
}

/// Reads an admin body (at most 64 KiB) as JSON; empty is `{}`.
async fn read_admin_body(req: &mut Request) -> Result<serde_json::Value, ApiError> {
    let bytes = req.bytes().await.map_err(crate::error::internal)?;
    if bytes.len() > MAX_ADMIN_BODY {
        return Err(ApiError::body_too_large(MAX_ADMIN_BODY));
    }
    parse_body(&bytes).map_err(invalid)
}

/// Posts each alert to the webhook, retrying a failing one; never fails the caller.
async fn send_alerts(url: String, events: Vec<Event>) {
    for event in events {
        let body = serde_json::to_string(&Alert {
            text: format!(
                "bluegreen-router: {} ({}% green, {} → {})",
                event.message, event.green_percent, event.blue_model, event.green_model
            ),
            event: &event,
        })
        .expect("alerts serialize");
        let mut delivered = false;
        for (attempt, wait) in ALERT_WAITS_MS.iter().enumerate() {
            if *wait > 0 {
                worker::Delay::from(Duration::from_millis(*wait)).await;
            }
            match post_json(&url, &body).await {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(e) => worker::console_warn!("alert webhook attempt {}: {e}", attempt + 1),
            }
        }
        if !delivered {
            worker::console_error!(
                "alert not delivered after {} attempts: {}",
                ALERT_WAITS_MS.len(),
                event.message
            );
        }
    }
}

async fn post_json(url: &str, body: &str) -> Result<(), String> {
    let headers = worker::Headers::new();
    let _ = headers.set("content-type", "application/json");
    let promise = crate::js::fetch_with_timeout(
        url,
        "POST",
        &headers.0,
        Some(wasm_bindgen::JsValue::from_str(body)),
        ALERT_TIMEOUT_MS,
    );
    let resp = worker::wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let resp: worker::web_sys::Response = wasm_bindgen::JsCast::unchecked_into(resp);
    // Read the body so the connection is released.
    if let Ok(p) = resp.text() {
        let _ = worker::wasm_bindgen_futures::JsFuture::from(p).await;
    }
    match resp.status() {
        200..=299 => Ok(()),
        s => Err(format!("answered {s}")),
    }
}
