//! JSON text read through one reader. serde_json compiles its parser (and every type's
//! `Deserialize` against it) once per kind of input, and the request path reads bytes (bodies,
//! stream events): reading `&str` as well linked a second copy of the parser into the wasm.
//! So every JSON text, `&str` included, is read here as bytes. A `&str`'s bytes are valid
//! UTF-8, so what is read is the same, and errors name the same line and column; the only cost
//! is that the strings inside are checked for UTF-8 once more.
//!
//! The reader also reads structs only from JSON objects. serde_json, asked for a struct, takes
//! an array too (the fields in order), so every derived `Deserialize` linked a second way of
//! reading its struct (about 17 KB of the gzipped wasm). Nothing here writes a struct as an
//! array (derived `Serialize` writes objects; tuples and tuple structs, such as histogram
//! buckets, are sequences and read as before), so [`Objects`] hands a struct's visitor only
//! objects: an array where a struct is expected is refused as any other non-object is
//! ("invalid type: sequence, expected struct …"). Every other request is passed on to
//! serde_json unchanged, so are its errors and their line and column.

use serde::de::{self, DeserializeSeed, Deserializer as _, Visitor};
use serde::Deserialize;
use serde_json::Deserializer;
use std::fmt;

/// `text` read as a `T`, as `serde_json::from_str` would read it (structs only from objects).
pub fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> serde_json::Result<T> {
    from_slice(text.as_bytes())
}

/// `bytes` read as a `T`, as `serde_json::from_slice` would read it (structs only from objects).
pub fn from_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    let mut de = Deserializer::from_slice(bytes);
    let value = T::deserialize(Objects(&mut de))?;
    de.end()?;
    Ok(value)
}

/// The JSON sequence at the start of `text` handed to `visitor`, for a caller that drives the
/// reading itself (a bounded sequence); what follows the sequence is not looked at.
pub fn read_seq<'a, V: Visitor<'a>>(text: &'a str, visitor: V) -> serde_json::Result<V::Value> {
    Objects(&mut Deserializer::from_slice(text.as_bytes())).deserialize_seq(visitor)
}

/// A deserializer that reads structs only from maps, and so reads every value inside the same
/// way: the visitors, sequences, maps and enums it hands out wrap what they hand out in turn.
pub struct Objects<D>(D);

/// A visitor whose deserializers, sequences, maps and enums are wrapped in [`Objects`].
struct Wrap<V>(V);

/// A struct's visitor: given only maps; anything else is refused as its own visitor would.
struct StructOnly<V>(V);

/// A seed that reads through [`Objects`].
struct Seed<S>(S);

struct Seq<A>(A);
struct Map<A>(A);
struct Enum<A>(A);
struct Variant<A>(A);

macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(Wrap(visitor))
            }
        )*
    };
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for Objects<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Wrap(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Wrap(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Wrap(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Wrap(visitor))
    }

    /// serde_json's `deserialize_map` is its `deserialize_struct` less the array case.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(StructOnly(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Wrap(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! visit {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.0.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Objects(d))
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Objects(d))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Seq(seq))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Map(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Enum(data))
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StructOnly<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Map(map))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Objects(d))
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Variant<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(Seed(seed))?;
        Ok((value, Variant(variant)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Variant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, StructOnly(visitor))
    }
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

    #[derive(Deserialize, Debug, PartialEq)]
    struct Inner {
        a: u32,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    enum Kind {
        Unit,
        New(Inner),
        Pair(u32, u32),
        Shape { w: u32 },
    }

    #[derive(Deserialize, Debug)]
    struct Outer<'a> {
        inner: Option<Inner>,
        list: Vec<Inner>,
        #[serde(default)]
        kinds: Vec<Kind>,
        pairs: Vec<(u32, u32)>,
        #[serde(borrow)]
        raw: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        name: std::borrow::Cow<'a, str>,
    }

    #[test]
    fn structs_read_from_objects_as_serde_json_reads_them() {
        let text = r#"{"inner": {"a": 1}, "list": [{"a": 2}], "pairs": [[1, 2]],
            "kinds": ["Unit", {"New": {"a": 3}}, {"Pair": [4, 5]}, {"Shape": {"w": 6}}],
            "raw": {"x": [1, {"y": null}]}, "name": "n"}"#;
        let ours: Outer = parse(text).unwrap();
        let std: Outer = serde_json::from_str(text).unwrap();
        assert_eq!(ours.inner, std.inner);
        assert_eq!(ours.list, std.list);
        assert_eq!(ours.kinds, std.kinds);
        assert_eq!(ours.pairs, vec![(1, 2)]);
        assert_eq!(ours.raw.unwrap().get(), r#"{"x": [1, {"y": null}]}"#);
        assert!(matches!(ours.name, std::borrow::Cow::Borrowed("n")));
        // Errors other than a struct given as an array read as serde_json's, place included.
        for bad in [
            r#"{"inner": 1, "list": [], "pairs": [], "name": ""}"#,
            r#"{"inner": {"a": "x"}, "list": [], "pairs": [], "name": ""}"#,
            r#"{"list": [{"b": 1}], "pairs": [], "name": ""}"#,
            r#"{"list": [], "pairs": [[1]], "name": ""}"#,
            r#"{"list": [], "pairs": [], "kinds": [{"Shape": 1}], "name": ""}"#,
            r#""text""#,
            "null",
            "{\n\"list\": [], \"pairs\": []",
        ] {
            let ours = parse::<Outer>(bad).unwrap_err().to_string();
            let std = serde_json::from_str::<Outer>(bad).unwrap_err().to_string();
            assert_eq!(ours, std, "{bad}");
        }
    }

    #[test]
    fn a_struct_given_as_an_array_is_refused() {
        assert!(serde_json::from_str::<Inner>("[1]").is_ok());
        let e = parse::<Inner>("[1]").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid type: sequence, expected struct Inner at line 1 column 0"
        );
        let nested = r#"{"inner": [1], "list": [], "pairs": [], "name": ""}"#;
        let e = parse::<Outer>(nested).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid type: sequence, expected struct Inner"),
            "{e}"
        );
        assert!(parse::<Outer>(r#"{"list": [[2]], "pairs": [], "name": ""}"#).is_err());
        assert!(parse::<Vec<Kind>>(r#"[{"New": [3]}]"#).is_err());
        let e = parse::<Vec<Kind>>(r#"[{"Shape": [6]}]"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid type: sequence, expected struct variant"),
            "{e}"
        );
    }

    #[test]
    fn read_seq_reads_a_sequence_and_stops() {
        struct Count;
        impl<'de> Visitor<'de> for Count {
            type Value = usize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
                let mut n = 0;
                while seq.next_element::<Inner>()?.is_some() {
                    n += 1;
                }
                Ok(n)
            }
        }
        assert_eq!(read_seq(r#"[{"a": 1}, {"a": 2}]"#, Count).unwrap(), 2);
        assert!(read_seq(r#"[[1]]"#, Count).is_err());
        assert!(read_seq(r#"{"a": 1}"#, Count).is_err());
    }
}
