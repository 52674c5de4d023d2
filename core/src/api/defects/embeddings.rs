//! The defects of an embeddings answer ([`crate::api::embeddings`] reads its vectors).

use super::{Defect, Expectations};
use crate::api::embeddings::{vectors, Vectors};

/// The defect of an embeddings answer against what the request asked: no vectors (`empty`),
/// vectors of mixed or unreadable lengths, or not of the requested `dimensions`
/// (`dimension_mismatch`).
pub(super) fn classify_body(want: &Expectations, body: &[u8]) -> Option<Defect> {
    classify_vectors(want, &vectors(body)?)
}

/// [`classify_body`] of vectors already read.
pub(super) fn classify_vectors(want: &Expectations, v: &Vectors) -> Option<Defect> {
    if v.count == 0 {
        return Some(Defect::Empty);
    }
    match (v.length, want.dimensions) {
        (None, _) => Some(Defect::DimensionMismatch),
        (Some(n), Some(asked)) if n != asked => Some(Defect::DimensionMismatch),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::embeddings::tests::{b64, list};
    use crate::api::embeddings::Vectors;
    use crate::api::request::ApiRequest;
    use crate::api::Api;

    fn want(req: &str) -> Expectations {
        Expectations::of(&ApiRequest::parse(Api::Embeddings, req.as_bytes()).unwrap())
    }

    #[test]
    fn both_encodings_are_judged_alike() {
        let plain = |n: usize| format!("[{}]", vec!["0.25"; n].join(","));
        let ask = want(r#"{"model":"e","input":["a","b"]}"#);
        let ask_8 = want(r#"{"model":"e","input":"a","dimensions":8}"#);
        assert_eq!(ask_8.dimensions, Some(8));
        let quoted = |n: usize| format!("\"{}\"", b64(n));
        for encode in [&plain as &dyn Fn(usize) -> String, &quoted] {
            let good = list(&[encode(8), encode(8)]);
            assert_eq!(classify_body(&ask, good.as_bytes()), None);
            assert_eq!(classify_body(&ask_8, good.as_bytes()), None);
            assert_eq!(
                vectors(good.as_bytes()).unwrap(),
                Vectors {
                    count: 2,
                    length: Some(8),
                    mixed: false
                }
            );
            let mixed = list(&[encode(8), encode(7)]);
            assert_eq!(
                classify_body(&ask, mixed.as_bytes()),
                Some(Defect::DimensionMismatch)
            );
            let short = list(&[encode(4)]);
            assert_eq!(classify_body(&ask, short.as_bytes()), None);
            assert_eq!(
                classify_body(&ask_8, short.as_bytes()),
                Some(Defect::DimensionMismatch)
            );
        }
        assert_eq!(
            classify_body(&ask, list(&[]).as_bytes()),
            Some(Defect::Empty)
        );
        let unreadable = list(&["\"AAA\"".into()]);
        assert_eq!(
            classify_body(&ask, unreadable.as_bytes()),
            Some(Defect::DimensionMismatch)
        );
        assert_eq!(
            classify_body(&ask, b"{\"choices\":[]}"),
            None,
            "not an embeddings answer"
        );
    }
}
