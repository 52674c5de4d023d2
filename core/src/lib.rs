//! The decision core of bluegreen-router.
//!
//! Everything here is pure: no I/O, no clock, no randomness, and nothing from `worker`,
//! `js-sys` or `wasm-bindgen`. The wasm shell (the crate at the repository root) reads the
//! request, the clock, KV and the network, hands plain values to these functions, and performs
//! what they decide. That keeps every routing decision testable natively with `cargo test`.

pub mod auth;
pub mod batch;
pub mod breaker;
pub mod config;
pub mod defects;
pub mod environment;
pub mod error;
pub mod fallback;
pub mod feedback;
pub mod fields;
pub mod headers;
pub mod health;
pub mod hist;
pub mod idle;
pub mod incident;
pub mod lifetime;
pub mod metrics;
pub mod model;
pub mod openai;
pub mod outbox;
pub mod outcome;
pub mod pass_through;
pub mod path;
pub mod rate;
pub mod request_id;
pub mod retry;
pub mod rollout;
pub mod routing;
pub mod routing_cache;
pub mod sequential;
pub mod shadow;
pub mod share_check;
pub mod split;
pub mod sse;
pub mod stats;
pub mod status;
pub mod time;
pub mod windows;

pub use environment::Environment;
