//! The rollout controller's core: the rollout state machine ([`rollout`]), the stats windows
//! it judges ([`windows`]), the counters that only grow ([`lifetime`]), and what it shows: the
//! status ([`status`]) and the Prometheus exposition ([`metrics`]). The Durable Object in the
//! shell loads, calls these, stores and performs.

pub mod lifetime;
pub mod metrics;
pub mod rollout;
pub mod status;
pub mod windows;
