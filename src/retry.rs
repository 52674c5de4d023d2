//! The one retry loop: runs a core [`Schedule`] (waits, attempts, per-attempt time limit)
//! around an attempt, and returns the last failure when every attempt failed. The schedule is
//! data decided in the core; this only waits and races.

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
        let limit = Delay::from(Duration::from_millis(schedule.attempt_timeout_ms));
        let why = match select(Box::pin(attempt()), Box::pin(limit)).await {
            Either::Left((Ok(value), _)) => return Ok(value),
            Either::Left((Err(e), _)) => e.to_string(),
            Either::Right(_) => format!(
                "no answer in {} s",
                schedule.attempt_timeout_ms as f64 / 1000.0
            ),
        };
        failed(n + 1, &why);
        last = format!("attempt {}: {why}", n + 1);
    }
    Err(Error::Runtime(last))
}
