//! The worker's settings, read from its vars and secrets once per isolate.
//!
//! A setting that is present but wrong is a configuration error: the router refuses every
//! request with a 500 naming the variable rather than guess. The same goes for the one unsafe
//! combination, a HolySheep key without router keys, which would make the worker an open relay.

use std::fmt;

use crate::isolate::outbox::{DEFAULT_FLUSH_SECONDS, MAX_FLUSH_SECONDS};
use crate::request::auth::AuthMode;
use crate::request::breaker;
use crate::request::model;
use crate::request::pass_through::PassThrough;
use crate::request::request_id::{Keys, MIN_SECRET_BYTES};
use crate::request::routing::RoutingDoc;
use crate::route::access::RouteTokens;
use crate::route::registry::{UnknownModels, DEFAULT_ROUTE_LIMIT, MAX_ROUTES};
use crate::stats::Prices;

/// The default upstream: HolySheep's OpenAI-compatible API.
pub const DEFAULT_UPSTREAM: &str = "https://api.holysheep.ai/v1";

/// Longest time limit (`FIRST_BYTE_TIMEOUT_MS`, `COMPLETION_TIMEOUT_MS`,
/// `STREAM_IDLE_TIMEOUT_MS`): one hour (JavaScript timers overflow past 2^31 - 1 ms).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// Default `FIRST_BYTE_TIMEOUT_MS`: 30 s to a stream's first event, as before the first event
/// was judged (the limit then covered the headers, which come first).
pub const DEFAULT_FIRST_BYTE_TIMEOUT_MS: u64 = 30_000;

/// Default `COMPLETION_TIMEOUT_MS`: 4 minutes for a whole non-streamed answer. A reasoning
/// model's long answer fits; green timing out and blue then taking as long again (8 minutes)
/// still ends before the OpenAI SDKs' own default timeout of 10 minutes gives up and retries.
pub const DEFAULT_COMPLETION_TIMEOUT_MS: u64 = 240_000;

/// Default `STREAM_IDLE_TIMEOUT_MS`: 2 minutes of silence after a stream began. Longer than a
/// model thinks silently between events, and longer than the 100 s between two reads after
/// which Cloudflare's proxy itself gives up on an origin (its proxy read timeout), so that it
/// never cuts what an upstream behind such a proxy could still deliver.
pub const DEFAULT_STREAM_IDLE_TIMEOUT_MS: u64 = 120_000;

/// Largest `MAX_BODY_BYTES`: 512 MiB, above every Workers plan's request size limit and within
/// a 32-bit `usize` (wasm32).
pub const MAX_BODY_LIMIT: u64 = 512 << 20;

fn strip_userinfo(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// Parsed, validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The routing used while KV holds no `routing` document.
    pub defaults: RoutingDoc,
    /// How long an isolate reuses the routing document before reading KV again.
    pub routing_cache_ms: u64,
    /// Upstream base URL without a trailing slash, e.g. `https://api.holysheep.ai/v1`.
    pub upstream_base: String,
    /// How long a streamed answer may take to its first event, headers included
    /// (`FIRST_BYTE_TIMEOUT_MS`); also how long a pass-through call waits for its headers.
    pub first_byte_timeout_ms: u64,
    /// How long a non-streamed chat completion may take to its response headers, which an
    /// OpenAI-compatible upstream sends once the answer is complete (`COMPLETION_TIMEOUT_MS`).
    /// Unset, 4 minutes, and never less than `FIRST_BYTE_TIMEOUT_MS`, which bounded these
    /// answers before.
    pub completion_timeout_ms: u64,
    /// Longest silence of a stream after its first event (`STREAM_IDLE_TIMEOUT_MS`).
    pub stream_idle_timeout_ms: u64,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How clients authenticate and what goes upstream.
    pub auth: AuthMode,
    /// The bearer token of the admin API (`ADMIN_TOKEN`); the API is off without it.
    pub admin_token: Option<String>,
    /// The bearer token of the metrics endpoint (`METRICS_TOKEN`); the endpoint is off
    /// without it, so that a scraper never holds the admin token.
    pub metrics_token: Option<String>,
    /// USD per million tokens by model (`MODEL_PRICES`), for the stats' cost estimate.
    pub prices: Prices,
    /// Where rollbacks, pauses and completions are POSTed (`ALERT_WEBHOOK_URL`).
    pub alert_webhook_url: Option<String>,
    /// Whether clients may force an environment with `x-bluegreen-environment`
    /// (`ENVIRONMENT_OVERRIDE`, on by default).
    pub environment_override: bool,
    /// The `/v1/*` calls besides chat that are forwarded upstream (`PASS_THROUGH`).
    pub pass_through: PassThrough,
    /// The keys that seal request ids, from `FEEDBACK_SECRET` and `DEPLOYMENT_NAME`; without
    /// them, ids are plain random and feedback is off. (Not derived from `ADMIN_TOKEN`: every
    /// client sees ids and their MACs, so a guessable token could be found offline.)
    pub request_id_key: Option<Keys>,
    /// Why feedback is off although `FEEDBACK_SECRET` is set (it breaks a rule), for the log
    /// and `/v1/feedback`'s 503; the rest of the router works as usual.
    pub feedback_problem: Option<&'static str>,
    /// The bearer token that may score answers besides the router keys (`FEEDBACK_TOKEN`): in
    /// pass-through mode, the only one.
    pub feedback_token: Option<String>,
    /// Most scores an isolate sends on per minute for one credential
    /// (`FEEDBACK_MAX_PER_MINUTE`); the rest get a 429 and are counted as refused.
    pub feedback_max_per_minute: u32,
    /// This deployment's name (`DEPLOYMENT_NAME`): the request ids' key is expanded with it, so
    /// that deployments sharing a `FEEDBACK_SECRET` do not take each other's ids.
    pub deployment_name: String,
    /// How long after a request its id takes feedback (`FEEDBACK_MAX_AGE_SECONDS`).
    pub feedback_max_age_ms: u64,
    /// The per-isolate green breaker's settings (`GREEN_EJECTION`, `GREEN_EJECTION_FAILURES`,
    /// `GREEN_EJECTION_BASE_MS`, `GREEN_HANG_FLOOR_MS`).
    pub green_ejection: breaker::Settings,
    /// Most shadow copies an isolate starts a minute for each route, on average
    /// (`SHADOW_MAX_PER_MINUTE`; a token bucket, [`crate::shadow::Rate`]): the cost bound of a
    /// shadow step; requests
    /// drawn beyond it are not copied.
    pub shadow_max_per_minute: u32,
    /// Where a `model` that names no route goes (`UNKNOWN_MODELS`): the default route, or
    /// OpenAI's `404 model_not_found`.
    pub unknown_models: UnknownModels,
    /// Most routes the registry takes (`ROUTE_LIMIT`, at most [`MAX_ROUTES`]).
    pub route_limit: usize,
    /// The tokens that may act on some routes only (`ROUTE_ADMIN_TOKENS`).
    pub route_admin_tokens: RouteTokens,
    /// How long an isolate gathers a route's stats before it sends them as one batch
    /// (`STATS_FLUSH_SECONDS`, 1 to [`MAX_FLUSH_SECONDS`]): the controller's (or the queue's)
    /// calls per busy isolate are one per this much time.
    pub stats_flush_ms: u64,
}

/// Highest `SHADOW_MAX_PER_MINUTE`: a thousand copies a second from one isolate.
pub const MAX_SHADOW_PER_MINUTE: u64 = 60_000;

/// Default `FEEDBACK_MAX_PER_MINUTE`: ten scores a second from one credential in one isolate,
/// far above an app whose users score some of their answers (an isolate serving 100 requests a
/// second whose users score one answer in ten stays at a sixth of it).
pub const DEFAULT_FEEDBACK_PER_MINUTE: u64 = 600;

/// Highest `FEEDBACK_MAX_PER_MINUTE`.
pub const MAX_FEEDBACK_PER_MINUTE: u64 = 60_000;

/// Default `DEPLOYMENT_NAME`: the Worker's name in this repository's `wrangler.toml`.
pub const DEFAULT_DEPLOYMENT_NAME: &str = "bluegreen-router";

/// Longest `DEPLOYMENT_NAME`.
pub const MAX_DEPLOYMENT_NAME: usize = 64;

/// Longest `FEEDBACK_MAX_AGE_SECONDS`: seven days, as long as the controller keeps scored ids.
pub const MAX_FEEDBACK_AGE_SECONDS: u64 = 7 * 86_400;

fn is_http_url(url: &str) -> bool {
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .is_some_and(|h| !h.is_empty() && !h.starts_with('/'))
}

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.reason)
    }
}

/// `text` read as `str::parse::<f64>` reads a decimal number (`+`/`-`, digits with or without
/// a point, an exponent; `None` for anything else and for `inf` and `NaN`, which no setting
/// takes), rewritten in JSON's grammar (no `+`, no leading zeros, digits on both sides of a
/// point) and read by serde_json, which rounds as exactly. The standard library's parser and
/// its tables are 13 KB of the gzipped wasm that nothing else needs: serde_json's own parser is
/// linked anyway.
fn decimal(text: &str) -> Option<f64> {
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => ("", &text[1..]),
        Some(b'-') => ("-", &text[1..]),
        _ => ("", text),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (rest, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    let mut json = String::from(sign);
    json.push_str(if whole.is_empty() { "0" } else { whole });
    if !fraction.is_empty() {
        json.push('.');
        json.push_str(fraction);
    }
    if let Some(e) = exponent {
        let e_digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e_digits.is_empty() || !digits(e_digits) {
            return None;
        }
        json.push('e');
        json.push_str(e);
    }
    crate::util::json::parse(&json).ok()
}

fn err(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

/// The vars and secrets, read through a lookup; empty values count as unset.
struct Vars<F: Fn(&str) -> Option<String>> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn text(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// A finite number in `[min, max]`, or `default` when unset.
    fn number(
        &self,
        var: &'static str,
        default: f64,
        min: f64,
        max: f64,
    ) -> Result<f64, ConfigError> {
        let Some(v) = self.text(var) else {
            return Ok(default);
        };
        let n = decimal(&v)
            .filter(|n| n.is_finite())
            .ok_or_else(|| err(var, "must be a number"))?;
        if !(min..=max).contains(&n) {
            return Err(err(var, format!("must be between {min} and {max}")));
        }
        Ok(n)
    }

    /// A whole number in `[min, max]`, or `default` when unset.
    fn whole(
        &self,
        var: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let Some(v) = self.text(var) else {
            return Ok(default);
        };
        v.parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| err(var, format!("must be a whole number from {min} to {max}")))
    }

    /// `on`/`off` (or `true`/`false`), or `default` when unset.
    fn switch(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.text(var).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("on" | "true") => Ok(true),
            Some("off" | "false") => Ok(false),
            Some(_) => Err(err(var, "must be on or off")),
        }
    }

    /// An http(s) URL, when set.
    fn url(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        match self.text(var) {
            Some(url) if !is_http_url(&url) => Err(err(var, "must be an http:// or https:// URL")),
            other => Ok(other),
        }
    }

    /// A model name ([`model::check_name`]), or `default` when unset.
    fn model(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        let name = self.text(var).unwrap_or_else(|| default.into());
        model::check_name(&name).map_err(|e| err(var, e.rule()))?;
        Ok(name)
    }

    /// The routing used while KV holds no document.
    fn defaults(&self) -> Result<RoutingDoc, ConfigError> {
        Ok(RoutingDoc {
            blue_model: self.model("BLUE_MODEL", "deepseek-v3")?,
            green_model: self.model("GREEN_MODEL", "gemini-2.5-flash")?,
            green_percent: self.number("GREEN_PERCENT", 0.0, 0.0, 100.0)?,
            shadow_percent: 0.0,
            sticky: true,
            version: 0,
            updated_at: None,
            judge: None,
        })
    }

    /// The routes' settings: `UNKNOWN_MODELS` (`default`, the default route serves them, or
    /// `reject`, 404), `ROUTE_ADMIN_TOKENS` and `ROUTE_LIMIT`.
    fn routes(&self) -> Result<(UnknownModels, RouteTokens, usize), ConfigError> {
        let unknown = match self
            .text("UNKNOWN_MODELS")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("default") => UnknownModels::Default,
            Some("reject") => UnknownModels::Reject,
            Some(_) => return Err(err("UNKNOWN_MODELS", "must be default or reject")),
        };
        let tokens = match self.text("ROUTE_ADMIN_TOKENS") {
            None => RouteTokens::default(),
            Some(json) => RouteTokens::parse(&json).map_err(|e| err("ROUTE_ADMIN_TOKENS", e))?,
        };
        let limit = self.whole(
            "ROUTE_LIMIT",
            DEFAULT_ROUTE_LIMIT as u64,
            1,
            MAX_ROUTES as u64,
        )?;
        Ok((unknown, tokens, limit as usize))
    }

    /// The client auth mode; a HolySheep key without router keys would be an open relay.
    fn auth(&self) -> Result<AuthMode, ConfigError> {
        let (upstream_key, keys) =
            match (self.text("HOLYSHEEP_API_KEY"), self.text("ROUTER_API_KEYS")) {
                (None, _) => return Ok(AuthMode::Passthrough),
                (Some(upstream_key), Some(keys)) => (upstream_key, keys),
                (Some(_), None) => {
                    return Err(err(
                        "ROUTER_API_KEYS",
                        "HOLYSHEEP_API_KEY is set, so ROUTER_API_KEYS must list the keys clients \
                     present (comma-separated); without them the router would relay anyone's \
                     requests on your HolySheep key",
                    ))
                }
            };
        let client_keys: Vec<String> = keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect();
        if client_keys.is_empty() {
            return Err(err("ROUTER_API_KEYS", "lists no key"));
        }
        Ok(AuthMode::RouterKeys {
            upstream_key,
            client_keys,
        })
    }
    /// `UPSTREAM_BASE_URL` without a trailing slash, or HolySheep's.
    fn upstream_base(&self) -> Result<String, ConfigError> {
        let base = self
            .text("UPSTREAM_BASE_URL")
            .unwrap_or_else(|| DEFAULT_UPSTREAM.into())
            .trim_end_matches('/')
            .to_string();
        if !is_http_url(&base) {
            return Err(err(
                "UPSTREAM_BASE_URL",
                "must be an http:// or https:// URL",
            ));
        }
        Ok(base)
    }

    /// `MODEL_PRICES`, or no prices.
    fn prices(&self) -> Result<Prices, ConfigError> {
        match self.text("MODEL_PRICES") {
            None => Ok(Prices::default()),
            Some(json) => Prices::parse(&json).map_err(|e| err("MODEL_PRICES", e)),
        }
    }

    /// `PASS_THROUGH`, or the default allowlist.
    fn pass_through(&self) -> Result<PassThrough, ConfigError> {
        match self.text("PASS_THROUGH") {
            None => Ok(PassThrough::default()),
            Some(list) => PassThrough::parse(&list).map_err(|e| err("PASS_THROUGH", e.to_string())),
        }
    }

    /// The time limits: to a stream's first event, of a whole non-streamed answer, of a
    /// stream's silence.
    fn time_limits(&self) -> Result<(u64, u64, u64), ConfigError> {
        let first_byte = self.whole(
            "FIRST_BYTE_TIMEOUT_MS",
            DEFAULT_FIRST_BYTE_TIMEOUT_MS,
            1,
            MAX_TIMEOUT_MS,
        )?;
        // A deployment that raised FIRST_BYTE_TIMEOUT_MS for its slow non-streamed answers
        // keeps at least that much.
        let completion = self.whole(
            "COMPLETION_TIMEOUT_MS",
            DEFAULT_COMPLETION_TIMEOUT_MS.max(first_byte),
            1,
            MAX_TIMEOUT_MS,
        )?;
        let idle = self.whole(
            "STREAM_IDLE_TIMEOUT_MS",
            DEFAULT_STREAM_IDLE_TIMEOUT_MS,
            1,
            MAX_TIMEOUT_MS,
        )?;
        Ok((first_byte, completion, idle))
    }

    /// The request ids' keys from `FEEDBACK_SECRET` and the deployment's name, or why feedback
    /// is off although the secret is set. Never an error: the rest of the router works.
    fn request_id_key(&self, deployment: &str) -> (Option<Keys>, Option<&'static str>) {
        match self.text("FEEDBACK_SECRET") {
            None => (None, None),
            Some(secret) if secret.len() < MIN_SECRET_BYTES => (
                None,
                Some(
                    "FEEDBACK_SECRET is shorter than 32 bytes, so feedback is off; set a random \
                     string of 32 bytes or more",
                ),
            ),
            Some(secret) => (Some(Keys::derive(&secret, deployment)), None),
        }
    }

    /// `DEPLOYMENT_NAME`: printable ASCII without spaces, at most [`MAX_DEPLOYMENT_NAME`].
    fn deployment_name(&self) -> Result<String, ConfigError> {
        let name = self
            .text("DEPLOYMENT_NAME")
            .unwrap_or_else(|| DEFAULT_DEPLOYMENT_NAME.into());
        if name.len() > MAX_DEPLOYMENT_NAME || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err(
                "DEPLOYMENT_NAME",
                format!(
                    "must be at most {MAX_DEPLOYMENT_NAME} visible ASCII characters, without \
                     spaces"
                ),
            ));
        }
        Ok(name)
    }

    /// The green breaker's settings ([`crate::request::breaker`]): `GREEN_EJECTION` (on/off, on),
    /// `GREEN_EJECTION_FAILURES` (failures in a row that eject green, 1–100, 5),
    /// `GREEN_EJECTION_BASE_MS` (the first cool-down, 1 s–1 h, 30 000) and
    /// `GREEN_HANG_FLOOR_MS` (the shortest time a green attempt may go unanswered before it
    /// counts as hung, 1 s–1 h, 4 000). The rest are [`breaker::Settings::default`].
    fn green_ejection(&self) -> Result<breaker::Settings, ConfigError> {
        let d = breaker::Settings::default();
        Ok(breaker::Settings {
            enabled: self.switch("GREEN_EJECTION", d.enabled)?,
            consecutive_failures: self.whole(
                "GREEN_EJECTION_FAILURES",
                u64::from(d.consecutive_failures),
                1,
                100,
            )? as u32,
            base_ejection_ms: self.whole(
                "GREEN_EJECTION_BASE_MS",
                d.base_ejection_ms,
                1_000,
                MAX_TIMEOUT_MS,
            )?,
            hang_floor_ms: self.whole(
                "GREEN_HANG_FLOOR_MS",
                d.hang_floor_ms,
                1_000,
                MAX_TIMEOUT_MS,
            )?,
            ..d
        })
    }
}

impl Config {
    /// Reads the settings through `get`, which returns a var's or secret's value when it is
    /// set. Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let vars = Vars { lookup: get };
        // Read in this order, so that the first wrong setting named is the same as ever.
        let defaults = vars.defaults()?;
        let cache_seconds = vars.number("ROUTING_CACHE_SECONDS", 5.0, 0.0, 3600.0)?;
        let upstream_base = vars.upstream_base()?;
        let auth = vars.auth()?;
        let prices = vars.prices()?;
        let alert_webhook_url = vars.url("ALERT_WEBHOOK_URL")?;
        let environment_override = vars.switch("ENVIRONMENT_OVERRIDE", true)?;
        let pass_through = vars.pass_through()?;
        let (first_byte_timeout_ms, completion_timeout_ms, stream_idle_timeout_ms) =
            vars.time_limits()?;
        let deployment_name = vars.deployment_name()?;
        let (request_id_key, feedback_problem) = vars.request_id_key(&deployment_name);
        let max_body_bytes = vars.whole("MAX_BODY_BYTES", 10 * 1024 * 1024, 1, MAX_BODY_LIMIT)?;
        let (unknown_models, route_admin_tokens, route_limit) = vars.routes()?;
        Ok(Config {
            defaults,
            routing_cache_ms: (cache_seconds * 1000.0).round() as u64,
            upstream_base,
            first_byte_timeout_ms,
            completion_timeout_ms,
            stream_idle_timeout_ms,
            max_body_bytes: max_body_bytes as usize,
            auth,
            admin_token: vars.text("ADMIN_TOKEN"),
            metrics_token: vars.text("METRICS_TOKEN"),
            prices,
            alert_webhook_url,
            environment_override,
            pass_through,
            request_id_key,
            feedback_problem,
            feedback_token: vars.text("FEEDBACK_TOKEN"),
            feedback_max_per_minute: vars.whole(
                "FEEDBACK_MAX_PER_MINUTE",
                DEFAULT_FEEDBACK_PER_MINUTE,
                1,
                MAX_FEEDBACK_PER_MINUTE,
            )? as u32,
            deployment_name,
            feedback_max_age_ms: vars.whole(
                "FEEDBACK_MAX_AGE_SECONDS",
                86_400,
                60,
                MAX_FEEDBACK_AGE_SECONDS,
            )? * 1000,
            green_ejection: vars.green_ejection()?,
            shadow_max_per_minute: vars.whole(
                "SHADOW_MAX_PER_MINUTE",
                60,
                0,
                MAX_SHADOW_PER_MINUTE,
            )? as u32,
            unknown_models,
            route_admin_tokens,
            route_limit,
            stats_flush_ms: vars.whole(
                "STATS_FLUSH_SECONDS",
                DEFAULT_FLUSH_SECONDS,
                1,
                MAX_FLUSH_SECONDS,
            )? * 1000,
        })
    }

    /// How long one chat completion attempt may take: a stream to its first event
    /// (`FIRST_BYTE_TIMEOUT_MS`), a non-streamed answer whole (`COMPLETION_TIMEOUT_MS`). Two
    /// limits, because a non-streamed answer's headers come only once it is generated: one
    /// limit for both would either let a hung stream hold its client for minutes or turn a
    /// slow answer into a timeout.
    pub fn attempt_limit_ms(&self, stream: bool) -> u64 {
        if stream {
            self.first_byte_timeout_ms
        } else {
            self.completion_timeout_ms
        }
    }

    /// The upstream base URL without credentials or query, for `/healthz` and logs.
    pub fn upstream_display(&self) -> String {
        let (scheme, rest) = self.upstream_base.split_once("://").unwrap_or(("", ""));
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let rest = match rest.split_once('/') {
            Some((authority, path)) => format!("{}/{path}", strip_userinfo(authority)),
            None => strip_userinfo(rest).to_string(),
        };
        format!("{scheme}://{rest}")
    }

    /// `text` (a runtime's message about a failed fetch, which may quote the URL it was given)
    /// with the upstream base URL shown as [`Self::upstream_display`]: without the
    /// credentials or query a misconfigured base might carry.
    pub fn scrub_upstream(&self, text: &str) -> String {
        text.replace(&self.upstream_base, &self.upstream_display())
    }

    /// The upstream URL of a routed API's calls (`…/chat/completions`, `…/responses`).
    pub fn api_url(&self, api: crate::api::Api) -> String {
        self.upstream_url(api.path())
    }

    /// The upstream URL for an API path such as `/models` (the part after `/v1`).
    pub fn upstream_url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.upstream_base, path_and_query)
    }
}

#[cfg(test)]
mod green_ejection_tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<breaker::Settings, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .map(|c| c.green_ejection)
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(read(&[]).unwrap(), breaker::Settings::default());
        let s = read(&[
            ("GREEN_EJECTION", "Off"),
            ("GREEN_EJECTION_FAILURES", "3"),
            ("GREEN_EJECTION_BASE_MS", "10000"),
            ("GREEN_HANG_FLOOR_MS", " 8000 "),
        ])
        .unwrap();
        assert!(!s.enabled);
        assert_eq!(
            (s.consecutive_failures, s.base_ejection_ms, s.hang_floor_ms),
            (3, 10_000, 8_000)
        );
        assert_eq!(s.max_ejection_ms, 300_000);
    }

    #[test]
    fn refuses_bad_values_naming_the_variable() {
        for (var, value) in [
            ("GREEN_EJECTION", "sometimes"),
            ("GREEN_EJECTION_FAILURES", "0"),
            ("GREEN_EJECTION_FAILURES", "101"),
            ("GREEN_EJECTION_BASE_MS", "999"),
            ("GREEN_EJECTION_BASE_MS", "3600001"),
            ("GREEN_HANG_FLOOR_MS", "4s"),
            ("GREEN_HANG_FLOOR_MS", "-1"),
        ] {
            assert_eq!(read(&[(var, value)]).unwrap_err().var, var, "{var}={value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// `decimal` against the standard library's parser, bit for bit (finite numbers only).
    fn same_as_std(text: &str) {
        let std = text.parse::<f64>().ok().filter(|n| n.is_finite());
        assert_eq!(
            decimal(text).map(f64::to_bits),
            std.map(f64::to_bits),
            "{text:?}: {:?} against {std:?}",
            decimal(text)
        );
    }

    #[test]
    fn numbers_read_as_the_standard_library_reads_them() {
        for text in [
            "0",
            "-0",
            "+0",
            "00",
            "007",
            "7.",
            "-7.",
            ".5",
            "-.5",
            "+.5",
            "0.5",
            "00.50",
            ".",
            "-",
            "+",
            "",
            "e5",
            "1e",
            "1e+",
            "1e-",
            "1e5",
            "1E5",
            "1e+5",
            "1e-5",
            "1.5e3",
            ".5e1",
            "5.e1",
            "1e0005",
            "1e+-5",
            "+-1",
            "-+1",
            "--1",
            "1..2",
            "1.2.3",
            "1e5e5",
            "1e5.5",
            " 1",
            "1 ",
            "1_000",
            "0x10",
            "inf",
            "-inf",
            "+infinity",
            "Infinity",
            "NaN",
            "nan",
            "1e308",
            "1.7976931348623157e308",
            "1.7976931348623159e308",
            "1e309",
            "2e-308",
            "4.9e-324",
            "2.4e-324",
            "2.5e-324",
            "1e-400",
            "-1e-400",
            "0e999999999999",
            "0e-99999999999999999999",
            "1e99999999999999999999",
            "1e-99999999999999999999",
            "0.1",
            "0.2",
            "0.3",
            "100",
            "2.5",
            "99.999",
            "123456789012345678901234567890",
            "9007199254740993",
            "0.30000000000000004",
            "2.2250738585072011e-308",
            "1\u{664}",
            "\u{661}",
        ] {
            same_as_std(text);
        }
        same_as_std(&format!("0.{}1e400", "0".repeat(399)));
        same_as_std(&format!("{}e-700", "7".repeat(800)));
        same_as_std(&format!("1.{}5", "0".repeat(30)));
        // Strings of the characters a number is made of, drawn at random.
        let alphabet = b"0123456789.eE+-";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 12) as usize + 1;
            let text: String = (0..len)
                .map(|i| {
                    let pick = (seed >> (i * 5 % 59)) as usize;
                    // Mostly digits, so that many strings are numbers.
                    match pick % 3 {
                        0 | 1 => alphabet[pick % 10] as char,
                        _ => alphabet[pick % alphabet.len()] as char,
                    }
                })
                .collect();
            same_as_std(&text);
        }
        // Numbers with many digits and exponents near the ends of the range, where rounding
        // is hardest.
        for _ in 0..50_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let digits: String = (0..(seed % 24 + 1))
                .map(|i| char::from(b'0' + ((seed >> (i * 2 % 60)) % 10) as u8))
                .collect();
            let point = (seed >> 40) as usize % (digits.len() + 1);
            let exponent = (seed >> 20) as i64 % 700 - 350;
            same_as_std(&format!(
                "{}.{}e{exponent}",
                &digits[..point],
                &digits[point..]
            ));
        }
    }

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.defaults.blue_model, "deepseek-v3");
        assert_eq!(c.defaults.green_model, "gemini-2.5-flash");
        assert_eq!(c.defaults.green_percent, 0.0);
        assert!(c.defaults.sticky);
        assert_eq!(c.routing_cache_ms, 5000);
        assert_eq!(c.upstream_base, "https://api.holysheep.ai/v1");
        assert_eq!(c.first_byte_timeout_ms, 30_000);
        assert_eq!(c.completion_timeout_ms, 240_000);
        assert_eq!(c.stream_idle_timeout_ms, 120_000);
        assert_eq!(c.max_body_bytes, 10_485_760);
        assert_eq!(c.auth, AuthMode::Passthrough);
        assert_eq!(
            c.api_url(crate::api::Api::Chat),
            "https://api.holysheep.ai/v1/chat/completions"
        );
        assert_eq!(
            c.upstream_url("/models"),
            "https://api.holysheep.ai/v1/models"
        );
        assert_eq!(c.upstream_display(), "https://api.holysheep.ai/v1");
        assert_eq!(c.admin_token, None);
        assert_eq!(c.metrics_token, None);
        assert_eq!(c.alert_webhook_url, None);
        assert_eq!(c.prices, Prices::default());
        assert!(c.environment_override);
        assert_eq!(c.pass_through, PassThrough::default());
        assert_eq!(c.request_id_key, None, "no secret: plain ids, feedback off");
        assert_eq!(c.feedback_problem, None);
        assert_eq!(c.feedback_token, None);
        assert_eq!(c.feedback_max_per_minute, 600);
        assert_eq!(c.deployment_name, "bluegreen-router");
        assert_eq!(c.feedback_max_age_ms, 86_400_000);
    }

    #[test]
    fn the_shadow_bound_is_a_whole_number_of_copies_a_minute() {
        assert_eq!(config(&[]).unwrap().shadow_max_per_minute, 60);
        let c = config(&[("SHADOW_MAX_PER_MINUTE", "0")]).unwrap();
        assert_eq!(c.shadow_max_per_minute, 0);
        let c = config(&[("SHADOW_MAX_PER_MINUTE", "60000")]).unwrap();
        assert_eq!(c.shadow_max_per_minute, 60_000);
        for bad in ["60001", "-1", "1.5", "x"] {
            let e = config(&[("SHADOW_MAX_PER_MINUTE", bad)]).unwrap_err();
            assert_eq!(e.var, "SHADOW_MAX_PER_MINUTE", "{bad}");
        }
    }

    #[test]
    fn the_stats_flush_is_1_to_10_whole_seconds() {
        assert_eq!(config(&[]).unwrap().stats_flush_ms, 1000);
        let c = config(&[("STATS_FLUSH_SECONDS", "10")]).unwrap();
        assert_eq!(c.stats_flush_ms, 10_000);
        for bad in ["0", "11", "2.5", "-1", "x"] {
            let e = config(&[("STATS_FLUSH_SECONDS", bad)]).unwrap_err();
            assert_eq!(e.var, "STATS_FLUSH_SECONDS", "{bad}");
        }
    }

    #[test]
    fn the_request_id_key_comes_from_the_feedback_secret_only() {
        const LONG: &str = "0123456789abcdef0123456789abcdef";
        let key = |vars: &[(&str, &str)]| config(vars).unwrap().request_id_key;
        assert_eq!(key(&[("ADMIN_TOKEN", "adm")]), None);
        assert_eq!(
            key(&[("ADMIN_TOKEN", "adm"), ("FEEDBACK_SECRET", LONG)]),
            Some(Keys::derive(LONG, "bluegreen-router"))
        );
        assert_eq!(
            key(&[("FEEDBACK_SECRET", LONG), ("DEPLOYMENT_NAME", "staging")]),
            Some(Keys::derive(LONG, "staging"))
        );
        // 31 bytes: feedback off with the rule, and the router still configured.
        let short = config(&[("FEEDBACK_SECRET", &LONG[1..])]).unwrap();
        assert_eq!(short.request_id_key, None);
        assert!(short.feedback_problem.unwrap().contains("32 bytes"));
        // Bytes, not characters: 11 three-byte characters are 33 bytes.
        assert!(key(&[("FEEDBACK_SECRET", &"€".repeat(11))]).is_some());
        for bad in ["a b", &"n".repeat(65), "é"] {
            assert_eq!(
                config(&[("DEPLOYMENT_NAME", bad)]).unwrap_err().var,
                "DEPLOYMENT_NAME"
            );
        }
        let c = config(&[
            ("FEEDBACK_TOKEN", " tok "),
            ("FEEDBACK_MAX_PER_MINUTE", "5"),
        ])
        .unwrap();
        assert_eq!(
            (c.feedback_token.as_deref(), c.feedback_max_per_minute),
            (Some("tok"), 5)
        );
        for bad in ["0", "60001", "x"] {
            let e = config(&[("FEEDBACK_MAX_PER_MINUTE", bad)]).unwrap_err();
            assert_eq!(e.var, "FEEDBACK_MAX_PER_MINUTE", "{bad}");
        }
        let c = config(&[("FEEDBACK_MAX_AGE_SECONDS", "3600")]).unwrap();
        assert_eq!(c.feedback_max_age_ms, 3_600_000);
        for bad in ["59", "604801", "1.5", "x"] {
            let e = config(&[("FEEDBACK_MAX_AGE_SECONDS", bad)]).unwrap_err();
            assert_eq!(e.var, "FEEDBACK_MAX_AGE_SECONDS", "{bad}");
        }
    }

    #[test]
    fn overrides() {
        let c = config(&[
            ("BLUE_MODEL", "a"),
            ("GREEN_MODEL", "b"),
            ("GREEN_PERCENT", "12.5"),
            ("ROUTING_CACHE_SECONDS", "0.5"),
            ("UPSTREAM_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("FIRST_BYTE_TIMEOUT_MS", "1500"),
            ("COMPLETION_TIMEOUT_MS", "2500"),
            ("STREAM_IDLE_TIMEOUT_MS", "700"),
            ("MAX_BODY_BYTES", "1024"),
            ("HOLYSHEEP_API_KEY", "sk-up"),
            ("ROUTER_API_KEYS", " k1, ,k2 "),
            ("ADMIN_TOKEN", "adm"),
            ("METRICS_TOKEN", " scrape "),
            ("ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("MODEL_PRICES", r#"{"a": {"input": 1, "output": 2}}"#),
            ("ENVIRONMENT_OVERRIDE", "Off"),
            ("PASS_THROUGH", "POST /v1/audio/transcriptions"),
        ])
        .unwrap();
        assert!(c.pass_through.allows("POST", "/v1/audio/transcriptions"));
        assert!(!c.pass_through.allows("GET", "/v1/models"));
        assert!(!c.environment_override);
        assert_eq!(c.admin_token.as_deref(), Some("adm"));
        assert_eq!(c.metrics_token.as_deref(), Some("scrape"));
        assert_eq!(
            c.alert_webhook_url.as_deref(),
            Some("http://127.0.0.1:9/hook")
        );
        let usage = crate::api::usage::Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
        };
        assert_eq!(c.prices.cost("a", &usage), 2.0);
        assert_eq!(c.defaults.green_percent, 12.5);
        assert_eq!(c.routing_cache_ms, 500);
        assert_eq!(c.upstream_base, "http://127.0.0.1:9/v1");
        assert_eq!(c.first_byte_timeout_ms, 1500);
        assert_eq!(c.completion_timeout_ms, 2500);
        assert_eq!(c.stream_idle_timeout_ms, 700);
        assert_eq!(
            (c.attempt_limit_ms(true), c.attempt_limit_ms(false)),
            (1500, 2500)
        );
        assert_eq!(c.max_body_bytes, 1024);
        assert_eq!(
            c.auth,
            AuthMode::RouterKeys {
                upstream_key: "sk-up".into(),
                client_keys: vec!["k1".into(), "k2".into()]
            }
        );
    }

    #[test]
    fn the_displayed_upstream_hides_credentials_and_query() {
        let c = config(&[(
            "UPSTREAM_BASE_URL",
            "https://user:pw@proxy.example:8443/v1?key=s#x",
        )])
        .unwrap();
        assert_eq!(c.upstream_display(), "https://proxy.example:8443/v1");
        let c = config(&[("UPSTREAM_BASE_URL", "http://k@127.0.0.1:9")]).unwrap();
        assert_eq!(c.upstream_display(), "http://127.0.0.1:9");
        // A runtime's message quoting the URL it could not fetch shows the displayed form.
        let c = config(&[(
            "UPSTREAM_BASE_URL",
            "https://user:sk-123@proxy.example:99999/v1?key=abc",
        )])
        .unwrap();
        let said = "Fetch API cannot load: https://user:sk-123@proxy.example:99999/v1?key=abc/chat/completions";
        let shown = c.scrub_upstream(said);
        assert!(
            !shown.contains("sk-123") && !shown.contains("key=abc"),
            "{shown}"
        );
        assert!(shown.contains("https://proxy.example:99999/v1"), "{shown}");
        let c = config(&[
            ("MAX_BODY_BYTES", "536870912"),
            ("FIRST_BYTE_TIMEOUT_MS", "3600000"),
        ])
        .unwrap();
        assert_eq!(c.max_body_bytes, 512 << 20);
        assert_eq!(c.first_byte_timeout_ms, 3_600_000);
    }

    #[test]
    fn a_raised_first_byte_timeout_still_bounds_non_streamed_answers_no_tighter_than_before() {
        // Before COMPLETION_TIMEOUT_MS, FIRST_BYTE_TIMEOUT_MS bounded non-streamed answers
        // too. (FIRST_BYTE_TIMEOUT_MS, COMPLETION_TIMEOUT_MS) → the completion limit.
        let table: [(&str, &str, u64); 5] = [
            ("", "", 240_000),
            ("30000", "", 240_000),
            ("600000", "", 600_000),
            ("1000", "", 240_000),
            ("600000", "90000", 90_000),
        ];
        for (first_byte, completion, expected) in table {
            let c = config(&[
                ("FIRST_BYTE_TIMEOUT_MS", first_byte),
                ("COMPLETION_TIMEOUT_MS", completion),
            ])
            .unwrap();
            assert_eq!(
                c.completion_timeout_ms, expected,
                "{first_byte:?} {completion:?}"
            );
        }
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = config(&[("HOLYSHEEP_API_KEY", ""), ("GREEN_PERCENT", " ")]).unwrap();
        assert_eq!(c.auth, AuthMode::Passthrough);
        assert_eq!(c.defaults.green_percent, 0.0);
    }

    #[test]
    fn an_error_names_the_variable_and_its_rule_never_its_value() {
        // Every setting that is checked, with a wrong value carrying a marker: a webhook or
        // upstream URL holds a token in its path or query, a price table or allowlist may be
        // pasted with one, and a model name is what an operator typed. The error (the 500's
        // message, /healthz and the log all show its Display) must not carry any of it.
        const MARK: &str = "hunter2SECRET";
        let cases: [(&str, String); 24] = [
            (
                "ALERT_WEBHOOK_URL",
                format!("hooks.slack.com/services/{MARK}"),
            ),
            ("ALERT_WEBHOOK_URL", format!("ftp://{MARK}@x")),
            ("UPSTREAM_BASE_URL", format!("api.example/v1?key={MARK}")),
            ("UPSTREAM_BASE_URL", format!("https:///{MARK}")),
            (
                "MODEL_PRICES",
                format!(r#"{{"{MARK}": {{"input": -1, "output": 1}}}}"#),
            ),
            ("MODEL_PRICES", format!(r#"{{"m": {{"input": "{MARK}"}}}}"#)),
            ("MODEL_PRICES", MARK.to_string()),
            ("PASS_THROUGH", format!("GET /v1/{MARK}%41")),
            ("PASS_THROUGH", format!("GET /v1/models, FETCH /v1/{MARK}")),
            ("PASS_THROUGH", format!("GET /v1/{{{MARK}-x}}")),
            ("BLUE_MODEL", format!("{MARK}\u{7}")),
            ("GREEN_MODEL", format!("{MARK}é")),
            ("GREEN_MODEL", MARK.repeat(30)),
            ("GREEN_PERCENT", MARK.into()),
            ("ROUTING_CACHE_SECONDS", format!("-{MARK}")),
            ("FIRST_BYTE_TIMEOUT_MS", MARK.into()),
            ("COMPLETION_TIMEOUT_MS", MARK.into()),
            ("STREAM_IDLE_TIMEOUT_MS", MARK.into()),
            ("MAX_BODY_BYTES", MARK.into()),
            ("ENVIRONMENT_OVERRIDE", MARK.into()),
            ("FEEDBACK_MAX_AGE_SECONDS", MARK.into()),
            ("FEEDBACK_MAX_PER_MINUTE", MARK.into()),
            ("DEPLOYMENT_NAME", format!("{MARK} x")),
            ("GREEN_EJECTION", MARK.into()),
        ];
        for (var, value) in &cases {
            let e = config(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, *var, "{var}: {e}");
            let shown = e.to_string();
            assert!(!shown.contains(MARK), "{var} echoes its value: {shown}");
            assert!(
                !shown.contains(value.trim()),
                "{var} echoes its value: {shown}"
            );
        }
        // The secrets themselves are never checked against a shape, only used; a short
        // FEEDBACK_SECRET turns feedback off with the rule, not the secret.
        let c = config(&[
            ("FEEDBACK_SECRET", MARK),
            ("HOLYSHEEP_API_KEY", MARK),
            ("ROUTER_API_KEYS", MARK),
            ("ADMIN_TOKEN", MARK),
            ("METRICS_TOKEN", MARK),
            ("FEEDBACK_TOKEN", MARK),
        ])
        .unwrap();
        assert!(!c.feedback_problem.unwrap().contains(MARK));
        let relay = config(&[("HOLYSHEEP_API_KEY", MARK)]).unwrap_err();
        assert!(!relay.to_string().contains(MARK), "{relay}");
    }

    #[test]
    fn refuses_bad_values_naming_the_variable() {
        let cases: [(&[(&str, &str)], &str); 26] = [
            (
                &[("PASS_THROUGH", "GET /v1/files, FETCH /v1/x")],
                "PASS_THROUGH",
            ),
            (
                &[("PASS_THROUGH", "POST /v1/chat/completions")],
                "PASS_THROUGH",
            ),
            (&[("GREEN_MODEL", "gem\u{7}ini")], "GREEN_MODEL"),
            (&[("BLUE_MODEL", "modèle")], "BLUE_MODEL"),
            (&[("BLUE_MODEL", "a\tb")], "BLUE_MODEL"),
            (&[("GREEN_MODEL", &"m".repeat(257))], "GREEN_MODEL"),
            (&[("COMPLETION_TIMEOUT_MS", "0")], "COMPLETION_TIMEOUT_MS"),
            (
                &[("COMPLETION_TIMEOUT_MS", "3600001")],
                "COMPLETION_TIMEOUT_MS",
            ),
            (&[("STREAM_IDLE_TIMEOUT_MS", "0")], "STREAM_IDLE_TIMEOUT_MS"),
            (
                &[("STREAM_IDLE_TIMEOUT_MS", "2m")],
                "STREAM_IDLE_TIMEOUT_MS",
            ),
            (&[("ENVIRONMENT_OVERRIDE", "maybe")], "ENVIRONMENT_OVERRIDE"),
            (
                &[("MODEL_PRICES", r#"{"m": {"input": -2, "output": 1}}"#)],
                "MODEL_PRICES",
            ),
            (&[("MODEL_PRICES", "{\"m\": 1}")], "MODEL_PRICES"),
            (&[("ALERT_WEBHOOK_URL", "slack")], "ALERT_WEBHOOK_URL"),
            (
                &[("FIRST_BYTE_TIMEOUT_MS", "3600001")],
                "FIRST_BYTE_TIMEOUT_MS",
            ),
            (&[("MAX_BODY_BYTES", "4294967296")], "MAX_BODY_BYTES"),
            (&[("GREEN_PERCENT", "abc")], "GREEN_PERCENT"),
            (&[("GREEN_PERCENT", "101")], "GREEN_PERCENT"),
            (&[("GREEN_PERCENT", "NaN")], "GREEN_PERCENT"),
            (&[("ROUTING_CACHE_SECONDS", "-1")], "ROUTING_CACHE_SECONDS"),
            (&[("UPSTREAM_BASE_URL", "ftp://x")], "UPSTREAM_BASE_URL"),
            (&[("UPSTREAM_BASE_URL", "https://")], "UPSTREAM_BASE_URL"),
            (&[("FIRST_BYTE_TIMEOUT_MS", "0")], "FIRST_BYTE_TIMEOUT_MS"),
            (&[("MAX_BODY_BYTES", "1e3")], "MAX_BODY_BYTES"),
            (&[("HOLYSHEEP_API_KEY", "sk")], "ROUTER_API_KEYS"),
            (
                &[("HOLYSHEEP_API_KEY", "sk"), ("ROUTER_API_KEYS", " , ")],
                "ROUTER_API_KEYS",
            ),
        ];
        for (vars, var) in cases {
            let e = config(vars).unwrap_err();
            assert_eq!(e.var, var, "{vars:?}: {e}");
        }
        let relay = config(&[("HOLYSHEEP_API_KEY", "sk")]).unwrap_err();
        assert!(relay.reason.contains("open relay") || relay.reason.contains("relay anyone"));
    }
}
