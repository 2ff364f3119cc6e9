//! Event payloads at rest: deflated when that makes them smaller.
//!
//! DynamoDB bills a write per 1 KB and a read per 4 KB of the whole item, and the payload is
//! most of an event's bytes: a 1 KB JSON payload puts its event at 1.3 KB, two write units;
//! deflated (JSON shrinks 2–4×) it takes one. Payloads up to [`PLAIN_UP_TO`] bytes stay plain
//! text, readable in the table (operational events, pings, small events: deflating them would
//! not change a unit). The API, the signed bodies and the events list see the text either way.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::Item;
use crate::ports::StoreError;

/// Payloads at most this long are stored as they are.
pub const PLAIN_UP_TO: usize = 512;
const PLAIN: &str = "payload";
/// Raw deflate (RFC 1951) of the payload's UTF-8 text, in place of `payload`.
pub const DEFLATED: &str = "payload_deflate";
/// miniz's default: level 9 gains ~1 % on JSON for twice the CPU.
const LEVEL: u8 = 6;
/// No item holds more than DynamoDB's 400 KB, so no honest payload inflates past it.
const INFLATED_AT_MOST: usize = 400 * 1024;

/// Replaces a long `payload` text by its deflated bytes, if they are shorter.
pub fn pack(item: &mut Item) {
    let Some(AttributeValue::S(text)) = item.get(PLAIN) else {
        return;
    };
    if text.len() <= PLAIN_UP_TO {
        return;
    }
    let deflated = miniz_oxide::deflate::compress_to_vec(text.as_bytes(), LEVEL);
    if deflated.len() < text.len() {
        item.remove(PLAIN);
        item.insert(DEFLATED.into(), AttributeValue::B(Blob::new(deflated)));
    }
}

/// The item with its `payload` text back, whichever way it was stored.
pub fn unpack(mut item: Item) -> Result<Item, StoreError> {
    if let Some(AttributeValue::B(deflated)) = item.remove(DEFLATED) {
        let bytes =
            miniz_oxide::inflate::decompress_to_vec_with_limit(deflated.as_ref(), INFLATED_AT_MOST)
                .map_err(|e| {
                    StoreError::Corrupt(format!("event payload does not inflate: {:?}", e.status))
                })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| StoreError::Corrupt("event payload is not UTF-8".into()))?;
        item.insert(PLAIN.into(), AttributeValue::S(text));
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item_with(payload: &str) -> Item {
        Item::from([
            ("pk".into(), AttributeValue::S("p".into())),
            (PLAIN.into(), AttributeValue::S(payload.into())),
        ])
    }

    fn json_of(bytes: usize) -> String {
        let line = r#"{"id":"li_01","amount":4200,"currency":"usd","description":"Pro plan"},"#;
        format!(
            "[{}]",
            line.repeat(bytes / line.len()).trim_end_matches(',')
        )
    }

    #[test]
    fn short_payloads_stay_plain() {
        let mut item = item_with(r#"{"success":true}"#);
        pack(&mut item);
        assert_eq!(item, item_with(r#"{"success":true}"#));
        let exactly = "x".repeat(PLAIN_UP_TO);
        let mut item = item_with(&exactly);
        pack(&mut item);
        assert!(item.contains_key(PLAIN) && !item.contains_key(DEFLATED));
    }

    #[test]
    fn long_json_is_deflated_and_comes_back_byte_for_byte() {
        let text = json_of(4096);
        let mut item = item_with(&text);
        pack(&mut item);
        assert!(!item.contains_key(PLAIN));
        let Some(AttributeValue::B(b)) = item.get(DEFLATED) else {
            panic!("deflated: {item:?}")
        };
        assert!(
            b.as_ref().len() * 4 < text.len(),
            "{} bytes",
            b.as_ref().len()
        );
        assert_eq!(unpack(item).expect("unpack"), item_with(&text));
    }

    #[test]
    fn a_plain_item_unpacks_as_it_is_and_garbage_is_corrupt() {
        assert_eq!(unpack(item_with("{}")).expect("plain"), item_with("{}"));
        let mut bad = item_with("{}");
        bad.insert(
            DEFLATED.into(),
            AttributeValue::B(Blob::new(vec![0xff; 16])),
        );
        assert!(matches!(unpack(bad), Err(StoreError::Corrupt(_))));
    }
}
