//! Stage two of argument handling: clap values (flags and environment, via clap) and the
//! config file, resolved once per command into validated settings. Precedence: flag/env >
//! file > default. Every error names where the bad value came from: a flag, or the config
//! file and its key (and line, for TOML syntax).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock as OnceCell};
use std::time::Duration;

use oneseal_core::{
    Api, BlobRouter, CacheConfig, DataKey, FieldPath, InitOutcome, KeyError, KeyProvider,
    LocalProvider, Policy, SecretKey,
};
use oneseal_kms::{AwsKmsProvider, KmsConfig};
use serde::Deserialize;

use crate::cli::KeyArgs;
use crate::env;
use crate::error::CliError;

/// The config file found without `--config`.
pub const DEFAULT_CONFIG: &str = "oneseal.toml";

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
    /// Strict mode for `encrypt` (as `--strict`).
    pub strict: Option<bool>,
    /// Paths strict mode sends as they are.
    #[serde(default)]
    pub passthrough: Vec<String>,
    #[serde(default)]
    pub encryption_context: BTreeMap<String, String>,
    /// `[gateway]`, validated by `oneseal gateway`.
    pub gateway: Option<oneseal_gateway::GatewayFile>,
}

/// The config file in force (if any) and its values.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// Where it was read from; `None` when there is no config file.
    pub path: Option<PathBuf>,
    pub values: FileConfig,
}

impl ConfigFile {
    /// Reads `--config`/`ONESEAL_CONFIG` if given, else `./oneseal.toml` if it exists.
    pub fn load(explicit: Option<&Path>) -> Result<ConfigFile, CliError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_CONFIG).is_file() => PathBuf::from(DEFAULT_CONFIG),
            None => return Ok(ConfigFile::default()),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::io("read config file", &path, e))?;
        let values = toml::from_str(&text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map(|l| format!(" line {l}")).unwrap_or_default();
            CliError::usage(format!(
                "config file {}{at}: {}",
                path.display(),
                e.message().trim()
            ))
        })?;
        Ok(ConfigFile {
            path: Some(path),
            values,
        })
    }

    /// An error about `key` in this file.
    pub fn err(&self, key: &str, msg: impl std::fmt::Display) -> CliError {
        let file = self
            .path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| DEFAULT_CONFIG.into());
        CliError::usage(format!("config file {file}: {key}: {msg}"))
    }
}

/// A value taken from a flag (or its environment variable) or else from the config file,
/// parsed with an error that names whichever it came from.
fn from_flag_or_file<T, E: std::fmt::Display>(
    flag: Option<&str>,
    flag_name: &str,
    file_value: Option<&str>,
    file_key: &str,
    file: &ConfigFile,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, CliError> {
    if let Some(v) = flag {
        return parse(v)
            .map(Some)
            .map_err(|e| CliError::usage(format!("{flag_name}: {e}")));
    }
    match file_value {
        Some(v) => parse(v).map(Some).map_err(|e| file.err(file_key, e)),
        None => Ok(None),
    }
}

/// A suite setting: the suite for new ciphertext ([`Suite`], default gcm), or the suite
/// decryption accepts ([`DecryptSuite`]: the configured suite, gcm by default;
/// `auto` only when asked for). `suite` in the file sets both.
pub fn suite<T>(flag: Option<&str>, file: &ConfigFile) -> Result<T, CliError>
where
    T: std::str::FromStr + Default,
    T::Err: std::fmt::Display,
{
    Ok(from_flag_or_file(
        flag,
        "--suite (or ONESEAL_SUITE)",
        file.values.suite.as_deref(),
        "suite",
        file,
        str::parse::<T>,
    )?
    .unwrap_or_default())
}

pub fn api(flag: Option<&str>, file: &ConfigFile) -> Result<Api, CliError> {
    Ok(from_flag_or_file(
        flag,
        "--api",
        file.values.api.as_deref(),
        "api",
        file,
        str::parse::<Api>,
    )?
    .unwrap_or_default())
}

/// The built-in policy plus `fields` from the file and `--field`s, each checked (no `**`
/// alone, no routing fields).
pub fn policy(cli_fields: &[String], strict: bool, file: &ConfigFile) -> Result<Policy, CliError> {
    let mut extra = Vec::new();
    for f in &file.values.fields {
        let ps = FieldPath::parse_many(f).map_err(|e| file.err("fields", e))?;
        for p in &ps {
            p.check_user_path().map_err(|e| file.err("fields", e))?;
        }
        extra.extend(ps);
    }
    for f in cli_fields {
        extra.extend(
            FieldPath::parse_many(f).map_err(|e| CliError::usage(format!("--field: {e}")))?,
        );
    }
    let policy = Policy::default()
        .with_extra_fields(&extra)
        .map_err(|e| CliError::usage(format!("--field: {e}")))?;
    if !(strict || file.values.strict == Some(true)) {
        return Ok(policy);
    }
    Ok(policy.strict(passthrough(&file.values.passthrough, "passthrough", file)?))
}

/// `passthrough` paths (config key `key`), parsed.
pub fn passthrough(
    paths: &[String],
    key: &str,
    file: &ConfigFile,
) -> Result<Vec<FieldPath>, CliError> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(FieldPath::parse_many(p).map_err(|e| file.err(key, e))?);
    }
    Ok(out)
}

/// Key-cache limits from the file, bounded.
pub fn cache_config(fresh: bool, file: &ConfigFile) -> Result<CacheConfig, CliError> {
    let mut c = CacheConfig::default();
    if let Some(n) = file.values.max_messages_per_key {
        c.max_messages = n;
    }
    if let Some(s) = file.values.key_max_age_seconds {
        c.max_age = Duration::from_secs(s);
    }
    c.validate().map_err(|e| {
        let key = match e.limit {
            oneseal_core::CacheLimit::MaxMessages => "max_messages_per_key",
            oneseal_core::CacheLimit::MaxAge => "key_max_age_seconds",
        };
        file.err(key, e)
    })?;
    if fresh || file.values.fresh_key_per_message == Some(true) {
        c.max_messages = 1;
    }
    Ok(c)
}

/// Where the local master key is, and whether that is the default place (whose directory
/// oneseal may create) or a path the user chose (whose directory must exist).
pub fn local_key_path(
    flag: Option<PathBuf>,
    file: &ConfigFile,
) -> Result<(PathBuf, bool), CliError> {
    if let Some(p) = flag.or_else(|| file.values.local_key.clone()) {
        return Ok((p, false));
    }
    oneseal_core::local::default_key_path()
        .map(|p| (p, true))
        .ok_or_else(|| {
            CliError::usage(
                "no data directory for the local key on this system: pass --local-key PATH",
            )
        })
}

/// The key-provider settings after merging.
pub struct Keys {
    pub kms: KmsConfig,
    pub local_path: Result<(PathBuf, bool), CliError>,
}

/// A key id that is present but blank is an error, never a silent fall-back to the local
/// key: `--kms-key-id "$KEY"` with an empty `$KEY` must not "work" without KMS.
fn key_id(args: &KeyArgs, file: &ConfigFile) -> Result<Option<String>, CliError> {
    const BLANK: &str =
        "is empty: give a KMS key id, ARN or alias/NAME (or leave it out to use the local key)";
    if let Some(k) = &args.kms_key_id {
        if k.trim().is_empty() {
            return Err(CliError::usage(format!(
                "--kms-key-id (or ONESEAL_KMS_KEY_ID) {BLANK}"
            )));
        }
        return Ok(Some(k.trim().to_string()));
    }
    // clap treats an empty environment variable as unset; an empty one is still a mistake.
    if std::env::var_os(env::KMS_KEY_ID).is_some_and(|v| v.to_string_lossy().trim().is_empty()) {
        return Err(CliError::usage(format!("{} {BLANK}", env::KMS_KEY_ID)));
    }
    match &file.values.kms_key_id {
        Some(k) if k.trim().is_empty() => Err(file.err("kms_key_id", BLANK)),
        Some(k) => Ok(Some(k.trim().to_string())),
        None => Ok(None),
    }
}

pub fn keys(args: &KeyArgs, file: &ConfigFile) -> Result<Keys, CliError> {
    let mut ctx = file.values.encryption_context.clone();
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
    let valid = |t: f64| t.is_finite() && t > 0.0 && t <= 3600.0;
    const RANGE: &str = "must be more than 0 and at most 3600 seconds";
    let timeout = match (args.kms_timeout, file.values.kms_timeout) {
        (Some(t), _) if !valid(t) => return Err(CliError::usage(format!("--kms-timeout {RANGE}"))),
        (None, Some(t)) if !valid(t) => return Err(file.err("kms_timeout", RANGE)),
        (t, f) => t.or(f),
    };
    let op = timeout.map(Duration::from_secs_f64);
    let kms = KmsConfig {
        key_id: key_id(args, file)?,
        region: args.region.clone().or_else(|| file.values.region.clone()),
        profile: args.profile.clone().or_else(|| file.values.profile.clone()),
        endpoint_url: args
            .endpoint_url
            .clone()
            .or_else(|| file.values.endpoint_url.clone()),
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
        let (path, default) = self
            .local_path
            .as_ref()
            .map_err(|e| CliError::usage(e.message.clone()))?;
        if !default && !path.exists() {
            crate::io::require_parent_dir(path)?;
        }
        Ok(Arc::new(LazyLocal {
            path: path.clone(),
            create: true,
            cell: OnceCell::new(),
        }))
    }

    /// Whether new data keys come from the local key (no KMS key id).
    pub fn uses_local_key(&self) -> bool {
        self.kms.key_id.is_none()
    }

    /// Whether KMS is plausibly in use (a key id, region, profile or endpoint configured, or
    /// an AWS region in the environment): then its client is worth building ahead, while
    /// the input is read. A local-key user pays nothing for it.
    pub fn kms_likely(&self) -> bool {
        let k = &self.kms;
        k.key_id.is_some()
            || k.region.is_some()
            || k.profile.is_some()
            || k.endpoint_url.is_some()
            || ["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"]
                .iter()
                .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    }

    /// The gateway's provider: new data keys as for encryption, unwrapping by blob.
    pub fn gateway_provider(&self) -> Result<Arc<dyn KeyProvider>, CliError> {
        let encrypt = self.encrypt_provider()?;
        let local: Result<Arc<dyn KeyProvider>, String> = match &self.local_path {
            Ok((p, _)) if p.exists() => Ok(Arc::new(LocalProvider::load(p)?)),
            Ok((p, _)) if self.kms.key_id.is_none() => Ok(encrypt.clone()),
            Ok((p, _)) => Err(p.display().to_string()),
            Err(e) => Err(e.message.clone()),
        };
        let remote = AwsKmsProvider::new(self.kms.clone()).into_dyn();
        Ok(Arc::new(BlobRouter::new(
            Some(encrypt),
            local,
            Some(remote),
        )))
    }

    /// The provider for unwrapping: routes `OSL1` blobs to the local key, others to KMS.
    /// The local key is read when the first local blob needs it, not at start: in
    /// `oneseal encrypt … | oneseal decrypt` the encrypting end creates it meanwhile.
    pub fn decrypt_provider(&self) -> Result<Arc<dyn KeyProvider>, CliError> {
        let local: Result<Arc<dyn KeyProvider>, String> = match &self.local_path {
            Ok((p, _)) => Ok(Arc::new(LazyLocal {
                path: p.clone(),
                create: false,
                cell: OnceCell::new(),
            })),
            Err(e) => Err(e.message.clone()),
        };
        let remote = AwsKmsProvider::new(self.kms.clone()).into_dyn();
        Ok(Arc::new(BlobRouter::new(None, local, Some(remote))))
    }
}

/// The local provider, loaded (or, for encryption, created with a note on stderr) at its
/// first use.
#[derive(Debug)]
struct LazyLocal {
    path: PathBuf,
    /// Create the key when it does not exist (encryption); else a missing key is an error.
    create: bool,
    cell: OnceCell<LocalProvider>,
}

impl LazyLocal {
    fn get(&self) -> Result<&LocalProvider, KeyError> {
        if let Some(p) = self.cell.get() {
            return Ok(p);
        }
        let (p, outcome) = if self.create {
            LocalProvider::init(&self.path)?
        } else {
            (
                LocalProvider::load(&self.path)?,
                InitOutcome::AlreadyExisted,
            )
        };
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
        if !self.create && self.cell.get().is_none() && !self.path.exists() {
            return Err(KeyError::NoLocalKey {
                blob_key_id: oneseal_core::local::blob_key_id(blob).unwrap_or_else(|| "?".into()),
                path: self.path.display().to_string(),
            });
        }
        self.get()?.decrypt_data_key(blob).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneseal_core::{DecryptSuite, Suite};

    fn file_with(text: &str) -> Result<ConfigFile, CliError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        ConfigFile::load(Some(&p))
    }

    #[test]
    fn toml_errors_name_the_line() {
        let e = file_with("suite = \"gcm\"\nkms_key_id = \n").unwrap_err();
        assert!(e.message.contains("line 2"), "{}", e.message);
        let e = file_with("suite = \"gcm\"\n\nsuit = \"cbc\"\n").unwrap_err();
        assert!(e.message.contains("line 3"), "{}", e.message);
    }

    #[test]
    fn file_errors_name_the_file_and_key() {
        let f = file_with("suite = \"ccm\"\n").unwrap();
        let e = suite::<Suite>(None, &f).unwrap_err();
        assert!(e.message.contains("c.toml: suite:"), "{}", e.message);
        assert!(!e.message.contains("--suite"), "{}", e.message);
        let e = suite::<Suite>(Some("ccm"), &f).unwrap_err();
        assert!(e.message.starts_with("--suite"), "{}", e.message);
        let f = file_with("max_messages_per_key = 100000000\n").unwrap();
        let e = cache_config(false, &f).unwrap_err();
        assert!(e.message.contains("max_messages_per_key"), "{}", e.message);
        let f = file_with("fields = [\"**\"]\n").unwrap();
        assert!(policy(&[], false, &f)
            .unwrap_err()
            .message
            .contains("fields"));
    }

    #[test]
    fn decrypt_defaults_to_gcm() {
        assert_eq!(
            suite::<DecryptSuite>(None, &ConfigFile::default()).unwrap(),
            DecryptSuite::Gcm
        );
        let f = file_with("suite = \"cbc\"\n").unwrap();
        assert_eq!(suite::<DecryptSuite>(None, &f).unwrap(), DecryptSuite::Cbc);
    }
}
