//! `oneseal encrypt`, `oneseal decrypt` and `oneseal key init`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oneseal_core::{Engine, EngineOptions, InitOutcome, KeyCache, LocalProvider};

use crate::cli::{DecryptArgs, EncryptArgs};
use crate::config::{self, ConfigFile};
use crate::error::CliError;
use crate::io::{self, Output};

/// What encrypt and decrypt both resolve before reading a byte of input: the policy, the
/// payload family, the key settings and where the output goes.
struct Common {
    policy: oneseal_core::Policy,
    api: oneseal_core::Api,
    keys: config::Keys,
    output: Output,
    name: Option<PathBuf>,
}

fn common(
    input: Option<&Path>,
    output: Option<&Path>,
    fields: &[String],
    api: Option<&str>,
    keys: &crate::cli::KeyArgs,
    file: &ConfigFile,
) -> Result<Common, CliError> {
    let c = Common {
        api: config::api(api, file)?,
        policy: config::policy(fields, file)?,
        keys: config::keys(keys, file)?,
        output: Output::from_arg(output)?,
        name: io::input_name(input),
    };
    io::check_not_same(input, output)?;
    Ok(c)
}

pub async fn encrypt(a: EncryptArgs, file: &ConfigFile) -> Result<(), CliError> {
    let suite = config::suite::<oneseal_core::Suite>(a.suite.as_deref(), file)?;
    let cache_cfg = config::cache_config(a.fresh_key_per_message, file)?;
    let c = common(
        a.input.as_deref(),
        a.output.as_deref(),
        &a.fields,
        a.api.as_deref(),
        &a.keys,
        file,
    )?;
    let provider = c.keys.encrypt_provider()?;
    let cache = Arc::new(KeyCache::new(provider, cache_cfg));
    let opts = EngineOptions {
        suite,
        api: c.api,
        ..EngineOptions::default()
    };
    if a.ndjson || crate::ndjson::by_name(a.input.as_deref()) {
        let engine = Engine::new(cache, c.policy, opts);
        return crate::ndjson::run(engine, false, a.input.as_deref(), &c.output).await;
    }
    let input = io::read_input(a.input.as_deref())?;
    let out = Engine::new(cache, c.policy, opts)
        .encrypt_slice(&input, a.pretty)
        .await
        .map_err(|e| CliError::from(e).in_file(c.name.as_deref()))?;
    tracing::info!(suite = %suite, bytes = out.len(), "encrypted");
    c.output.write(&out)
}

pub async fn decrypt(a: DecryptArgs, file: &ConfigFile) -> Result<(), CliError> {
    let decrypt_suite = config::suite::<oneseal_core::DecryptSuite>(a.suite.as_deref(), file)?;
    let cache_cfg = config::cache_config(false, file)?;
    let c = common(
        a.input.as_deref(),
        a.output.as_deref(),
        &a.fields,
        a.api.as_deref(),
        &a.keys,
        file,
    )?;
    let provider = c.keys.decrypt_provider()?;
    let cache = Arc::new(KeyCache::new(provider, cache_cfg));
    let opts = EngineOptions {
        decrypt_suite,
        api: c.api,
        keep_going: a.keep_going,
        ..EngineOptions::default()
    };
    if a.ndjson || crate::ndjson::by_name(a.input.as_deref()) {
        let engine = Engine::new(cache, c.policy, opts);
        return crate::ndjson::run(engine, true, a.input.as_deref(), &c.output).await;
    }
    let input = io::read_input(a.input.as_deref())?;
    let name = c.name;
    let (out, report) = Engine::new(cache, c.policy, opts)
        .decrypt_slice(&input, a.pretty)
        .await
        .map_err(|e| CliError::from(e).in_file(name.as_deref()))?;
    tracing::info!(items = report.items, skipped = report.skipped, "decrypted");
    c.output.write(&out)?;
    if let Some(worst) = report
        .failures
        .iter()
        .max_by_key(|e| crate::error::code_for(e.class()))
    {
        for f in &report.failures {
            eprintln!("{}", CliError::from(f.clone()).in_file(name.as_deref()));
        }
        return Err(CliError::new(
            crate::error::code_for(worst.class()),
            format!(
                "{} item(s) could not be decrypted and were left as they were (--keep-going); the rest were written",
                report.failures.len()
            ),
        ));
    }
    if report.items == 0 {
        let what = name
            .as_deref()
            .map(|n| n.display().to_string())
            .unwrap_or_else(|| "the input".into());
        eprintln!(
            "oneseal: note: nothing in {what} was encrypted (no item carries an encryptionKey); it was passed through unchanged"
        );
    }
    Ok(())
}

pub fn key_init(local_key: Option<PathBuf>, file: &ConfigFile) -> Result<(), CliError> {
    let (path, default) = config::local_key_path(local_key, file)?;
    if !default && !path.exists() {
        io::require_parent_dir(&path)?;
    }
    let (p, outcome) = LocalProvider::init(&path)?;
    match outcome {
        InitOutcome::Created => {
            println!("created local key {} at {}", p.key_id_hex(), path.display())
        }
        InitOutcome::AlreadyExisted => println!(
            "local key {} already exists at {} (left unchanged)",
            p.key_id_hex(),
            path.display()
        ),
    }
    Ok(())
}
