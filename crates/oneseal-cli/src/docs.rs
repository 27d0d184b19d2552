//! `oneseal encrypt`, `oneseal decrypt` and `oneseal key init`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oneseal_core::walker::Streamed;
use oneseal_core::{Engine, EngineOptions, InitOutcome, KeyCache, LocalProvider};

use crate::cli::{DecryptArgs, EncryptArgs};
use crate::config::{self, Sources};
use crate::error::CliError;
use crate::io::{self, Input, Output};

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
    strict: bool,
    api: Option<&str>,
    keys: &crate::cli::KeyArgs,
    src: &Sources,
) -> Result<Common, CliError> {
    let c = Common {
        api: config::api(api, src)?,
        policy: config::policy(fields, strict, src)?,
        keys: config::keys(keys, src)?,
        output: Output::from_arg(output)?,
        name: io::input_name(input),
    };
    io::check_not_same(input, output)?;
    Ok(c)
}

pub async fn encrypt(a: EncryptArgs, src: &Sources) -> Result<(), CliError> {
    let suite = config::suite::<oneseal_core::Suite>(a.suite.as_deref(), src)?;
    let cache_cfg = config::cache_config(a.fresh_key_per_message, src)?;
    let c = common(
        a.input.as_deref(),
        a.output.as_deref(),
        &a.fields,
        a.strict,
        a.api.as_deref(),
        &a.keys,
        src,
    )?;
    let local = c.keys.uses_local_key();
    let r = encrypt_with(a, c, suite, cache_cfg).await;
    if r.is_ok() && local {
        eprintln!("oneseal: note: encrypted with the local key; the platform cannot decrypt it (use --kms-key-id for real messages)");
    }
    r
}

async fn encrypt_with(
    a: EncryptArgs,
    c: Common,
    suite: oneseal_core::Suite,
    cache_cfg: oneseal_core::CacheConfig,
) -> Result<(), CliError> {
    let provider = c.keys.encrypt_provider()?;
    prepare(&c.keys, &provider);
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
    let engine = Engine::new(cache, c.policy, opts);
    let in_file = |e: oneseal_core::Error| CliError::from(e).in_file(c.name.as_deref());
    let input = match io::open_input(a.input.as_deref())? {
        Input::Bytes(b) => b,
        Input::File(f) => {
            let streamed = streamed(f, &c.output, |rt, f, sink| {
                engine.encrypt_file(rt, f, sink, a.pretty).map_err(in_file)
            })?;
            match streamed {
                Ok(kind) => {
                    tracing::info!(suite = %suite, kind = kind.name(), "encrypted (streamed)");
                    return Ok(());
                }
                Err(bytes) => bytes,
            }
        }
    };
    let out = engine
        .encrypt_slice(&input, a.pretty)
        .await
        .map_err(in_file)?;
    tracing::info!(suite = %suite, bytes = out.len(), "encrypted");
    c.output.write(&out)
}

/// Builds the KMS client on another worker while this one reads the input (measured: the
/// client's configuration and TLS roots are a third of a 5 000-message decrypt).
fn prepare(keys: &config::Keys, provider: &Arc<dyn oneseal_core::KeyProvider>) {
    if keys.kms_likely() {
        let p = provider.clone();
        tokio::spawn(async move { p.prepare().await });
    }
}

/// Runs a streamed pass (large documents: bounded memory) on this thread, which may block
/// while the runtime serves its key-service calls. `Err(bytes)` hands the document back,
/// read whole, when the engine prefers the tree path for it (nothing was written).
fn streamed<T>(
    mut file: std::fs::File,
    output: &Output,
    work: impl FnOnce(
        &tokio::runtime::Handle,
        &mut std::fs::File,
        &mut io::Sink,
    ) -> Result<Streamed<T>, CliError>,
) -> Result<Result<T, Vec<u8>>, CliError> {
    tokio::task::block_in_place(|| {
        let rt = tokio::runtime::Handle::current();
        let mut sink = io::Sink::open(output)?;
        match work(&rt, &mut file, &mut sink)? {
            Streamed::Done(t) => {
                sink.finish(output)?;
                Ok(Ok(t))
            }
            _ => {
                drop(sink);
                let mut bytes = Vec::new();
                file.seek(SeekFrom::Start(0))
                    .and_then(|_| file.read_to_end(&mut bytes))
                    .map_err(|e| CliError::io("read", Path::new(&output.display()), e))?;
                Ok(Err(bytes))
            }
        }
    })
}

pub async fn decrypt(a: DecryptArgs, src: &Sources) -> Result<(), CliError> {
    let decrypt_suite = config::suite::<oneseal_core::DecryptSuite>(a.suite.as_deref(), src)?;
    let cache_cfg = config::cache_config(false, src)?;
    let c = common(
        a.input.as_deref(),
        a.output.as_deref(),
        &a.fields,
        false,
        a.api.as_deref(),
        &a.keys,
        src,
    )?;
    let provider = c.keys.decrypt_provider()?;
    prepare(&c.keys, &provider);
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
    let name = c.name;
    let engine = Engine::new(cache, c.policy, opts);
    let in_file = |e: oneseal_core::Error| CliError::from(e).in_file(name.as_deref());
    let input = match io::open_input(a.input.as_deref())? {
        Input::Bytes(b) => Err(b),
        Input::File(f) => streamed(f, &c.output, |rt, f, sink| {
            engine.decrypt_file(rt, f, sink, a.pretty).map_err(in_file)
        })?,
    };
    let report = match input {
        Ok(report) => report,
        Err(input) => {
            let (out, report) = engine
                .decrypt_slice(&input, a.pretty)
                .await
                .map_err(in_file)?;
            c.output.write(&out)?;
            report
        }
    };
    tracing::info!(items = report.items, skipped = report.skipped, "decrypted");
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

pub fn key_init(local_key: Option<PathBuf>, src: &Sources) -> Result<(), CliError> {
    let (path, default) = config::local_key_path(local_key, src)?;
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
