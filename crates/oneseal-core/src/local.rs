//! The local key provider: the embedded default that needs no cloud account.
//!
//! A 32-byte master key lives in a file (mode 0600). Each data key is wrapped as
//! `"OSL1" ‖ key id (8) ‖ nonce (12) ‖ AES-256-GCM(master, data key) (32 + 16)` — 72 bytes —
//! where the key id is the first 8 bytes of SHA-256 of the master key. It is for development,
//! tests and offline use: the messaging platform cannot unwrap these blobs.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::provider::{KeyError, KeyProvider};
use crate::secret::{DataKey, SecretKey, KEY_LEN};
use crate::suite::{fill_random, GCM_NONCE_LEN, GCM_TAG_LEN};

/// Magic prefix of local blobs.
pub const LOCAL_MAGIC: &[u8; 4] = b"OSL1";
const ID_LEN: usize = 8;
/// Total length of a local blob.
pub const LOCAL_BLOB_LEN: usize = 4 + ID_LEN + GCM_NONCE_LEN + KEY_LEN + GCM_TAG_LEN;

/// Whether a blob is a local `OSL1` blob (by its prefix).
pub fn is_local_blob(blob: &[u8]) -> bool {
    blob.starts_with(LOCAL_MAGIC)
}

/// The key id (hex) recorded in a local blob, if it is long enough to have one.
pub fn blob_key_id(blob: &[u8]) -> Option<String> {
    blob.get(4..4 + ID_LEN).map(hex::encode)
}

/// The default master key path: `<data dir>/oneseal/local.key`.
pub fn default_key_path() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("oneseal").join("local.key"))
}

/// A local master key loaded from a file.
pub struct LocalProvider {
    cipher: Aes256Gcm,
    key_id: [u8; ID_LEN],
    path: PathBuf,
}

impl fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProvider")
            .field("key_id", &self.key_id_hex())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What [`LocalProvider::init`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// A new key file was written.
    Created,
    /// A key already existed and was left untouched.
    AlreadyExisted,
}

fn file_err(path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError::LocalKeyFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

impl LocalProvider {
    /// Builds a provider from a master key (for tests and embedding).
    pub fn from_key(master: &SecretKey, path: impl Into<PathBuf>) -> Self {
        let digest = Sha256::digest(master.expose());
        let mut key_id = [0u8; ID_LEN];
        key_id.copy_from_slice(&digest[..ID_LEN]);
        LocalProvider {
            cipher: Aes256Gcm::new(master.expose().into()),
            key_id,
            path: path.into(),
        }
    }

    /// Loads an existing key file; errors if it is missing or not a 32-byte key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let mut bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => file_err(
                path,
                "not found: create one with `oneseal key init`, or pass --local-key",
            ),
            _ => file_err(path, format!("cannot read it: {e}")),
        })?;
        let key = SecretKey::from_slice(&bytes);
        bytes.zeroize();
        let key = key.ok_or_else(|| {
            file_err(
                path,
                "is not a oneseal local key (expected exactly 32 bytes)",
            )
        })?;
        Ok(Self::from_key(&key, path))
    }

    /// Creates the key file if it does not exist (mode 0600, written atomically), then loads it.
    /// Never overwrites an existing key.
    pub fn init(path: &Path) -> Result<(Self, InitOutcome), KeyError> {
        if path.exists() {
            return Ok((Self::load(path)?, InitOutcome::AlreadyExisted));
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| file_err(path, format!("cannot create its directory: {e}")))?;
        let key = SecretKey::generate().map_err(|_| KeyError::Rng)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".oneseal-key-")
            .tempfile_in(&dir)
            .map_err(|e| file_err(path, format!("cannot create a file beside it: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| file_err(path, format!("cannot set mode 0600: {e}")))?;
        }
        tmp.write_all(key.expose())
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| file_err(path, format!("cannot write it: {e}")))?;
        match tmp.persist_noclobber(path) {
            Ok(_) => Ok((Self::from_key(&key, path), InitOutcome::Created)),
            // Another process created it first: use theirs, never clobber a key.
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Self::load(path)?, InitOutcome::AlreadyExisted))
            }
            Err(e) => Err(file_err(path, format!("cannot create it: {}", e.error))),
        }
    }

    /// The key id as 16 hex digits.
    pub fn key_id_hex(&self) -> String {
        hex::encode(self.key_id)
    }

    /// Where the key file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wraps a data key into an `OSL1` blob.
    pub fn wrap(&self, key: &SecretKey) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; GCM_NONCE_LEN];
        fill_random(&mut nonce).map_err(|_| KeyError::Rng)?;
        let mut blob = Vec::with_capacity(LOCAL_BLOB_LEN);
        blob.extend_from_slice(LOCAL_MAGIC);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&nonce);
        let start = blob.len();
        blob.extend_from_slice(key.expose());
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"", &mut blob[start..])
            // Only fails for inputs over 64 GiB; this one is 32 bytes.
            .map_err(|_| KeyError::BadBlob("too long"))?;
        blob.extend_from_slice(&tag);
        Ok(blob)
    }

    /// Unwraps an `OSL1` blob made under this key.
    pub fn unwrap_blob(&self, blob: &[u8]) -> Result<SecretKey, KeyError> {
        if !is_local_blob(blob) {
            return Err(KeyError::BadBlob("not a local oneseal key blob"));
        }
        if blob.len() != LOCAL_BLOB_LEN {
            return Err(KeyError::BadBlob(
                "truncated or malformed (a local blob is 72 bytes)",
            ));
        }
        let id = &blob[4..4 + ID_LEN];
        if id != self.key_id {
            return Err(KeyError::WrongLocalKey {
                blob_key_id: hex::encode(id),
                our_key_id: self.key_id_hex(),
            });
        }
        let nonce = &blob[12..12 + GCM_NONCE_LEN];
        let mut buf = [0u8; KEY_LEN];
        buf.copy_from_slice(&blob[24..24 + KEY_LEN]);
        let tag = &blob[24 + KEY_LEN..];
        let res = self.cipher.decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            b"",
            &mut buf,
            Tag::from_slice(tag),
        );
        let out = res.map(|_| SecretKey::from_bytes(buf));
        buf.zeroize();
        out.map_err(|_| KeyError::BadBlob("altered (its authentication tag does not verify)"))
    }
}

#[async_trait]
impl KeyProvider for LocalProvider {
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        let key = SecretKey::generate().map_err(|_| KeyError::Rng)?;
        let blob = self.wrap(&key)?;
        Ok(DataKey {
            key,
            blob: Arc::from(blob),
            key_arn: Some(format!("local:{}", self.key_id_hex())),
        })
    }

    async fn decrypt_data_key(&self, blob: &[u8]) -> Result<Option<SecretKey>, KeyError> {
        if !is_local_blob(blob) {
            return Ok(None);
        }
        self.unwrap_blob(blob).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wrap_unwrap_and_wrong_key() {
        let a = LocalProvider::from_key(&SecretKey::from_bytes([1; 32]), "a");
        let b = LocalProvider::from_key(&SecretKey::from_bytes([2; 32]), "b");
        let dk = a.generate_data_key().await.unwrap();
        assert_eq!(dk.blob.len(), LOCAL_BLOB_LEN);
        assert_eq!(&dk.blob[..4], b"OSL1");
        let k = a.decrypt_data_key(&dk.blob).await.unwrap().unwrap();
        assert_eq!(k.expose(), dk.key.expose());
        match b.decrypt_data_key(&dk.blob).await {
            Err(KeyError::WrongLocalKey {
                blob_key_id,
                our_key_id,
            }) => {
                assert_eq!(blob_key_id, a.key_id_hex());
                assert_eq!(our_key_id, b.key_id_hex());
            }
            other => panic!("{other:?}"),
        }
        assert!(a.decrypt_data_key(b"AQIDxxxx").await.unwrap().is_none());
        assert!(matches!(
            a.decrypt_data_key(&dk.blob[..40]).await,
            Err(KeyError::BadBlob(_))
        ));
        let mut bad = dk.blob.to_vec();
        bad[50] ^= 1;
        assert!(matches!(
            a.decrypt_data_key(&bad).await,
            Err(KeyError::BadBlob(_))
        ));
    }

    #[test]
    fn init_creates_0600_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("k.key");
        let (a, o) = LocalProvider::init(&p).unwrap();
        assert_eq!(o, InitOutcome::Created);
        assert_eq!(std::fs::read(&p).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (b, o) = LocalProvider::init(&p).unwrap();
        assert_eq!(o, InitOutcome::AlreadyExisted);
        assert_eq!(a.key_id_hex(), b.key_id_hex());
    }

    #[test]
    fn load_rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        assert!(matches!(
            LocalProvider::load(&p),
            Err(KeyError::LocalKeyFile { .. })
        ));
        std::fs::write(&p, b"short").unwrap();
        let e = LocalProvider::load(&p).unwrap_err().to_string();
        assert!(e.contains("32 bytes"), "{e}");
    }
}
