//! The embeddings API's answers, as the defect checks read them: how many vectors an answer
//! holds and how long each is, in either encoding (`float`, a JSON array of numbers; `base64`,
//! little-endian `f32`s, which the official SDKs ask for by default).
//!
//! Vectors of two models do not compare, even at equal lengths, so an embeddings route is never
//! split per request (see [`crate::route::registry::RouteKind`]). What the router can judge of
//! an answer is its shape: an answer with no vectors is `empty`; one whose vectors differ in
//! length, or are not the length the request asked for (`dimensions`), is
//! `dimension_mismatch` ([`crate::api::defects`]). An index built from such vectors cannot be
//! searched.

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

/// Most vectors of one answer whose lengths are read (OpenAI takes 2048 inputs a request).
pub const MAX_VECTORS: usize = 4096;

/// The length of one vector, however it was encoded; `None` for a shape the checks cannot
/// read (a base64 string whose length is no whole number of `f32`s, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Length(Option<u64>);

impl<'de> Deserialize<'de> for Length {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Length;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of numbers or a base64 string")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Length, A::Error> {
                let mut n = 0u64;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Length(Some(n)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Length, E> {
                Ok(Length(base64_floats(s)))
            }
        }
        d.deserialize_any(V)
    }
}

/// How many `f32`s a base64 string holds: its decoded bytes over 4, when they divide.
fn base64_floats(s: &str) -> Option<u64> {
    let s = s.trim_end_matches('=');
    if s.bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/'))
        || s.len() % 4 == 1
    {
        // One character past a group of four is no whole byte: not base64.
        return None;
    }
    let bytes = (s.len() as u64 * 3) / 4;
    (bytes % 4 == 0).then_some(bytes / 4)
}

#[derive(Deserialize)]
struct Item {
    embedding: Option<Length>,
}

#[derive(Deserialize)]
struct List {
    data: Option<Vec<Item>>,
}

/// What an embeddings answer holds, as far as its checks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vectors {
    /// Vectors read.
    pub count: u64,
    /// Their length, when they all have one.
    pub length: Option<u64>,
    /// Some vectors differ in length from the others, or could not be measured.
    pub mixed: bool,
}

/// Reads the vectors of an embeddings answer; `None` when it is no such answer.
pub fn vectors(body: &[u8]) -> Option<Vectors> {
    let list: List = serde_json::from_slice(body).ok()?;
    let mut out = Vectors {
        count: 0,
        length: None,
        mixed: false,
    };
    for item in list.data?.iter().take(MAX_VECTORS) {
        out.count += 1;
        match (item.embedding.and_then(|l| l.0), out.length) {
            (None, _) => out.mixed = true,
            (Some(n), None) if out.count == 1 => out.length = Some(n),
            (Some(n), Some(first)) if n == first => {}
            _ => out.mixed = true,
        }
    }
    if out.mixed {
        out.length = None;
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` little-endian f32s, base64-encoded as OpenAI sends them.
    pub(crate) fn b64(n: usize) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes: Vec<u8> = (0..n)
            .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
            .collect();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for k in 0..4 {
                if k <= chunk.len() {
                    out.push(A[((v >> (18 - 6 * k)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub(crate) fn list(vectors: &[String]) -> String {
        let items: Vec<String> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| format!(r#"{{"object":"embedding","index":{i},"embedding":{v}}}"#))
            .collect();
        format!(
            r#"{{"object":"list","data":[{}],"model":"m"}}"#,
            items.join(",")
        )
    }

    #[test]
    fn base64_lengths_are_counted_in_floats_for_every_padding() {
        for n in 0..50 {
            assert_eq!(base64_floats(&b64(n)), Some(n as u64), "{n} floats");
        }
        assert_eq!(base64_floats("AAA"), None, "two bytes are no f32");
        assert_eq!(base64_floats("AA*A"), None);
        assert_eq!(
            base64_floats("AAAAAAAAA"),
            None,
            "9 characters are no base64"
        );
    }
}
