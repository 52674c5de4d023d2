//! `GET /v1/models` and `GET /v1/models/{id}`: the routes, in OpenAI's shape, to a client the
//! router would serve.

use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use bluegreen_core::request::auth::AuthMode;
use bluegreen_core::route::registry::RouteTable;
use serde::Serialize;
use worker::{Env, Method, Request, Response};

use crate::error::Result;
use crate::proxy::headers;
use crate::upstream::{self, Failure};
use crate::{http, routes};

/// A model object of `GET /v1/models`: one route.
#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'a str,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

fn model<'a>(table: &'a RouteTable, name: &'a str, owner: &'a str) -> Option<Model<'a>> {
    table.get(name).map(|route| Model {
        id: &route.def.name,
        object: "model",
        created: route.def.created,
        owned_by: owner,
    })
}

/// `GET /v1/models` (`id` `None`) and `GET /v1/models/{id}`: the routes, in OpenAI's shape,
/// to a client the router would serve. A name no route has is OpenAI's `404 model_not_found`.
pub async fn models(req: &Request, env: &Env, cfg: &Config, id: Option<&str>) -> Result<Response> {
    authenticate(req, cfg).await?;
    let table = routes::table(env, cfg).await.doc;
    let owner = cfg.deployment_name.as_str();
    let body = match id {
        None => serde_json::to_string(&ModelList {
            object: "list",
            data: table
                .sorted()
                .iter()
                .filter_map(|r| model(&table, &r.def.name, owner))
                .collect(),
        }),
        Some(id) => match model(&table, id, owner) {
            Some(m) => serde_json::to_string(&m),
            None => return Err(ApiError::model_not_found(id).into()),
        },
    };
    let text = body.map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok(http::json_text(200, text, &[]))
}

/// Lets a client that the router would serve see its routes: with router keys, one of them;
/// in pass-through mode, a key the upstream takes (it is asked for its own model list, which
/// is thrown away; its refusal is the client's).
async fn authenticate(req: &Request, cfg: &Config) -> Result<()> {
    let authorization = headers::authorize(req, cfg)?;
    if matches!(cfg.auth, AuthMode::RouterKeys { .. }) {
        return Ok(());
    }
    let sent = headers::upstream(req, &cfg.auth, authorization.as_deref())?;
    let timeout_ms = cfg.first_byte_timeout_ms;
    match upstream::send(
        &cfg.upstream_url("/models"),
        Method::Get,
        &sent,
        None,
        timeout_ms,
    )
    .await
    {
        Ok(resp) if (200..300).contains(&resp.status_code()) => Ok(()),
        Ok(resp) => Err(ApiError::upstream_refused_key(resp.status_code()).into()),
        Err(Failure::Timeout) => Err(ApiError::upstream_timeout("(models)", timeout_ms).into()),
        Err(Failure::Connect(e)) => {
            Err(ApiError::upstream_unreachable("(models)", &cfg.scrub_upstream(&e)).into())
        }
    }
}
