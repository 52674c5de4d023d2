//! The Worker's settings, parsed from its vars and secrets once per isolate.
//!
//! Vars and secrets only change with a new deployment, which starts new isolates, so the
//! parsed result (or the configuration error) is kept for the isolate's life.

use std::rc::Rc;

use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use worker::Env;

use crate::error::Result;

thread_local! {
    static CONFIG: std::cell::OnceCell<Result<Rc<Config>, ApiError>> = const { std::cell::OnceCell::new() };
}

/// The parsed settings, or the 500 that every request gets while they are wrong.
pub fn load(env: &Env) -> Result<Rc<Config>> {
    CONFIG.with(|cell| {
        cell.get_or_init(|| {
            Config::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()))
                .map(|cfg| {
                    // Once per isolate: the rest of the router works, feedback does not.
                    if let Some(problem) = cfg.feedback_problem {
                        worker::console_error!("configuration: {problem}");
                    }
                    for call in cfg.pass_through.routed_entries() {
                        worker::console_warn!(
                            "configuration: PASS_THROUGH lists {call}, which the router now \
                             answers itself; the entry is ignored"
                        );
                    }
                    Rc::new(cfg)
                })
                .map_err(|e| {
                    worker::console_error!("configuration error: {e}");
                    ApiError::configuration(&e.to_string())
                })
        })
        .clone()
        .map_err(Into::into)
    })
}
