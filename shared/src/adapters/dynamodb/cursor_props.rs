//! Property tests of the list cursors both stores decode (issue 9). A cursor is whatever a client puts in
//! `cursor=`: the decoders answer a position or `InvalidCursor`, never a panic or another error, and a cursor a
//! store gave out decodes to the position it encoded. The router-level properties (a refused cursor answers 400
//! and changes nothing) are in `tests/tests/parsers_prop.rs`.

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

use super::{Item, decode_key, encode_key};
use crate::adapters::{decode_cursor, encode_cursor};
use crate::ports::StoreError;

/// The key attributes of a page of grants by requester (table key and GSI key).
const KEY_NAMES: [&str; 4] = ["pk", "sk", "gsi1pk", "gsi1sk"];

/// Any text, base64 of any bytes, and base64 of JSON objects whose members are near the expected ones.
fn cursor() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        3 => prop::sample::select(&KEY_NAMES[..]).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    let value = prop_oneof![
        3 => any::<String>().prop_map(serde_json::Value::String),
        1 => any::<u64>().prop_map(serde_json::Value::from),
        1 => Just(serde_json::Value::Null),
    ];
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{0,64}",
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        prop::collection::btree_map(member, value, 0..6)
            .prop_map(|m| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&m).expect("JSON"))),
        any::<u64>().prop_map(|n| URL_SAFE_NO_PAD.encode(n.to_string())),
        any::<i64>().prop_map(|n| URL_SAFE_NO_PAD.encode(n.to_string())),
    ]
}

proptest! {
    #[test]
    fn any_cursor_decodes_to_exactly_the_expected_key_attributes_or_is_refused(text in cursor()) {
        match decode_key(&text, &KEY_NAMES) {
            Ok(item) => {
                let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
                names.sort_unstable();
                let mut expected = KEY_NAMES.to_vec();
                expected.sort_unstable();
                prop_assert_eq!(names, expected);
                prop_assert!(item.values().all(|v| v.as_s().is_ok()));
            }
            Err(StoreError::InvalidCursor) => {}
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn a_dynamodb_cursor_the_store_gave_out_decodes_to_its_key(values in prop::array::uniform4(any::<String>())) {
        let key: Item = KEY_NAMES
            .iter()
            .zip(values)
            .map(|(name, value)| ((*name).to_owned(), AttributeValue::S(value)))
            .collect();
        prop_assert_eq!(decode_key(&encode_key(&key), &KEY_NAMES).ok(), Some(key));
    }

    #[test]
    fn any_cursor_decodes_as_an_embedded_position_or_is_refused(text in cursor()) {
        prop_assert!(matches!(decode_cursor::<String>(&text), Ok(_) | Err(StoreError::InvalidCursor)));
        prop_assert!(matches!(decode_cursor::<u64>(&text), Ok(_) | Err(StoreError::InvalidCursor)));
    }

    #[test]
    fn an_embedded_cursor_the_store_gave_out_decodes_to_its_position(id in any::<String>(), seq in any::<u64>()) {
        prop_assert_eq!(decode_cursor::<String>(&encode_cursor(&id)).ok(), Some(id));
        prop_assert_eq!(decode_cursor::<u64>(&encode_cursor(&seq)).ok(), Some(seq));
    }
}
