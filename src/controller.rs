//! The rollout controller's Durable Object class.
//!
//! `wrangler.toml` binds it as `ROLLOUT` (SQLite storage, one instance named `global`) so the
//! binding and its migration are in place before the controller's logic lands: stats
//! aggregation, the step schedule and automatic rollback arrive with the next milestone.
//! Until then nothing routes to it, and any request it receives is answered with a 404 in the
//! API's error shape.

use bluegreen_core::openai::ApiError;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

/// The rollout controller (reserved; see the module header).
#[durable_object]
pub struct RolloutController {
    _state: State,
    _env: Env,
}

impl DurableObject for RolloutController {
    fn new(state: State, env: Env) -> Self {
        Self {
            _state: state,
            _env: env,
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let err = ApiError::not_found(&format!("{} (rollout controller)", req.path()));
        Ok(crate::error::respond(&err, &crate::proxy::Tag::new().id))
    }
}
