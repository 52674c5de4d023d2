//! The decision core of bluegreen-router.
//!
//! Everything here is pure: no I/O, no clock, no randomness, and nothing from `worker`,
//! `js-sys` or `wasm-bindgen`. The wasm shell (the crate at the repository root) reads the
//! request, the clock, KV and the network, hands plain values to these functions, and performs
//! what they decide. That keeps every routing decision testable natively with `cargo test`.
//!
//! The folders are the design, each depending only on those listed before it:
//!
//! - [`util`]: leaves with no domain of their own (JSON reading, token bucket, retry schedules,
//!   timestamps);
//! - [`environment`] and [`error`]: blue or green, and the refusals every route answers with;
//! - [`api`]: the shapes of the OpenAI APIs the router speaks (a chat request, a stream's
//!   events, what makes an answer unusable);
//! - [`request`]: the request path: which environment serves, fallback, the green breaker,
//!   auth and headers, the routing document, request ids and the outcome record;
//! - [`route`]: the names clients send as `model`, each with its own rollout, and the
//!   registry that says which route a request goes to;
//! - [`stats`]: what is counted of requests, shared by isolates and the controller;
//! - [`verdict`]: the statistics that judge green (health policy, sequential test, incidents,
//!   the split check);
//! - [`shadow`]: the shadow step, from the copies an isolate sends to the pairs a tick judges;
//! - [`isolate`]: what an isolate gathers and sends to the controller (stats batches, feedback);
//! - [`controller`]: the rollout controller's state machine and bookkeeping (windows, lifetime
//!   counters, the status and metrics it shows);
//! - [`config`]: the settings, read once per isolate.

pub mod api;
pub mod config;
pub mod controller;
pub mod environment;
pub mod error;
pub mod isolate;
pub mod judge;
pub mod request;
pub mod route;
pub mod shadow;
pub mod stats;
pub mod util;
pub mod verdict;

pub use environment::Environment;
