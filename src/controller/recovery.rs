//! Loading what is stored, and the way out when the rollout state cannot be read.
//!
//! An unreadable state never takes the controller down: it serves an idle state on the routing
//! in force (the request path is unaffected), records a `state_unreadable` event once per load
//! and alerts, shows the problem in `/admin/status`, takes stats as ever, and holds: ticks judge
//! nothing and operator commands are refused (409) until `POST /admin/recover`, which sets the
//! unreadable document aside, lands in the core's safe split and keeps the stats. Unreadable
//! stats windows are set aside and restarted (a fresh window is only inconclusive).

use bluegreen_core::config::Config;
use bluegreen_core::controller::rollout::{recover, unreadable, Salvage, State};
use bluegreen_core::controller::windows::Scopes;
use bluegreen_core::error::ApiError;
use bluegreen_core::request::routing::RoutingDoc;
use bluegreen_core::route::registry::RouteKind;
use worker::Response;

use super::store::{Loaded, Stored};
use super::{alerts, Memory, RolloutController};
use crate::error::Result;
use crate::http;
use crate::runtime::now_ms;

/// A stored state this version cannot read, kept as it is until an operator recovers.
pub struct Unreadable {
    /// The stored text.
    pub raw: String,
    /// Why it cannot be read.
    pub error: String,
}

impl RolloutController {
    /// The memory for what `loaded` holds, on the route's `defaults` when nothing is stored;
    /// records and alerts an unreadable state.
    pub(super) fn memory_from(
        &self,
        loaded: Loaded,
        cfg: &Config,
        defaults: &RoutingDoc,
    ) -> Result<Memory> {
        let now = now_ms();
        let scopes = match loaded.scopes {
            Stored::Read(scopes) => scopes,
            Stored::Missing => Scopes::default(),
            Stored::Unreadable { raw, error } => {
                worker::console_error!("stored stats windows unreadable, restarted: {error}");
                self.store.set_aside("scopes", &raw, now)?;
                Scopes::default()
            }
        };
        let (state, problem) = match loaded.state {
            Stored::Read(state) => (state, None),
            Stored::Missing => (State::initial(defaults), None),
            Stored::Unreadable { raw, error } => {
                let (state, event) = unreadable(defaults, &error, now);
                let event = self.stamped(event);
                worker::console_error!("rollout event: {}", event.message);
                self.store.record(std::slice::from_ref(&event))?;
                if let Some(url) = cfg.alert_webhook_url.clone() {
                    self.state.wait_until(alerts::send(url, vec![event], None));
                }
                (state, Some(Unreadable { raw, error }))
            }
        };
        let routing_owned = loaded.kv_version.is_some();
        let scopes = scopes.versioned(state.version());
        Ok(Memory {
            kind: loaded
                .route_def
                .as_ref()
                .map_or(RouteKind::Chat, |d| d.kind),
            routing_owned,
            // Unknown until a tick reads it back (nothing to check before the first write).
            routing_verified: !routing_owned,
            kv_version: loaded.kv_version.unwrap_or(state.version()),
            scopes,
            state,
            problem,
            pruned_at_ms: 0,
            last_tick_ms: loaded.last_tick_ms,
            queue_intake: None,
        })
    }

    /// The refusal of a command while the state is unreadable, if it is.
    pub(super) fn refuse_while_unreadable(&self) -> Result<()> {
        let Some(error) = self.with_mem(|m| m.problem.as_ref().map(|p| p.error.clone())) else {
            return Ok(());
        };
        Err(ApiError::conflict(format!(
            "The stored rollout state cannot be read ({error}); nothing can change until an \
             operator recovers with POST /admin/recover (0% green on the last blue model, stats \
             kept)."
        ))
        .into())
    }

    /// `POST /admin/recover`: sets the unreadable state aside and lands in a safe split.
    pub(super) async fn recover(&self, cfg: &Config) -> Result<Response> {
        let Some(raw) = self.with_mem(|m| m.problem.as_ref().map(|p| p.raw.clone())) else {
            return Err(ApiError::conflict(
                "The stored rollout state is readable: there is nothing to recover.".into(),
            )
            .into());
        };
        // The routing in force is KV's document (the request path serves it), at a version no
        // lower than any the controller wrote.
        self.adopt_routing_while_unused().await;
        let now = now_ms();
        let routing = self.with_mem(|m| {
            let mut doc = m.state.routing_doc(now);
            doc.version = doc.version.max(m.kv_version);
            doc
        });
        let transition = recover(&Salvage::from_raw(&raw), &routing, now);
        self.store.set_aside("state", &raw, now)?;
        // The hold ends only for this commit; if storing fails, the controller holds again.
        let problem = self.with_mem(|m| m.problem.take());
        if let Err(e) = self.commit(cfg, transition, now).await {
            self.with_mem(|m| m.problem = problem);
            return Err(e);
        }
        Ok(http::json(200, &self.status_at(now))?)
    }
}
