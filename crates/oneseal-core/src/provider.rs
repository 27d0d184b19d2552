//! The [`KeyProvider`] trait and the errors key services report.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::secret::{DataKey, SecretKey};

/// A source of data keys: generates a fresh data key for encryption and unwraps the blob
/// stored in `encryptionKey` for decryption.
///
/// Implementations: `LocalProvider` (embedded default, offline), `oneseal_kms::AwsKmsProvider`,
/// and `BlobRouter`, which picks one by blob.
#[async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// Generates a new 32-byte data key and its wrapped blob.
    async fn generate_data_key(&self) -> Result<DataKey, KeyError>;

    /// Unwraps `blob`. `Ok(None)` means "not a blob this provider makes"; errors mean it is
    /// one but cannot be unwrapped (wrong key, tampered, service failure).
    async fn decrypt_data_key(&self, blob: &[u8]) -> Result<Option<SecretKey>, KeyError>;

    /// Gets ready for the first call (a KMS client: configuration, TLS roots) without making
    /// one, so a caller can overlap that with reading its input. Failures surface at the
    /// first real call instead.
    async fn prepare(&self) {}
}

#[async_trait]
impl<P: KeyProvider + ?Sized> KeyProvider for Arc<P> {
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        (**self).generate_data_key().await
    }
    async fn decrypt_data_key(&self, blob: &[u8]) -> Result<Option<SecretKey>, KeyError> {
        (**self).decrypt_data_key(blob).await
    }
    async fn prepare(&self) {
        (**self).prepare().await
    }
}

/// Broad classes of failure, which the CLI maps to its exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Usage or configuration (exit 2).
    Config,
    /// Bad input document or value (exit 3).
    Input,
    /// Cryptographic failure: tag, padding, hash, wrong key (exit 4).
    Crypto,
    /// Key service failure: denied, not found, throttled, timeout, network (exit 5).
    KeyService,
}

/// What kind of key-service failure happened, so callers can advise precisely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServiceFailure {
    /// The caller lacks permission for the operation on the key.
    AccessDenied,
    /// The key does not exist (or the id/alias is wrong).
    NotFound,
    /// The key is disabled or pending deletion.
    Disabled,
    /// Throttled, and retries were exhausted.
    Throttled,
    /// The call timed out.
    Timeout,
    /// The endpoint could not be reached.
    Network,
    /// No credentials were found in the AWS chain (the request never left).
    NoCredentials,
    /// No region is configured for the key service.
    NoRegion,
    /// Anything else the service reported.
    Other,
}

/// Errors from key providers and the key cache. Messages never contain key material.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A local `OSL1` blob was made under a different local master key.
    #[error("this encryptionKey was made with local key {blob_key_id}, but the local key in use is {our_key_id}: pass the right key with --local-key or ONESEAL_LOCAL_KEY")]
    WrongLocalKey {
        /// Key id (hex) recorded in the blob.
        blob_key_id: String,
        /// Key id (hex) of the local key that was tried.
        our_key_id: String,
    },
    /// A blob that claims to be a format we know is malformed or altered.
    #[error("the encryptionKey blob is {0}")]
    BadBlob(&'static str),
    /// An `OSL1` blob arrived but no local key is available.
    #[error("this encryptionKey was made with local key {blob_key_id}, but there is no local key at {path}: pass it with --local-key or ONESEAL_LOCAL_KEY")]
    NoLocalKey {
        /// Key id (hex) recorded in the blob.
        blob_key_id: String,
        /// Where the local key was looked for.
        path: String,
    },
    /// A non-`OSL1` blob arrived but no KMS provider is configured.
    #[error("this encryptionKey is not a local oneseal key and no KMS is configured: set AWS credentials/region (or --endpoint-url) so oneseal can call KMS Decrypt")]
    NoKms,
    /// No configured provider recognised the blob.
    #[error("no configured key provider recognises this encryptionKey")]
    Unrecognised,
    /// The local master key file could not be read or created.
    #[error("local key file {path}: {reason}")]
    LocalKeyFile {
        /// The file.
        path: String,
        /// What went wrong, with advice.
        reason: String,
    },
    /// KMS says the ciphertext blob is invalid (not its ciphertext, altered, or wrong context).
    #[error("KMS could not decrypt this encryptionKey ({0}): it was altered, made under another key, or with a different encryption context")]
    InvalidCiphertext(String),
    /// A key service call failed.
    #[error("{message}")]
    Service {
        /// Which failure.
        failure: ServiceFailure,
        /// Human-readable message naming the operation and key, with advice.
        message: String,
    },
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
    /// Configuration is inconsistent (e.g. a bad key id).
    #[error("{0}")]
    Config(String),
}

impl KeyError {
    /// Whether retrying cannot help: the key service refused this key or blob for good
    /// (access denied, not found, disabled, invalid ciphertext), or no provider can unwrap
    /// it. Passing failures (throttled, timeout, network, missing credentials) are not.
    pub fn is_permanent(&self) -> bool {
        match self {
            KeyError::Service { failure, .. } => matches!(
                failure,
                ServiceFailure::AccessDenied | ServiceFailure::NotFound | ServiceFailure::Disabled
            ),
            _ => true,
        }
    }

    /// The error's class, for exit codes.
    pub fn class(&self) -> ErrorClass {
        match self {
            KeyError::WrongLocalKey { .. }
            | KeyError::BadBlob(_)
            | KeyError::InvalidCiphertext(_)
            | KeyError::Unrecognised
            | KeyError::Rng => ErrorClass::Crypto,
            KeyError::NoLocalKey { .. }
            | KeyError::NoKms
            | KeyError::LocalKeyFile { .. }
            | KeyError::Config(_) => ErrorClass::Config,
            KeyError::Service { .. } => ErrorClass::KeyService,
        }
    }
}
