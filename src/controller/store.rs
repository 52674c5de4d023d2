//! The controller's SQLite storage: the only file with SQL in it.
//!
//! Tables: `meta` (the rollout state, the stats windows, the routing version last written to
//! KV, the time of the last tick, and for a route created through the admin API its definition
//! (`route_def`) or, once deleted, the mark `deleted`, as JSON text under fixed keys), `minutes` (per-minute stats
//! per environment, kept 25 hours), `events` (the event log, the last 10 000), `batches` (stats
//! batch ids seen in the last hour, so a retried batch counts once) and `scored` (request ids
//! that got feedback, kept as long as an id takes feedback, so that each answer is scored
//! once). Every change that must land together is made in
//! one storage transaction. The documents are stored formats: a new version must read what an
//! older one wrote (`core/tests/stored_formats.rs`).

use bluegreen_core::config::MAX_FEEDBACK_AGE_SECONDS;
use bluegreen_core::controller::rollout::{Event, State};
use bluegreen_core::controller::status::SPLIT_KINDS;
use bluegreen_core::controller::windows::Scopes;
use bluegreen_core::isolate::batch::Batch;
use bluegreen_core::isolate::feedback::Feedback;
use bluegreen_core::route::registry::RouteDef;
use bluegreen_core::stats::{BatchEntry, EnvStats};
use bluegreen_core::util::json;
use bluegreen_core::Environment;
use serde::Serialize;
use worker::{SqlStorage, SqlStorageValue};

use crate::error::{Error, Result};

/// Minutes of per-minute stats kept: 25 hours.
const KEEP_MINUTES: u64 = 25 * 60;
/// Events kept.
const KEEP_EVENTS: u64 = 10_000;
/// Batch ids remembered for deduplication: an hour, far longer than any retry.
const KEEP_BATCH_IDS_MS: u64 = 3_600_000;

/// Scored request ids remembered: as long as the longest feedback window, plus the clock skew
/// an id's date may show (an isolate's clock behind the controller's).
const KEEP_SCORED_MS: u64 = MAX_FEEDBACK_AGE_SECONDS * 1000 + 3_600_000;

const SCHEMA: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS minutes (minute INTEGER NOT NULL, env TEXT NOT NULL, \
     doc TEXT NOT NULL, PRIMARY KEY (minute, env))",
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
     at_ms INTEGER NOT NULL, kind TEXT NOT NULL, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, at_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS scored (id TEXT PRIMARY KEY, at_ms INTEGER NOT NULL)",
    // Pruned by age every minute: without it, a scan of up to a week of ids.
    "CREATE INDEX IF NOT EXISTS scored_at ON scored (at_ms)",
];

/// An event as `GET /admin/events` lists it.
#[derive(Serialize)]
pub struct NumberedEvent {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// One stored document as read.
pub enum Stored<T> {
    /// Never written.
    Missing,
    /// Read.
    Read(T),
    /// There, but not readable by this version: the text, and why.
    Unreadable { raw: String, error: String },
}

/// What the controller keeps between requests, as stored.
pub struct Loaded {
    pub state: Stored<State>,
    pub scopes: Stored<Scopes>,
    pub kv_version: Option<u64>,
    /// When the last tick ran (unix ms); `None` before the first.
    pub last_tick_ms: Option<u64>,
    /// What the route was created with, when an operator created (or defined) it.
    pub route_def: Option<RouteDef>,
    /// The route was deleted (and not created again since).
    pub deleted: bool,
}

/// The Durable Object's storage.
pub struct Store {
    storage: worker::Storage,
}

/// What became of a stats batch at the controller ([`Store::ingest`]).
#[derive(Debug, PartialEq)]
pub enum Intake {
    /// Counted now.
    Counted,
    /// Every batch it holds was counted before: nothing changed.
    Duplicate,
    /// Some of the batches it holds were counted before (these): nothing changed.
    Seen(Vec<String>),
}

fn sql_err(e: worker::Error) -> Error {
    Error::runtime("controller storage", e)
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::runtime("serializing for storage", e))
}

fn int(n: u64) -> SqlStorageValue {
    i64::try_from(n).unwrap_or(i64::MAX).into()
}

impl Store {
    /// The store of this Durable Object.
    pub fn new(state: &worker::State) -> Store {
        Store {
            storage: state.storage(),
        }
    }

    fn sql(&self) -> SqlStorage {
        self.storage.sql()
    }

    /// Whether anything was ever stored here (the tables exist).
    pub fn exists(&self) -> Result<bool> {
        let rows = self.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            Vec::new(),
        )?;
        Ok(!rows.is_empty())
    }

    /// Creates the tables when missing and reads what is stored.
    pub fn open(&self) -> Result<Loaded> {
        for ddl in SCHEMA {
            self.sql().exec(ddl, None).map_err(sql_err)?;
        }
        Ok(Loaded {
            state: parse(self.meta_get("state")?),
            scopes: parse(self.meta_get("scopes")?),
            kv_version: self.meta_get("kv_version")?.and_then(|v| v.parse().ok()),
            last_tick_ms: self.meta_get("last_tick_ms")?.and_then(|v| v.parse().ok()),
            route_def: self
                .meta_get("route_def")?
                .and_then(|v| json::parse(&v).ok()),
            deleted: self.meta_get("deleted")?.is_some(),
        })
    }
}

/// Parses a stored document, when there is one; an unreadable one is kept as text.
fn parse<T: serde::de::DeserializeOwned>(json: Option<String>) -> Stored<T> {
    let Some(raw) = json else {
        return Stored::Missing;
    };
    match json::parse(&raw) {
        Ok(value) => Stored::Read(value),
        Err(e) => Stored::Unreadable {
            raw,
            error: e.to_string(),
        },
    }
}

impl Store {
    /// Runs `body`'s SQL in one storage transaction: all of its writes land, or none do.
    fn atomically<T>(&self, body: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut body = Some(body);
        let mut outcome = None;
        let result = crate::js::transaction_sync(self.storage.as_raw().as_ref(), &mut || {
            let run = body.take()?;
            match run() {
                Ok(value) => {
                    outcome = Some(Ok(value));
                    None
                }
                Err(e) => {
                    // Any text rolls the transaction back; the error itself is kept here.
                    let message = format!("rolled back: {e}");
                    outcome = Some(Err(e));
                    Some(message)
                }
            }
        });
        match (result, outcome) {
            (_, Some(Err(e))) => Err(e),
            (Err(e), _) => Err(Error::runtime("controller storage", format!("{e:?}"))),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Ok(()), None) => Err(Error::Runtime(
                "controller storage: no transaction ran".into(),
            )),
        }
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>> {
        let rows = self.query("SELECT v FROM meta WHERE k = ?", vec![key.into()])?;
        rows.into_iter()
            .next()
            .map(|row| text(row.into_iter().next()))
            .transpose()
    }

    fn meta_put(&self, key: &str, value: String) -> Result<()> {
        self.sql()
            .exec(
                "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                vec![key.into(), value.into()],
            )
            .map(drop)
            .map_err(sql_err)
    }

    /// Runs a read-only statement and reads its rows, each as its columns in the order the
    /// statement selects them (read by [`text`] and [`whole`]). Not through `to_array`, whose
    /// reading of each row type with serde_wasm_bindgen was a deserializer more in the wasm.
    fn query(&self, statement: &str, args: Vec<SqlStorageValue>) -> Result<Vec<Row>> {
        self.sql()
            .exec(statement, args)
            .and_then(|c| c.raw().collect())
            .map_err(sql_err)
    }

    /// Stores a transition: its events, the new state and the new windows, together.
    pub fn commit(&self, events: &[Event], state: &State, scopes: &Scopes) -> Result<()> {
        let docs: Vec<(u64, String, String)> = events
            .iter()
            .map(|e| Ok((e.at_ms, kind_name(e)?, to_json(e)?)))
            .collect::<Result<_>>()?;
        let (state, scopes) = (to_json(state)?, to_json(scopes)?);
        self.atomically(|| {
            for (at_ms, kind, doc) in docs {
                self.insert_event(at_ms, kind, doc)?;
            }
            self.meta_put("state", state)?;
            self.meta_put("scopes", scopes)
        })
    }

    /// Stores events alone (the state is left as it is: an unreadable one stays for recovery).
    pub fn record(&self, events: &[Event]) -> Result<()> {
        let docs: Vec<(u64, String, String)> = events
            .iter()
            .map(|e| Ok((e.at_ms, kind_name(e)?, to_json(e)?)))
            .collect::<Result<_>>()?;
        self.atomically(|| {
            for (at_ms, kind, doc) in docs {
                self.insert_event(at_ms, kind, doc)?;
            }
            Ok(())
        })
    }

    fn insert_event(&self, at_ms: u64, kind: String, doc: String) -> Result<()> {
        self.sql()
            .exec(
                "INSERT INTO events (at_ms, kind, doc) VALUES (?, ?, ?)",
                vec![int(at_ms), kind.into(), doc.into()],
            )
            .map(drop)
            .map_err(sql_err)
    }

    /// Keeps an unreadable document under `{key}_unreadable_{now_ms}`, for whoever wants to
    /// look at it later, before the controller writes a new one.
    pub fn set_aside(&self, key: &str, raw: &str, now_ms: u64) -> Result<()> {
        self.meta_put(&format!("{key}_unreadable_{now_ms}"), raw.to_string())
    }

    /// Records the routing version last written to KV.
    pub fn set_kv_version(&self, version: u64) -> Result<()> {
        self.meta_put("kv_version", version.to_string())
    }

    /// Records what the route was defined with; it exists (again) from now on.
    pub fn set_route_def(&self, def: &RouteDef) -> Result<()> {
        let def = to_json(def)?;
        self.atomically(|| {
            self.sql()
                .exec("DELETE FROM meta WHERE k = 'deleted'", None)
                .map_err(sql_err)?;
            self.meta_put("route_def", def)
        })
    }

    /// Deletes the route: its state, stats and events go. Kept: the highest routing version
    /// written to KV (a route created again starts above it, so that no isolate mistakes its
    /// split for an older one), the mark that it was deleted, and the batch ids and scored
    /// request ids (pruned by age as ever), so that a route created again under the same name
    /// counts no batch and no score twice.
    pub fn wipe(&self) -> Result<()> {
        self.atomically(|| {
            for table in ["minutes", "events"] {
                self.sql()
                    .exec(&format!("DELETE FROM {table}"), None)
                    .map_err(sql_err)?;
            }
            self.sql()
                .exec("DELETE FROM meta WHERE k <> 'kv_version'", None)
                .map_err(sql_err)?;
            self.meta_put("deleted", "1".into())
        })
    }

    /// Records when the last tick ran.
    pub fn set_last_tick(&self, at_ms: u64) -> Result<()> {
        self.meta_put("last_tick_ms", at_ms.to_string())
    }

    /// Counts a batch once: an isolate's by its id, a queue's merged batch by the ids of every
    /// batch it holds (`parts`), with its minutes and the windows that include it, at once.
    /// Nothing changes when any of those ids was counted before: `Duplicate` when all were,
    /// else `Seen` with those that were, so that the consumer merges the others again.
    pub fn ingest(&self, batch: &Batch, scopes: &Scopes, now_ms: u64) -> Result<Intake> {
        let ids: Vec<&str> = match batch.parts.is_empty() {
            true => vec![batch.id.as_str()],
            false => batch.parts.iter().map(String::as_str).collect(),
        };
        let scopes = to_json(scopes)?;
        self.atomically(|| {
            let mut seen = Vec::new();
            for id in &ids {
                let rows = self.query("SELECT id FROM batches WHERE id = ?", vec![(*id).into()])?;
                if !rows.is_empty() {
                    seen.push(id.to_string());
                }
            }
            if seen.len() == ids.len() {
                return Ok(Intake::Duplicate);
            }
            if !seen.is_empty() {
                return Ok(Intake::Seen(seen));
            }
            for id in &ids {
                self.sql()
                    .exec(
                        "INSERT INTO batches (id, at_ms) VALUES (?, ?)",
                        vec![(*id).into(), int(now_ms)],
                    )
                    .map_err(sql_err)?;
            }
            for entry in &batch.entries {
                self.add_entry_to_minute(entry)?;
            }
            self.meta_put("scopes", scopes)?;
            Ok(Intake::Counted)
        })
    }

    /// Counts a score: its request id, its minute and the windows that include it, at once.
    /// `false` when the id was scored before: nothing changes then.
    pub fn score(&self, feedback: &Feedback, entry: &BatchEntry, scopes: &Scopes) -> Result<bool> {
        let scopes = to_json(scopes)?;
        self.atomically(|| {
            let inserted = self
                .sql()
                .exec(
                    "INSERT OR IGNORE INTO scored (id, at_ms) VALUES (?, ?)",
                    vec![feedback.request_id.as_str().into(), int(feedback.at_ms)],
                )
                .map_err(sql_err)?
                .rows_written();
            if inserted == 0 {
                return Ok(false);
            }
            self.add_entry_to_minute(entry)?;
            self.meta_put("scopes", scopes)?;
            Ok(true)
        })
    }

    /// Whether `request_id` was scored already: a cheap check before the windows are copied.
    pub fn was_scored(&self, request_id: &str) -> Result<bool> {
        let rows = self.query(
            "SELECT id FROM scored WHERE id = ?",
            vec![request_id.into()],
        )?;
        Ok(!rows.is_empty())
    }

    /// Adds an entry to its minute's row: forced requests (and their scores) get rows of their
    /// own, which the history leaves out.
    fn add_entry_to_minute(&self, entry: &BatchEntry) -> Result<()> {
        let env = match (entry.env, entry.forced) {
            (env, false) => env.as_str(),
            (Environment::Blue, true) => "blue_forced",
            (Environment::Green, true) => "green_forced",
        };
        self.add_to_minute(entry.minute, env, &entry.stats)
    }

    fn add_to_minute(&self, minute: u64, env: &str, stats: &EnvStats) -> Result<()> {
        let rows = self.query(
            "SELECT doc FROM minutes WHERE minute = ? AND env = ?",
            vec![int(minute), env.into()],
        )?;
        let mut doc: EnvStats = match rows.into_iter().next() {
            Some(row) => json::parse(&text(row.into_iter().next())?).unwrap_or_default(),
            None => EnvStats::default(),
        };
        doc.merge(stats);
        self.sql()
            .exec(
                "INSERT INTO minutes (minute, env, doc) VALUES (?, ?, ?) \
                 ON CONFLICT(minute, env) DO UPDATE SET doc = excluded.doc",
                vec![int(minute), env.into(), to_json(&doc)?.into()],
            )
            .map(drop)
            .map_err(sql_err)
    }

    /// The newest `limit` events, newest first.
    pub fn events(&self, limit: u64) -> Result<Vec<NumberedEvent>> {
        let rows = self.query(
            "SELECT seq, doc FROM events ORDER BY seq DESC LIMIT ?",
            vec![int(limit)],
        )?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let mut columns = row.into_iter();
            let seq = whole(columns.next())?;
            if let Ok(event) = json::parse(&text(columns.next())?) {
                events.push(NumberedEvent { seq, event });
            }
        }
        Ok(events)
    }

    /// Per-minute rows from unix minute `first` on, oldest first.
    pub fn minutes_since(&self, first: u64) -> Result<Vec<(u64, Environment, EnvStats)>> {
        let rows = self.query(
            "SELECT minute, env, doc FROM minutes WHERE minute >= ? ORDER BY minute",
            vec![int(first)],
        )?;
        let mut minutes = Vec::with_capacity(rows.len());
        for row in rows {
            let mut columns = row.into_iter();
            let minute = whole(columns.next())?;
            // Forced requests' rows (`blue_forced`, `green_forced`) are left out.
            let Some(env) = Environment::parse(&text(columns.next())?) else {
                continue;
            };
            if let Ok(stats) = json::parse(&text(columns.next())?) {
                minutes.push((minute, env, stats));
            }
        }
        Ok(minutes)
    }

    /// The events that changed the split since `since_ms`, oldest first.
    pub fn split_events_since(&self, since_ms: u64) -> Result<Vec<Event>> {
        let mut args = vec![int(since_ms)];
        for kind in SPLIT_KINDS {
            args.push(enum_name(&kind)?.into());
        }
        let placeholders = vec!["?"; SPLIT_KINDS.len()].join(", ");
        let rows = self.query(
            &format!(
                "SELECT doc FROM events WHERE at_ms >= ? AND kind IN ({placeholders}) \
                     ORDER BY seq"
            ),
            args,
        )?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            if let Ok(event) = json::parse(&text(row.into_iter().next())?) {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// Drops minutes older than 25 hours, events beyond the last 10 000 and batch ids older
    /// than an hour.
    pub fn prune(&self, now_ms: u64) -> Result<()> {
        let oldest_minute = (now_ms / 60_000).saturating_sub(KEEP_MINUTES);
        for (sql, arg) in [
            ("DELETE FROM minutes WHERE minute < ?", oldest_minute),
            (
                "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?",
                KEEP_EVENTS,
            ),
            (
                "DELETE FROM batches WHERE at_ms < ?",
                now_ms.saturating_sub(KEEP_BATCH_IDS_MS),
            ),
            // An id past its feedback window is refused before it gets here.
            (
                "DELETE FROM scored WHERE at_ms < ?",
                now_ms.saturating_sub(KEEP_SCORED_MS),
            ),
        ] {
            self.sql().exec(sql, vec![int(arg)]).map_err(sql_err)?;
        }
        Ok(())
    }
}

/// A row as read: its columns in the order the statement selects them.
type Row = Vec<SqlStorageValue>;

/// A TEXT column's value (every one of the schema's is `NOT NULL`).
fn text(column: Option<SqlStorageValue>) -> Result<String> {
    match column {
        Some(SqlStorageValue::String(s)) => Ok(s),
        _ => Err(column_err()),
    }
}

/// An INTEGER column's value. It comes from JavaScript as a number, read as `f64` and cast as
/// the rows were read before (a safe integer arrives as `Integer`, any other as `Float`).
fn whole(column: Option<SqlStorageValue>) -> Result<u64> {
    match column {
        Some(SqlStorageValue::Integer(n)) => Ok(n as u64),
        Some(SqlStorageValue::Float(f)) => Ok(f as u64),
        _ => Err(column_err()),
    }
}

fn column_err() -> Error {
    Error::Runtime("controller storage: a column is not of its schema's type".into())
}

/// An event's kind as stored in the `kind` column (its JSON name).
fn kind_name(event: &Event) -> Result<String> {
    enum_name(&event.kind)
}

fn enum_name<T: Serialize>(value: &T) -> Result<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(Error::Runtime("an event kind is not a JSON string".into())),
    }
}
