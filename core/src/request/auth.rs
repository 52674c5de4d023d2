//! Who may use the router, and which credential goes upstream.
//!
//! With a HolySheep key configured the router spends it on the clients' behalf, so clients
//! must present one of the router's own keys; they are compared in constant time so the
//! response time says nothing about how much of a guess was right. Without one, the client's
//! own `Authorization` header travels upstream untouched and the upstream judges it.

use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// How requests are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// No HolySheep key: the client's `Authorization` is passed through.
    Passthrough,
    /// The router holds the upstream key and checks clients against its own keys.
    RouterKeys {
        /// Sent upstream as `Authorization: Bearer <upstream_key>`.
        upstream_key: String,
        /// Keys accepted from clients (`ROUTER_API_KEYS`).
        client_keys: Vec<String>,
    },
}

/// The token of a `Bearer` `Authorization` header (scheme case-insensitive, spaces trimmed).
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    let (scheme, rest) = authorization?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Where `presented` is among the `trusted` tokens, if it is one. Every token is compared, in
/// constant time, so the time does not reveal which one matched.
pub fn position_of<'a>(trusted: impl Iterator<Item = &'a str>, presented: &str) -> Option<usize> {
    let mut found = None;
    for (i, t) in trusted.enumerate() {
        if constant_time_eq(t.as_bytes(), presented.as_bytes()) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

impl AuthMode {
    /// Checks the client's `Authorization` header and returns the header value to send
    /// upstream (`None`: send none).
    pub fn authorize(&self, authorization: Option<&str>) -> Result<Option<String>, ApiError> {
        match self {
            AuthMode::Passthrough => Ok(authorization.map(String::from)),
            AuthMode::RouterKeys {
                upstream_key,
                client_keys,
            } => {
                let token = bearer(authorization).ok_or_else(ApiError::unauthorized)?;
                let matched = position_of(client_keys.iter().map(String::as_str), token).is_some();
                if matched {
                    Ok(Some(format!("Bearer {upstream_key}")))
                } else {
                    Err(ApiError::unauthorized())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> AuthMode {
        AuthMode::RouterKeys {
            upstream_key: "sk-holy".into(),
            client_keys: vec!["alpha".into(), "beta".into()],
        }
    }

    #[test]
    fn passthrough_forwards_whatever_the_client_sent() {
        let m = AuthMode::Passthrough;
        assert_eq!(
            m.authorize(Some("Bearer x")).unwrap().as_deref(),
            Some("Bearer x")
        );
        assert_eq!(m.authorize(None).unwrap(), None);
    }

    #[test]
    fn router_keys_accept_any_listed_key_and_send_the_upstream_key() {
        for h in ["Bearer alpha", "bearer beta", "  Bearer   beta "] {
            assert_eq!(
                keys().authorize(Some(h)).unwrap().as_deref(),
                Some("Bearer sk-holy"),
                "{h}"
            );
        }
    }

    #[test]
    fn router_keys_refuse_everything_else() {
        for h in [
            None,
            Some(""),
            Some("alpha"),
            Some("Basic alpha"),
            Some("Bearer alph"),
            Some("Bearer alphaa"),
            Some("Bearer sk-holy"),
            Some("Bearer "),
        ] {
            let e = keys().authorize(h).unwrap_err();
            assert_eq!(e.status, 401, "{h:?}");
        }
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
