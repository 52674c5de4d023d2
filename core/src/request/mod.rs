//! The request path's decisions: who may call ([`auth`]), which path and headers cross
//! ([`path`], [`headers`], [`pass_through`]), the routing document and its cache ([`routing`],
//! [`routing_cache`], [`model`]), which environment serves ([`split`]), when green is given up
//! for blue ([`fallback`], [`breaker`], [`idle`]), the request id that says who answered
//! ([`request_id`]) and the outcome record every request leaves ([`outcome`]).

pub mod auth;
pub mod breaker;
pub mod fallback;
pub mod headers;
pub mod idle;
pub mod judging;
pub mod model;
pub mod outcome;
pub mod pass_through;
pub mod path;
pub mod request_id;
pub mod routing;
pub mod routing_cache;
pub mod split;
