//! The routing document, which the controller owns once it has written it: adopting the one in
//! KV before the first rollout, writing the state's split (one writer, retried within seconds),
//! and reading it back on every tick to rewrite a document that went missing or was changed by
//! hand. Whether a read-back matches is the core's call (`rollout::read_back`).

use bluegreen_core::config::Config;
use bluegreen_core::controller::rollout::{read_back, ReadBack, State};
use bluegreen_core::request::routing::RoutingDoc;

use super::alerts::{self, RoutingNote};
use super::RolloutController;
use crate::kv_writer::Written;
use bluegreen_core::error::ApiError;
use worker::Response;

use crate::error::Result;
use crate::kv::{self, DocProblem};
use crate::runtime::now_ms;
use crate::{control, http};

impl RolloutController {
    /// Before any rollout, the controller shows (and starts from) the split the request path
    /// uses: the KV document if there is a valid one, else the vars. So it does while its
    /// stored state is unreadable: the request path still serves the document in KV.
    pub(super) async fn adopt_routing_while_unused(&self) {
        let adopts = |m: &super::Memory| {
            m.problem.is_some() || (m.state.rollout_id().is_none() && !m.routing_owned)
        };
        if !self.with_mem(|m| adopts(m)) {
            return;
        }
        if let Ok(Some(doc)) = kv::read_document(&self.env, &self.route_name()).await {
            self.with_mem(|m| {
                if adopts(m) {
                    m.state = State::initial(&doc);
                    // While unreadable, remember the highest version the controller wrote.
                    m.kv_version = match m.problem {
                        Some(_) => m.kv_version.max(doc.version),
                        None => doc.version,
                    };
                }
            });
        }
    }

    /// The split in force, for a new rollout's blue model. Once the controller owns the
    /// document its own state is the truth (KV may lag it, or a failed write may have left KV
    /// behind: reading KV then could undo a promotion); before that, KV's document if valid.
    pub(super) async fn routing_in_force(&self) -> RoutingDoc {
        let own = || self.with_mem(|m| m.state.routing_doc(now_ms()));
        let owned = || self.with_mem(|m| m.state.rollout_id().is_some() || m.routing_owned);
        if owned() {
            return own();
        }
        match kv::read_document(&self.env, &self.route_name()).await {
            Ok(Some(doc)) if !owned() => doc,
            _ => own(),
        }
    }

    /// `GET /internal/routing`: the split in force as the controller knows it, for an isolate
    /// that cannot read KV; 404 while the controller has none of its own (before its first
    /// rollout the request path's own document or vars are right).
    pub(super) fn own_routing(&self) -> Result<Response> {
        let doc = self.with_mem(|m| {
            (m.routing_owned || m.state.rollout_id().is_some())
                .then(|| m.state.routing_doc(now_ms()))
        });
        match doc {
            Some(doc) => Ok(http::json(200, &doc)?),
            None => Err(ApiError::not_found(control::ROUTING_PATH).into()),
        }
    }

    /// Writes the newest state's split to KV (retried within seconds) and records the version
    /// that landed; returns what an alert says about it.
    pub(super) async fn write_routing(&self, now: u64) -> RoutingNote {
        if self.gone.get() {
            // A request still under way when the route was deleted: its document stays deleted.
            return RoutingNote::failed(
                self.with_mem(|m| m.state.version()),
                "the route was deleted",
            );
        }
        let newest = || {
            let doc = self.with_mem(|m| m.state.routing_doc(now.max(now_ms())));
            (doc.version, doc)
        };
        let written = |version: u64| {
            self.with_mem(|m| {
                m.kv_version = version;
                m.routing_owned = true;
                m.routing_verified = true;
            });
            self.store.set_kv_version(version)
        };
        let key = bluegreen_core::route::name::routing_key(&self.route_name());
        let result = self.writer.write(&self.env, &key, newest, written).await;
        let version = self.with_mem(|m| m.state.version());
        match result {
            Ok(Written::Now) => RoutingNote::written(version),
            Ok(Written::Queued) => RoutingNote::queued(version),
            Err(e) => {
                self.with_mem(|m| m.routing_verified = false);
                worker::console_error!(
                    "writing the split to KV failed after retries (the next tick tries again): {e}"
                );
                RoutingNote::failed(version, &e.to_string())
            }
        }
    }

    /// A tick's read-back: rewrites a document that is missing, invalid or not the state's,
    /// with an event (and alert) saying what was found. Only once the controller owns it.
    pub(super) async fn verify_routing(&self, cfg: &Config, now: u64) -> Result<()> {
        if !self.with_mem(|m| m.routing_owned) {
            return Ok(());
        }
        let version = self.with_mem(|m| m.state.version());
        let kv = kv::read_document(&self.env, &self.route_name())
            .await
            .map_err(|e| match e {
                DocProblem::Invalid(..) => ReadBack::Invalid(e.to_string()),
                other => ReadBack::NotRead(other.to_string()),
            });
        // A command that changed the split during the read has written (or is writing) the
        // newest one: what was read says nothing about it.
        if self.with_mem(|m| m.state.version()) != version || self.writer.busy() {
            return Ok(());
        }
        let found = self.with_mem(|m| read_back(&m.state, kv));
        self.with_mem(|m| m.routing_verified = found == ReadBack::Matches);
        if let ReadBack::NotRead(why) = &found {
            worker::console_error!("reading the routing document back failed: {why}");
        }
        let Some(event) = self.with_mem(|m| found.repair_event(&m.state, now)) else {
            return Ok(());
        };
        let event = self.stamped(event);
        self.store.record(std::slice::from_ref(&event))?;
        worker::console_log!("rollout event: {}", event.message);
        let note = self.write_routing(now).await;
        if let Some(url) = cfg.alert_webhook_url.clone() {
            self.state
                .wait_until(alerts::send(url, vec![event], Some(note)));
        }
        Ok(())
    }
}
