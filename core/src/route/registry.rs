//! The registry: which routes a deployment has, what each was created with, and which route a
//! request's `model` goes to.
//!
//! The registry's Durable Object keeps it and writes it to KV under [`REGISTRY_KEY`], where
//! every isolate reads it (cached, like a routing document). A route's split, blue model after
//! promotions and rollout live with its own controller and routing document, not here: the
//! registry only names the routes, so that it changes when an operator adds or removes one and
//! never on the request path's account.
//!
//! A deployment upgraded from before routes has no registry: it then has the default route
//! alone, made from the vars, as it had before.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::name::{check_name, DEFAULT};
use crate::error::fields::{FieldError, Obj};
use crate::request::model;
use crate::request::routing::RoutingDoc;
use crate::util::json;

/// The KV key of the registry document.
pub const REGISTRY_KEY: &str = "routes";

/// Most routes any deployment may have (`ROUTE_LIMIT` at its highest). Each route costs the
/// cron, a scrape of `/metrics` and `GET /admin/routes` one subrequest (its controller), and
/// every isolate parses the registry once per cache period: 500 routes keep the fan-out far
/// below the Paid plan's subrequests per invocation, and the registry under 400 KB even with
/// every name and model at its longest (about 50 KB with names of real models).
pub const MAX_ROUTES: usize = 500;

/// Default `ROUTE_LIMIT`: the cron's fan-out (the registry, then one call per route) fits the
/// Free plan's 50 subrequests per invocation with one to spare.
pub const DEFAULT_ROUTE_LIMIT: usize = 48;

/// What a route serves, and so how it may be rolled out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// Chat completions and the Responses API: split per request, live steps.
    #[default]
    Chat,
    /// Embeddings: blue serves every user. Vectors of two models do not compare, even at
    /// equal lengths, so an index that mixed them would return wrong neighbours: green gets
    /// shadow copies only, serves a client that forces it (the re-index job), and becomes blue
    /// on the operator's promote, once the new index is built.
    Embeddings,
}

impl RouteKind {
    /// The name used in the admin API.
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Chat => "chat",
            RouteKind::Embeddings => "embeddings",
        }
    }
}

/// What a route was created with (`PUT /admin/routes/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteDef {
    /// The route's name: what clients send as `model`.
    pub name: String,
    /// The model that serves the route before any rollout.
    pub blue_model: String,
    /// The model a client forcing green gets before any rollout; blue's when not given.
    pub green_model: String,
    /// Whether a sticky key pins a user to one environment.
    #[serde(default = "yes")]
    pub sticky: bool,
    /// When the route was created, Unix seconds (`created` in `GET /v1/models`).
    #[serde(default)]
    pub created: u64,
    /// What it serves; routes stored before embeddings routes are chat routes.
    #[serde(default, skip_serializing_if = "is_chat")]
    pub kind: RouteKind,
}

fn is_chat(kind: &RouteKind) -> bool {
    *kind == RouteKind::Chat
}

fn yes() -> bool {
    true
}

impl RouteDef {
    /// The split a route serves while KV holds no routing document for it: blue alone.
    pub fn defaults(&self) -> RoutingDoc {
        RoutingDoc {
            blue_model: self.blue_model.clone(),
            green_model: self.green_model.clone(),
            green_percent: 0.0,
            shadow_percent: 0.0,
            sticky: self.sticky,
            version: 0,
            updated_at: None,
            judge: None,
        }
    }

    /// The default route as the vars define it (`BLUE_MODEL`, `GREEN_MODEL`; `GREEN_PERCENT`
    /// stays the vars' own business, in [`crate::config::Config::defaults`]).
    pub fn from_vars(vars: &RoutingDoc) -> RouteDef {
        RouteDef {
            name: DEFAULT.into(),
            blue_model: vars.blue_model.clone(),
            green_model: vars.green_model.clone(),
            sticky: vars.sticky,
            created: 0,
            kind: RouteKind::Chat,
        }
    }

    /// Reads `PUT /admin/routes/{name}`'s body: `blue_model` (required), `green_model`,
    /// `sticky` and `kind` (`chat` or `embeddings`; optional). Unknown fields are refused. The
    /// default route serves chat: an app's unknown models go there.
    pub fn from_json(
        name: &str,
        body: &serde_json::Value,
        now_s: u64,
    ) -> Result<RouteDef, FieldError> {
        check_name(name).map_err(|e| FieldError::new("name", format!("route name {e}")))?;
        let o = Obj::new(body, "")?;
        o.only(&["blue_model", "green_model", "sticky", "kind"])?;
        let kind = match o.string("kind", 16)?.as_deref() {
            None | Some("chat") => RouteKind::Chat,
            Some("embeddings") if name == DEFAULT => {
                return Err(FieldError::new(
                    "kind",
                    "must be chat for the default route: unknown models go there",
                ))
            }
            Some("embeddings") => RouteKind::Embeddings,
            Some(_) => return Err(FieldError::new("kind", "must be chat or embeddings")),
        };
        let model_field = |field: &'static str| -> Result<Option<String>, FieldError> {
            let Some(v) = o.string(field, model::MAX_NAME_LEN + 1)? else {
                return Ok(None);
            };
            model::check_name(&v).map_err(|e| FieldError::new(field, e.to_string()))?;
            Ok(Some(v))
        };
        let blue_model = model_field("blue_model")?.ok_or_else(|| {
            FieldError::new(
                "blue_model",
                "is required (the model that serves the route)",
            )
        })?;
        let green_model = model_field("green_model")?.unwrap_or_else(|| blue_model.clone());
        Ok(RouteDef {
            name: name.into(),
            blue_model,
            green_model,
            sticky: o.boolean("sticky")?.unwrap_or(true),
            created: now_s,
            kind,
        })
    }
}

/// The registry document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// Bumped on every change.
    #[serde(default)]
    pub version: u64,
    /// The routes created through the admin API, by name. The default route is among them
    /// once an operator defined it; before that the vars define it.
    #[serde(default)]
    pub routes: Vec<RouteDef>,
    /// The default route was deleted: unknown models get a 404, and the vars define nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_deleted: bool,
}

/// Why a registry change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// Creating one more route would pass the limit (`ROUTE_LIMIT`).
    Full(usize),
    /// No route by that name.
    Unknown,
}

impl Registry {
    /// Parses a stored or KV registry document. Nothing is checked beyond its shape: the names
    /// were checked when they entered.
    pub fn parse(text: &str) -> Result<Registry, String> {
        json::parse(text).map_err(|e| format!("not a valid route registry: {e}"))
    }

    /// Whether the default route exists.
    pub fn has_default(&self) -> bool {
        !self.default_deleted
    }

    /// Every route's definition, the default's from `vars` unless an operator defined it; in
    /// name order.
    pub fn definitions(&self, vars: &RoutingDoc) -> Vec<RouteDef> {
        let mut all = self.routes.clone();
        if self.has_default() && !all.iter().any(|r| r.name == DEFAULT) {
            insert_sorted(&mut all, RouteDef::from_vars(vars));
        }
        all
    }

    /// Adds or replaces `def`; a new route past `limit` routes (the default route counts when
    /// it exists) is refused.
    pub fn put(&mut self, def: RouteDef, limit: usize) -> Result<(), RegistryError> {
        if def.name == DEFAULT {
            self.default_deleted = false;
        }
        match self.routes.iter_mut().find(|r| r.name == def.name) {
            Some(existing) => {
                let created = existing.created;
                *existing = RouteDef { created, ..def };
            }
            None => {
                let implicit_default = usize::from(
                    self.has_default()
                        && def.name != DEFAULT
                        && !self.routes.iter().any(|r| r.name == DEFAULT),
                );
                if self.routes.len() + implicit_default >= limit {
                    return Err(RegistryError::Full(limit));
                }
                insert_sorted(&mut self.routes, def);
            }
        }
        self.version += 1;
        Ok(())
    }

    /// Removes the route named `name`.
    pub fn delete(&mut self, name: &str) -> Result<(), RegistryError> {
        let before = self.routes.len();
        self.routes.retain(|r| r.name != name);
        if name == DEFAULT {
            if self.default_deleted {
                return Err(RegistryError::Unknown);
            }
            self.default_deleted = true;
        } else if self.routes.len() == before {
            return Err(RegistryError::Unknown);
        }
        self.version += 1;
        Ok(())
    }
}

/// Inserts `def` where name order puts it (the routes are kept in that order, so nothing is
/// ever sorted: the standard sorts would add kilobytes of wasm for one ordering).
fn insert_sorted(routes: &mut Vec<RouteDef>, def: RouteDef) {
    let at = routes.partition_point(|r| r.name < def.name);
    routes.insert(at, def);
}

/// What to do with a `model` no route is named after (`UNKNOWN_MODELS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownModels {
    /// The default route serves it (when the deployment has one), as before routes.
    #[default]
    Default,
    /// OpenAI's `404 model_not_found`.
    Reject,
}

/// A route as the request path uses it: its definition, and the split it serves while KV holds
/// no routing document for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// What it was created with.
    pub def: RouteDef,
    /// Its split without a routing document: the definition's blue alone, or for a default
    /// route no operator defined, the vars' split (`GREEN_PERCENT` included), as before routes.
    pub defaults: RoutingDoc,
}

/// The registry as the request path uses it: each route by name, found in one hash lookup.
/// Made once per registry read, never per request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteTable {
    /// In name order.
    routes: Vec<Route>,
    /// Each route's place in `routes`, by name.
    index: HashMap<String, usize>,
    has_default: bool,
    /// Some route serves embeddings.
    has_embeddings: bool,
    version: u64,
}

impl RouteTable {
    /// The table of `registry`, with the default route's definition from `vars` unless an
    /// operator defined it.
    pub fn new(registry: &Registry, vars: &RoutingDoc) -> RouteTable {
        let routes: Vec<Route> = registry
            .definitions(vars)
            .into_iter()
            .map(|def| {
                let from_vars =
                    def.name == DEFAULT && !registry.routes.iter().any(|r| r.name == DEFAULT);
                let defaults = if from_vars {
                    vars.clone()
                } else {
                    def.defaults()
                };
                Route { def, defaults }
            })
            .collect();
        let index = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.def.name.clone(), i))
            .collect();
        RouteTable {
            has_embeddings: routes.iter().any(|r| r.def.kind == RouteKind::Embeddings),
            routes,
            index,
            has_default: registry.has_default(),
            version: registry.version,
        }
    }

    /// The route that serves a request for `model`: the route named so, else the default
    /// route when there is one and `unknown` lets it; `None` for OpenAI's 404.
    pub fn resolve(&self, model: Option<&str>, unknown: UnknownModels) -> Option<&Route> {
        if let Some(route) = model.and_then(|m| self.get(m)) {
            return Some(route);
        }
        match unknown {
            UnknownModels::Default if self.has_default => self.get(DEFAULT),
            _ => None,
        }
    }

    /// The embeddings route an embeddings call for `model` goes to: the route named so, when
    /// it serves embeddings. Any other embeddings call goes as the pass-through, unjudged, as
    /// before embeddings routes existed; it never falls to the default route.
    pub fn embeddings_route(&self, model: Option<&str>) -> Option<&Route> {
        model
            .and_then(|m| self.get(m))
            .filter(|r| r.def.kind == RouteKind::Embeddings)
    }

    /// Whether any route serves embeddings (else an embeddings call is not even read).
    pub fn has_embeddings(&self) -> bool {
        self.has_embeddings
    }

    /// The route named `name`.
    pub fn get(&self, name: &str) -> Option<&Route> {
        self.index.get(name).map(|&i| &self.routes[i])
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// No routes at all (a deployment whose default route was deleted and nothing created).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The registry version the table was made from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every route, in name order.
    pub fn sorted(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> RoutingDoc {
        RoutingDoc {
            blue_model: "deepseek-v3".into(),
            green_model: "gemini-2.5-flash".into(),
            green_percent: 5.0,
            shadow_percent: 0.0,
            sticky: true,
            version: 0,
            updated_at: None,
            judge: None,
        }
    }

    fn def(name: &str, blue: &str) -> RouteDef {
        RouteDef::from_json(name, &json!({ "blue_model": blue }), 1_765_000_000).unwrap()
    }

    #[test]
    fn a_deployment_without_a_registry_has_the_default_route_from_its_vars() {
        let table = RouteTable::new(&Registry::default(), &vars());
        assert_eq!(table.len(), 1);
        let served = table
            .resolve(Some("gpt-4.1"), UnknownModels::Default)
            .unwrap();
        assert_eq!(served.def.name, "default");
        // The vars' whole split, GREEN_PERCENT included, as before routes.
        assert_eq!(served.defaults, vars());
        assert!(table
            .resolve(Some("gpt-4.1"), UnknownModels::Reject)
            .is_none());
        // Named explicitly, the default route serves whatever UNKNOWN_MODELS says.
        assert!(table
            .resolve(Some("default"), UnknownModels::Reject)
            .is_some());
        assert!(table.resolve(None, UnknownModels::Default).is_some());
    }

    #[test]
    fn a_model_named_after_a_route_goes_to_it_and_others_to_the_default() {
        let mut registry = Registry::default();
        registry.put(def("gpt-4.1", "deepseek-v3"), 48).unwrap();
        registry
            .put(def("embed", "text-embedding-3-small"), 48)
            .unwrap();
        assert_eq!(registry.version, 2);
        let table = RouteTable::new(&registry, &vars());
        assert_eq!(table.len(), 3);
        assert_eq!(
            table
                .resolve(Some("gpt-4.1"), UnknownModels::Reject)
                .unwrap()
                .def
                .name,
            "gpt-4.1"
        );
        assert_eq!(
            table
                .resolve(Some("gpt-4o"), UnknownModels::Default)
                .unwrap()
                .def
                .name,
            "default"
        );
        let names: Vec<&str> = table.sorted().iter().map(|r| r.def.name.as_str()).collect();
        assert_eq!(names, ["default", "embed", "gpt-4.1"]);
    }

    #[test]
    fn without_a_default_route_unknown_models_have_nowhere_to_go() {
        let mut registry = Registry::default();
        registry.put(def("chat", "a"), 48).unwrap();
        registry.delete("default").unwrap();
        assert_eq!(registry.delete("default"), Err(RegistryError::Unknown));
        let table = RouteTable::new(&registry, &vars());
        assert!(table
            .resolve(Some("gpt-4.1"), UnknownModels::Default)
            .is_none());
        assert!(table
            .resolve(Some("default"), UnknownModels::Default)
            .is_none());
        assert_eq!(
            table
                .resolve(Some("chat"), UnknownModels::Default)
                .unwrap()
                .defaults
                .blue_model,
            "a"
        );
        // Defining it again brings it back, with the operator's models rather than the vars'.
        registry.put(def("default", "b"), 48).unwrap();
        let table = RouteTable::new(&registry, &vars());
        assert_eq!(
            table
                .resolve(Some("x"), UnknownModels::Default)
                .unwrap()
                .defaults
                .blue_model,
            "b"
        );
    }

    #[test]
    fn a_route_serves_chat_unless_made_for_embeddings_and_the_default_always_serves_chat() {
        assert_eq!(def("a", "m").kind, RouteKind::Chat);
        let made = |name: &str, kind: &str| {
            RouteDef::from_json(name, &json!({"blue_model": "m", "kind": kind}), 0)
        };
        let e = made("vectors", "embeddings").unwrap();
        assert_eq!(e.kind, RouteKind::Embeddings);
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains(r#""kind":"embeddings""#), "{text}");
        assert_eq!(serde_json::from_str::<RouteDef>(&text).unwrap(), e);
        // A chat route is stored as before, without the field.
        assert!(!serde_json::to_string(&def("a", "m"))
            .unwrap()
            .contains("kind"));
        assert_eq!(made("default", "embeddings").unwrap_err().field, "kind");
        assert_eq!(made("a", "images").unwrap_err().field, "kind");
        assert_eq!(made("a", "chat").unwrap().kind, RouteKind::Chat);
    }

    #[test]
    fn an_embeddings_call_goes_to_an_embeddings_route_named_by_its_model_or_nowhere() {
        let mut registry = Registry::default();
        registry.put(def("chat", "m"), 48).unwrap();
        let table = RouteTable::new(&registry, &vars());
        assert!(!table.has_embeddings());
        let vectors = RouteDef::from_json(
            "text-embedding-3-small",
            &json!({"blue_model": "e1", "kind": "embeddings"}),
            0,
        )
        .unwrap();
        registry.put(vectors, 48).unwrap();
        let table = RouteTable::new(&registry, &vars());
        assert!(table.has_embeddings());
        let found = table
            .embeddings_route(Some("text-embedding-3-small"))
            .unwrap();
        assert_eq!(found.defaults.blue_model, "e1");
        assert!(
            table.embeddings_route(Some("chat")).is_none(),
            "a chat route"
        );
        assert!(
            table.embeddings_route(Some("nope")).is_none(),
            "not the default"
        );
        assert!(table.embeddings_route(None).is_none());
    }

    #[test]
    fn the_limit_counts_the_default_route_and_an_update_never_hits_it() {
        let mut registry = Registry::default();
        // Limit 3: the implicit default and two more.
        registry.put(def("a", "m"), 3).unwrap();
        registry.put(def("b", "m"), 3).unwrap();
        assert_eq!(registry.put(def("c", "m"), 3), Err(RegistryError::Full(3)));
        // Updating an existing route keeps its creation time.
        registry
            .put(
                RouteDef {
                    created: 9,
                    ..def("a", "n")
                },
                3,
            )
            .unwrap();
        let a = registry.routes.iter().find(|r| r.name == "a").unwrap();
        assert_eq!((a.blue_model.as_str(), a.created), ("n", 1_765_000_000));
        // Defining the default explicitly takes no extra place.
        registry.put(def("default", "m"), 3).unwrap();
        registry.delete("default").unwrap();
        registry.put(def("c", "m"), 3).unwrap();
        assert_eq!(registry.delete("zzz"), Err(RegistryError::Unknown));
    }

    #[test]
    fn a_route_is_defined_by_its_blue_model_and_nothing_unknown() {
        let d = RouteDef::from_json(
            "chat",
            &json!({"blue_model": "a", "green_model": "b", "sticky": false}),
            5,
        )
        .unwrap();
        assert_eq!(
            (
                d.blue_model.as_str(),
                d.green_model.as_str(),
                d.sticky,
                d.created
            ),
            ("a", "b", false, 5)
        );
        let doc = d.defaults();
        assert_eq!(
            (doc.green_percent, doc.version, doc.sticky),
            (0.0, 0, false)
        );
        let refused = [
            ("chat", json!({}), "blue_model"),
            ("chat", json!({"blue_model": ""}), "blue_model"),
            ("chat", json!({"blue_model": "a\u{7}"}), "blue_model"),
            (
                "chat",
                json!({"blue_model": "a", "green_percent": 5}),
                "green_percent",
            ),
            (
                "chat",
                json!({"blue_model": "a", "sticky": "yes"}),
                "sticky",
            ),
            ("a b", json!({"blue_model": "a"}), "name"),
            ("chat", json!([]), "body"),
        ];
        for (name, body, field) in refused {
            let err = RouteDef::from_json(name, &body, 0).unwrap_err();
            assert_eq!(err.field, field, "{body}: {err:?}");
        }
    }

    #[test]
    fn the_stored_shape_round_trips_and_reads_without_optional_fields() {
        let mut registry = Registry::default();
        registry.put(def("chat", "a"), 48).unwrap();
        let text = serde_json::to_string(&registry).unwrap();
        assert!(!text.contains("default_deleted"), "{text}");
        assert_eq!(Registry::parse(&text).unwrap(), registry);
        let old =
            Registry::parse(r#"{"routes":[{"name":"x","blue_model":"a","green_model":"a"}]}"#)
                .unwrap();
        assert!(old.routes[0].sticky && old.has_default());
        assert!(Registry::parse(r#"{"routes": 5}"#)
            .unwrap_err()
            .contains("not a valid route registry"));
    }
}
