//! Key material types. Every plaintext key lives in a type that zeroizes on drop and
//! prints `<redacted>` in `Debug`, so a stray `{:?}` in a log can never leak it.

use std::fmt;
use std::sync::Arc;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length in bytes of every oneseal data key and master key (AES-256).
pub const KEY_LEN: usize = 32;

/// A 32-byte AES-256 key. Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// Wraps raw key bytes. The caller should zeroize its own copy.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        SecretKey(bytes)
    }

    /// Copies a key out of a slice; `None` unless it is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(SecretKey(arr))
    }

    /// A fresh key from the OS RNG.
    pub fn generate() -> Result<Self, rand_core::Error> {
        use rand_core::RngCore;
        let mut k = [0u8; KEY_LEN];
        rand_core::OsRng.try_fill_bytes(&mut k)?;
        Ok(SecretKey(k))
    }

    /// The raw key bytes, for handing to a cipher. Do not log or copy them.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// A data key as a key provider hands it out: the plaintext key, the opaque encrypted blob
/// that goes into `encryptionKey`, and (for KMS) the ARN of the key that wrapped it.
#[derive(Clone)]
pub struct DataKey {
    /// The plaintext data key.
    pub key: SecretKey,
    /// The encrypted data key (KMS `CiphertextBlob` or a local `OSL1` blob).
    pub blob: Arc<[u8]>,
    /// The ARN (or local key id) of the wrapping key, reported as `kmsArn`.
    pub key_arn: Option<String>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("key", &self.key)
            .field("blob_len", &self.blob.len())
            .field("key_arn", &self.key_arn)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = SecretKey::from_bytes([0xAB; 32]);
        let dk = DataKey {
            key: k.clone(),
            blob: Arc::from(&b"blob"[..]),
            key_arn: Some("arn".into()),
        };
        for s in [format!("{k:?}"), format!("{dk:?}"), format!("{dk:#?}")] {
            assert!(s.contains("redacted"), "{s}");
            assert!(!s.to_lowercase().contains("ab, ab"), "{s}");
            assert!(!s.contains("171"), "{s}");
        }
    }

    /// Plaintext keys are wiped when dropped: the key types implement `ZeroizeOnDrop`
    /// (checked at compile time; reading freed memory would need `unsafe`, which this crate
    /// forbids).
    #[test]
    fn key_types_zeroize_on_drop() {
        fn assert_zod<T: zeroize::ZeroizeOnDrop>() {}
        assert_zod::<SecretKey>();
    }

    #[test]
    fn zeroize_clears_bytes() {
        let mut k = SecretKey::from_bytes([7; 32]);
        k.zeroize();
        assert_eq!(k.expose(), &[0u8; 32]);
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(SecretKey::from_slice(&[1; 31]).is_none());
        assert!(SecretKey::from_slice(&[1; 33]).is_none());
        assert!(SecretKey::from_slice(&[1; 32]).is_some());
    }
}
