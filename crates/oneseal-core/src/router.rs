//! [`BlobRouter`]: which provider unwraps a blob. A module of its own so that the provider
//! trait knows no provider, and each provider only the trait.

use std::sync::Arc;

use async_trait::async_trait;

use crate::provider::{KeyError, KeyProvider};
use crate::secret::{DataKey, SecretKey};

/// Routes decryption by blob: `OSL1` blobs to the local provider, all others to
/// KMS. Encryption uses whichever provider was configured for it.
#[derive(Debug, Clone)]
pub struct BlobRouter {
    encrypt: Option<Arc<dyn KeyProvider>>,
    local: Result<Arc<dyn KeyProvider>, String>,
    remote: Option<Arc<dyn KeyProvider>>,
}

impl BlobRouter {
    /// `encrypt`: the provider for new data keys (None if this router only decrypts).
    /// `local`: the local provider, or the path where it was looked for (for the error).
    /// `remote`: the KMS provider, if configured.
    pub fn new(
        encrypt: Option<Arc<dyn KeyProvider>>,
        local: Result<Arc<dyn KeyProvider>, String>,
        remote: Option<Arc<dyn KeyProvider>>,
    ) -> Self {
        BlobRouter {
            encrypt,
            local,
            remote,
        }
    }
}

#[async_trait]
impl KeyProvider for BlobRouter {
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        match &self.encrypt {
            Some(p) => p.generate_data_key().await,
            None => Err(KeyError::Config(
                "no key provider is configured for encryption".into(),
            )),
        }
    }

    async fn decrypt_data_key(&self, blob: &[u8]) -> Result<Option<SecretKey>, KeyError> {
        if crate::local::is_local_blob(blob) {
            return match &self.local {
                Ok(p) => p.decrypt_data_key(blob).await,
                Err(path) => Err(KeyError::NoLocalKey {
                    blob_key_id: crate::local::blob_key_id(blob).unwrap_or_else(|| "?".into()),
                    path: path.clone(),
                }),
            };
        }
        match &self.remote {
            Some(p) => p.decrypt_data_key(blob).await,
            None => Err(KeyError::NoKms),
        }
    }

    async fn prepare(&self) {
        if let Some(p) = &self.encrypt {
            p.prepare().await;
        }
        if let Some(p) = &self.remote {
            p.prepare().await;
        }
    }
}
