//! The route registry: one Durable Object (class `RouteRegistry`, instance `registry`) that
//! keeps which routes the deployment has, and writes them to KV (key `routes`) for the request
//! path. Its only writer, so two operators adding routes at once never lose one; which changes
//! are allowed (the limit, deleting what exists) is the core's
//! ([`bluegreen_core::route::registry`]).
//!
//! It answers the Worker only (`crate::control`): `GET /internal/registry` (the document; it
//! also writes KV again when the last write failed, so the cron repairs it within a minute),
//! `PUT /internal/registry/<name>` (add or replace a route's definition) and `DELETE` on the
//! same path.

use std::cell::{Cell, RefCell};

use bluegreen_core::error::ApiError;
use bluegreen_core::route::registry::{Registry, RegistryError, RouteDef, REGISTRY_KEY};
use worker::{durable_object, DurableObject, Env, Method, Request, Response};

use crate::control::REGISTRY_PATH;
use crate::error::{Error, Result};
use crate::kv_writer::KvWriter;
use crate::runtime::random_id;
use crate::{http, settings};

/// The storage key of the registry document (JSON text: a stored format).
const STORED_KEY: &str = "registry";

/// The route registry Durable Object.
#[durable_object]
pub struct RouteRegistry {
    state: worker::State,
    env: Env,
    /// The registry, once read from storage.
    registry: RefCell<Option<Registry>>,
    /// The version last written to KV.
    kv_version: Cell<Option<u64>>,
    writer: KvWriter,
}

impl DurableObject for RouteRegistry {
    fn new(state: worker::State, env: Env) -> Self {
        Self {
            state,
            env,
            registry: RefCell::new(None),
            kv_version: Cell::new(None),
            writer: KvWriter::default(),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        Ok(self
            .handle(req)
            .await
            .unwrap_or_else(|e| e.respond(&random_id())))
    }
}

impl RouteRegistry {
    async fn handle(&self, mut req: Request) -> Result<Response> {
        self.load().await?;
        let path = req.path();
        let name = path
            .strip_prefix(REGISTRY_PATH)
            .and_then(|rest| rest.strip_prefix('/'));
        match (req.method(), name) {
            (Method::Get, None) => {
                self.sync().await;
                self.answer()
            }
            (Method::Put, Some(name)) => {
                let def: RouteDef = serde_json::from_str(&req.text().await?)
                    .map_err(|e| ApiError::invalid_json(&e.to_string()))?;
                if def.name != name {
                    return Err(ApiError::internal("a definition sent to another name").into());
                }
                let limit = settings::load(&self.env)?.route_limit;
                self.change(|r| r.put(def, limit)).await
            }
            (Method::Delete, Some(name)) => self.change(|r| r.delete(name)).await,
            _ => Err(ApiError::not_found(&path).into()),
        }
    }

    /// Reads the registry from storage on first use (none stored: the default route alone).
    async fn load(&self) -> Result<()> {
        if self.registry.borrow().is_some() {
            return Ok(());
        }
        let stored: Option<String> = self.state.storage().get(STORED_KEY).await?;
        let registry = match stored {
            None => Registry::default(),
            Some(text) => Registry::parse(&text).map_err(Error::Runtime)?,
        };
        *self.registry.borrow_mut() = Some(registry);
        Ok(())
    }

    fn current(&self) -> Registry {
        self.registry.borrow().clone().unwrap_or_default()
    }

    /// Applies `change` to the registry, stores it, then writes it to KV; answers the new
    /// registry, or the core's refusal.
    async fn change(
        &self,
        change: impl FnOnce(&mut Registry) -> std::result::Result<(), RegistryError>,
    ) -> Result<Response> {
        let mut next = self.current();
        change(&mut next).map_err(|e| match e {
            RegistryError::Full(limit) => ApiError::conflict(format!(
                "The deployment has {limit} routes, as many as ROUTE_LIMIT allows: delete one, \
                 or raise ROUTE_LIMIT (at most 500; each route costs the cron one subrequest)."
            )),
            RegistryError::Unknown => ApiError::conflict("No such route in the registry.".into()),
        })?;
        let text = serde_json::to_string(&next)
            .map_err(|e| Error::runtime("serializing the registry", e))?;
        self.state.storage().put(STORED_KEY, text).await?;
        *self.registry.borrow_mut() = Some(next);
        self.sync().await;
        self.answer()
    }

    /// Writes the registry to KV unless the version there is the newest; a failure is logged
    /// and retried on the next change or read.
    async fn sync(&self) {
        let version = self.current().version;
        if self.kv_version.get() == Some(version) {
            return;
        }
        let newest = || {
            let registry = self.current();
            (registry.version, registry)
        };
        let written = |v: u64| {
            self.kv_version.set(Some(v));
            Ok(())
        };
        if let Err(e) = self
            .writer
            .write(&self.env, REGISTRY_KEY, newest, written)
            .await
        {
            worker::console_error!("writing the route registry to KV failed: {e}");
        }
    }

    fn answer(&self) -> Result<Response> {
        Ok(http::json(200, &self.current())?)
    }
}
