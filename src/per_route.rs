//! Leaf: what an isolate keeps per route, in one map: the route's routing document cache, its
//! stats outbox, its green breaker, its shadow copies' rate and its grader's rate of pairs. A
//! route's entry is made on its first use, and a deleted route's leaves once the isolate has
//! delivered its stats, so the map is bounded by the routes there are (`ROUTE_LIMIT`). One map
//! rather than one per concern: the request path finds all of a route's state in one hash
//! lookup each time it needs it, and the wasm carries one map's code.

use std::cell::RefCell;
use std::collections::HashMap;

use bluegreen_core::isolate::outbox::Outbox;
use bluegreen_core::request::breaker::Breaker;
use bluegreen_core::request::routing_cache::RoutingCache;
use bluegreen_core::shadow::Rate;

/// One route's state in this isolate.
#[derive(Default)]
pub struct RouteState {
    /// Its routing document, as the core's cache holds it (`crate::kv`).
    pub cache: RoutingCache,
    /// Its stats not yet delivered to its controller (`crate::recorder`).
    pub outbox: Outbox,
    /// Its green breaker, once a green attempt asked it (`crate::breaker`).
    pub breaker: Option<Breaker>,
    /// Its shadow copies' rate (`SHADOW_MAX_PER_MINUTE`, `crate::proxy::shadow`).
    pub shadow_rate: Rate,
    /// Its rate of pairs sent to the grader (its judge's `max_per_minute`, `crate::proxy::judge`).
    pub judge_rate: Rate,
}

thread_local! {
    static ROUTES: RefCell<HashMap<String, RouteState>> = RefCell::new(HashMap::new());
}

/// Runs `f` on `route`'s state, made on first use. `f` must not call back into this module
/// (the map is borrowed while it runs); none of its callers do.
pub fn with<T>(route: &str, f: impl FnOnce(&mut RouteState) -> T) -> T {
    ROUTES.with(|cell| {
        let mut all = cell.borrow_mut();
        if !all.contains_key(route) {
            all.insert(route.to_string(), RouteState::default());
        }
        f(all.get_mut(route).expect("inserted above"))
    })
}

/// Requests this isolate counted, over every route, that its transport has not yet taken.
pub fn undelivered_requests() -> u64 {
    ROUTES.with(|cell| {
        cell.borrow()
            .values()
            .map(|s| s.outbox.undelivered_requests())
            .fold(0, u64::saturating_add)
    })
}

/// Drops the state of every route `keep` says no longer exists, unless it still holds stats
/// to deliver (they go with its next flush, or are dropped when its controller answers that
/// the route is gone).
pub fn retain(keep: impl Fn(&str) -> bool) {
    ROUTES.with(|cell| {
        cell.borrow_mut()
            .retain(|route, state| keep(route) || !state.outbox.is_empty())
    });
}
