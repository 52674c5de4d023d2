//! Who may steer which routes through the admin API: `ADMIN_TOKEN` acts on every route; the
//! optional secret `ROUTE_ADMIN_TOKENS`, a JSON object mapping a token to the route names it may
//! act on, lets the team that owns `summarise` roll back `summarise` but get a 403 on `chat`.
//! Every token is compared in constant time, all of them on every call, so the time says
//! neither whether nor which one matched.

use crate::error::ApiError;
use crate::request::auth::{bearer, position_of};
use crate::route::name::check_name;
use crate::route::registry::MAX_ROUTES;
use crate::util::json;

/// Fewest characters a route token may have: it is a password for part of the admin API.
pub const MIN_TOKEN_LEN: usize = 16;

/// Most tokens `ROUTE_ADMIN_TOKENS` may hold: a team a route at most.
pub const MAX_TOKENS: usize = MAX_ROUTES;

/// The route tokens: each token, and the routes it may act on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTokens {
    entries: Vec<(String, Vec<String>)>,
}

impl RouteTokens {
    /// Parses `ROUTE_ADMIN_TOKENS`. The reason never quotes a token (it is a secret): entries
    /// are named by their position.
    pub fn parse(json: &str) -> Result<RouteTokens, String> {
        let value: serde_json::Value = json::parse(json).map_err(|_| {
            "must be a JSON object mapping a token to a list of route names".to_string()
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err("must be a JSON object mapping a token to a list of route names".into());
        };
        if map.len() > MAX_TOKENS {
            return Err(format!("may hold at most {MAX_TOKENS} tokens"));
        }
        let mut entries = Vec::with_capacity(map.len());
        for (i, (token, routes)) in map.into_iter().enumerate() {
            let at = i + 1;
            if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "token {at} must be at least {MIN_TOKEN_LEN} visible ASCII characters, without spaces"
                ));
            }
            let serde_json::Value::Array(list) = routes else {
                return Err(format!("token {at}'s routes must be a list of route names"));
            };
            let mut names = Vec::with_capacity(list.len());
            for route in list {
                match route {
                    serde_json::Value::String(name) if check_name(&name).is_ok() => {
                        names.push(name)
                    }
                    _ => return Err(format!("token {at}'s routes must be valid route names")),
                }
            }
            if names.is_empty() || names.len() > MAX_ROUTES {
                return Err(format!("token {at} must name 1 to {MAX_ROUTES} routes"));
            }
            entries.push((token, names));
        }
        Ok(RouteTokens { entries })
    }

    /// No token is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What an admin credential may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// `ADMIN_TOKEN`: every route, and the routes' list whole.
    All,
    /// A route token: these routes only.
    Routes(&'a [String]),
}

impl Access<'_> {
    /// Whether the credential may act on `route`.
    pub fn allows(&self, route: &str) -> bool {
        match self {
            Access::All => true,
            Access::Routes(routes) => routes.iter().any(|r| r == route),
        }
    }
}

/// Who the `Authorization` header's bearer token is: 503 while no admin credential is
/// configured at all, 401 when it is none of them. Every configured token is compared.
pub fn admin_access<'a>(
    admin_token: Option<&'a str>,
    tokens: &'a RouteTokens,
    authorization: Option<&str>,
) -> Result<Access<'a>, ApiError> {
    if admin_token.is_none() && tokens.is_empty() {
        return Err(ApiError::admin_disabled());
    }
    let presented = bearer(authorization).unwrap_or("");
    // The admin token first; an unset one stands as a token nothing matches (never empty:
    // an empty presented token must not match it).
    let trusted = std::iter::once(admin_token.unwrap_or("\0unset"))
        .chain(tokens.entries.iter().map(|(t, _)| t.as_str()));
    match position_of(trusted, presented) {
        Some(0) if admin_token.is_some() => Ok(Access::All),
        Some(i) if i > 0 => Ok(Access::Routes(&tokens.entries[i - 1].1)),
        _ => Err(ApiError::admin_unauthorized()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARISE: &str = "team-summarise-0123456789";
    const CHAT: &str = "team-chat-0123456789abcd";

    fn tokens() -> RouteTokens {
        RouteTokens::parse(&format!(
            r#"{{"{SUMMARISE}": ["summarise"], "{CHAT}": ["chat", "openai/gpt-4.1"]}}"#
        ))
        .unwrap()
    }

    fn bearer_of(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn a_team_steers_only_its_own_routes_and_the_admin_token_every_route() {
        let t = tokens();
        let admin = admin_access(Some("admin-token"), &t, Some(&bearer_of("admin-token"))).unwrap();
        assert_eq!(admin, Access::All);
        assert!(admin.allows("chat") && admin.allows("default"));
        let team = admin_access(Some("admin-token"), &t, Some(&bearer_of(SUMMARISE))).unwrap();
        assert!(team.allows("summarise"));
        assert!(!team.allows("chat") && !team.allows("default"));
        let other = admin_access(None, &t, Some(&bearer_of(CHAT))).unwrap();
        assert!(other.allows("openai/gpt-4.1") && !other.allows("summarise"));
    }

    #[test]
    fn anything_else_is_a_401_and_no_credential_at_all_a_503() {
        let t = tokens();
        for presented in [
            None,
            Some("Bearer "),
            Some("Bearer nope"),
            Some("Bearer \0unset"),
            Some(SUMMARISE),
        ] {
            let err = admin_access(Some("admin-token"), &t, presented).unwrap_err();
            assert_eq!(err.status, 401, "{presented:?}");
        }
        // Without ADMIN_TOKEN, nothing stands in for it.
        let err = admin_access(None, &t, Some("Bearer \0unset")).unwrap_err();
        assert_eq!(err.status, 401);
        let err = admin_access(None, &RouteTokens::default(), Some("Bearer x")).unwrap_err();
        assert_eq!(err.status, 503);
    }

    #[test]
    fn bad_settings_are_refused_without_quoting_a_token() {
        let secret = "a-secret-token-never-shown";
        for (json, rule) in [
            ("[]", "JSON object"),
            ("not json", "JSON object"),
            (r#"{"short": ["chat"]}"#, "token 1 must be at least 16"),
            (
                &format!(r#"{{"{secret}": "chat"}}"#),
                "token 1's routes must be a list",
            ),
            (
                &format!(r#"{{"{secret}": []}}"#),
                "token 1 must name 1 to 500 routes",
            ),
            (
                &format!(r#"{{"{secret}": ["a b"]}}"#),
                "token 1's routes must be valid",
            ),
            (
                &format!(r#"{{"{secret}": [5]}}"#),
                "token 1's routes must be valid",
            ),
        ] {
            let err = RouteTokens::parse(json).unwrap_err();
            assert!(err.contains(rule), "{json}: {err}");
            assert!(!err.contains(secret) && !err.contains("short"), "{err}");
        }
    }
}
