//! `POST /v1/feedback`: an app's score for an answer. The core says who may score (a router key
//! or `FEEDBACK_TOKEN`, never a request id alone), verifies the request id and reads who
//! answered from it, and says whether this isolate sends the score on (a replay of an id it saw
//! counted, or one over the credential's rate, is answered here); the controller counts it once.

use std::cell::RefCell;

use bluegreen_core::config::Config;
use bluegreen_core::error::ApiError;
use bluegreen_core::isolate::feedback::{self, Admit, Feedback, Intake, Refused, MAX_BODY_BYTES};
use worker::{Context, Env, Request, Response};

use crate::control;
use crate::error::Result;
use crate::http::{self, header, read_body};
use crate::recorder;
use crate::runtime::now_ms;

thread_local! {
    static INTAKE: RefCell<Intake> = RefCell::new(Intake::default());
}

/// Seconds a client refused by the controller's intake is asked to wait: its bucket refills
/// 100 scores a second.
const CONTROLLER_RETRY_AFTER_S: u64 = 1;

/// Handles one score.
pub async fn score(mut req: Request, env: &Env, cfg: &Config, ctx: &Context) -> Result<Response> {
    let Some(key) = cfg.request_id_key.as_ref() else {
        return Err(ApiError::feedback_disabled(cfg.feedback_problem).into());
    };
    let credential = match feedback::credential(
        &cfg.auth,
        cfg.feedback_token.as_deref(),
        header(&req, "authorization").as_deref(),
    ) {
        Ok(credential) => credential,
        Err(refusal) => return Err(refusal.into()),
    };
    let body = read_body(&mut req, MAX_BODY_BYTES).await?;
    let now = now_ms();
    let score = Feedback::from_body(&body, key, now, cfg.feedback_max_age_ms)?;
    let admitted = INTAKE.with(|i| {
        i.borrow_mut().admit(
            credential,
            &score.request_id,
            now,
            cfg.feedback_max_per_minute,
        )
    });
    if let Admit::Refuse(why) = admitted {
        // A credential's bucket gives a token every 60 / FEEDBACK_MAX_PER_MINUTE seconds.
        let wait_s = 60u64.div_ceil(u64::from(cfg.feedback_max_per_minute.max(1)));
        return Ok(refuse(&score, why, wait_s, cfg, env, ctx));
    }
    let json = serde_json::to_string(&score)
        .map_err(|e| ApiError::internal(&format!("a score serializes: {e}")))?;
    let mut answer = control::post_feedback(env, &score.route, &json).await?;
    // The controller's answer (200 counted, 409 already scored, 429 over its intake) is the
    // client's.
    let status = answer.status_code();
    let text = answer.text().await?;
    match status {
        200 => INTAKE.with(|i| i.borrow_mut().counted(&score.request_id)),
        // Scored already (through another isolate, or before this one remembered it): a
        // replay, counted as one.
        409 => {
            INTAKE.with(|i| i.borrow_mut().counted(&score.request_id));
            count_refusal(&score, Refused::Replay, cfg, env, ctx);
        }
        429 => {
            return Ok(refuse(
                &score,
                Refused::Limited,
                CONTROLLER_RETRY_AFTER_S,
                cfg,
                env,
                ctx,
            ))
        }
        _ => {}
    }
    Ok(http::json_text(status, text, &[]))
}

/// Counts a score that was not counted, in this isolate's next stats batch.
fn count_refusal(score: &Feedback, why: Refused, cfg: &Config, env: &Env, ctx: &Context) {
    let entry = score.refused_entry(now_ms(), why);
    if let Some(flush) = recorder::record_entry(&entry, &score.route, cfg, env) {
        ctx.wait_until(flush);
    }
}

/// Answers a score that is not counted (a replay, or over a rate bound, to be sent again after
/// `wait_s`), and counts it as refused.
fn refuse(
    score: &Feedback,
    why: Refused,
    wait_s: u64,
    cfg: &Config,
    env: &Env,
    ctx: &Context,
) -> Response {
    count_refusal(score, why, cfg, env, ctx);
    let error = match why {
        Refused::Replay => ApiError::duplicate_feedback(),
        Refused::Limited => ApiError::feedback_rate_limited(wait_s),
    };
    let retry_after = wait_s.to_string();
    let headers: &[(&str, &str)] = match why {
        Refused::Replay => &[],
        Refused::Limited => &[("retry-after", &retry_after)],
    };
    http::json_text(error.status, error.to_json(), headers)
}
