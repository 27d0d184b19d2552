//! # oneseal-core
//!
//! The engine of oneseal: client-side encryption of WhatsApp message content for Clickatell's
//! One API (and its legacy `/wa/messages` API) with envelope data keys.
//!
//! - [`suite`]: the `gcm` (default) and `cbc` content formats, for field values and bytes.
//! - [`secret`]: zeroizing, redacted key types.
//! - [`provider`]: the async [`KeyProvider`] trait; [`router`]: the [`BlobRouter`].
//! - [`local`]: the embedded local key provider (offline; the platform cannot decrypt it).
//! - [`cache`]: the single-flight [`KeyCache`]; [`cores`]: at most one computing document per
//!   core for callers running the engine on threads of their own.
//! - [`policy`]: which leaves are encrypted (data), and [`walker`]: the engine applying it.
//!
//! No AWS SDK here: the KMS provider lives in `oneseal-kms`.
//!
//! ```
//! use std::sync::Arc;
//! use oneseal_core::{Engine, EngineOptions, KeyCache, CacheConfig, LocalProvider, Policy, SecretKey};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // In real use: LocalProvider::init(path) or oneseal_kms::AwsKmsProvider.
//! let provider = Arc::new(LocalProvider::from_key(&SecretKey::from_bytes([7; 32]), "example"));
//! let cache = Arc::new(KeyCache::new(provider, CacheConfig::default()));
//! let engine = Engine::new(cache, Policy::default(), EngineOptions::default());
//!
//! let plain = br#"{"messages":[{"channel":"whatsapp","to":"2799900001","content":"Your OTP is 4711"}]}"#;
//! let sealed = engine.encrypt_slice(plain, false).await.unwrap();
//! let doc: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
//! assert_eq!(doc["messages"][0]["to"], "2799900001");            // routing stays plain
//! assert_ne!(doc["messages"][0]["content"], "Your OTP is 4711");  // content does not
//! assert!(doc["messages"][0]["encryptionKey"].is_string());
//!
//! let (opened, _report) = engine.decrypt_slice(&sealed, false).await.unwrap();
//! let back: serde_json::Value = serde_json::from_slice(&opened).unwrap();
//! let orig: serde_json::Value = serde_json::from_slice(plain).unwrap();
//! assert_eq!(back, orig); // a request comes back exactly (its encryptionKey removed)
//! # });
//! ```
// The one exception is `evp_gcm`, a thin owner of an aws-lc GCM context (see there).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod atomic;
pub mod b64;
pub mod cache;
pub mod cores;
pub mod error;
#[allow(unsafe_code)]
mod evp_gcm;
pub mod local;
pub mod policy;
pub mod provider;
pub mod router;
pub mod secret;
pub mod stream;
pub mod strict;
pub mod suite;
pub mod walker;

pub use cache::{
    CacheConfig, CacheConfigError, CacheLimit, CacheStats, CountingProvider, KeyCache, OpeningKey,
    SealingKey,
};
pub use error::Error;
pub use local::{InitOutcome, LocalProvider};
pub use policy::{FieldPath, Policy};
pub use provider::{ErrorClass, KeyError, KeyProvider, ServiceFailure};
pub use router::BlobRouter;
pub use secret::{DataKey, SecretKey};
pub use suite::{CryptoError, DecryptSuite, FieldCipher, Suite};
pub use walker::{detect, without_bookkeeping, Api, Engine, EngineOptions, PayloadKind, Report};
