//! The request path: the routed APIs, `POST /v1/chat/completions` and `POST /v1/responses`
//! ([`routed`]), with the judging of a stream's first event that carries the answer
//! ([`opening`]) and its body relay ([`relay`]), calls on the stored responses the router issued
//! ([`stored`]), and the plain pass-through of other `/v1/*` calls ([`pass_through`]).
//!
//! Every decision here is the core's (which environment, whether to fall back, what a header
//! may cross); these files perform it. One chat completion carries one [`Exchange`] from the
//! serving attempt to its accounting, as pingora carries a per-request `CTX`.

mod attempt;
mod drain;
pub(crate) mod headers;
mod judge;
mod opening;
mod pass_through;
mod relay;
mod routed;
mod shadow;
mod stored;

use std::rc::Rc;

use bluegreen_core::api::defects::Expectations;
use bluegreen_core::api::Api;
use bluegreen_core::config::Config;
use bluegreen_core::request::outcome::Outcome;
use worker::{Context, Env, Headers};

use crate::error::Result;
use crate::recorder;
use crate::runtime::now_ms;

pub use pass_through::pass_through;
pub use routed::{embeddings, routed};
pub use stored::stored;

/// One routed call from its serving attempt to its accounting: the outcome record being
/// filled in (request id, arrival time, environment, model, fallback…) and where it goes when
/// known (the log and the controller's stats).
struct Exchange {
    record: Outcome,
    /// What the request asked of the answer: JSON, tools (for its defect checks).
    want: Expectations,
    /// Whose shapes the answer has.
    api: Api,
    env: Env,
    cfg: Rc<Config>,
    /// On a shadow step, when this request was copied to green: where its outcome meets the
    /// copy's.
    pair: Option<shadow::Pair>,
    /// When this request's pair of answers goes to the grader: where the served answer's text
    /// meets the copy's.
    judged: Option<judge::Judged>,
    /// The served answer's text, read for the grader (only with `judged`).
    answer_text: Option<String>,
}

impl Exchange {
    /// Milliseconds since the request arrived.
    fn elapsed_ms(&self) -> u64 {
        now_ms().saturating_sub(self.record.at_ms)
    }

    /// The upstream's headers that go back to the client, plus where the request went.
    fn response_headers(&self, upstream: &Headers) -> Result<Headers> {
        let r = &self.record;
        let out = headers::routing(
            upstream,
            r.environment,
            Some(&r.model),
            &r.request_id,
            r.fallback,
        )?;
        out.set("x-bluegreen-route", &r.route)?;
        Ok(out)
    }

    /// Accounts for the request once its last byte was sent, from inside a future that
    /// `ctx.wait_until` already runs.
    async fn settle(mut self) {
        self.record.total_ms = self.elapsed_ms();
        let flush = recorder::record(&self.record, &self.cfg, &self.env);
        // Blue's end goes to the copy before any wait: the copy's give-up clock starts when
        // blue's answer ended, not a flush later (the runtime's 30 s run from the former).
        let paired = self.paired();
        let grading = self.judged_done();
        // The grader's call does not wait behind a flush (up to `STATS_FLUSH_SECONDS` and its
        // delivery): its time runs from the served answer's end.
        let flushes = async {
            if let Some(flush) = flush {
                flush.await;
            }
            if let Some(flush) = paired {
                flush.await;
            }
        };
        let grading = async {
            if let Some(grading) = grading {
                grading.await;
            }
        };
        futures_util::future::join(flushes, grading).await;
    }

    /// Hands the served answer's text to the grader's pair, if any (none unless it is a whole
    /// successful answer of the environment the request was routed to): the grading to run
    /// when the pair was completed here.
    fn judged_done(&mut self) -> Option<impl std::future::Future<Output = ()>> {
        let r = &self.record;
        let whole = r.class == bluegreen_core::request::outcome::StatusClass::Ok
            && (200..300).contains(&r.status)
            && r.fallback.is_none()
            && !r.interrupted
            && !r.client_gone;
        let text = self.answer_text.take().filter(|_| whole);
        self.judged.as_ref()?.served_done(text)
    }

    /// Hands blue's outcome to the shadow copy's pair, if any: the flush to run when the pair
    /// was completed here and a batch must be sent.
    fn paired(&self) -> Option<impl std::future::Future<Output = ()>> {
        self.pair
            .as_ref()?
            .blue_done(&self.record, &self.cfg, &self.env)
    }

    /// Accounts for the request on the response path: any flush goes to `ctx.wait_until`.
    fn settle_now(mut self, ctx: &Context) {
        self.record.total_ms = self.elapsed_ms();
        if let Some(flush) = recorder::record(&self.record, &self.cfg, &self.env) {
            ctx.wait_until(flush);
        }
        if let Some(flush) = self.paired() {
            ctx.wait_until(flush);
        }
        if let Some(grading) = self.judged_done() {
            ctx.wait_until(grading);
        }
    }
}
