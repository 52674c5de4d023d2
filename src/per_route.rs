//! Leaf: an isolate's values kept one per route (routing caches, stats outboxes, green
//! breakers). A route's value is made on its first use; the maps are bounded by the routes there
//! are (`ROUTE_LIMIT`).

use std::collections::HashMap;

/// `route`'s value in `map`, made by `make` on first use. The lookup allocates nothing when the
/// route has its value already (the request path's case).
pub fn slot<'a, V>(
    map: &'a mut HashMap<String, V>,
    route: &str,
    make: impl FnOnce() -> V,
) -> &'a mut V {
    if !map.contains_key(route) {
        map.insert(route.to_string(), make());
    }
    map.get_mut(route).expect("inserted above")
}
