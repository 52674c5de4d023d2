//! Request ids that say who answered: the `x-bluegreen-request-id` of a chat completion carries
//! the environment that produced the answer, the routing version it was routed under and when
//! it arrived, sealed with a keyed MAC. Feedback that quotes an id is attributed from the id
//! alone: nothing is written per request on the request path, and a client can neither forge
//! an id nor change which environment it names.
//!
//! Format (header-safe ASCII): on the default route `bg2.<b|g|B|G><version hex>.<unix seconds
//! hex>.<nonce 16 hex>.<mac 16 hex>` (upper case: a client forced the environment), e.g.
//! `bg2.g1a.674d2f00.9f86d081884c7d65.5a1e2c3b4d5e6f70`, at most 68 bytes, as before routes;
//! on another route `bg3.<same>.<nonce>.<route>.<mac>`, at most 201 bytes, whose route name
//! (which may hold dots) the MAC covers too, so that feedback for one route never counts in
//! another.
//! The MAC is SipHash-2-4 (a PRF designed for short inputs) under a 128-bit key; forging one
//! takes on the order of 2⁶³ online guesses.
//!
//! Keys ([`Keys`]): the secret (`FEEDBACK_SECRET`, at least [`MIN_SECRET_BYTES`]) is first
//! condensed into a 128-bit key ([`Key::derive`], the only key of `bg1` ids), from which the key
//! of `bg2` ids is expanded with the deployment's name (`DEPLOYMENT_NAME`), as HKDF expands a
//! pseudorandom key with its context: keyed SipHash is a PRF, so deployments that share a
//! secret get unrelated keys, and an id of one does not verify at another. `bg1` ids, issued
//! before deployments had names, still verify under the first key for their lifetime (at most
//! `FEEDBACK_MAX_AGE_SECONDS`), so that an upgrade loses no feedback; none are issued any more.

use siphasher::sip::SipHasher24;
use siphasher::sip128::{Hasher128, SipHasher24 as SipHasher128};
use std::hash::Hasher;

use crate::environment::Environment;

/// The prefix of the default route's ids, sealed under the deployment's key.
const PREFIX: &str = "bg2";
/// The prefix of the other routes' ids, which name their route.
const ROUTE_PREFIX: &str = "bg3";
/// The route whose ids name no route.
const DEFAULT_ROUTE: &str = "default";
/// Longest route name an id carries: every name a route may have (`route::name::MAX_NAME_LEN`,
/// which a test there holds to it).
const MAX_ROUTE_LEN: usize = 128;
/// The prefix of the ids of releases before deployment names, sealed under the secret's key.
const LEGACY_PREFIX: &str = "bg1";

/// Fewest bytes a `FEEDBACK_SECRET` may have: every client sees ids and their MACs, so a
/// shorter (guessable) secret could be searched for offline. 32 bytes of a random string are
/// far beyond any search.
pub const MIN_SECRET_BYTES: usize = 32;

/// A 128-bit MAC key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 16]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// The key for `secret` (any length; the same secret gives the same key in every isolate
    /// and every release).
    pub fn derive(secret: &str) -> Key {
        let mut h = SipHasher128::new_with_keys(0x6267_7265_7175_6573, 0x745f_6964_5f6b_6579);
        h.write(b"bluegreen request id key v1\0");
        h.write(secret.as_bytes());
        Key(h.finish128().as_bytes())
    }

    /// The key of one deployment's ids, expanded from this one with the deployment's `name`.
    fn expand(&self, name: &str) -> Key {
        let (k0, k1) = self.0.split_at(8);
        let k = |b: &[u8]| {
            let mut word = [0u8; 8];
            word.copy_from_slice(b);
            u64::from_le_bytes(word)
        };
        let mut h = SipHasher128::new_with_keys(k(k0), k(k1));
        h.write(b"bluegreen request id key v2\0");
        // Length first, so that no two names give the same input.
        h.write(&(name.len() as u64).to_le_bytes());
        h.write(name.as_bytes());
        Key(h.finish128().as_bytes())
    }

    fn mac(&self, body: &str) -> u64 {
        let (k0, k1) = self.0.split_at(8);
        let k = |b: &[u8]| {
            let mut word = [0u8; 8];
            word.copy_from_slice(b);
            u64::from_le_bytes(word)
        };
        let mut h = SipHasher24::new_with_keys(k(k0), k(k1));
        h.write(body.as_bytes());
        h.finish()
    }
}

/// The keys of one deployment: the one that seals new ids, and the one that verifies the ids
/// of releases before deployment names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    current: Key,
    legacy: Key,
}

impl Keys {
    /// The keys for `secret` at the deployment named `deployment` (the same in every isolate
    /// and every release).
    pub fn derive(secret: &str, deployment: &str) -> Keys {
        let legacy = Key::derive(secret);
        Keys {
            current: legacy.expand(deployment),
            legacy,
        }
    }
}

/// What an id says about its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The route that served it (`default` for ids that name none).
    pub route: String,
    /// The environment whose model produced the answer.
    pub environment: Environment,
    /// The routing version the request was routed under.
    pub version: u64,
    /// Unix milliseconds of its arrival, to the second.
    pub at_ms: u64,
    /// A client forced the environment (`x-bluegreen-environment`): its feedback is counted
    /// apart, like its request.
    pub forced: bool,
}

/// Why an id is not one this router issued, or no longer one it takes feedback for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    /// Not in the format (an id of an earlier release, a typo, another system's id).
    Malformed,
    /// The format, but not the MAC: altered, forged, or issued under another secret.
    Forged,
    /// Issued longer ago than the feedback window.
    TooOld,
    /// Dated after now by more than clock skew explains.
    FromTheFuture,
}

impl IdError {
    /// A sentence for the client.
    pub fn message(self) -> &'static str {
        match self {
            IdError::Malformed => "request_id is not an id this router issued (x-bluegreen-request-id of a chat completion)",
            IdError::Forged => "request_id was not issued by this router (altered, or issued under another secret)",
            IdError::TooOld => "request_id is older than the feedback window (FEEDBACK_MAX_AGE_SECONDS)",
            IdError::FromTheFuture => "request_id is dated in the future",
        }
    }
}

/// Clock skew between isolates that an id's date may show.
const SKEW_MS: u64 = 5 * 60 * 1000;

/// The id of a request described by `issued`, with `nonce` from the runtime's CSPRNG.
pub fn issue(keys: &Keys, nonce: u64, issued: &Issued) -> String {
    seal(&keys.current, nonce, issued)
}

fn seal(key: &Key, nonce: u64, issued: &Issued) -> String {
    let env = match (issued.environment, issued.forced) {
        (Environment::Blue, false) => 'b',
        (Environment::Green, false) => 'g',
        (Environment::Blue, true) => 'B',
        (Environment::Green, true) => 'G',
    };
    let route = issued.route.as_str();
    let (prefix, tail) = match route {
        DEFAULT_ROUTE => (PREFIX, ""),
        _ => (ROUTE_PREFIX, route),
    };
    let mut body = format!(
        "{prefix}.{env}{:x}.{:x}.{nonce:016x}",
        issued.version,
        issued.at_ms / 1000
    );
    if !tail.is_empty() {
        body.push('.');
        body.push_str(tail);
    }
    let mac = key.mac(&body);
    format!("{body}.{mac:016x}")
}

/// What `id` says, if this router issued it under `key` no more than `max_age_ms` before
/// `now_ms`.
pub fn verify(keys: &Keys, id: &str, now_ms: u64, max_age_ms: u64) -> Result<Issued, IdError> {
    let (body, mac) = id.rsplit_once('.').ok_or(IdError::Malformed)?;
    let mac = hex_u64(mac, 16).ok_or(IdError::Malformed)?;
    // The route, last, may hold dots: the fifth part is the rest.
    let mut parts = body.splitn(5, '.');
    let (Some(prefix), Some(routed), Some(at_s), Some(nonce), route) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(IdError::Malformed);
    };
    let (key, route) = match (prefix, route) {
        (PREFIX, None) => (&keys.current, DEFAULT_ROUTE),
        (LEGACY_PREFIX, None) => (&keys.legacy, DEFAULT_ROUTE),
        (ROUTE_PREFIX, Some(route)) if is_route(route) => (&keys.current, route),
        _ => return Err(IdError::Malformed),
    };
    hex_u64(nonce, 16).ok_or(IdError::Malformed)?;
    let (environment, forced) = match routed.as_bytes().first() {
        Some(b'b') => (Environment::Blue, false),
        Some(b'g') => (Environment::Green, false),
        Some(b'B') => (Environment::Blue, true),
        Some(b'G') => (Environment::Green, true),
        _ => return Err(IdError::Malformed),
    };
    let version = hex_u64(&routed[1..], 0).ok_or(IdError::Malformed)?;
    let at_s = hex_u64(at_s, 0).ok_or(IdError::Malformed)?;
    // Compared in constant time: the MAC is the secret part.
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        &key.mac(body).to_le_bytes()[..],
        &mac.to_le_bytes()[..],
    )) {
        return Err(IdError::Forged);
    }
    let at_ms = at_s.saturating_mul(1000);
    if at_ms > now_ms.saturating_add(SKEW_MS) {
        return Err(IdError::FromTheFuture);
    }
    if now_ms.saturating_sub(at_ms) > max_age_ms {
        return Err(IdError::TooOld);
    }
    Ok(Issued {
        route: route.to_string(),
        environment,
        version,
        at_ms,
        forced,
    })
}

/// A route name as `issue` writes it: not the default route's (its ids name none), at most
/// [`MAX_ROUTE_LEN`] visible ASCII characters.
fn is_route(route: &str) -> bool {
    route != DEFAULT_ROUTE
        && (1..=MAX_ROUTE_LEN).contains(&route.len())
        && route.bytes().all(|b| b.is_ascii_graphic())
}

/// Lower-case hex of at most 16 digits (exactly `len` when `len` > 0), canonical (no leading
/// zeros unless fixed-length), as `issue` writes it.
fn hex_u64(s: &str, len: usize) -> Option<u64> {
    let ok_len = if len > 0 {
        s.len() == len
    } else {
        (1..=16).contains(&s.len()) && (s == "0" || !s.starts_with('0'))
    };
    if !ok_len || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_201_600_123;
    const DAY: u64 = 86_400_000;

    const SECRET: &str = "a-secret-of-at-least-32-bytes-0123";

    fn keys(secret: &str) -> Keys {
        Keys::derive(secret, "production")
    }

    fn issued(env: Environment, version: u64) -> Issued {
        Issued {
            route: "default".into(),
            environment: env,
            version,
            at_ms: NOW,
            forced: false,
        }
    }

    #[test]
    fn an_id_round_trips_to_the_second() {
        let key = keys("s3cret");
        for (env, version) in [
            (Environment::Green, 26),
            (Environment::Blue, 0),
            (Environment::Green, u64::MAX),
        ] {
            let id = issue(&key, 0x9f86_d081_884c_7d65, &issued(env, version));
            assert!(id.starts_with("bg2."), "{id}");
            assert!(id.len() <= 68 && id.is_ascii(), "{id}");
            let got = verify(&key, &id, NOW + 1000, DAY).unwrap();
            assert_eq!(
                got,
                Issued {
                    route: "default".into(),
                    environment: env,
                    version,
                    at_ms: NOW / 1000 * 1000,
                    forced: false,
                }
            );
        }
        let id = issue(&key, 1, &issued(Environment::Green, 0x1a));
        assert!(id.starts_with("bg2.g1a."), "{id}");
        let forced = Issued {
            forced: true,
            ..issued(Environment::Blue, 2)
        };
        let id = issue(&key, 1, &forced);
        assert!(id.starts_with("bg2.B2."), "{id}");
        assert!(verify(&key, &id, NOW, DAY).unwrap().forced);
        // Dropping the mark does not turn a forced answer into a judged one.
        let unmarked = id.replacen("bg2.B", "bg2.b", 1);
        assert_eq!(verify(&key, &unmarked, NOW, DAY), Err(IdError::Forged));
    }

    #[test]
    fn altered_forged_or_foreign_ids_are_refused() {
        let key = keys("s3cret");
        let id = issue(&key, 7, &issued(Environment::Green, 5));
        // Another secret (a rotated one, another deployment) does not verify.
        assert_eq!(verify(&keys("other"), &id, NOW, DAY), Err(IdError::Forged));
        // Claiming the answer was blue's: the MAC no longer matches.
        let as_blue = id.replacen("bg2.g", "bg2.b", 1);
        assert_eq!(verify(&key, &as_blue, NOW, DAY), Err(IdError::Forged));
        // Any one character changed.
        for i in 0..id.len() {
            let mut bytes = id.clone().into_bytes();
            bytes[i] = if bytes[i] == b'1' { b'2' } else { b'1' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(verify(&key, &changed, NOW, DAY).is_err(), "{changed}");
        }
        for junk in [
            "",
            "0123456789abcdef0123456789abcdef",
            "bg1",
            "bg1.g1.2.3.4",
            "bg1.x1.674d2f00.9f86d081884c7d65.5a1e2c3b4d5e6f70",
            "bg1.g.674d2f00.9f86d081884c7d65.5a1e2c3b4d5e6f70",
            "bg1.g01.674d2f00.9f86d081884c7d65.5a1e2c3b4d5e6f70",
            "bg1.g1.674D2F00.9f86d081884c7d65.5a1e2c3b4d5e6f70",
            "bg1.g1.674d2f00.9f86d081884c7d6.5a1e2c3b4d5e6f70",
            "bg1.g1.674d2f00.9f86d081884c7d65.5a1e2c3b4d5e6f70.x",
            "bg3.g1.674d2f00.9f86d081884c7d65.5a1e2c3b4d5e6f70",
            "bg1.g1ffffffffffffffff.674d2f00.9f86d081884c7d65.5a1e2c3b4d5e6f70",
            "bg1.gé.674d2f00.9f86d081884c7d65.5a1e2c3b4d5e6f70",
        ] {
            assert_eq!(
                verify(&key, junk, NOW, DAY),
                Err(IdError::Malformed),
                "{junk}"
            );
        }
    }

    #[test]
    fn ids_are_taken_within_the_feedback_window_only() {
        let key = keys("s3cret");
        let id = issue(&key, 7, &issued(Environment::Blue, 5));
        assert!(verify(&key, &id, NOW + DAY - 1000, DAY).is_ok());
        assert_eq!(
            verify(&key, &id, NOW + DAY + 1000, DAY),
            Err(IdError::TooOld)
        );
        // A few minutes of skew between isolates is fine; more is not.
        assert!(verify(&key, &id, NOW - 60_000, DAY).is_ok());
        assert_eq!(
            verify(&key, &id, NOW - 3_600_000, DAY),
            Err(IdError::FromTheFuture)
        );
        // Extreme clocks never panic.
        assert_eq!(verify(&key, &id, 0, 0), Err(IdError::FromTheFuture));
        let late = Issued {
            at_ms: u64::MAX,
            ..issued(Environment::Blue, 5)
        };
        let id = issue(&key, 7, &late);
        assert!(verify(&key, &id, u64::MAX, u64::MAX).is_ok());
    }

    #[test]
    fn keys_are_stable_and_never_printed() {
        assert_eq!(keys("a"), keys("a"));
        assert_ne!(keys("a"), keys("b"));
        assert_eq!(
            format!("{:?}", keys("a")),
            "Keys { current: Key(..), legacy: Key(..) }"
        );
        // The same inputs give the same id in every release: ids outlive deploys.
        let id = issue(&keys("fixture"), 42, &issued(Environment::Green, 3));
        assert_eq!(id, "bg2.g3.69279480.000000000000002a.75c5539c0b5741b6");
        assert!(verify(&keys("fixture"), &id, NOW, DAY).is_ok());
    }

    #[test]
    fn ids_of_the_release_before_deployment_names_verify_for_their_lifetime() {
        // Issued by the release before (the fixture its tests pinned): the secret's key alone.
        let old = "bg1.g3.69279480.000000000000002a.c7edefee43750005";
        let got = verify(&keys("fixture"), old, NOW, DAY).unwrap();
        assert_eq!(
            got,
            Issued {
                at_ms: NOW / 1000 * 1000,
                ..issued(Environment::Green, 3)
            }
        );
        // Whatever this deployment is called; but not past the feedback window, nor altered.
        assert!(verify(&Keys::derive("fixture", "staging"), old, NOW, DAY).is_ok());
        assert_eq!(
            verify(&keys("fixture"), old, NOW + 2 * DAY, DAY),
            Err(IdError::TooOld)
        );
        let altered = old.replacen("bg1.g", "bg1.b", 1);
        assert_eq!(
            verify(&keys("fixture"), &altered, NOW, DAY),
            Err(IdError::Forged)
        );
        // A new id under the old key's prefix is no id: new ids are sealed with the new key.
        let new = issue(&keys("fixture"), 42, &issued(Environment::Green, 3));
        let relabelled = new.replacen("bg2.", "bg1.", 1);
        assert_eq!(
            verify(&keys("fixture"), &relabelled, NOW, DAY),
            Err(IdError::Forged)
        );
    }

    #[test]
    fn an_id_names_its_route_and_no_other_route_takes_it() {
        let key = keys("s3cret");
        let on = |route: &str| Issued {
            route: route.into(),
            ..issued(Environment::Green, 4)
        };
        for route in [
            "chat",
            "openai/gpt-4.1.mini",
            "ft:gpt-4o:org:x",
            &"r".repeat(128),
        ] {
            let id = issue(&key, 7, &on(route));
            assert!(id.starts_with("bg3.g4.") && id.contains(route), "{id}");
            assert_eq!(verify(&key, &id, NOW, DAY).unwrap().route, route);
            // Another route's name in its place: the MAC no longer matches.
            let moved = id.replacen(&format!(".{route}."), ".summarise.", 1);
            assert_eq!(verify(&key, &moved, NOW, DAY), Err(IdError::Forged));
        }
        // The default route's ids are the ones issued before routes.
        let id = issue(&key, 7, &on("default"));
        assert!(id.starts_with("bg2.g4."), "{id}");
        assert_eq!(id.split('.').count(), 5);
        // Dropping the route turns nothing into a default-route id; naming `default` in a bg3
        // id, or a route too long, is no id.
        let chat = issue(&key, 7, &on("chat"));
        let dropped = chat.replacen("bg3.", "bg2.", 1).replacen(".chat.", ".", 1);
        assert_eq!(verify(&key, &dropped, NOW, DAY), Err(IdError::Forged));
        for malformed in [
            chat.replacen(".chat.", ".default.", 1),
            chat.replacen(".chat.", &format!(".{}.", "r".repeat(129)), 1),
            chat.replacen(".chat.", ".ch at.", 1),
            chat.replacen("bg3.", "bg1.", 1),
            id.replacen("bg2.", "bg3.", 1),
        ] {
            assert_eq!(
                verify(&key, &malformed, NOW, DAY),
                Err(IdError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn deployments_sharing_a_secret_do_not_take_each_others_ids() {
        let staging = Keys::derive(SECRET, "staging");
        let production = Keys::derive(SECRET, "production");
        let id = issue(&staging, 7, &issued(Environment::Green, 5));
        assert!(verify(&staging, &id, NOW, DAY).is_ok());
        assert_eq!(verify(&production, &id, NOW, DAY), Err(IdError::Forged));
        // Names are framed by their length: "ab" + "c" is not "a" + "bc".
        assert_ne!(Keys::derive(SECRET, "ab"), Keys::derive(SECRET, "a"));
        assert_ne!(Keys::derive(SECRET, ""), Keys::derive(SECRET, "\0"));
    }
}
