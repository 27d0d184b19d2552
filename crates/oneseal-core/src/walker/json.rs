//! JSON in and out, and the round-trip helper for tests.

use serde_json::Value;

use super::detect::ENCRYPTION_KEY;
use crate::error::Error;

/// `decrypted` with the bookkeeping members removed where `original` (the plain
/// document it was encrypted from) has none: a callback item's `encryptionKey: null` and a
/// verified `sha256Hash`. A round trip must give back `original` exactly after this, key order
/// included. For tests and fuzzing.
pub fn without_bookkeeping(decrypted: &Value, original: &Value) -> Value {
    match (decrypted, original) {
        (Value::Object(d), Value::Object(o)) => Value::Object(
            d.iter()
                .filter(|(k, v)| {
                    o.contains_key(*k)
                        || !(k.as_str() == "sha256Hash"
                            || (k.as_str() == ENCRYPTION_KEY && v.is_null()))
                })
                .map(|(k, v)| {
                    let inner = match o.get(k) {
                        Some(ov) => without_bookkeeping(v, ov),
                        None => v.clone(),
                    };
                    (k.clone(), inner)
                })
                .collect(),
        ),
        (Value::Array(d), Value::Array(o)) if d.len() == o.len() => Value::Array(
            d.iter()
                .zip(o)
                .map(|(a, b)| without_bookkeeping(a, b))
                .collect(),
        ),
        _ => decrypted.clone(),
    }
}

/// Parses a JSON document (UTF-8 required; nesting is limited by serde_json to 128 levels).
pub fn parse(input: &[u8]) -> Result<Value, Error> {
    if input.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::Json("the input is empty".into()));
    }
    serde_json::from_slice(input).map_err(|e| Error::Json(e.to_string()))
}

/// Serializes a document, compact or pretty, with a trailing newline.
pub fn serialize(doc: &Value, pretty: bool) -> Result<Vec<u8>, Error> {
    serialize_sized(doc, pretty, 4096)
}

/// [`serialize`] into a buffer reserved for about `hint` bytes, which saves the copies of
/// growing it step by step for a large document (reserved but unused memory costs nothing).
pub(crate) fn serialize_sized(doc: &Value, pretty: bool, hint: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(hint);
    if pretty {
        serde_json::to_writer_pretty(&mut out, doc)
    } else {
        serde_json::to_writer(&mut out, doc)
    }
    .map_err(|e| Error::Json(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}
