//! The shell's one error type, and the one place where a failure becomes an HTTP response:
//! status, OpenAI-shaped JSON body and the request id.
//!
//! Two kinds, kept apart: the router's refusals ([`ApiError`] from the core: bad requests,
//! auth, conflicts, configuration) and failures of the runtime's own APIs (storage, streams,
//! bindings), which are our bugs or the platform's and answer 500. Upstream failures are not
//! errors at all: they are answers the proxy returns and data the stats count.

use std::fmt;

use bluegreen_core::controller::rollout::Refusal;
use bluegreen_core::error::fields::FieldError;
use bluegreen_core::error::ApiError;
use wasm_bindgen::JsValue;
use worker::Response;

use crate::http;

/// Why the router answers with its own error.
#[derive(Debug)]
pub enum Error {
    /// A refusal the core (or the shell's input checks) made; answered as it says.
    Api(ApiError),
    /// A runtime API failed (storage, KV, streams, a Durable Object stub): a 500.
    Runtime(String),
}

/// The shell's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A runtime failure described in context (`"controller storage: ..."`).
    pub fn runtime(context: &str, detail: impl fmt::Display) -> Error {
        Error::Runtime(format!("{context}: {detail}"))
    }

    /// The error as the client sees it.
    pub fn api(&self) -> ApiError {
        match self {
            Error::Api(e) => e.clone(),
            Error::Runtime(detail) => ApiError::internal(detail),
        }
    }

    /// The response for this error, carrying the request id.
    pub fn respond(&self, request_id: &str) -> Response {
        let api = self.api();
        http::json_text(
            api.status,
            api.to_json(),
            &[("x-bluegreen-request-id", request_id)],
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(e) => e.fmt(f),
            Error::Runtime(detail) => f.write_str(detail),
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Error {
        Error::Api(e)
    }
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Error {
        Error::Api(e.into())
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        Error::Api(r.into())
    }
}

impl From<worker::Error> for Error {
    fn from(e: worker::Error) -> Error {
        Error::Runtime(e.to_string())
    }
}

impl From<worker::KvError> for Error {
    fn from(e: worker::KvError) -> Error {
        Error::Runtime(e.to_string())
    }
}

impl From<JsValue> for Error {
    /// A JavaScript exception from a runtime API (stream constructors and the like).
    fn from(e: JsValue) -> Error {
        Error::Runtime(format!("{e:?}"))
    }
}
