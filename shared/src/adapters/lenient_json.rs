//! Lenient field types for the typed webhook payloads (`jira::events`, `freshservice::events`).
//!
//! A ticket system's delivery varies (Cloud or Data Center, old or new, an Automation rule's template, a body an
//! operator wrote by hand), so a field of an unexpected type must read as *absent*, exactly as if it were not
//! there, and never fail the whole body: a Freshservice `ticket` that is a string, a Jira `changelog.items` that
//! is an object, an issue key that is a number. Each type here accepts any JSON value and keeps only the shape it
//! wants; everything else is consumed and dropped.
//!
//! `serde`'s derived structs also accept a JSON *array* positionally (`["SEC-1"]` as `{"key": "SEC-1"}`);
//! [`Object`] only ever reads a JSON object, so `"issue": ["SEC-1"]` names no issue.
//!
//! The payloads are read from an already parsed `serde_json::Value` (its object keys are unique; a body with a
//! key twice means its last value, as JSON parsers commonly read it), so a derived struct of these fields never
//! fails.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de};

/// What a lenient field makes of each kind of JSON value; `None` (the default) drops it.
trait Shape {
    type Out;

    fn from_str(_: &str) -> Option<Self::Out> {
        None
    }

    fn from_u64(_: u64) -> Option<Self::Out> {
        None
    }

    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self::Out>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self::Out>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// Visits any JSON value for the shape `S`.
struct Lenient<S>(PhantomData<S>);

fn read<'de, S: Shape, D: Deserializer<'de>>(deserializer: D) -> Result<Option<S::Out>, D::Error> {
    deserializer.deserialize_any(Lenient::<S>(PhantomData))
}

impl<'de, S: Shape> Visitor<'de> for Lenient<S> {
    type Value = Option<S::Out>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        // Only a non-negative integer is a number these payloads use (JSON parsers give those as u64 anyway).
        Ok(u64::try_from(n).ok().and_then(S::from_u64))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(S::from_u64(n))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(S::from_str(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        S::from_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        S::from_seq(seq)
    }
}

/// A JSON string, trimmed; absent when the value is not a string or is blank.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Text(pub Option<String>);

impl Shape for Text {
    type Out = String;

    fn from_str(s: &str) -> Option<String> {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read::<Self, D>(deserializer).map(Self)
    }
}

impl Text {
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// An identifier that senders render as a string or as a number (`"10042"` or `10042`): the string trimmed
/// (possibly empty), or the non-negative integer in decimal; absent for anything else. The caller decides what a
/// valid id is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IdText(pub Option<String>);

impl Shape for IdText {
    type Out = String;

    fn from_str(s: &str) -> Option<String> {
        Some(s.trim().to_owned())
    }

    fn from_u64(n: u64) -> Option<String> {
        Some(n.to_string())
    }
}

impl<'de> Deserialize<'de> for IdText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read::<Self, D>(deserializer).map(Self)
    }
}

impl IdText {
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// A JSON object read as `T` (whose fields are themselves lenient); absent when the value is not an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Object<T>(pub Option<T>);

impl<T> Default for Object<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T: DeserializeOwned> Shape for Object<T> {
    type Out = T;

    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Option<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read::<Self, D>(deserializer).map(Self)
    }
}

impl<T> Object<T> {
    pub(crate) fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

/// A JSON array's elements, each read as `T` (a lenient type, so an element of another shape reads as absent);
/// empty when the value is not an array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: DeserializeOwned> Shape for List<T> {
    type Out = Vec<T>;

    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Vec<T>>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<T>()? {
            items.push(item);
        }
        Ok(Some(items))
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read::<Self, D>(deserializer).map(|items| Self(items.unwrap_or_default()))
    }
}

impl<T> List<T> {
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option<T>` field: `Some` whenever the key is
/// in the object, even with a `null` or unusable value (`T` says what it made of it), `None` only when the key
/// is missing. For the few places where "given but unusable" must not fall back to another field.
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Probe {
        text: Text,
        id: IdText,
        object: Object<Inner>,
        list: List<Object<Inner>>,
        #[serde(deserialize_with = "present")]
        given: Option<IdText>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Inner {
        key: Text,
    }

    fn probe(value: Value) -> Probe {
        Probe::deserialize(&value).expect("a lenient struct reads any object")
    }

    #[test]
    fn every_field_of_an_unexpected_type_reads_as_absent() {
        for odd in [
            json!(null),
            json!(true),
            json!(-3),
            json!(2.5),
            json!([1, {"key": "X-1"}]),
            json!({"key": "X-1"}),
        ] {
            let read = probe(json!({"text": odd, "id": odd, "object": odd, "list": odd}));
            assert_eq!(read.text, Text(None), "{odd}");
            if !odd.is_object() {
                assert_eq!(read.object, Object(None), "{odd}");
            }
            assert_eq!(read.id, IdText(None), "{odd}");
            if !odd.is_array() {
                assert_eq!(read.list, List(vec![]), "{odd}");
            }
        }
    }

    #[test]
    fn strings_are_trimmed_and_ids_take_strings_or_whole_numbers() {
        let read =
            probe(json!({"text": "  SEC-1 ", "id": 10042, "object": {"key": " A-1", "more": [1]}}));
        assert_eq!(read.text.get(), Some("SEC-1"));
        assert_eq!(read.id.get(), Some("10042"));
        assert_eq!(read.object.get().and_then(|i| i.key.get()), Some("A-1"));
        assert_eq!(probe(json!({"text": "   "})).text, Text(None));
        assert_eq!(probe(json!({"id": " 7 "})).id.get(), Some("7"));
        assert_eq!(probe(json!({"id": ""})).id.get(), Some(""));
    }

    #[test]
    fn an_array_is_never_read_as_an_object() {
        assert_eq!(probe(json!({"object": ["A-1"]})).object, Object(None));
        let read = probe(json!({"list": [{"key": "A-1"}, "A-2", ["A-3"]]}));
        let keys: Vec<Option<&str>> = read
            .list
            .iter()
            .map(|o| o.get().and_then(|i| i.key.get()))
            .collect();
        assert_eq!(keys, vec![Some("A-1"), None, None]);
    }

    #[test]
    fn a_present_field_is_told_from_a_missing_one() {
        assert_eq!(probe(json!({})).given, None);
        assert_eq!(probe(json!({"given": null})).given, Some(IdText(None)));
        assert_eq!(
            probe(json!({"given": 5})).given,
            Some(IdText(Some("5".into())))
        );
    }
}
