//! Routes: the names clients send as `model`. Each route has its own blue and green models,
//! split, rollout, controller (a Durable Object instance) and routing document (a KV key), so
//! that every model an app uses gets its own judged rollout in one deployment.
//!
//! - [`name`]: what a route may be called, and where its controller and document live;
//! - [`registry`]: which routes exist, and which one a request's `model` goes to;
//! - [`access`]: who may steer which routes (`ADMIN_TOKEN`, `ROUTE_ADMIN_TOKENS`).

pub mod access;
pub mod name;
pub mod registry;

pub use name::DEFAULT;
