//! A route's definition at its controller: `PUT /internal/route` creates the route (a
//! controller with no state) or defines it anew (its models and stickiness, at 0% green, only
//! while no rollout runs); `DELETE /internal/route` deletes it (refused while a rollout runs):
//! its state, stats, events and routing document go. The Worker's admin API calls these
//! before it changes the registry, so that a route the registry lists always has its
//! controller.

use bluegreen_core::config::Config;
use bluegreen_core::controller::rollout::{apply, create, Command};
use bluegreen_core::error::ApiError;
use bluegreen_core::route::name::routing_key;
use bluegreen_core::route::registry::RouteDef;
use bluegreen_core::util::json;
use bluegreen_core::util::retry::Schedule;
use worker::{Request, Response};

use super::store::{Loaded, Stored};
use super::RolloutController;
use crate::error::Result;
use crate::runtime::now_ms;
use crate::{http, kv, retry};

impl RolloutController {
    /// `PUT /internal/route` with the route's definition: 201 with the status when it created
    /// the route, 200 when it defined an existing one anew, 409 while a rollout runs.
    pub(super) async fn define(&self, cfg: &Config, req: &mut Request) -> Result<Response> {
        let text = req.text().await?;
        let def: RouteDef =
            json::parse(&text).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
        let now = now_ms();
        if self.mem.borrow().is_some() && !self.gone.get() {
            let kind = self.with_mem(|m| m.kind);
            if kind != def.kind {
                return Err(ApiError::conflict(format!(
                    "The route serves {0}: send \"kind\": \"{0}\" to change its models. A \
                     route's kind cannot change: another kind needs another route (or this one \
                     deleted and created anew, which drops its stats and history).",
                    kind.name()
                ))
                .into());
            }
            let cmd = Command::Redefine {
                blue_model: def.blue_model.clone(),
                green_model: def.green_model.clone(),
                sticky: def.sticky,
            };
            let transition = self.with_mem(|m| apply(&m.state, cmd, now))?;
            self.commit(cfg, transition, now).await?;
            self.store.set_route_def(&def)?;
            return Ok(http::json(200, &self.status_at(now))?);
        }
        // A route created again starts above every version its earlier life wrote to KV.
        let floor = self.store.open()?.kv_version.map_or(0, |v| v + 1);
        let mut routing = def.defaults();
        routing.version = floor;
        self.store.set_route_def(&def)?;
        let loaded = Loaded {
            state: Stored::Missing,
            scopes: Stored::Missing,
            kv_version: None,
            last_tick_ms: None,
            route_def: Some(def),
            deleted: false,
        };
        let mut memory = self.memory_from(loaded, cfg, &routing)?;
        // Nothing of the route is in KV yet: the commit below writes its split.
        memory.kv_version = routing.version.wrapping_add(1);
        memory.routing_verified = false;
        *self.mem.borrow_mut() = Some(memory);
        self.gone.set(false);
        self.commit(cfg, create(&routing, now), now).await?;
        Ok(http::json(201, &self.status_at(now))?)
    }

    /// `DELETE /internal/route`: 200 once everything of the route is gone, 409 while a rollout
    /// runs or its split is being written to KV (a write landing after the deletion would leave
    /// its document behind).
    pub(super) async fn delete(&self) -> Result<Response> {
        if let Some(rollout) = self.with_mem(|m| m.state.active().map(|r| r.id)) {
            return Err(ApiError::conflict(format!(
                "Cannot delete the route while rollout {rollout} runs: roll it back or promote it \
                 first."
            ))
            .into());
        }
        if self.writer.busy() {
            return Err(ApiError::conflict(
                "The route's split is being written to KV: try again in a moment.".into(),
            )
            .into());
        }
        self.store.wipe()?;
        self.gone.set(true);
        let key = routing_key(&self.route_name());
        let store = kv::store(&self.env)?;
        let delete = || async { Ok(store.delete(&key).await?) };
        let warn = |n: usize, why: &str| {
            worker::console_warn!("deleting KV key {key}, attempt {n}: {why}");
        };
        retry::run(&Schedule::KV_WRITE, delete, warn).await?;
        worker::console_log!("route {} deleted", self.route_name());
        Ok(http::json(
            200,
            &serde_json::json!({ "deleted": self.route_name() }),
        )?)
    }
}
