//! JSON text read through one reader. serde_json compiles its parser (and every type's
//! `Deserialize` against it) once per kind of input, and the request path reads bytes (bodies,
//! stream events): reading `&str` as well linked a second copy of the parser into the wasm.
//! So every JSON text, `&str` included, is read here as bytes. A `&str`'s bytes are valid
//! UTF-8, so what is read is the same, and errors name the same line and column; the only cost
//! is that the strings inside are checked for UTF-8 once more.

use serde::Deserialize;
use serde_json::de::SliceRead;
use serde_json::Deserializer;

/// `text` read as a `T`, as `serde_json::from_str` would read it.
pub fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> serde_json::Result<T> {
    serde_json::from_slice(text.as_bytes())
}

/// A deserializer over `text`, for a caller that drives it itself (a bounded sequence).
pub fn reader(text: &str) -> Deserializer<SliceRead<'_>> {
    Deserializer::from_slice(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn reads_as_from_str_does() {
        let texts = [
            r#"{"a": [1, 2.5, -0.0, 1e300], "b": "é\u00e9\ud83d\ude00", "c": null}"#,
            r#""a string""#,
            "[1, 2",
            r#"{"a": 1,}"#,
            "\n\n  {\"x\": tru}",
        ];
        for text in texts {
            let ours = parse::<Value>(text).map_err(|e| e.to_string());
            let std = serde_json::from_str::<Value>(text).map_err(|e| e.to_string());
            assert_eq!(ours, std, "{text}");
        }
        // Strings without escapes are still borrowed from the text.
        let borrowed: &str = parse(r#""plain""#).unwrap();
        assert_eq!(borrowed, "plain");
    }
}
