//! The refusals about routes: a model no route serves, a route that does not exist or was
//! deleted, a route a token may not act on, and the upstream's refusal of a key when the routes
//! are listed in pass-through mode.

use super::ApiError;

/// Longest part of a client's `model` quoted back in a refusal.
const QUOTED_MODEL: usize = 256;

impl ApiError {
    /// A chat or Responses call whose `model` names an embeddings route.
    pub fn route_serves_embeddings(route: &str) -> ApiError {
        ApiError {
            param: Some("model".into()),
            ..ApiError::new(
                400,
                "invalid_request_error",
                "model_not_supported",
                format!(
                    "The route `{}` serves embeddings: call POST /v1/embeddings with it.",
                    quoted(route)
                ),
            )
        }
    }

    /// A live split asked of an embeddings route (`PUT /admin/split` above 0).
    pub fn embeddings_split(route: &str) -> ApiError {
        ApiError::invalid_value(
            "green_percent",
            &format!(
                "must be 0 on `{}`, an embeddings route: vectors of two models do not compare, \
                 so green never serves a user there. Start a rollout (shadow steps) and promote \
                 it once green's index is built, or force green with x-bluegreen-environment \
                 for the re-index job",
                quoted(route)
            ),
        )
    }

    /// No route is named after the request's `model`, and no default route takes it (OpenAI's
    /// answer for an unknown model).
    pub fn model_not_found(model: &str) -> ApiError {
        ApiError {
            param: Some("model".into()),
            ..ApiError::new(
                404,
                "invalid_request_error",
                "model_not_found",
                format!(
                    "The model `{}` does not exist: no route of this router is named after it \
                     (GET /v1/models lists them).",
                    quoted(model)
                ),
            )
        }
    }

    /// A route the admin API was asked about does not exist.
    pub fn route_not_found(route: &str) -> ApiError {
        ApiError::new(
            404,
            "invalid_request_error",
            "route_not_found",
            format!("No route named `{route}` (GET /admin/routes lists them)."),
        )
    }

    /// A route token (`ROUTE_ADMIN_TOKENS`) used on a route it does not name.
    pub fn route_forbidden(route: &str) -> ApiError {
        ApiError::new(
            403,
            "invalid_request_error",
            "route_forbidden",
            format!(
                "This admin token may not act on the route `{route}`: it acts only on the routes \
                 ROUTE_ADMIN_TOKENS lists for it."
            ),
        )
    }

    /// A stats batch for a route that no longer exists: nobody will take it, so the isolate
    /// drops it.
    pub fn route_gone(route: &str) -> ApiError {
        ApiError::new(
            410,
            "invalid_request_error",
            "route_gone",
            format!("The route `{route}` was deleted."),
        )
    }

    /// In pass-through mode, the upstream did not take the client's key when asked to list its
    /// models (`status`): the router lists its routes only to a client it would serve.
    pub fn upstream_refused_key(status: u16) -> ApiError {
        match status {
            401 | 403 => ApiError::new(
                401,
                "invalid_request_error",
                "invalid_api_key",
                "The upstream did not accept the API key: send `Authorization: Bearer <key>` \
                 with a key of the upstream's."
                    .into(),
            ),
            _ => ApiError::new(
                502,
                "server_error",
                "upstream_error",
                format!(
                    "The upstream answered {status} when asked to confirm the API key, so the \
                     routes are not listed."
                ),
            ),
        }
    }
}

/// `model` as a refusal quotes it: at most [`QUOTED_MODEL`] characters, an ellipsis after.
fn quoted(model: &str) -> String {
    match model.char_indices().nth(QUOTED_MODEL) {
        Some((end, _)) => format!("{}…", &model[..end]),
        None => model.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_model_is_quoted_short() {
        let long = "m".repeat(10_000);
        let e = ApiError::model_not_found(&long);
        assert!(e.message.len() < 400, "{}", e.message.len());
        assert!(e.message.contains(&format!("{}…`", "m".repeat(256))));
        assert!(ApiError::model_not_found("gpt-5")
            .message
            .contains("`gpt-5`"));
        assert_eq!(
            (e.status, e.code, e.param.as_deref()),
            (404, "model_not_found", Some("model"))
        );
    }
}
