//! The route registry: one Durable Object (class `RouteRegistry`, instance `registry`) that
//! keeps which routes the deployment has, and writes them to KV (key `routes`) for the request
//! path. Its only writer, so two operators adding routes at once never lose one; which changes
//! are allowed (the limit, deleting what exists) is the core's
//! ([`bluegreen_core::route::registry`]).
//!
//! It answers the Worker only (`crate::control`): `GET /internal/registry` (the document; it
//! also writes KV again when the last write failed, so the cron repairs it within a minute),
//! `PUT /internal/registry/<name>` (create or define a route) and `DELETE` on the same path.
//!
//! A route's creation and deletion change two objects, the route's controller and the
//! registry, and the registry makes both: it asks the controller first (which refuses while a
//! rollout runs), then changes its own list. One change at a time a name: a second PUT or
//! DELETE of a name whose change is under way gets a 409 at once, so that the two objects never
//! end up disagreeing. A DELETE whose controller is already gone still takes the name off the
//! list, so a DELETE interrupted half way can be made again.

use std::cell::{Cell, RefCell};

use bluegreen_core::error::ApiError;
use bluegreen_core::route::registry::{Registry, RegistryError, RouteDef, REGISTRY_KEY};
use bluegreen_core::util::json;
use worker::{durable_object, DurableObject, Env, Method, Request, Response};

use crate::control::{self, REGISTRY_PATH, ROUTE_PATH};
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
    /// The names whose creation or deletion is under way.
    changing: RefCell<Vec<String>>,
}

impl DurableObject for RouteRegistry {
    fn new(state: worker::State, env: Env) -> Self {
        Self {
            state,
            env,
            registry: RefCell::new(None),
            kv_version: Cell::new(None),
            writer: KvWriter::default(),
            changing: RefCell::new(Vec::new()),
        }
    }

    // Called by the Worker through a stub, never over a client's connection: a refusal need not
    // read the body first (see `http::drain`).
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
                let text = req.text().await?;
                let def: RouteDef =
                    json::parse(&text).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
                if def.name != name {
                    return Err(ApiError::internal("a definition sent to another name").into());
                }
                let _change = self.begin(name)?;
                self.define(def, &text).await
            }
            (Method::Delete, Some(name)) => {
                let _change = self.begin(name)?;
                self.delete(name).await
            }
            _ => Err(ApiError::not_found(&path).into()),
        }
    }

    /// Marks `name`'s change as under way until the guard drops; a 409 when one already is.
    fn begin(&self, name: &str) -> Result<Changing<'_>> {
        let mut changing = self.changing.borrow_mut();
        if changing.iter().any(|n| n == name) {
            return Err(ApiError::conflict(format!(
                "A change to the route `{name}` is under way: try again in a moment."
            ))
            .into());
        }
        changing.push(name.to_string());
        Ok(Changing {
            names: &self.changing,
            name: name.to_string(),
        })
    }

    /// Creates (201) or defines anew (200) the route `def` names: its controller first, then
    /// the list. A new route past `ROUTE_LIMIT` is refused before its controller is touched.
    async fn define(&self, def: RouteDef, json: &str) -> Result<Response> {
        let limit = settings::load(&self.env)?.route_limit;
        let mut check = self.current();
        check.put(def.clone(), limit).map_err(refusal)?;
        let mut defined =
            control::call(&self.env, &def.name, Method::Put, ROUTE_PATH, Some(json)).await?;
        let status = defined.status_code();
        let text = defined.text().await?;
        if (200..300).contains(&status) {
            self.change(|r| r.put(def, limit)).await?;
        }
        Ok(http::json_text(
            status,
            text,
            &[("cache-control", "no-store")],
        ))
    }

    /// Deletes the route `name`: its controller (refused while its rollout runs), then its place
    /// in the list, which goes even when the controller was gone already.
    async fn delete(&self, name: &str) -> Result<Response> {
        let mut deleted = control::call(&self.env, name, Method::Delete, ROUTE_PATH, None).await?;
        let status = deleted.status_code();
        let text = deleted.text().await?;
        if !matches!(status, 200 | 404) {
            return Ok(http::json_text(
                status,
                text,
                &[("cache-control", "no-store")],
            ));
        }
        let listed = self.current().delete(name).is_ok();
        if listed {
            self.change(|r| r.delete(name)).await?;
        }
        if status == 404 && !listed {
            return Err(ApiError::route_not_found(name).into());
        }
        Ok(http::json(200, &serde_json::json!({ "deleted": name }))?)
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

    /// Applies `change` to the registry in memory at once (no other request sees a state in
    /// between), stores it, then writes it to KV.
    async fn change(
        &self,
        change: impl FnOnce(&mut Registry) -> std::result::Result<(), RegistryError>,
    ) -> Result<()> {
        let text = {
            let mut slot = self.registry.borrow_mut();
            let registry = slot.get_or_insert_with(Registry::default);
            change(registry).map_err(refusal)?;
            serde_json::to_string(&*registry)
                .map_err(|e| Error::runtime("serializing the registry", e))?
        };
        self.state.storage().put(STORED_KEY, text).await?;
        self.sync().await;
        Ok(())
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

/// The core's refusal of a registry change, as the admin API answers it.
fn refusal(e: RegistryError) -> ApiError {
    match e {
        RegistryError::Full(limit) => ApiError::conflict(format!(
            "The deployment has {limit} routes, as many as ROUTE_LIMIT allows: delete one, or \
             raise ROUTE_LIMIT (at most 500; each route costs the cron one subrequest)."
        )),
        RegistryError::Unknown => ApiError::conflict("No such route in the registry.".into()),
    }
}

/// A name's change under way; dropping it (however the change ended) lets the next one begin.
struct Changing<'a> {
    names: &'a RefCell<Vec<String>>,
    name: String,
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.names.borrow_mut().retain(|n| *n != self.name);
    }
}
