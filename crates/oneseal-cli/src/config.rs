//! Stage two of argument handling: what clap collected from the flags, the environment and
//! the config file, resolved once per command into validated settings, in the order flag →
//! environment → config file → default (`oneseal_settings::resolve`). Every error names where
//! the bad value came from: the flag, the environment variable, or the config file, its key
//! (and line, for TOML syntax). The gateway's tables go through the same checks.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock as OnceCell};
use std::time::Duration;

use oneseal_core::{
    Api, BlobRouter, CacheConfig, DataKey, FieldPath, InitOutcome, KeyError, KeyProvider,
    LocalProvider, Policy, SecretKey,
};
use oneseal_kms::{AwsKmsProvider, KmsConfig};
use oneseal_settings::env::{self, Env};
use oneseal_settings::{check, given, resolve, ConfigError, ConfigErrors, Origin};
use serde::Deserialize;

use crate::cli::KeyArgs;
use crate::error::CliError;

/// The config file found without `--config`.
pub const DEFAULT_CONFIG: &str = "oneseal.toml";

/// `oneseal gateway --print-config`: every key, its default and what it does.
pub const SAMPLE: &str = include_str!("sample.toml");

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

/// Where settings come from besides the flags: the environment and the config file in force
/// (if any).
pub struct Sources {
    /// Where the config file was read from; `None` when there is none.
    pub path: Option<PathBuf>,
    pub values: FileConfig,
    pub env: Box<dyn Env>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("path", &self.path)
            .field("values", &self.values)
            .finish_non_exhaustive()
    }
}

impl Default for Sources {
    fn default() -> Sources {
        Sources {
            path: None,
            values: FileConfig::default(),
            env: Box::new(env::Process),
        }
    }
}

impl Sources {
    /// The config file from `--config`, else `ONESEAL_CONFIG`, else `./oneseal.toml` if it
    /// exists; the environment from `vars`.
    pub fn load(flag: Option<&Path>, vars: Box<dyn Env>) -> Result<Sources, CliError> {
        let from_env = vars.get(env::CONFIG).filter(|v| !v.is_empty());
        let path = match (flag, from_env) {
            (Some(p), _) => p.to_path_buf(),
            (None, Some(p)) => PathBuf::from(p),
            (None, None) if Path::new(DEFAULT_CONFIG).is_file() => PathBuf::from(DEFAULT_CONFIG),
            (None, None) => {
                return Ok(Sources {
                    env: vars,
                    ..Sources::default()
                })
            }
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
        Ok(Sources {
            path: Some(path),
            values,
            env: vars,
        })
    }

    /// The one place a setting's error becomes the CLI's: a config file key is named with
    /// the file it is in.
    pub fn error(&self, e: ConfigError) -> CliError {
        if !e.in_file() {
            return CliError::usage(e.to_string());
        }
        let file = self
            .path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| DEFAULT_CONFIG.into());
        CliError::usage(format!("config file {file}: {e}"))
    }

    /// Every error a config has, each said as [`Sources::error`] says one, one per line.
    pub fn errors(&self, e: ConfigErrors) -> CliError {
        problems(e.into_iter().map(|e| self.error(e).message).collect())
    }

    /// An error about the config file key `key`.
    pub fn err(&self, key: &str, msg: impl std::fmt::Display) -> CliError {
        self.error(ConfigError::file(key, msg.to_string()))
    }

    /// The environment variable `name`, if set and not empty (an empty one counts as unset,
    /// as it did when clap read it).
    fn var(&self, name: &str) -> Option<String> {
        self.env.get(name).filter(|v| !v.is_empty())
    }
}

/// A suite setting: the suite for new ciphertext ([`Suite`], default gcm), or the suite
/// decryption accepts ([`DecryptSuite`]: the configured suite, gcm by default;
/// `auto` only when asked for). `suite` in the file sets both.
pub fn suite<T>(flag: Option<&str>, src: &Sources) -> Result<T, CliError>
where
    T: std::str::FromStr + Default,
    T::Err: std::fmt::Display,
{
    let from_env = src.var(env::SUITE);
    let sources = [
        (Origin::Flag("--suite"), flag),
        (Origin::Env(env::SUITE), from_env.as_deref()),
        (Origin::file("suite"), src.values.suite.as_deref()),
    ];
    Ok(resolve(&sources, str::parse::<T>)
        .map_err(|e| src.error(e))?
        .unwrap_or_default())
}

pub fn api(flag: Option<&str>, src: &Sources) -> Result<Api, CliError> {
    let sources = [
        (Origin::Flag("--api"), flag),
        (Origin::file("api"), src.values.api.as_deref()),
    ];
    Ok(resolve(&sources, str::parse::<Api>)
        .map_err(|e| src.error(e))?
        .unwrap_or_default())
}

/// The built-in policy plus `fields` from the file and `--field`s, each checked (no `**`
/// alone, no routing fields).
pub fn policy(cli_fields: &[String], strict: bool, src: &Sources) -> Result<Policy, CliError> {
    let mut extra = Vec::new();
    for f in &src.values.fields {
        let ps = FieldPath::parse_many(f).map_err(|e| src.err("fields", e))?;
        for p in &ps {
            p.check_user_path().map_err(|e| src.err("fields", e))?;
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
    if !(strict || src.values.strict == Some(true)) {
        return Ok(policy);
    }
    Ok(policy.strict(passthrough(&src.values.passthrough, "passthrough", src)?))
}

/// `passthrough` paths (config key `key`), parsed.
pub fn passthrough(paths: &[String], key: &str, src: &Sources) -> Result<Vec<FieldPath>, CliError> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(FieldPath::parse_many(p).map_err(|e| src.err(key, e))?);
    }
    Ok(out)
}

/// Key-cache limits from the file, bounded.
pub fn cache_config(fresh: bool, src: &Sources) -> Result<CacheConfig, CliError> {
    let mut c = CacheConfig::default();
    if let Some(n) = src.values.max_messages_per_key {
        c.max_messages = n;
    }
    if let Some(s) = src.values.key_max_age_seconds {
        c.max_age = Duration::from_secs(s);
    }
    c.validate().map_err(|e| {
        let key = match e.limit {
            oneseal_core::CacheLimit::MaxMessages => "max_messages_per_key",
            oneseal_core::CacheLimit::MaxAge => "key_max_age_seconds",
        };
        src.err(key, e)
    })?;
    if fresh || src.values.fresh_key_per_message == Some(true) {
        c.max_messages = 1;
    }
    Ok(c)
}

/// Where the local master key is (`--local-key`, `ONESEAL_LOCAL_KEY`, `local_key`), and
/// whether that is the default place (whose directory oneseal may create) or a path the user
/// chose (whose directory must exist).
pub fn local_key_path(flag: Option<PathBuf>, src: &Sources) -> Result<(PathBuf, bool), CliError> {
    let chosen = flag
        .or_else(|| src.var(env::LOCAL_KEY).map(PathBuf::from))
        .or_else(|| src.values.local_key.clone());
    if let Some(p) = chosen {
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

/// The KMS key for new data keys. A key id that is given but blank is an error, never a
/// silent fall-back to the local key: `--kms-key-id "$KEY"` with an empty `$KEY` must not
/// "work" without KMS.
fn key_id(args: &KeyArgs, src: &Sources) -> Result<Option<String>, CliError> {
    const BLANK: &str =
        "give a KMS key id, ARN or alias/NAME (or leave it out to use the local key)";
    // Read raw: an empty variable is a mistake here, not "unset".
    let from_env = src.env.get(env::KMS_KEY_ID);
    let sources = [
        (Origin::Flag("--kms-key-id"), args.kms_key_id.as_deref()),
        (Origin::Env(env::KMS_KEY_ID), from_env.as_deref()),
        (Origin::file("kms_key_id"), src.values.kms_key_id.as_deref()),
    ];
    given(sources)
        .map(|(origin, v)| check::non_blank(origin, v, BLANK))
        .transpose()
        .map_err(|e| src.error(e))
}

/// `--kms-timeout` or `kms_timeout`: more than 0 and at most an hour.
fn kms_timeout(args: &KeyArgs, src: &Sources) -> Result<Option<Duration>, CliError> {
    let range = (Bound::Excluded(0.0), Bound::Included(3600.0));
    let sources = [
        (Origin::Flag("--kms-timeout"), args.kms_timeout),
        (Origin::file("kms_timeout"), src.values.kms_timeout),
    ];
    given(sources)
        .map(|(origin, t)| check::within(origin, Some(t), t, range))
        .transpose()
        .map(|t| t.map(Duration::from_secs_f64))
        .map_err(|e| src.error(e))
}

pub fn keys(args: &KeyArgs, src: &Sources) -> Result<Keys, CliError> {
    let mut ctx = src.values.encryption_context.clone();
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
    let op = kms_timeout(args, src)?;
    let endpoint_sources = [
        (Origin::Flag("--endpoint-url"), args.endpoint_url.as_deref()),
        (
            Origin::file("endpoint_url"),
            src.values.endpoint_url.as_deref(),
        ),
    ];
    let endpoint_url = given(endpoint_sources)
        .map(|(origin, v)| check::http_url(origin, v).map(|_| v.to_string()))
        .transpose()
        .map_err(|e| src.error(e))?;
    let kms = KmsConfig {
        key_id: key_id(args, src)?,
        region: args.region.clone().or_else(|| src.values.region.clone()),
        profile: args.profile.clone().or_else(|| src.values.profile.clone()),
        endpoint_url,
        encryption_context: ctx,
        operation_timeout: op,
        attempt_timeout: op.map(|d| d.min(Duration::from_secs(5))),
        connect_timeout: op.map(|d| d.min(Duration::from_secs(3))),
        ..KmsConfig::default()
    };
    let local_path = local_key_path(args.local_key.clone(), src);
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

/// Several problems as one usage error: a count, then one per line (one alone as it is).
pub fn problems(mut all: Vec<String>) -> CliError {
    if all.len() == 1 {
        return CliError::usage(all.remove(0));
    }
    let mut e = CliError::usage(format!("{} problems:", all.len()));
    e.details = all;
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneseal_core::{DecryptSuite, Suite};

    fn file_with(text: &str) -> Result<Sources, CliError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        Sources::load(Some(&p), Box::new(|_: &str| None))
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

    fn with_env(text: &str, vars: &'static [(&'static str, &'static str)]) -> Sources {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        let env = move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        Sources::load(Some(&p), Box::new(env)).unwrap()
    }

    #[test]
    fn the_environment_comes_before_the_file() {
        let s = with_env("suite = \"gcm\"\n", &[("ONESEAL_SUITE", "cbc")]);
        assert_eq!(suite::<Suite>(None, &s).unwrap(), Suite::Cbc);
    }

    #[test]
    fn a_flag_comes_before_the_environment() {
        let s = with_env("", &[("ONESEAL_SUITE", "cbc")]);
        assert_eq!(suite::<Suite>(Some("gcm"), &s).unwrap(), Suite::Gcm);
    }

    #[test]
    fn a_bad_environment_value_is_named_by_its_variable() {
        let s = with_env("suite = \"gcm\"\n", &[("ONESEAL_SUITE", "ccm")]);
        let e = suite::<Suite>(None, &s).unwrap_err();
        assert!(e.message.starts_with("ONESEAL_SUITE: "), "{}", e.message);
    }

    #[test]
    fn an_empty_kms_key_id_variable_is_refused_not_ignored() {
        let s = with_env("", &[("ONESEAL_KMS_KEY_ID", " ")]);
        let e = keys(&KeyArgs::default(), &s).err().unwrap();
        assert!(
            e.message.starts_with("ONESEAL_KMS_KEY_ID: is empty"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_bad_kms_timeout_in_the_file_names_the_file_key() {
        let s = with_env("kms_timeout = 0.0\n", &[]);
        let e = keys(&KeyArgs::default(), &s).err().unwrap();
        assert!(
            e.message
                .contains("c.toml: kms_timeout: must be more than 0"),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_endpoint_url_must_be_a_url() {
        let s = with_env("endpoint_url = \"localhost:4566\"\n", &[]);
        let e = keys(&KeyArgs::default(), &s).err().unwrap();
        assert!(
            e.message.contains("endpoint_url: \"localhost:4566\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_config_file_can_be_named_by_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("named.toml");
        std::fs::write(&p, "suite = \"cbc\"\n").unwrap();
        let path = p.to_str().unwrap().to_string();
        let env = move |k: &str| (k == "ONESEAL_CONFIG").then(|| path.clone());
        let s = Sources::load(None, Box::new(env)).unwrap();
        assert_eq!(s.path.as_deref(), Some(p.as_path()));
    }

    /// Every key a config file may hold is in the sample `--print-config` prints, as a
    /// commented `key = ` line (read from the tables' own definitions).
    #[test]
    fn the_printed_sample_names_every_key() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let sources = [
            std::fs::read_to_string(root.join("src/config.rs")).unwrap(),
            std::fs::read_to_string(root.join("../oneseal-gateway/src/config/files.rs")).unwrap(),
        ];
        let tables = [
            "GatewayFile",
            "CallbacksFile",
            "CleverTapFile",
            "FlowsFile",
            "QueueFile",
        ];
        let mut missing = Vec::new();
        for src in &sources {
            let file_structs = src.split("pub struct ").skip(1).filter(|s| {
                let name = s.split_whitespace().next().unwrap_or("");
                name == "FileConfig" || tables.contains(&name)
            });
            for body in file_structs {
                let body = body.split("\n}").next().unwrap_or("");
                for line in body.lines() {
                    let Some((name, ty)) = line
                        .trim()
                        .strip_prefix("pub ")
                        .and_then(|r| r.split_once(':'))
                    else {
                        continue;
                    };
                    if tables.iter().any(|t| ty.contains(t)) || name == "gateway" {
                        continue;
                    }
                    let ok = (name == "encryption_context"
                        && SAMPLE.contains("# [encryption_context]"))
                        || SAMPLE.contains(&format!("# {name} = "));
                    if !ok {
                        missing.push(name.to_string());
                    }
                }
            }
        }
        assert!(missing.is_empty(), "not in sample.toml: {missing:?}");
    }

    /// The sample as printed is a valid (all-default) config file.
    #[test]
    fn the_printed_sample_parses() {
        let v: FileConfig = toml::from_str(SAMPLE).unwrap();
        assert!(v.gateway.is_none() && v.kms_key_id.is_none());
    }

    #[test]
    fn decrypt_defaults_to_gcm() {
        assert_eq!(
            suite::<DecryptSuite>(None, &Sources::default()).unwrap(),
            DecryptSuite::Gcm
        );
        let f = file_with("suite = \"cbc\"\n").unwrap();
        assert_eq!(suite::<DecryptSuite>(None, &f).unwrap(), DecryptSuite::Cbc);
    }
}
