//! `oneseal encrypt`, `oneseal decrypt` and `oneseal key init`.

use std::path::PathBuf;
use std::sync::Arc;

use oneseal_core::{Engine, EngineOptions, InitOutcome, KeyCache, LocalProvider};

use crate::cli::{DecryptArgs, EncryptArgs};
use crate::config::{self, FileConfig};
use crate::error::CliError;
use crate::io;

pub async fn encrypt(a: EncryptArgs, file: &FileConfig) -> Result<(), CliError> {
    let suite = config::parse_suite(a.suite.as_deref().or(file.suite.as_deref()))?;
    let api = config::parse_api(a.api.as_deref().or(file.api.as_deref()))?;
    let policy = config::policy(&a.fields, file)?;
    let keys = config::keys(&a.keys, file)?;
    io::check_not_same(a.input.as_deref(), a.output.as_deref())?;
    let input = io::read_input(a.input.as_deref())?;
    let name = io::input_name(a.input.as_deref());
    let provider = keys.encrypt_provider()?;
    let cache = Arc::new(KeyCache::new(
        provider,
        config::cache_config(a.fresh_key_per_message, file),
    ));
    let engine = Engine::new(
        cache,
        policy,
        EngineOptions {
            suite,
            api,
            ..EngineOptions::default()
        },
    );
    let out = engine
        .encrypt_slice(&input, a.pretty)
        .await
        .map_err(|e| CliError::from(e).in_file(name.as_deref()))?;
    tracing::info!(suite = %suite, bytes = out.len(), "encrypted");
    io::write_output(a.output.as_deref(), &out)
}

pub async fn decrypt(a: DecryptArgs, file: &FileConfig) -> Result<(), CliError> {
    let decrypt_suite = config::parse_decrypt_suite(a.suite.as_deref().or(file.suite.as_deref()))?;
    let api = config::parse_api(a.api.as_deref().or(file.api.as_deref()))?;
    let policy = config::policy(&a.fields, file)?;
    let keys = config::keys(&a.keys, file)?;
    io::check_not_same(a.input.as_deref(), a.output.as_deref())?;
    let input = io::read_input(a.input.as_deref())?;
    let name = io::input_name(a.input.as_deref());
    let provider = keys.decrypt_provider()?;
    let cache = Arc::new(KeyCache::new(provider, config::cache_config(false, file)));
    let engine = Engine::new(
        cache,
        policy,
        EngineOptions {
            decrypt_suite,
            api,
            keep_going: a.keep_going,
            ..EngineOptions::default()
        },
    );
    let (out, report) = engine
        .decrypt_slice(&input, a.pretty)
        .await
        .map_err(|e| CliError::from(e).in_file(name.as_deref()))?;
    tracing::info!(items = report.items, skipped = report.skipped, "decrypted");
    io::write_output(a.output.as_deref(), &out)?;
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
    Ok(())
}

pub fn key_init(local_key: Option<PathBuf>, file: &FileConfig) -> Result<(), CliError> {
    let path = local_key
        .or_else(|| file.local_key.clone())
        .or_else(oneseal_core::local::default_key_path)
        .ok_or_else(|| {
            CliError::usage("no data directory on this system: pass --local-key PATH")
        })?;
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
