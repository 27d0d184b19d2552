//! # oneseal
//!
//! Client-side encryption of WhatsApp message content sent through Clickatell's One API (and
//! the legacy `/wa/messages` API), with AWS KMS envelope keys. This facade re-exports the
//! workspace crates:
//!
//! - [`core`]: suites, keys, the local provider, the key cache, the field policy and walker;
//! - [`kms`]: the AWS KMS key provider;
//! - [`media`]: streaming media encryption with the plaintext SHA-256;
//! - [`flows`]: WhatsApp Flows endpoint crypto.
//!
//! ```
//! use std::sync::Arc;
//! use oneseal::core::{CacheConfig, Engine, EngineOptions, KeyCache, LocalProvider, Policy, SecretKey};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let provider = Arc::new(LocalProvider::from_key(&SecretKey::from_bytes([1; 32]), "doc"));
//! let engine = Engine::new(
//!     Arc::new(KeyCache::new(provider, CacheConfig::default())),
//!     Policy::default(),
//!     EngineOptions::default(),
//! );
//! let callback = br#"{"integrationId":"i","event":{"moText":[{"from":"2799900001","encryptionKey":null,"content":"hi"}]}}"#;
//! let sealed = engine.encrypt_slice(callback, false).await.unwrap();
//! let (opened, report) = engine.decrypt_slice(&sealed, false).await.unwrap();
//! assert_eq!(report.items, 1);
//! assert_eq!(
//!     serde_json::from_slice::<serde_json::Value>(&opened).unwrap(),
//!     serde_json::from_slice::<serde_json::Value>(callback).unwrap()
//! );
//! # });
//! ```
#![forbid(unsafe_code)]

pub use oneseal_core as core;
pub use oneseal_flows as flows;
pub use oneseal_kms as kms;
pub use oneseal_media as media;
