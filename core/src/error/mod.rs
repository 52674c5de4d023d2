//! The router's own refusals, in OpenAI's error shape: one type for every answer the router
//! gives instead of an upstream's (bad requests, auth, conflicts, configuration, our bugs), with
//! the status and the JSON body. Upstream failures are not errors here: they are data that
//! counts against an environment. `From` impls turn the core's field refusals into it; the
//! rollout's refusals convert next to their type.

pub mod fields;
mod routes;

use std::fmt;

use serde::Serialize;

use crate::error::fields::FieldError;

/// An error answered by the router itself, in OpenAI's shape:
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status to answer with.
    pub status: u16,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`…
    pub kind: &'static str,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// The field at fault, when there is one (`steps[2].green_percent` for nested fields).
    pub param: Option<String>,
    /// A sentence for a person.
    pub message: String,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, code: &'static str, message: String) -> ApiError {
        ApiError {
            status,
            kind,
            code,
            param: None,
            message,
        }
    }

    fn invalid(code: &'static str, param: Option<&str>, message: String) -> ApiError {
        ApiError {
            param: param.map(String::from),
            ..ApiError::new(400, "invalid_request_error", code, message)
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        })
        // Serializing strings cannot fail.
        .unwrap_or_default()
    }

    /// The body is not JSON.
    pub fn invalid_json(detail: &str) -> ApiError {
        ApiError::invalid(
            "invalid_json",
            None,
            format!("The request body is not valid JSON: {detail}."),
        )
    }

    /// The body is JSON but not an object.
    pub fn not_an_object() -> ApiError {
        ApiError::invalid(
            "invalid_body",
            None,
            "The request body must be a JSON object.".into(),
        )
    }

    /// A body with more top-level fields than any API has (`limit`): reading them all would cost
    /// every request CPU before any check.
    pub fn too_many_fields(limit: usize) -> ApiError {
        ApiError::invalid(
            "invalid_body",
            None,
            format!(
                "The request body has more than {limit} top-level fields; no API takes that many."
            ),
        )
    }

    /// A feedback's `request_id` that is not one this router takes feedback for.
    pub fn feedback_id(status: u16, code: &'static str, message: &str) -> ApiError {
        ApiError {
            param: Some("request_id".into()),
            ..ApiError::new(status, "invalid_request_error", code, message.to_string())
        }
    }

    /// A second score for the same request id.
    pub fn duplicate_feedback() -> ApiError {
        ApiError {
            param: Some("request_id".into()),
            ..ApiError::new(
                409,
                "invalid_request_error",
                "duplicate_feedback",
                "This request id has been scored already; each answer counts once.".into(),
            )
        }
    }

    /// Feedback without a usable secret to verify request ids with: unset, or breaking the
    /// rule `problem` states.
    pub fn feedback_disabled(problem: Option<&str>) -> ApiError {
        let message = match problem {
            Some(rule) => format!("Feedback is off: {rule}."),
            None => "Feedback is off: set the FEEDBACK_SECRET secret (a random string of at \
                     least 32 bytes) with `wrangler secret put FEEDBACK_SECRET`."
                .into(),
        };
        ApiError::new(503, "server_error", "feedback_disabled", message)
    }

    /// Feedback in pass-through mode without `FEEDBACK_TOKEN`: no credential the deployment
    /// trusts could be presented, and a request id alone is never one.
    pub fn feedback_needs_credential() -> ApiError {
        ApiError::new(
            503,
            "server_error",
            "feedback_credential_unset",
            "Feedback needs a credential this deployment trusts: set the FEEDBACK_TOKEN secret \
             (`wrangler secret put FEEDBACK_TOKEN`) and send it as `Authorization: Bearer \
             <token>`, or give the router its own keys (HOLYSHEEP_API_KEY and ROUTER_API_KEYS)."
                .into(),
        )
    }

    /// A score without a credential the deployment trusts.
    pub fn feedback_unauthorized() -> ApiError {
        ApiError::new(
            401,
            "invalid_request_error",
            "invalid_api_key",
            "Missing or invalid credential: send `Authorization: Bearer` with FEEDBACK_TOKEN \
             or a router key."
                .into(),
        )
    }

    /// More scores than the bound allows (one credential's in an isolate, or the
    /// controller's intake); the client may send it again after `retry_after_s` seconds.
    pub fn feedback_rate_limited(retry_after_s: u64) -> ApiError {
        ApiError::new(
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
            format!("Too many scores: not counted; send it again in {retry_after_s} s."),
        )
    }

    /// A field has the wrong type or is missing.
    pub fn invalid_field(param: &'static str, rule: &str) -> ApiError {
        ApiError::invalid(
            "invalid_type",
            Some(param),
            format!("Invalid request: `{param}` {rule}."),
        )
    }

    /// The body is larger than `MAX_BODY_BYTES`.
    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    /// `x-bluegreen-environment` is neither `blue` nor `green`.
    pub fn bad_environment_header(value: &str) -> ApiError {
        ApiError::invalid(
            "invalid_environment",
            Some("x-bluegreen-environment"),
            format!("The x-bluegreen-environment header must be `blue` or `green`, got {value:?}."),
        )
    }

    /// `x-bluegreen-environment` was sent where `ENVIRONMENT_OVERRIDE` is off.
    pub fn environment_override_disabled() -> ApiError {
        ApiError::new(
            403,
            "invalid_request_error",
            "environment_override_disabled",
            "This router does not let clients choose the environment (ENVIRONMENT_OVERRIDE is \
             off): send the request without the x-bluegreen-environment header."
                .into(),
        )
    }

    /// No route for the path.
    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            404,
            "invalid_request_error",
            "not_found",
            format!("No route for {path}."),
        )
    }

    /// The request path is one that a server could read as another path (an empty or dot
    /// segment, an encoded separator): refused before any routing.
    pub fn invalid_path(path: &str, why: &str) -> ApiError {
        ApiError::invalid(
            "invalid_path",
            None,
            format!("The request path {path:?} is refused: {why}."),
        )
    }

    /// A `/v1/*` call that the pass-through does not forward (`PASS_THROUGH`).
    pub fn not_passed_through(method: &str, path: &str) -> ApiError {
        ApiError::new(
            404,
            "invalid_request_error",
            "not_found",
            format!(
                "No route for {method} {path}: besides the APIs it routes (chat completions, \
                 responses, embeddings) this router forwards only the calls its PASS_THROUGH \
                 setting lists."
            ),
        )
    }

    /// The path exists but not for this method.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> ApiError {
        ApiError::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            format!("{method} is not allowed on {path}; use {allowed}."),
        )
    }

    /// The client's router key is missing or wrong.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            401,
            "invalid_request_error",
            "invalid_api_key",
            "Missing or invalid API key: send `Authorization: Bearer <key>` with one of the \
             router's keys (ROUTER_API_KEYS)."
                .into(),
        )
    }

    /// The worker's own settings are wrong; every request is refused until they are fixed.
    pub fn configuration(detail: &str) -> ApiError {
        ApiError::new(
            500,
            "server_error",
            "router_misconfigured",
            format!("The router is misconfigured: {detail}"),
        )
    }

    /// The upstream could not be reached.
    pub fn upstream_unreachable(model: &str, detail: &str) -> ApiError {
        ApiError::new(
            502,
            "server_error",
            "upstream_unreachable",
            format!("The upstream for model {model} could not be reached: {detail}"),
        )
    }

    /// The upstream's stream failed before its first event: it began with an in-band error, or
    /// ended or broke (after fallback, for green). `why` completes the sentence ("began with
    /// an error event: Overloaded").
    pub fn upstream_stream_error(model: &str, why: &str) -> ApiError {
        ApiError::new(
            502,
            "server_error",
            "upstream_stream_error",
            format!("The upstream's stream for model {model} {why}."),
        )
    }

    /// The upstream answered a success whose body is not the API's answer object (after
    /// fallback, for green). `what` says what it was ("not JSON (begins `<html>…`)").
    pub fn upstream_not_an_answer(model: &str, what: &str) -> ApiError {
        ApiError::new(
            502,
            "server_error",
            "upstream_invalid_answer",
            format!("The upstream answered model {model} with a success whose body is {what}, not an answer."),
        )
    }

    /// The upstream sent no answer in time: no first event of a stream, no non-streamed
    /// answer.
    pub fn upstream_timeout(model: &str, timeout_ms: u64) -> ApiError {
        ApiError::new(
            504,
            "server_error",
            "upstream_timeout",
            format!("The upstream for model {model} sent no response within {timeout_ms} ms."),
        )
    }

    /// An admin request body or query names a field that breaks a rule; nothing was changed.
    pub fn invalid_value(field: &str, rule: &str) -> ApiError {
        ApiError::invalid(
            "invalid_value",
            Some(field),
            format!("Invalid request: `{field}` {rule}. Nothing was changed."),
        )
    }

    /// The admin action does not apply in the rollout's current phase.
    pub fn conflict(message: String) -> ApiError {
        ApiError::new(409, "invalid_request_error", "conflict", message)
    }

    /// `ADMIN_TOKEN` is not set, so the admin API is off.
    pub fn admin_disabled() -> ApiError {
        ApiError::new(
            503,
            "server_error",
            "admin_disabled",
            "The admin API is off because neither ADMIN_TOKEN nor ROUTE_ADMIN_TOKENS is set. Set \
             it with `npx wrangler secret put ADMIN_TOKEN` (locally: ADMIN_TOKEN=... in \
             .dev.vars) and send `Authorization: Bearer <token>`."
                .into(),
        )
    }

    /// The admin token is missing or wrong.
    pub fn admin_unauthorized() -> ApiError {
        ApiError::new(
            401,
            "invalid_request_error",
            "invalid_admin_token",
            "Missing or invalid admin token: send `Authorization: Bearer <ADMIN_TOKEN>`.".into(),
        )
    }

    /// `METRICS_TOKEN` is not set, so the metrics endpoint is off.
    pub fn metrics_disabled() -> ApiError {
        ApiError::new(
            503,
            "server_error",
            "metrics_disabled",
            "The metrics endpoint is off because METRICS_TOKEN is not set. Set it with `npx \
             wrangler secret put METRICS_TOKEN` (locally: METRICS_TOKEN=... in .dev.vars) and \
             have the scraper send `Authorization: Bearer <token>`."
                .into(),
        )
    }

    /// The metrics token is missing or wrong.
    pub fn metrics_unauthorized() -> ApiError {
        ApiError::new(
            401,
            "invalid_request_error",
            "invalid_metrics_token",
            "Missing or invalid metrics token: send `Authorization: Bearer <METRICS_TOKEN>`."
                .into(),
        )
    }

    /// Something inside the router failed; a bug, not the client's or the upstream's fault.
    pub fn internal(detail: &str) -> ApiError {
        ApiError::new(
            500,
            "server_error",
            "internal_error",
            format!("Internal router error: {detail}"),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl From<FieldError> for ApiError {
    /// A field of an admin body or query that breaks a rule: a 400 naming the field.
    fn from(e: FieldError) -> ApiError {
        ApiError::invalid_value(&e.field, &e.rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn error_shape_is_openais() {
        let e = ApiError::invalid_field("messages", "must be an array");
        assert_eq!(e.status, 400);
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {
                "message": "Invalid request: `messages` must be an array.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "invalid_type"
            }})
        );
        let v: Value = serde_json::from_str(&ApiError::not_found("/x").to_json()).unwrap();
        assert_eq!(v["error"]["param"], Value::Null);
        assert_eq!(ApiError::body_too_large(10).status, 413);
        assert_eq!(ApiError::unauthorized().status, 401);
        assert_eq!(ApiError::configuration("x").status, 500);
        assert_eq!(ApiError::upstream_unreachable("m", "x").status, 502);
        assert_eq!(ApiError::upstream_timeout("m", 5).status, 504);
        let e = ApiError::invalid_path("/v1//x", "it has an empty segment");
        assert_eq!((e.status, e.code), (400, "invalid_path"));
        let e = ApiError::not_passed_through("GET", "/v1/files");
        assert_eq!((e.status, e.code), (404, "not_found"));
        assert!(e.message.contains("GET /v1/files") && e.message.contains("PASS_THROUGH"));
        let odd = ApiError::upstream_not_an_answer("m", "JSON without `choices`");
        assert_eq!((odd.status, odd.code), (502, "upstream_invalid_answer"));
        assert!(
            odd.message.contains("JSON without `choices`"),
            "{}",
            odd.message
        );
        let stream = ApiError::upstream_stream_error("m", "ended before its first event");
        assert_eq!((stream.status, stream.code), (502, "upstream_stream_error"));
        assert_eq!(
            stream.message,
            "The upstream's stream for model m ended before its first event."
        );
        assert_eq!(
            ApiError::method_not_allowed("GET", "/v1/chat/completions", "POST").status,
            405
        );
    }

    #[test]
    fn a_field_refusal_names_the_field() {
        let e = ApiError::from(FieldError::new(
            "steps[1].green_percent",
            "must be above 10",
        ));
        assert_eq!((e.status, e.code), (400, "invalid_value"));
        assert_eq!(e.param.as_deref(), Some("steps[1].green_percent"));
    }
}
