//! `oneseal encrypt`, `oneseal decrypt` and `oneseal key init`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oneseal_core::{Engine, EngineOptions, InitOutcome, KeyCache, LocalProvider};

use crate::cli::{DecryptArgs, EncryptArgs, KeyArgs};
use crate::config::{self, FileConfig};
use crate::error::CliError;
use crate::io;

/// What encrypt and decrypt both need before they differ: the policy, the payload family,
/// the key settings and the input (read only after the arguments validate).
struct Prepared {
    policy: oneseal_core::Policy,
    api: oneseal_core::Api,
    keys: config::Keys,
    input: Vec<u8>,
    name: Option<PathBuf>,
}

fn prepare(
    input: Option<&Path>,
    output: Option<&Path>,
    fields: &[String],
    api: Option<&str>,
    keys: &KeyArgs,
    file: &FileConfig,
) -> Result<Prepared, CliError> {
    let api = config::parse_api(api.or(file.api.as_deref()))?;
    let policy = config::policy(fields, file)?;
    let keys = config::keys(keys, file)?;
    io::check_not_same(input, output)?;
    Ok(Prepared {
        policy,
        api,
        keys,
        input: io::read_input(input)?,
        name: io::input_name(input),
    })
}

pub async fn encrypt(a: EncryptArgs, file: &FileConfig) -> Result<(), CliError> {
    let suite = config::parse_suite(a.suite.as_deref().or(file.suite.as_deref()))?;
    let p = prepare(
        a.input.as_deref(),
        a.output.as_deref(),
        &a.fields,
        a.api.as_deref(),
        &a.keys,
        file,
    )?;
    let cache = Arc::new(KeyCache::new(
        p.keys.encrypt_provider()?,
        config::cache_config(a.fresh_key_per_message, file),
    ));
    let opts = EngineOptions {
        suite,
        api: p.api,
        ..EngineOptions::default()
    };
    let out = Engine::new(cache, p.policy, opts)
        .encrypt_slice(&p.input, a.pretty)
        .await
        .map_err(|e| CliError::from(e).in_file(p.name.as_deref()))?;
    tracing::info!(suite = %suite, bytes = out.len(), "encrypted");
    io::write_output(a.output.as_deref(), &out)
}

pub async fn decrypt(a: DecryptArgs, file: &FileConfig) -> Result<(), CliError> {
    let decrypt_suite = config::parse_decrypt_suite(a.suite.as_deref().or(file.suite.as_deref()))?;
    let p = prepare(
        a.input.as_deref(),
        a.output.as_deref(),
        &a.fields,
        a.api.as_deref(),
        &a.keys,
        file,
    )?;
    let cache = Arc::new(KeyCache::new(
        p.keys.decrypt_provider()?,
        config::cache_config(false, file),
    ));
    let opts = EngineOptions {
        decrypt_suite,
        api: p.api,
        keep_going: a.keep_going,
        ..EngineOptions::default()
    };
    let name = p.name;
    let (out, report) = Engine::new(cache, p.policy, opts)
        .decrypt_slice(&p.input, a.pretty)
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
    let path = config::local_key_path(local_key, file)?;
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
