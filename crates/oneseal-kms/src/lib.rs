//! # oneseal-kms
//!
//! [`AwsKmsProvider`]: a [`KeyProvider`] on AWS KMS. `GenerateDataKey` (AES_256) makes the
//! per-message data key; `Decrypt` unwraps `encryptionKey` blobs. Configuration follows the
//! standard AWS chain (environment, profiles, SSO, `AWS_ENDPOINT_URL_KMS`, …) with optional
//! overrides for region, profile and endpoint. Throttling and transient faults are retried by
//! the SDK's standard retry strategy (exponential backoff with jitter); every call has connect
//! and operation timeouts. No AWS SDK type appears in this crate's public API.
//!
//! ```no_run
//! use std::sync::Arc;
//! use oneseal_core::{KeyProvider, KeyCache, CacheConfig};
//! use oneseal_kms::{AwsKmsProvider, KmsConfig};
//!
//! # async fn demo() -> Result<(), oneseal_core::KeyError> {
//! let kms = AwsKmsProvider::new(KmsConfig {
//!     key_id: Some("arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into()),
//!     region: Some("eu-west-1".into()),
//!     ..KmsConfig::default()
//! });
//! let dk = kms.generate_data_key().await?;
//! println!("kmsArn = {:?}", dk.key_arn);
//! let cache = KeyCache::new(Arc::new(kms), CacheConfig::default());
//! # let _ = cache; Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use oneseal_core::{DataKey, KeyError, KeyProvider, SecretKey, ServiceFailure};
use tokio::sync::OnceCell;
use zeroize::Zeroize;

/// How to reach KMS. Unset fields fall back to the standard AWS configuration chain.
#[derive(Clone, Default)]
pub struct KmsConfig {
    /// Key id, ARN, alias name or alias ARN. Required to generate; on decrypt it restricts
    /// `Decrypt` to that key.
    pub key_id: Option<String>,
    /// Region override (else `AWS_REGION`, profile, …).
    pub region: Option<String>,
    /// Named profile override (else `AWS_PROFILE`).
    pub profile: Option<String>,
    /// Endpoint override (else `AWS_ENDPOINT_URL_KMS` / `AWS_ENDPOINT_URL`), e.g. a local KMS.
    pub endpoint_url: Option<String>,
    /// Encryption context bound to every data key (must match on decrypt).
    pub encryption_context: BTreeMap<String, String>,
    /// Total attempts per call, including the first (default 5).
    pub max_attempts: Option<u32>,
    /// Connect timeout (default 3 s).
    pub connect_timeout: Option<Duration>,
    /// Per-attempt timeout (default 5 s).
    pub attempt_timeout: Option<Duration>,
    /// Whole-operation timeout including retries (default 20 s).
    pub operation_timeout: Option<Duration>,
}

impl fmt::Debug for KmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsConfig")
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .field("profile", &self.profile)
            .field("endpoint_url", &self.endpoint_url)
            .field(
                "encryption_context_keys",
                &self.encryption_context.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The AWS KMS key provider. The SDK client is built on first use, so constructing one is
/// free and never touches the network.
pub struct AwsKmsProvider {
    cfg: KmsConfig,
    client: OnceCell<Result<aws_sdk_kms::Client, KeyError>>,
}

impl fmt::Debug for AwsKmsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsProvider")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl AwsKmsProvider {
    /// A provider with the given configuration.
    pub fn new(cfg: KmsConfig) -> Self {
        AwsKmsProvider {
            cfg,
            client: OnceCell::new(),
        }
    }

    /// As an `Arc<dyn KeyProvider>`.
    pub fn into_dyn(self) -> Arc<dyn KeyProvider> {
        Arc::new(self)
    }

    async fn client(&self) -> Result<&aws_sdk_kms::Client, KeyError> {
        let c = self
            .client
            .get_or_init(|| async {
                let c = &self.cfg;
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .retry_config(
                        RetryConfig::standard()
                            .with_max_attempts(c.max_attempts.unwrap_or(5).max(1))
                            .with_initial_backoff(Duration::from_millis(100))
                            .with_max_backoff(Duration::from_secs(5)),
                    )
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(c.connect_timeout.unwrap_or(Duration::from_secs(3)))
                            .operation_attempt_timeout(
                                c.attempt_timeout.unwrap_or(Duration::from_secs(5)),
                            )
                            .operation_timeout(
                                c.operation_timeout.unwrap_or(Duration::from_secs(20)),
                            )
                            .build(),
                    );
                if let Some(r) = &c.region {
                    loader = loader.region(Region::new(r.clone()));
                }
                if let Some(p) = &c.profile {
                    loader = loader.profile_name(p);
                }
                if let Some(u) = &c.endpoint_url {
                    loader = loader.endpoint_url(u);
                }
                let sdk = loader.load().await;
                if sdk.region().is_none() {
                    return Err(KeyError::Service {
                        failure: ServiceFailure::NoRegion,
                        message: "no AWS region for KMS: set AWS_REGION, --region, `region` in the config file, or a region in the AWS profile".into(),
                    });
                }
                Ok(aws_sdk_kms::Client::new(&sdk))
            })
            .await;
        c.as_ref().map_err(Clone::clone)
    }

    fn context(&self) -> Option<HashMap<String, String>> {
        (!self.cfg.encryption_context.is_empty()).then(|| {
            self.cfg
                .encryption_context
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    fn key_label(&self) -> &str {
        self.cfg
            .key_id
            .as_deref()
            .unwrap_or("(the key named in the blob)")
    }
}

/// Whether the SDK failed because the credential chain found nothing: reported as such, not as
/// "could not reach the endpoint" (the request never left).
fn lacks_credentials(err: &(dyn std::error::Error + 'static)) -> bool {
    use aws_credential_types::provider::error::CredentialsError;
    let mut cur = Some(err);
    while let Some(e) = cur {
        if matches!(
            e.downcast_ref::<CredentialsError>(),
            Some(CredentialsError::CredentialsNotLoaded(_))
        ) {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Maps an SDK error to a [`KeyError`] that names the operation and key and says what to do.
fn map_err<E, R>(op: &str, key: &str, err: SdkError<E, R>) -> KeyError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + 'static,
{
    let svc = |failure, message: String| KeyError::Service { failure, message };
    // A Decrypt that names a key (`--kms-key-id` on decrypt) is restricted to it: refused,
    // the blob may simply belong to another key.
    let cfg_restricts = op == "Decrypt" && !key.starts_with('(');
    if lacks_credentials(&err) {
        return svc(
            ServiceFailure::NoCredentials,
            format!("KMS {op} for key {key}: no AWS credentials found (environment, profile, SSO, web identity, container or instance role): set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or --profile"),
        );
    }
    match &err {
        SdkError::TimeoutError(_) => {
            return svc(
                ServiceFailure::Timeout,
                format!("KMS {op} timed out for key {key}: check the endpoint/region and network, or retry"),
            )
        }
        SdkError::DispatchFailure(d) => {
            let failure = if d.is_timeout() {
                ServiceFailure::Timeout
            } else {
                ServiceFailure::Network
            };
            return svc(
                failure,
                format!("KMS {op} could not reach the KMS endpoint (key {key}): check the region, --endpoint-url/AWS_ENDPOINT_URL_KMS and network access"),
            );
        }
        SdkError::ConstructionFailure(_) => {
            return svc(
                ServiceFailure::Other,
                format!("KMS {op} request could not be built for key {key}: check AWS region and credentials (e.g. AWS_REGION, AWS_PROFILE)"),
            )
        }
        _ => {}
    }
    let code = err.code().unwrap_or("").to_string();
    let detail = err.message().unwrap_or("").replace('\n', " ");
    match code.as_str() {
        "AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException"
        | "InvalidSignatureException" | "ExpiredTokenException" => svc(
            ServiceFailure::AccessDenied,
            if cfg_restricts {
                format!("KMS access denied: Decrypt restricted to key {key} ({code}). The blob may belong to another key (leave out --kms-key-id on decrypt to let the blob name its key), or the caller needs kms:Decrypt on {key} in its IAM policy and the key policy")
            } else {
                format!("KMS access denied: {op} on key {key} ({code}). The caller needs kms:{op} on this key in its IAM policy and the key policy; check credentials too")
            },
        ),
        "NotFoundException" => svc(
            ServiceFailure::NotFound,
            format!("KMS key not found for {op}: {key}. Check the key id (--kms-key-id, ONESEAL_KMS_KEY_ID or kms_key_id in the config file: a key id, ARN or alias/NAME) and the region"),
        ),
        "DisabledException" => svc(
            ServiceFailure::Disabled,
            format!("KMS key {key} is disabled ({op}): enable it, or use another key"),
        ),
        "KMSInvalidStateException" => svc(
            ServiceFailure::Disabled,
            format!("KMS key {key} is not usable for {op} (pending deletion, pending import, or unavailable): {detail}"),
        ),
        "ThrottlingException" | "Throttling" | "TooManyRequestsException"
        | "LimitExceededException" | "RequestLimitExceeded" => svc(
            ServiceFailure::Throttled,
            format!("KMS throttled {op} on key {key} after retries: lower the request rate, keep the key cache on (no --fresh-key-per-message), or raise the KMS quota"),
        ),
        "InvalidCiphertextException" | "IncorrectKeyException" => {
            KeyError::InvalidCiphertext(code)
        }
        "InvalidKeyUsageException" => svc(
            ServiceFailure::Other,
            format!("KMS key {key} cannot be used for {op}: it must be a symmetric ENCRYPT_DECRYPT key"),
        ),
        "" => svc(
            ServiceFailure::Other,
            format!("KMS {op} failed for key {key}: the service answered with an error oneseal could not read"),
        ),
        _ => svc(
            ServiceFailure::Other,
            format!("KMS {op} failed for key {key}: {code}: {detail}"),
        ),
    }
}

#[async_trait]
impl KeyProvider for AwsKmsProvider {
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        let key_id = self.cfg.key_id.clone().ok_or_else(|| {
            KeyError::Config("no KMS key id: pass --kms-key-id, set ONESEAL_KMS_KEY_ID, or kms_key_id in the config file".into())
        })?;
        let out = self
            .client()
            .await?
            .generate_data_key()
            .key_id(&key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(self.context())
            .send()
            .await
            .map_err(|e| map_err("GenerateDataKey", &key_id, e))?;
        let blob = out
            .ciphertext_blob()
            .map(|b| Arc::<[u8]>::from(b.as_ref()))
            .ok_or_else(|| KeyError::Service {
                failure: ServiceFailure::Other,
                message: "KMS GenerateDataKey returned no CiphertextBlob".into(),
            })?;
        let mut plain = out
            .plaintext()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        let key = SecretKey::from_slice(&plain);
        plain.zeroize();
        let key = key.ok_or_else(|| KeyError::Service {
            failure: ServiceFailure::Other,
            message: "KMS GenerateDataKey returned a plaintext key that is not 32 bytes".into(),
        })?;
        Ok(DataKey {
            key,
            blob,
            key_arn: out.key_id().map(str::to_string).or(Some(key_id)),
        })
    }

    async fn prepare(&self) {
        // Builds the client (configuration, credentials chain, TLS roots) ahead of the first
        // call; an error is kept and reported by that call.
        let _ = self.client().await;
    }

    async fn decrypt_data_key(&self, blob: &[u8]) -> Result<Option<SecretKey>, KeyError> {
        let out = self
            .client()
            .await?
            .decrypt()
            .ciphertext_blob(Blob::new(blob.to_vec()))
            .set_key_id(self.cfg.key_id.clone())
            .set_encryption_context(self.context())
            .send()
            .await
            .map_err(|e| map_err("Decrypt", self.key_label(), e))?;
        let mut plain = out
            .plaintext()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        let key = SecretKey::from_slice(&plain);
        plain.zeroize();
        key.map(Some).ok_or_else(|| {
            KeyError::InvalidCiphertext("the unwrapped key is not a 32-byte AES-256 key".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_context_values() {
        let mut cfg = KmsConfig::default();
        cfg.encryption_context
            .insert("tenant".into(), "secret-tenant".into());
        let s = format!("{:?}", AwsKmsProvider::new(cfg));
        assert!(s.contains("tenant") && !s.contains("secret-tenant"), "{s}");
    }

    #[tokio::test]
    async fn generate_without_key_id_is_a_config_error() {
        let p = AwsKmsProvider::new(KmsConfig::default());
        let e = p.generate_data_key().await.unwrap_err();
        assert_eq!(e.class(), oneseal_core::ErrorClass::Config);
        assert!(e.to_string().contains("--kms-key-id"));
    }
}
