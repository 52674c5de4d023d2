//! What a route's name may be, and where a route's parts live: its controller's Durable Object
//! instance, its routing document's KV key, and the admin paths that address it.
//!
//! A route's name is what clients send as `model`, so it follows the names real models have
//! (`gpt-4.1`, `openai/gpt-4.1-mini`, `ft:gpt-4o:org:x`, `@cf/meta/llama-3.1-8b-instruct`), but
//! in a narrower alphabet than a model name: it also appears in admin paths
//! (`/admin/routes/{name}/status`), in KV keys, in a Durable Object's name, in request ids and
//! as a Prometheus label value, where a space, `%`, `?`, `#` or quote would each need escaping.
//!
//! The default route keeps the places today's release used (instance `global`, KV key
//! `routing`), so that an upgraded deployment finds its rollout, stats and split where they were.

use std::borrow::Cow;
use std::fmt;

use crate::request::routing::ROUTING_KEY;

/// The route that serves a `model` no route is named after (while the deployment has it and
/// `UNKNOWN_MODELS` is `default`), and that today's admin paths act on.
pub const DEFAULT: &str = "default";

/// Longest route name: more than any model name real providers use in practice (the longest
/// seen, a Fireworks path, is 50), short enough that a request id naming it stays a short
/// header.
pub const MAX_NAME_LEN: usize = 128;

/// The default route's controller instance, as named by every release before routes.
pub const DEFAULT_INSTANCE: &str = "global";

/// The admin verbs that act on one route: `/admin/routes/{name}/<verb>`, as `/admin/<verb>`
/// does on the default route.
pub const VERBS: [&str; 10] = [
    "status", "rollouts", "promote", "rollback", "pause", "resume", "split", "events", "history",
    "recover",
];

/// Why a route name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// Longer than [`MAX_NAME_LEN`] (its length).
    TooLong(usize),
    /// A character outside the alphabet: which one, and its position (1-based).
    Character(char, usize),
    /// An empty, `.` or `..` segment between slashes, or a slash at either end.
    Segment,
    /// The last segment after a slash is an admin verb, so `/admin/routes/{name}` would read as
    /// a verb on another route.
    EndsInVerb(&'static str),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "must not be empty"),
            NameError::TooLong(n) => {
                write!(f, "must be at most {MAX_NAME_LEN} characters long, got {n}")
            }
            NameError::Character(c, at) => write!(
                f,
                "may hold only letters, digits and . _ - : @ + / (character {at} is {c:?})"
            ),
            NameError::Segment => write!(
                f,
                "must not start or end with a slash, nor hold an empty, `.` or `..` segment"
            ),
            NameError::EndsInVerb(verb) => write!(
                f,
                "must not end in `/{verb}`: /admin/routes/<name>/{verb} is a command"
            ),
        }
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '+' | '/')
}

/// Checks a route name where it enters: the admin API's `PUT /admin/routes/{name}`. A name
/// that passes is also a valid model name ([`crate::request::model::check_name`]).
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some((at, c)) = name.chars().enumerate().find(|(_, c)| !allowed(*c)) {
        return Err(NameError::Character(c, at + 1));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    let segments: Vec<&str> = name.split('/').collect();
    if segments.iter().any(|s| matches!(*s, "" | "." | "..")) {
        return Err(NameError::Segment);
    }
    if let [_, .., last] = segments.as_slice() {
        if let Some(verb) = VERBS.iter().find(|v| *v == last) {
            return Err(NameError::EndsInVerb(verb));
        }
    }
    Ok(())
}

/// The name of the Durable Object instance that judges `route`: `global` for the default
/// route (as before routes), `route:<name>` for the others (a name never holds a space, so no
/// other route's instance is named alike).
pub fn instance_name(route: &str) -> Cow<'static, str> {
    if route == DEFAULT {
        Cow::Borrowed(DEFAULT_INSTANCE)
    } else {
        Cow::Owned(format!("route:{route}"))
    }
}

/// The route whose controller instance is named `instance` (the inverse of
/// [`instance_name`]); `None` for an instance no route has.
pub fn route_of_instance(instance: &str) -> Option<&str> {
    match instance {
        DEFAULT_INSTANCE => Some(DEFAULT),
        _ => instance.strip_prefix("route:"),
    }
}

/// The KV key of `route`'s routing document: `routing` for the default route (as before
/// routes), `routing:<name>` for the others. One key a route: KV takes one write a second to
/// a key, and routes change their splits independently.
pub fn routing_key(route: &str) -> Cow<'static, str> {
    if route == DEFAULT {
        Cow::Borrowed(ROUTING_KEY)
    } else {
        Cow::Owned(format!("{ROUTING_KEY}:{route}"))
    }
}

/// What an `/admin/…` path addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminTarget<'a> {
    /// `/admin/routes`: the list of routes (GET).
    Routes,
    /// `/admin/routes/{name}`: one route's definition (PUT, GET, DELETE).
    Route(&'a str),
    /// `/admin/routes/{name}/<verb>` or `/admin/<verb>` (the default route): a rollout verb.
    Verb { route: &'a str, verb: &'a str },
}

/// Reads an admin path (the part after `/admin/`, without a trailing slash): `None` when it
/// names no verb and no route.
pub fn admin_target(rest: &str) -> Option<AdminTarget<'_>> {
    if rest == "routes" {
        return Some(AdminTarget::Routes);
    }
    if let Some(tail) = rest.strip_prefix("routes/") {
        return match tail.rsplit_once('/') {
            Some((route, verb)) if VERBS.contains(&verb) => Some(AdminTarget::Verb { route, verb }),
            _ => Some(AdminTarget::Route(tail)),
        };
    }
    VERBS.contains(&rest).then_some(AdminTarget::Verb {
        route: DEFAULT,
        verb: rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::model;

    #[test]
    fn names_real_apps_send_are_accepted_and_are_model_names() {
        let longest = "m".repeat(MAX_NAME_LEN);
        for name in [
            "default",
            "gpt-4.1",
            "gpt-4o-mini-2024-07-18",
            "openai/gpt-4.1-mini",
            "ft:gpt-4o-mini-2024-07-18:org:custom:9x8y7z",
            "@cf/meta/llama-3.1-8b-instruct",
            "accounts/fireworks/models/llama-v3p1-405b-instruct",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "text-embedding-3-small",
            "a+b",
            "status",
            "x/statuses",
            &longest,
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
            assert_eq!(model::check_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn names_that_would_need_escaping_somewhere_are_refused() {
        let too_long = "m".repeat(MAX_NAME_LEN + 1);
        let cases: [(&str, NameError); 14] = [
            ("", NameError::Empty),
            (&too_long, NameError::TooLong(129)),
            ("model name", NameError::Character(' ', 6)),
            ("a%2Fb", NameError::Character('%', 2)),
            ("a?b", NameError::Character('?', 2)),
            ("a#b", NameError::Character('#', 2)),
            ("a\"b", NameError::Character('"', 2)),
            ("modèle", NameError::Character('è', 4)),
            ("/gpt", NameError::Segment),
            ("gpt/", NameError::Segment),
            ("a//b", NameError::Segment),
            ("a/../b", NameError::Segment),
            ("./a", NameError::Segment),
            ("team/status", NameError::EndsInVerb("status")),
        ];
        for (name, want) in cases {
            assert_eq!(check_name(name), Err(want), "{name:?}");
        }
        assert!(NameError::EndsInVerb("rollback")
            .to_string()
            .contains("/admin/routes/<name>/rollback"));
    }

    #[test]
    fn a_request_id_carries_every_route_name_there_can_be() {
        use crate::request::request_id::{issue, verify, Issued, Keys};
        use crate::Environment;
        let keys = Keys::derive("a-secret-of-at-least-32-bytes-0123", "d");
        let longest = format!("{}/{}", "a".repeat(60), "b.c:d@e+f-".repeat(6) + "zzzzzzz");
        assert_eq!(longest.len(), MAX_NAME_LEN);
        for route in [longest.as_str(), "x", "default"] {
            assert_eq!(check_name(route), Ok(()));
            let issued = Issued {
                route: route.into(),
                environment: Environment::Green,
                version: u64::MAX,
                at_ms: 1_800_000_000_000,
                forced: true,
            };
            let id = issue(&keys, u64::MAX, &issued);
            assert!(id.len() <= 201, "{} bytes", id.len());
            assert_eq!(verify(&keys, &id, 1_800_000_000_000, 1000), Ok(issued));
        }
    }

    #[test]
    fn the_default_route_keeps_todays_instance_and_key() {
        assert_eq!(instance_name(DEFAULT), "global");
        assert_eq!(routing_key(DEFAULT), "routing");
        assert_eq!(instance_name("gpt-4.1"), "route:gpt-4.1");
        assert_eq!(routing_key("openai/gpt-4.1"), "routing:openai/gpt-4.1");
        // A route named `global` is not the default route's instance.
        assert_eq!(instance_name("global"), "route:global");
        for route in ["default", "global", "gpt-4.1", "a/b"] {
            assert_eq!(route_of_instance(&instance_name(route)), Some(route));
        }
        assert_eq!(route_of_instance("registry"), None);
    }

    #[test]
    fn admin_paths_name_their_route_and_verb() {
        let cases = [
            (
                "status",
                Some(AdminTarget::Verb {
                    route: DEFAULT,
                    verb: "status",
                }),
            ),
            (
                "rollouts",
                Some(AdminTarget::Verb {
                    route: DEFAULT,
                    verb: "rollouts",
                }),
            ),
            ("routes", Some(AdminTarget::Routes)),
            ("routes/chat", Some(AdminTarget::Route("chat"))),
            ("routes/status", Some(AdminTarget::Route("status"))),
            (
                "routes/openai/gpt-4.1",
                Some(AdminTarget::Route("openai/gpt-4.1")),
            ),
            (
                "routes/openai/gpt-4.1/rollback",
                Some(AdminTarget::Verb {
                    route: "openai/gpt-4.1",
                    verb: "rollback",
                }),
            ),
            (
                "routes/chat/split",
                Some(AdminTarget::Verb {
                    route: "chat",
                    verb: "split",
                }),
            ),
            ("nothing", None),
            ("routes-x", None),
        ];
        for (path, want) in cases {
            assert_eq!(admin_target(path), want, "{path}");
        }
    }
}
