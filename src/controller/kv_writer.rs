//! The single writer of the routing document: the controller is the only one that writes the
//! split to KV, and it writes one document at a time. A change made while a write is in flight
//! makes that writer write again, so KV always ends on the newest split and an older write
//! never lands after a newer one.

use std::cell::Cell;

use bluegreen_core::routing::{RoutingDoc, ROUTING_KEY};
use worker::Env;

use crate::error::{Error, Result};
use crate::kv;

/// Whether a write is in flight, and whether the state changed while it was.
#[derive(Default)]
pub struct KvWriter {
    busy: Cell<bool>,
    again: Cell<bool>,
}

impl KvWriter {
    /// Writes `newest()` to KV, and again while it changed during the write; after each write,
    /// `written(version)` records the version that landed. Returns at once when another call
    /// is already writing (that call will write the newest document).
    pub async fn write(
        &self,
        env: &Env,
        newest: impl Fn() -> RoutingDoc,
        written: impl Fn(u64) -> Result<()>,
    ) -> Result<()> {
        if self.busy.replace(true) {
            self.again.set(true);
            return Ok(());
        }
        let result = self.write_until_settled(env, newest, written).await;
        self.busy.set(false);
        result
    }

    async fn write_until_settled(
        &self,
        env: &Env,
        newest: impl Fn() -> RoutingDoc,
        written: impl Fn(u64) -> Result<()>,
    ) -> Result<()> {
        let store = kv::store(env)?;
        loop {
            self.again.set(false);
            let doc = newest();
            let json = serde_json::to_string(&doc)
                .map_err(|e| Error::runtime("serializing the routing document", e))?;
            store.put(ROUTING_KEY, json)?.execute().await?;
            written(doc.version)?;
            if !self.again.get() {
                return Ok(());
            }
        }
    }
}
