//! Errors of the document engine. Each names the JSON path involved and, where it helps,
//! what to do. None carries key material or plaintext.

use crate::provider::{ErrorClass, KeyError};
use crate::suite::CryptoError;

/// An error while encrypting or decrypting a document.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not valid JSON (or not valid UTF-8).
    #[error("input is not valid JSON: {0}")]
    Json(String),
    /// The document is JSON but not a payload kind oneseal knows.
    #[error("{0}")]
    UnknownPayload(String),
    /// A value at a policy path (or on the way to it) has the wrong JSON type.
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// JSON path of the value.
        path: String,
        /// What the policy needs there.
        expected: &'static str,
        /// What the document has.
        found: &'static str,
    },
    /// A value that must be base64 is not canonical standard base64.
    #[error("{path}: not valid base64 (standard alphabet with '=' padding expected)")]
    Base64 {
        /// JSON path of the value.
        path: String,
    },
    /// A value did not decrypt.
    #[error("{path}: {source}")]
    Crypto {
        /// JSON path of the value.
        path: String,
        /// Why (coarse on purpose).
        source: CryptoError,
    },
    /// A forced payload family (`--api`) that the document contradicts; names the markers.
    #[error("{0}")]
    ApiMismatch(String),
    /// An `encryptionKey` that is an empty or blank string (no key service is called).
    #[error("{path}: encryptionKey is empty; expected the base64 wrapped data key (or null for an unencrypted item)")]
    EmptyKey {
        /// JSON path of the `encryptionKey`.
        path: String,
    },
    /// The document carries more distinct `encryptionKey`s than the engine unwraps for one
    /// document (each costs a key-service call).
    #[error("{path}: the document carries more than {max} distinct encryptionKeys; split it into smaller documents")]
    TooManyKeys {
        /// JSON path of the first `encryptionKey` over the limit.
        path: String,
        /// The limit.
        max: usize,
    },
    /// A `sha256Hash` does not match the media bytes.
    #[error("{path}: SHA-256 of the media bytes does not match this hash (the file was altered, or the hash is for another file)")]
    HashMismatch {
        /// JSON path of the hash.
        path: String,
    },
    /// A `sha256Hash` is not 64 hex digits.
    #[error("{path}: not a SHA-256 hash (64 hex digits expected)")]
    BadHash {
        /// JSON path of the hash.
        path: String,
    },
    /// The key provider failed for this item.
    #[error("{path}: {source}")]
    Key {
        /// JSON path of the `encryptionKey` (or the message being encrypted).
        path: String,
        /// The provider's error.
        source: KeyError,
    },
    /// Strict mode: a member the policy does not know for this payload kind. Never forwarded
    /// in clear: the caller lists it in `passthrough` (sent as it is) or as a field (encrypted).
    #[error("{path}: not a member oneseal knows for a {kind}; strict mode refuses to send it in clear (list it in passthrough to send it as it is, or as a field to encrypt it)")]
    UnknownMember {
        /// JSON path of the member.
        path: String,
        /// The payload kind's name.
        kind: &'static str,
    },
    /// A document that mixes One API and legacy messages (or members): whichever policy ran,
    /// the other family's content would stay in plaintext.
    #[error("{path}: {message}")]
    MixedFamilies {
        /// JSON path of the first member of the other family.
        path: String,
        /// Which members of which family, and what to do.
        message: String,
    },
    /// Encrypt was asked to encrypt something that already carries an `encryptionKey`.
    #[error("{path}: already has an encryptionKey; is this document already encrypted? (decrypt it first, or remove the key)")]
    AlreadyEncrypted {
        /// JSON path of the `encryptionKey`.
        path: String,
    },
}

impl Error {
    /// The JSON path the error is about, if it names one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Error::WrongType { path, .. }
            | Error::Base64 { path }
            | Error::Crypto { path, .. }
            | Error::HashMismatch { path }
            | Error::BadHash { path }
            | Error::Key { path, .. }
            | Error::EmptyKey { path }
            | Error::TooManyKeys { path, .. }
            | Error::AlreadyEncrypted { path }
            | Error::UnknownMember { path, .. }
            | Error::MixedFamilies { path, .. } => Some(path),
            Error::Json(_) | Error::UnknownPayload(_) | Error::ApiMismatch(_) => None,
        }
    }

    /// The error's class, for exit codes.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Json(_)
            | Error::UnknownPayload(_)
            | Error::WrongType { .. }
            | Error::Base64 { .. }
            | Error::BadHash { .. }
            | Error::EmptyKey { .. }
            | Error::TooManyKeys { .. }
            | Error::AlreadyEncrypted { .. }
            | Error::UnknownMember { .. }
            | Error::MixedFamilies { .. } => ErrorClass::Input,
            Error::ApiMismatch(_) => ErrorClass::Config,
            Error::Crypto { .. } | Error::HashMismatch { .. } => ErrorClass::Crypto,
            Error::Key { source, .. } => source.class(),
        }
    }
}

pub(crate) fn type_name(v: &serde_json::Value) -> &'static str {
    use serde_json::Value::*;
    match v {
        Null => "null",
        Bool(_) => "a boolean",
        Number(_) => "a number",
        String(_) => "a string",
        Array(_) => "an array",
        Object(_) => "an object",
    }
}
