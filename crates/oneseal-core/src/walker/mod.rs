//! The document engine: detects the payload kind and applies the field policy to every
//! message or callback item, with data keys from the key cache.
//!
//! One per-item core, three drivers over it:
//! - `detect`: the payload kind of a document (or of a streamed document's shape);
//! - `layout`: the per-kind rules as data (compiled policy paths, strict mode's members);
//! - `item`: the engine's state and the per-item work (keys, sealing, opening);
//! - `document`: the per-document core over it (`Sealing`, `Unsealing`), which the drivers run;
//! - `tree`: the driver for a document parsed whole;
//! - `splice`: the driver for an in-memory request copied token by token, leaves replaced
//!   where they stand (no tree); it hands what it does not take to the tree driver;
//! - `stream`: the driver for documents of any size, in bounded memory;
//! - `slice`: bytes in, bytes out: the splice driver, else the tree driver;
//! - `json`: parsing and writing.
//!
//! The drivers use the core and never each other; the core uses no driver; only `slice`
//! chooses between drivers.

mod detect;
mod document;
mod item;
mod json;
mod layout;
mod slice;
mod splice;
mod stream;
mod tree;

pub use detect::{detect, Api, PayloadKind, ENCRYPTION_KEY};
pub use item::{Engine, EngineOptions, Report, MAX_DISTINCT_KEYS};
pub use json::{parse, serialize, without_bookkeeping};
pub use stream::Streamed;

/// Tests only: every request and callback fixture, by path, as its bytes.
#[cfg(test)]
pub(crate) fn fixture_documents() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut out = Vec::new();
    for dir in [
        "one-api/requests",
        "one-api/callbacks",
        "legacy/requests",
        "legacy/callbacks",
    ] {
        for e in std::fs::read_dir(root.join(dir))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push((p.display().to_string(), std::fs::read(&p)?));
            }
        }
    }
    Ok(out)
}
