//! The single writer of a KV document (a route's routing document, written by its controller;
//! the route registry, written by the registry): one Durable Object writes it, one document at
//! a time. A change made while a write is in flight
//! makes that writer write again, so KV always ends on the newest split and an older write
//! never lands after a newer one. Each write is retried on the core's KV schedule (KV takes one
//! write a second to a key), so a refused or failed write lands within seconds, not a tick later.

use std::cell::Cell;

use serde::Serialize;
use worker::Env;

use bluegreen_core::util::retry::Schedule;

use crate::error::{Error, Result};
use crate::{kv, retry};

/// What a call to [`KvWriter::write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The newest split is in KV.
    Now,
    /// Another write is in flight and will write the newest split.
    Queued,
}

/// Whether a write is in flight, and whether the state changed while it was.
#[derive(Default)]
pub struct KvWriter {
    busy: Cell<bool>,
    again: Cell<bool>,
}

impl KvWriter {
    /// Writes `newest()` (a document and its version) to KV under `key`, and again while it
    /// changed during the write; after each write, `written(version)` records the version that
    /// landed. When another call is already writing, returns [`Written::Queued`] at once: that
    /// call will write the newest document.
    pub async fn write<D: Serialize>(
        &self,
        env: &Env,
        key: &str,
        newest: impl Fn() -> (u64, D),
        written: impl Fn(u64) -> Result<()>,
    ) -> Result<Written> {
        if self.busy.replace(true) {
            self.again.set(true);
            return Ok(Written::Queued);
        }
        let result = self.write_until_settled(env, key, newest, written).await;
        self.busy.set(false);
        result.map(|()| Written::Now)
    }

    /// Whether a write is in flight.
    pub fn busy(&self) -> bool {
        self.busy.get()
    }

    async fn write_until_settled<D: Serialize>(
        &self,
        env: &Env,
        key: &str,
        newest: impl Fn() -> (u64, D),
        written: impl Fn(u64) -> Result<()>,
    ) -> Result<()> {
        let store = kv::store(env)?;
        loop {
            self.again.set(false);
            let (version, doc) = newest();
            let json = serde_json::to_string(&doc)
                .map_err(|e| Error::runtime("serializing a KV document", e))?;
            let put = || async { Ok(store.put(key, json.as_str())?.execute().await?) };
            let warn = |n: usize, why: &str| {
                worker::console_warn!("writing KV key {key}, attempt {n}: {why}");
            };
            retry::run(&Schedule::KV_WRITE, put, warn).await?;
            written(version)?;
            if !self.again.get() {
                return Ok(());
            }
        }
    }
}
