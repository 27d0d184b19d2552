//! Stage two of argument handling: clap values + environment (via clap) + the config file,
//! validated into the settings the commands run with. Precedence: flag/env > file > default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock as OnceCell};
use std::time::Duration;

use oneseal_core::{
    Api, BlobRouter, CacheConfig, DataKey, DecryptSuite, FieldPath, InitOutcome, KeyError,
    KeyProvider, LocalProvider, Policy, SecretKey, Suite,
};
use oneseal_kms::{AwsKmsProvider, KmsConfig};
use serde::Deserialize;

use crate::cli::KeyArgs;
use crate::error::CliError;

/// `oneseal.toml`: defaults for any option. Unknown keys are an error, so typos surface.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub kms_key_id: Option<String>,
    pub local_key: Option<PathBuf>,
    pub suite: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub kms_timeout: Option<f64>,
    pub fresh_key_per_message: Option<bool>,
    pub max_messages_per_key: Option<usize>,
    pub key_max_age_seconds: Option<u64>,
    #[serde(default)]
    pub fields: Vec<String>,
    pub api: Option<String>,
    #[serde(default)]
    pub encryption_context: BTreeMap<String, String>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<FileConfig, CliError> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| CliError::io("read config file", path, e))?;
        toml::from_str(&text).map_err(|e| {
            CliError::usage(format!("config file {}: {}", path.display(), e.message()))
        })
    }
}

pub fn parse_suite(s: Option<&str>) -> Result<Suite, CliError> {
    s.map_or(Ok(Suite::Gcm), |s| {
        s.parse()
            .map_err(|e| CliError::usage(format!("--suite: {e}")))
    })
}

pub fn parse_decrypt_suite(s: Option<&str>) -> Result<DecryptSuite, CliError> {
    s.map_or(Ok(DecryptSuite::Auto), |s| {
        s.parse()
            .map_err(|e| CliError::usage(format!("--suite: {e}")))
    })
}

pub fn parse_api(s: Option<&str>) -> Result<Api, CliError> {
    s.map_or(Ok(Api::Auto), |s| {
        s.parse()
            .map_err(|e: String| CliError::usage(format!("--api: {e}")))
    })
}

pub fn policy(cli_fields: &[String], file: &FileConfig) -> Result<Policy, CliError> {
    let mut extra = Vec::new();
    for f in file.fields.iter().chain(cli_fields) {
        extra.extend(
            FieldPath::parse_many(f).map_err(|e| CliError::usage(format!("--field: {e}")))?,
        );
    }
    Ok(Policy::default().with_extra_fields(&extra))
}

pub fn cache_config(fresh: bool, file: &FileConfig) -> CacheConfig {
    let mut c = CacheConfig::default();
    if let Some(n) = file.max_messages_per_key {
        c.max_messages = n.max(1);
    }
    if let Some(s) = file.key_max_age_seconds {
        c.max_age = Duration::from_secs(s);
    }
    if fresh || file.fresh_key_per_message == Some(true) {
        c.max_messages = 1;
    }
    c
}

/// Where the local master key is: the flag/env value, else the config file, else the
/// default under the user's data directory.
pub fn local_key_path(flag: Option<PathBuf>, file: &FileConfig) -> Result<PathBuf, CliError> {
    flag.or_else(|| file.local_key.clone())
        .or_else(oneseal_core::local::default_key_path)
        .ok_or_else(|| {
            CliError::usage(
                "no data directory for the local key on this system: pass --local-key PATH",
            )
        })
}

/// The key-provider settings after merging.
pub struct Keys {
    pub kms: KmsConfig,
    pub local_path: Result<PathBuf, CliError>,
}

pub fn keys(args: &KeyArgs, file: &FileConfig) -> Result<Keys, CliError> {
    let mut ctx = file.encryption_context.clone();
    for kv in &args.encryption_context {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            CliError::usage(format!(
                "--encryption-context {kv:?}: expected KEY=VALUE, e.g. --encryption-context tenant=acme"
            ))
        })?;
        if k.is_empty() {
            return Err(CliError::usage("--encryption-context: the key is empty"));
        }
        ctx.insert(k.to_string(), v.to_string());
    }
    let timeout = args.kms_timeout.or(file.kms_timeout);
    if let Some(t) = timeout {
        if !(t.is_finite() && t > 0.0 && t <= 3600.0) {
            return Err(CliError::usage(
                "--kms-timeout must be between 0 and 3600 seconds",
            ));
        }
    }
    let op = timeout.map(Duration::from_secs_f64);
    let kms = KmsConfig {
        key_id: args
            .kms_key_id
            .clone()
            .or_else(|| file.kms_key_id.clone())
            .filter(|s| !s.is_empty()),
        region: args.region.clone().or_else(|| file.region.clone()),
        profile: args.profile.clone().or_else(|| file.profile.clone()),
        endpoint_url: args
            .endpoint_url
            .clone()
            .or_else(|| file.endpoint_url.clone()),
        encryption_context: ctx,
        operation_timeout: op,
        attempt_timeout: op.map(|d| d.min(Duration::from_secs(5))),
        connect_timeout: op.map(|d| d.min(Duration::from_secs(3))),
        ..KmsConfig::default()
    };
    let local_path = local_key_path(args.local_key.clone(), file);
    Ok(Keys { kms, local_path })
}

impl Keys {
    /// The provider for new data keys: KMS when a key id is set, else the local key
    /// (created on first use, i.e. only once a document has been checked and needs a key).
    pub fn encrypt_provider(&self) -> Result<Arc<dyn KeyProvider>, CliError> {
        if self.kms.key_id.is_some() {
            return Ok(AwsKmsProvider::new(self.kms.clone()).into_dyn());
        }
        let path = self
            .local_path
            .as_ref()
            .map_err(|e| CliError::usage(e.message.clone()))?;
        Ok(Arc::new(LazyLocal {
            path: path.clone(),
            cell: OnceCell::new(),
        }))
    }

    /// The provider for unwrapping: routes `OSL1` blobs to the local key, others to KMS.
    pub fn decrypt_provider(&self) -> Result<Arc<dyn KeyProvider>, CliError> {
        let local: Result<Arc<dyn KeyProvider>, String> = match &self.local_path {
            Ok(p) if p.exists() => Ok(Arc::new(LocalProvider::load(p)?)),
            Ok(p) => Err(p.display().to_string()),
            Err(e) => Err(e.message.clone()),
        };
        let remote = AwsKmsProvider::new(self.kms.clone()).into_dyn();
        Ok(Arc::new(BlobRouter::new(None, local, Some(remote))))
    }
}

/// The local provider, loaded (or created, with a note on stderr) at its first use.
#[derive(Debug)]
struct LazyLocal {
    path: PathBuf,
    cell: OnceCell<LocalProvider>,
}

impl LazyLocal {
    fn get(&self) -> Result<&LocalProvider, KeyError> {
        if let Some(p) = self.cell.get() {
            return Ok(p);
        }
        let (p, outcome) = LocalProvider::init(&self.path)?;
        if outcome == InitOutcome::Created {
            eprintln!(
                "oneseal: created local key {} at {} (for development and offline use; the platform cannot decrypt it)",
                p.key_id_hex(),
                self.path.display()
            );
        }
        tracing::info!(key_id = %p.key_id_hex(), "using local key provider");
        Ok(self.cell.get_or_init(|| p))
    }
}

#[async_trait::async_trait]
impl KeyProvider for LazyLocal {
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        self.get()?.generate_data_key().await
    }
    async fn decrypt_data_key(&self, blob: &[u8]) -> Result<Option<SecretKey>, KeyError> {
        self.get()?.decrypt_data_key(blob).await
    }
}
