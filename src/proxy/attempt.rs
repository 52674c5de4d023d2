//! One attempt at an environment's model, and the attempts of one request: green, then blue
//! once when the core's fallback policy or the green breaker says so. A stream is judged by its
//! first event that carries the answer ([`super::opening`]) before anything is served; a
//! successful non-streamed answer by its whole body (is it the API's answer object?), read
//! within the attempt's limit. Used by the serving path ([`super::chat`]) and by a shadow step's copies
//! ([`super::shadow`]), which is why it is a module of its own: both need it, and it needs
//! neither.

use bluegreen_core::api::request::ApiRequest;
use bluegreen_core::api::sse::opening::NoAnswer;
use bluegreen_core::api::{Api, MAX_ANSWER_BYTES};
use bluegreen_core::config::Config;
use bluegreen_core::request::breaker::{Finish, Mode, Shed};
use bluegreen_core::request::fallback::{next_step, Attempt, FallbackReason, Next};
use bluegreen_core::request::outcome::{Outcome, StatusClass};
use bluegreen_core::request::routing::RoutingDoc;
use bluegreen_core::request::split::Selection;
use bluegreen_core::Environment;
use worker::{ByteStream, Headers, Method, Response, ResponseBody};

use super::opening::{self, Opened};
use crate::breaker::{self, Gate, Watch};
use crate::runtime::now_ms;
use crate::upstream::{self, Body, Failure};

/// The first outcome record of a request on `route` served by `environment` (a shadow copy's
/// too).
pub(super) fn outcome(
    request_id: &str,
    at_ms: u64,
    route: &str,
    environment: Environment,
    doc: &RoutingDoc,
    selection: Selection,
    call: &ApiRequest,
) -> Outcome {
    Outcome {
        request_id: request_id.to_string(),
        at_ms,
        route: route.to_string(),
        api: call.api,
        environment,
        model: doc.model_for(environment).to_string(),
        basis: selection.basis,
        routing_version: doc.version,
        stream: call.stream,
        status: 0,
        class: StatusClass::Ok,
        fallback: None,
        first_byte_ms: None,
        total_ms: 0,
        usage: None,
        interrupted: false,
        defect: None,
        vector_length: None,
        client_gone: false,
    }
}

/// What every attempt of one request shares (a shadow copy's too).
pub(super) struct Attempts<'a> {
    pub cfg: &'a Config,
    /// Whose shapes the answers have.
    pub api: Api,
    /// The route's name: its green breaker is the one asked.
    pub route: &'a str,
    pub doc: &'a RoutingDoc,
    pub request: &'a ApiRequest<'a>,
    pub headers: &'a Headers,
    pub forced: bool,
    pub request_id: &'a str,
}

/// What an attempt got that can be served.
pub(super) enum Reply {
    /// A response whose body goes to the client as it is, unread: not a success, or a
    /// successful answer longer than [`MAX_ANSWER_BYTES`].
    Plain(Response),
    /// A successful non-streamed answer, read whole and found to be the API's answer object.
    Whole {
        status: u16,
        headers: Headers,
        body: Vec<u8>,
    },
    /// A stream whose first event was an answer's: the response (for its status and headers),
    /// the bytes read while judging it, and the rest of the stream.
    Stream {
        resp: Response,
        held: Vec<u8>,
        rest: ByteStream,
    },
}

impl Reply {
    pub(super) fn status(&self) -> u16 {
        match self {
            Reply::Plain(resp) | Reply::Stream { resp, .. } => resp.status_code(),
            Reply::Whole { status, .. } => *status,
        }
    }
}

/// Why an attempt got nothing to serve.
pub(super) enum NoReply {
    /// No response, or no first event of a stream, within the attempt's limit.
    Timeout,
    /// The fetch failed; the runtime's message.
    Connect(String),
    /// The stream failed before its first event.
    Stream(NoAnswer),
    /// A successful status whose body is not the API's answer object; what it is instead.
    NotAnAnswer(String),
    /// The green breaker gave the attempt up while it waited: green was ejected and this
    /// attempt was past its hang deadline.
    Abandoned(Shed),
}

/// The serving attempt: what it got, and the core's word on it.
pub(super) struct Served {
    pub result: Result<Reply, NoReply>,
    pub attempt: Attempt,
    pub next: Next,
}

impl Served {
    /// The client gets this attempt's upstream answer, and it is a success (2xx).
    pub(super) fn is_answer(&self) -> bool {
        matches!((&self.next, &self.result), (Next::Serve, Ok(reply)) if (200..300).contains(&reply.status()))
    }
}

impl Attempts<'_> {
    /// Tries `environment`, then blue once when the core's fallback policy or the green
    /// breaker says so. Returns the serving attempt, the environment that served and why green
    /// was abandoned.
    pub(super) async fn run(
        &self,
        mut environment: Environment,
    ) -> (Served, Environment, Option<FallbackReason>) {
        let mut fallback = None;
        loop {
            let watch = match self.gate(environment) {
                Gate::Send(watch) => watch,
                // Green is ejected: blue serves without green being asked.
                Gate::Shed(shed) => {
                    fallback = Some(FallbackReason::Breaker(shed.reason));
                    environment = Environment::Blue;
                    continue;
                }
            };
            let served = self.send(environment, watch).await;
            let Next::RetryOnBlue(reason) = served.next else {
                return (served, environment, fallback);
            };
            let model = self.doc.model_for(environment);
            let id = self.request_id;
            let why = match &served.result {
                Err(NoReply::Stream(why)) => format!(" (its stream {why})"),
                Err(NoReply::NotAnAnswer(what)) => format!(" (its body is {what})"),
                Err(NoReply::Abandoned(shed)) => format!(
                    " (given up by the green breaker: {})",
                    serde_json::to_string(&shed.cause).unwrap_or_default()
                ),
                _ => String::new(),
            };
            let route = self.route;
            worker::console_warn!(
                "request {id} (route {route}): green ({model}) failed with {reason}{why}; \
                 retrying on blue"
            );
            if let Ok(reply) = served.result {
                discard(reply);
            }
            fallback = Some(reason);
            environment = Environment::Blue;
        }
    }

    /// Which of blue's times this request's attempts are measured against.
    fn mode(&self) -> Mode {
        if self.request.stream {
            Mode::Stream
        } else {
            Mode::Whole
        }
    }

    /// Whether an attempt at `environment` goes ahead: a green one that is not forced asks
    /// the route's green breaker.
    fn gate(&self, environment: Environment) -> Gate {
        match environment {
            Environment::Green if !self.forced => {
                breaker::admit(&self.cfg.green_ejection, self.route, self.mode())
            }
            _ => Gate::Send(None),
        }
    }

    /// One attempt at `environment`'s model: a stream within `FIRST_BYTE_TIMEOUT_MS` to its
    /// first event, a non-streamed answer within `COMPLETION_TIMEOUT_MS`. A green attempt the
    /// breaker `watch`es is reported to it when it is judged, and given up (to blue) when the
    /// breaker says so. A blue answer tells the breaker how long blue takes.
    pub(super) async fn send(&self, environment: Environment, mut watch: Option<Watch>) -> Served {
        let model = self.doc.model_for(environment);
        let payload = js_sys::Uint8Array::from(self.request.with_model(model).as_slice());
        let limit_ms = self.cfg.attempt_limit_ms(self.request.stream);
        let sent_at_ms = now_ms();
        let pending = upstream::start(
            &self.cfg.api_url(self.api),
            Method::Post,
            self.headers,
            Some(payload.into()),
            limit_ms,
        );
        let headers = match watch.as_mut() {
            None => pending.headers().await.map_err(NoReply::from),
            Some(w) => watched(&pending, w, sent_at_ms.saturating_add(limit_ms)).await,
        };
        let result = match headers {
            Ok(mut resp) if self.request.stream && is_sse_answer(&resp) => match resp.stream() {
                Ok(body) => {
                    match opening::read(self.api, body, sent_at_ms, limit_ms, watch.as_mut()).await
                    {
                        Opened::Answer { held, rest } => Ok(Reply::Stream { resp, held, rest }),
                        Opened::Failed(why) => Err(NoReply::Stream(why)),
                        Opened::TimedOut => Err(NoReply::Timeout),
                        Opened::Abandoned(shed) => Err(NoReply::Abandoned(shed)),
                    }
                }
                // No body at all: the stream ended before it began.
                Err(_) => Err(NoReply::Stream(NoAnswer::Ended)),
            },
            Ok(resp) if (200..300).contains(&resp.status_code()) => {
                let left_ms = sent_at_ms.saturating_add(limit_ms).saturating_sub(now_ms());
                whole(resp, self.api, left_ms).await
            }
            Ok(resp) => Ok(Reply::Plain(resp)),
            Err(no_reply) => Err(no_reply),
        };
        let attempt = match &result {
            Ok(reply) => Attempt::Status(reply.status()),
            Err(NoReply::Timeout | NoReply::Abandoned(_)) => Attempt::Timeout,
            Err(NoReply::Connect(_)) => Attempt::Connect,
            Err(NoReply::Stream(_)) => Attempt::StreamError,
            Err(NoReply::NotAnAnswer(_)) => Attempt::NotAnAnswer,
        };
        let next = match &result {
            // Only an unforced green attempt is watched, so blue always takes over.
            Err(NoReply::Abandoned(shed)) => {
                Next::RetryOnBlue(FallbackReason::Breaker(shed.reason))
            }
            _ => next_step(environment, self.forced, attempt),
        };
        let finish = attempt.finish();
        match (watch, environment) {
            (Some(w), _) => w.finish(finish),
            (None, Environment::Blue) if finish == Finish::Ok => breaker::blue_answered(
                &self.cfg.green_ejection,
                self.route,
                self.mode(),
                now_ms().saturating_sub(sent_at_ms),
            ),
            (None, _) => {}
        }
        Served {
            result,
            attempt,
            next,
        }
    }
}

/// Waits for a watched green attempt's response headers, looking again whenever the breaker
/// asks, and aborts the fetch when it gives green up. Without a look due before `limit_at_ms`
/// it waits on the fetch alone, with no timer of its own.
async fn watched(
    pending: &upstream::Pending,
    watch: &mut Watch,
    limit_at_ms: u64,
) -> Result<Response, NoReply> {
    loop {
        let now = now_ms();
        match watch.next(now, limit_at_ms) {
            Err(shed) => {
                pending.abort();
                return Err(NoReply::Abandoned(shed));
            }
            Ok(None) => return pending.headers().await.map_err(NoReply::from),
            Ok(Some(at)) => {
                if let Some(result) = pending.headers_within(at.saturating_sub(now)).await {
                    return result.map_err(NoReply::from);
                }
            }
        }
    }
}

impl From<Failure> for NoReply {
    fn from(f: Failure) -> NoReply {
        match f {
            Failure::Timeout => NoReply::Timeout,
            Failure::Connect(detail) => NoReply::Connect(detail),
        }
    }
}

/// Reads a successful non-streamed answer whole within `left_ms` and judges it: the API's
/// answer object is a reply; anything else (a proxy's HTML page, an error object sent with a
/// 200) fails the attempt before the client sees it. A body longer than [`MAX_ANSWER_BYTES`]
/// is served unread (what was read first, then the rest).
async fn whole(resp: Response, api: Api, left_ms: u64) -> Result<Reply, NoReply> {
    let (status, headers) = (resp.status_code(), resp.headers().clone());
    match upstream::read_body(resp, MAX_ANSWER_BYTES, left_ms.max(1)).await? {
        Body::Whole(body) => match api.answer_object(&body) {
            Ok(()) => Ok(Reply::Whole {
                status,
                headers,
                body,
            }),
            Err(what) => Err(NoReply::NotAnAnswer(what)),
        },
        Body::Long(rest) => Ok(Reply::Plain(
            Response::builder()
                .with_status(status)
                .with_headers(headers)
                .stream(rest),
        )),
    }
}

/// A successful SSE answer, whose first event is judged before the router commits to it.
fn is_sse_answer(resp: &Response) -> bool {
    (200..300).contains(&resp.status_code())
        && header_of(resp, "content-type")
            .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"))
}

/// Lets go of an answer we will not return: cancelling its body frees the connection now
/// rather than when the garbage collector gets to it.
pub(super) fn discard(reply: Reply) {
    match reply {
        Reply::Plain(resp) => {
            if let ResponseBody::Stream(stream) = resp.into_parts().1 {
                let _ = stream.cancel();
            }
        }
        // Dropping a stream cancels it.
        Reply::Stream { rest, .. } => drop(rest),
        Reply::Whole { .. } => {}
    }
}

fn header_of(resp: &Response, name: &str) -> Option<String> {
    resp.headers().get(name).ok().flatten()
}
