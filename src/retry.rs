//! The one retry loop: runs a core [`Schedule`] (waits, attempts, per-attempt time limit)
//! around an attempt, and returns the last failure when every attempt failed. The schedule is
//! data decided in the core; this only waits and races.

use std::future::Future;
use std::time::Duration;

use bluegreen_core::retry::Schedule;
use futures_util::future::{select, Either};
use worker::Delay;

use crate::error::{Error, Result};

/// Runs `attempt` on `schedule` until one succeeds; `Err` describes the last failure.
pub async fn run<F, Fut>(schedule: &Schedule, mut attempt: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut last = String::from("no attempt made");
    for (n, wait_ms) in schedule.waits_ms.iter().enumerate() {
        if *wait_ms > 0 {
            Delay::from(Duration::from_millis(*wait_ms)).await;
        }
        let limit = Delay::from(Duration::from_millis(schedule.attempt_timeout_ms));
        match select(Box::pin(attempt()), Box::pin(limit)).await {
            Either::Left((Ok(()), _)) => return Ok(()),
            Either::Left((Err(e), _)) => last = format!("attempt {}: {e}", n + 1),
            Either::Right(_) => {
                last = format!(
                    "attempt {}: no answer in {} ms",
                    n + 1,
                    schedule.attempt_timeout_ms
                )
            }
        }
    }
    Err(Error::Runtime(last))
}
