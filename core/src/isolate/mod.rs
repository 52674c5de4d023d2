//! What an isolate gathers and sends to the rollout controller: its stats batch ([`batch`]),
//! the outbox that delivers it ([`outbox`]), the queue message it sends instead when a queue
//! is bound, and the consumer's merge of a delivery ([`queued`]), and the feedback scores it
//! verifies and bounds before handing them over ([`feedback`]).

pub mod batch;
pub mod feedback;
pub mod outbox;
pub mod queued;
