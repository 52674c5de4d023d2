//! A request to a routed API, read and rewritten: its top-level fields, the few the router
//! reads (`model`, `stream`, `user`), and the body sent upstream with `model` set to the
//! environment's. (The error body every refusal carries is [`crate::error`].)
//!
//! The request is rewritten without re-encoding it: every top-level field but `model` is copied
//! as the exact bytes the client sent (serde_json's `RawValue`), so tools, `response_format`,
//! `stream_options`, number formatting and fields we have never heard of reach the upstream
//! untouched.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::responses::ResponseId;
use super::Api;
use crate::environment::Environment;
use crate::error::ApiError;
use crate::util::json;

/// A parsed body of a routed API's request: its top-level fields, each kept as raw JSON.
#[derive(Debug)]
pub struct ApiRequest<'a> {
    /// The API it was sent to.
    pub api: Api,
    fields: Vec<(String, &'a RawValue)>,
    /// `"stream": true`.
    pub stream: bool,
    /// The OpenAI `user` field (or its successor `safety_identifier`), used as the sticky key
    /// when no header gives one.
    pub user: Option<String>,
    /// The `model` the client asked for: the route it goes to.
    pub model: Option<String>,
    /// A Responses follow-up of a response this router issued (`previous_response_id`): the
    /// environment that made it, and the upstream's own id to send in its place.
    pub continues: Option<(Environment, String)>,
}

struct Fields<'a>(Vec<(String, &'a RawValue)>);

/// Most top-level fields a request body may have. OpenAI's chat completion takes about 40
/// parameters and its Responses API about 30; a body of hundreds of thousands of tiny fields
/// (10 MiB of `"f1":0,`) would otherwise cost every request a key and an entry each, read and
/// written back (300 ms of CPU in local workerd, against 44 ms for 10 MiB of plain text).
pub const MAX_FIELDS: usize = 256;

/// What the field visitor says when a body has more than [`MAX_FIELDS`].
const TOO_MANY_FIELDS: &str = "bluegreen: too many top-level fields";

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
                while let Some(key) = map.next_key::<String>()? {
                    if fields.len() == MAX_FIELDS {
                        return Err(serde::de::Error::custom(TOO_MANY_FIELDS));
                    }
                    fields.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

fn first_byte(raw: &RawValue) -> u8 {
    // RawValue holds exactly one JSON value with surrounding whitespace trimmed.
    raw.get().as_bytes()[0]
}

/// The field of `api`'s request that carries the prompt, whether it is required, and the
/// first bytes its JSON may start with (with what the refusal says otherwise).
fn prompt_field(api: Api) -> (&'static str, bool, &'static [u8], &'static str) {
    match api {
        Api::Chat => ("messages", true, b"[", "must be an array"),
        // `input` may be left out when `previous_response_id`, `conversation` or `prompt`
        // carries the conversation: the upstream judges that.
        Api::Responses => ("input", false, b"[\"", "must be a string or an array"),
        Api::Embeddings => ("input", true, b"[\"", "must be a string or an array"),
    }
}

impl<'a> ApiRequest<'a> {
    /// Parses and checks a request body for `api`. Refuses malformed JSON, a body that is not
    /// an object, a missing or mistyped prompt (chat's `messages` array; the Responses API's
    /// `input`, a string or an array, when present), a non-string `model` and a non-boolean
    /// `stream`; everything else is left to the upstream to judge.
    pub fn parse(api: Api, body: &'a [u8]) -> Result<ApiRequest<'a>, ApiError> {
        let Fields(fields) = serde_json::from_slice(body).map_err(|e| {
            if e.to_string().starts_with(TOO_MANY_FIELDS) {
                ApiError::too_many_fields(MAX_FIELDS)
            } else if e.classify() == serde_json::error::Category::Data {
                ApiError::not_an_object()
            } else {
                ApiError::invalid_json(&e.to_string())
            }
        })?;
        let get = |name: &str| fields.iter().rev().find(|(k, _)| k == name).map(|f| f.1);
        let (prompt, required, starts, must) = prompt_field(api);
        match get(prompt) {
            None if required => return Err(ApiError::invalid_field(prompt, "is required")),
            Some(m) if !starts.contains(&first_byte(m)) => {
                return Err(ApiError::invalid_field(prompt, must))
            }
            _ => {}
        }
        let model = match get("model") {
            Some(m) if first_byte(m) != b'"' => {
                return Err(ApiError::invalid_field("model", "must be a string"))
            }
            Some(m) => json::parse::<String>(m.get()).ok(),
            None => None,
        };
        let stream = match get("stream").map(RawValue::get) {
            // Embeddings have no stream: the field is the upstream's to judge.
            _ if api == Api::Embeddings => false,
            None | Some("null") | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(ApiError::invalid_field("stream", "must be a boolean")),
        };
        let user = ["user", "safety_identifier"]
            .into_iter()
            .find_map(|f| json::parse::<String>(get(f)?.get()).ok());
        let continues = match api {
            Api::Responses => get("previous_response_id")
                .and_then(|p| json::parse::<String>(p.get()).ok())
                .and_then(|id| {
                    let issued = ResponseId::decode(&id)?;
                    Some((issued.environment, issued.upstream.to_string()))
                }),
            Api::Chat | Api::Embeddings => None,
        };
        Ok(ApiRequest {
            api,
            fields,
            stream,
            user,
            model,
            continues,
        })
    }

    /// The raw JSON of a top-level field (the last one, when the client sent it twice, as
    /// JSON parsers do).
    pub fn field(&self, name: &str) -> Option<&'a RawValue> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|f| f.1)
    }

    /// The body to send upstream: the client's fields, in the client's order and bytes, with
    /// `model` set to `model` (added first when the client sent none), and a follow-up's
    /// `previous_response_id` set back to the upstream's own id.
    pub fn with_model(&self, model: &str) -> Vec<u8> {
        // A string always serializes (and the wasm then carries no formatting of serde's error).
        let model_json = serde_json::to_string(model).unwrap_or_default();
        let previous_json = self
            .continues
            .as_ref()
            .map(|(_, id)| serde_json::to_string(id).unwrap_or_default());
        let size: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = String::with_capacity(size + model_json.len() + 12);
        out.push('{');
        if !self.fields.iter().any(|(k, _)| k == "model") {
            out.push_str("\"model\":");
            out.push_str(&model_json);
            if !self.fields.is_empty() {
                out.push(',');
            }
        }
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(key).unwrap_or_default());
            out.push(':');
            out.push_str(match (key.as_str(), &previous_json) {
                ("model", _) => &model_json,
                ("previous_response_id", Some(previous)) => previous,
                _ => value.get(),
            });
        }
        out.push('}');
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn rewrites_only_the_model_and_keeps_every_other_byte() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi \u00e9"}],
            "temperature":0.70000000000000001,"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],
            "response_format":{"type":"json_object"},"stream_options":{"include_usage":true},
            "x_unknown":{"nested":[1,2.50,null]}}"#;
        let req = ApiRequest::parse(Api::Chat, body).unwrap();
        let out = String::from_utf8(req.with_model("deepseek-v3")).unwrap();
        assert!(out.starts_with(
            r#"{"model":"deepseek-v3","messages":[{"role":"user","content":"hi \u00e9"}],"#
        ));
        assert!(out.contains(r#""temperature":0.70000000000000001,"#));
        assert!(out.contains(r#""x_unknown":{"nested":[1,2.50,null]}"#));
        assert!(out.contains(r#""stream_options":{"include_usage":true}"#));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["tools"][0]["function"]["name"], "f");
        assert_eq!(v.as_object().unwrap().len(), 7);
    }

    #[test]
    fn a_body_of_more_top_level_fields_than_any_api_has_is_refused() {
        let body = |n: usize| {
            let mut fields: Vec<String> = (1..n).map(|i| format!(r#""f{i}":0"#)).collect();
            fields.push(r#""messages":[]"#.into());
            format!("{{{}}}", fields.join(","))
        };
        assert!(ApiRequest::parse(Api::Chat, body(MAX_FIELDS).as_bytes()).is_ok());
        let e = ApiRequest::parse(Api::Chat, body(MAX_FIELDS + 1).as_bytes()).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_body"));
        assert!(e.message.contains("256"), "{}", e.message);
        // Still one error for a body that is not an object, and one for bad JSON.
        assert_eq!(
            ApiRequest::parse(Api::Chat, b"[1]").unwrap_err().code,
            "invalid_body"
        );
        assert_eq!(
            ApiRequest::parse(Api::Chat, b"{").unwrap_err().code,
            "invalid_json"
        );
    }

    #[test]
    fn adds_a_model_when_the_client_sent_none() {
        let req = ApiRequest::parse(Api::Chat, br#"{"messages":[]}"#).unwrap();
        assert_eq!(
            req.with_model("m\"x"),
            br#"{"model":"m\"x","messages":[]}"#.to_vec()
        );
    }

    #[test]
    fn a_responses_request_is_checked_for_its_own_fields() {
        fn ok(body: &str) -> Result<ApiRequest<'_>, ApiError> {
            ApiRequest::parse(Api::Responses, body.as_bytes())
        }
        let r = ok(r#"{"model":"gpt-4.1","input":"Hi","stream":true,"safety_identifier":"u-9"}"#)
            .unwrap();
        assert_eq!(
            (r.api, r.stream, r.user.as_deref()),
            (Api::Responses, true, Some("u-9"))
        );
        assert!(ok(r#"{"model":"m","input":[{"role":"user","content":"Hi"}]}"#).is_ok());
        // No `input`: a follow-up or a stored prompt may carry the conversation.
        assert!(ok(r#"{"model":"m","previous_response_id":"resp_1"}"#).is_ok());
        let e = ok(r#"{"model":"m","input":42}"#).unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            ("invalid_type", Some("input"))
        );
        // A chat body sent to the Responses API is not refused for its `messages`.
        assert!(ok(r#"{"model":"m","messages":[]}"#).is_ok());
        // `user` wins over `safety_identifier`.
        let r = ok(r#"{"input":"x","user":"a","safety_identifier":"b"}"#).unwrap();
        assert_eq!(r.user.as_deref(), Some("a"));
    }

    #[test]
    fn a_follow_up_of_a_response_the_router_issued_goes_upstream_with_the_upstreams_id() {
        let body = br#"{"model":"m","previous_response_id":"resp_bgg_resp_abc","input":"more"}"#;
        let r = ApiRequest::parse(Api::Responses, body).unwrap();
        assert_eq!(
            r.continues,
            Some((Environment::Green, "resp_abc".to_string()))
        );
        assert_eq!(
            r.with_model("green-m"),
            br#"{"model":"green-m","previous_response_id":"resp_abc","input":"more"}"#.to_vec()
        );
        // An id the router did not issue goes as it is, and pins nothing.
        let other = br#"{"model":"m","previous_response_id":"resp_abc","input":"more"}"#;
        let r = ApiRequest::parse(Api::Responses, other).unwrap();
        assert_eq!(r.continues, None);
        assert!(String::from_utf8(r.with_model("x"))
            .unwrap()
            .contains(r#""resp_abc""#));
        // Chat has no such field.
        let chat = br#"{"messages":[],"previous_response_id":"resp_bgg_x"}"#;
        assert_eq!(ApiRequest::parse(Api::Chat, chat).unwrap().continues, None);
    }

    #[test]
    fn reads_stream_and_user() {
        let req =
            ApiRequest::parse(Api::Chat, br#"{"messages":[],"stream":true,"user":"u-1"}"#).unwrap();
        assert!(req.stream);
        assert_eq!(req.user.as_deref(), Some("u-1"));
        let req =
            ApiRequest::parse(Api::Chat, br#"{"messages":[],"stream":null,"user":5}"#).unwrap();
        assert!(!req.stream);
        assert_eq!(req.user, None);
    }

    #[test]
    fn refuses_bad_bodies_with_the_field_named() {
        let cases: [(&[u8], &str, Option<&str>); 9] = [
            (b"{not json", "invalid_json", None),
            (b"", "invalid_json", None),
            (b"{\"messages\":[]} trailing", "invalid_json", None),
            (b"[1,2]", "invalid_body", None),
            (b"\"text\"", "invalid_body", None),
            (b"{}", "invalid_type", Some("messages")),
            (br#"{"messages":"hi"}"#, "invalid_type", Some("messages")),
            (
                br#"{"messages":[],"model":42}"#,
                "invalid_type",
                Some("model"),
            ),
            (
                br#"{"messages":[],"stream":"yes"}"#,
                "invalid_type",
                Some("stream"),
            ),
        ];
        for (body, code, param) in cases {
            let err = ApiRequest::parse(Api::Chat, body).unwrap_err();
            assert_eq!(err.status, 400, "{}", String::from_utf8_lossy(body));
            assert_eq!(err.code, code, "{}", String::from_utf8_lossy(body));
            assert_eq!(
                err.param.as_deref(),
                param,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
