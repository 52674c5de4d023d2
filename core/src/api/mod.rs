//! The shapes of the OpenAI APIs the router speaks: a chat completion request read and
//! rewritten ([`chat`]), a stream's events ([`sse`]) and what makes a successful answer one the
//! app cannot use ([`defects`]). Nothing here routes or counts.

pub mod chat;
pub mod defects;
pub mod sse;
