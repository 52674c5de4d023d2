//! `POST /v1/feedback`: an app's score for an answer. Authenticated like the chat route; the
//! core verifies the request id and reads who answered from it; the controller counts it once.

use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use bluegreen_core::feedback::{Feedback, MAX_BODY_BYTES};
use worker::{Env, Request, Response};

use crate::control;
use crate::error::Result;
use crate::http::{self, header, read_body};
use crate::runtime::now_ms;

/// Handles one score.
pub async fn score(mut req: Request, env: &Env, cfg: &Config) -> Result<Response> {
    // The chat route's client auth: a router key, or (pass-through mode) any bearer token.
    if let Err(refusal) = cfg.auth.authorize(header(&req, "authorization").as_deref()) {
        http::drain(&mut req).await;
        return Err(refusal.into());
    }
    let Some(key) = cfg.request_id_key.as_ref() else {
        http::drain(&mut req).await;
        return Err(ApiError::feedback_disabled().into());
    };
    let body = read_body(&mut req, MAX_BODY_BYTES).await?;
    let feedback = Feedback::from_body(&body, key, now_ms(), cfg.feedback_max_age_ms)?;
    let json = serde_json::to_string(&feedback)
        .map_err(|e| ApiError::internal(&format!("a score serializes: {e}")))?;
    let mut answer = control::post_feedback(env, &json).await?;
    // The controller's answer (200 counted, 409 already scored) is the client's.
    let status = answer.status_code();
    let text = answer.text().await?;
    Ok(http::json_text(status, text, &[]))
}
