//! The one retry loop: runs a core [`Schedule`] (waits, attempts, per-attempt time limit)
//! around an attempt, and returns the last failure when every attempt failed. The schedule is
//! data decided in the core; this only waits and races ([`within`], also for a single call
//! with a time limit).

use std::future::Future;
use std::time::Duration;

use bluegreen_core::util::retry::Schedule;
use futures_util::future::{select, Either};
use worker::Delay;

use crate::error::{Error, Result};

/// Runs `attempt` on `schedule` until one succeeds, with its value; `failed(n, why)` hears of
/// each failed attempt (1-based), and `Err` describes the last one.
pub async fn run<T, F, Fut>(
    schedule: &Schedule,
    mut attempt: F,
    mut failed: impl FnMut(usize, &str),
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut last = String::from("no attempt made");
    for (n, wait_ms) in schedule.waits_ms.iter().enumerate() {
        if *wait_ms > 0 {
            Delay::from(Duration::from_millis(*wait_ms)).await;
        }
        let why = match within(schedule.attempt_timeout_ms, attempt()).await {
            Ok(value) => return Ok(value),
            Err(e) => e.to_string(),
        };
        failed(n + 1, &why);
        last = format!("attempt {}: {why}", n + 1);
    }
    Err(Error::Runtime(last))
}

/// `call`'s result, or an `Err` saying it gave no answer within `limit_ms` (the call is
/// dropped: what it started in JavaScript runs on, unheard).
pub async fn within<T>(limit_ms: u64, call: impl Future<Output = Result<T>>) -> Result<T> {
    let limit = Delay::from(Duration::from_millis(limit_ms));
    match select(Box::pin(call), Box::pin(limit)).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(Error::Runtime(format!(
            "no answer in {} s",
            limit_ms as f64 / 1000.0
        ))),
    }
}
