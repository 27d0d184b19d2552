//! `oneseal media encrypt|decrypt`.

use std::io::IsTerminal;
use std::path::Path;

use oneseal_core::{b64, KeyProvider};
use oneseal_media::MediaError;
use serde_json::{json, Value};

use crate::cli::{MediaCommand, MediaDecryptArgs, MediaEncryptArgs};
use crate::config::{self, Sources};
use crate::error::CliError;
use crate::io::{self, Output};

/// The One API's per-upload limit.
const PLATFORM_LIMIT: u64 = 30 * 1024 * 1024;

pub async fn run(cmd: MediaCommand, src: &Sources) -> Result<(), CliError> {
    match cmd {
        MediaCommand::Encrypt(a) => encrypt(a, src).await,
        MediaCommand::Decrypt(a) => decrypt(a, src).await,
    }
}

fn media_err(e: MediaError) -> CliError {
    if e.is_crypto() {
        CliError::crypto(e.to_string())
    } else {
        CliError::usage(e.to_string())
    }
}

fn progress_bar(len: u64, disabled: bool) -> Option<indicatif::ProgressBar> {
    // Only for a person watching: never on a pipe or in a log, and not for small files.
    if disabled || len < 16 * 1024 * 1024 || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(pb)
}

/// WhatsApp's per-type media limits (bytes), for warnings.
fn whatsapp_limit(content_type: &str) -> Option<(u64, &'static str)> {
    let mb = 1024 * 1024;
    let top = content_type.split('/').next().unwrap_or("");
    match (top, content_type) {
        (_, "image/webp") => Some((500 * 1024, "sticker (webp)")),
        ("image", _) => Some((5 * mb, "image")),
        ("video", _) => Some((16 * mb, "video")),
        ("audio", _) => Some((16 * mb, "audio")),
        ("application", _) | ("text", _) => Some((100 * mb, "document")),
        _ => None,
    }
}

async fn encrypt(a: MediaEncryptArgs, src: &Sources) -> Result<(), CliError> {
    let suite = config::suite::<oneseal_core::Suite>(a.suite.as_deref(), src)?;
    let keys = config::keys(&a.keys, src)?;
    let stdin = io::is_dash(&a.file);
    io::check_not_same(Some(&a.file), Some(&a.output))?;
    let output = Output::from_arg(Some(&a.output))?;
    let len = if stdin {
        None
    } else {
        let meta = std::fs::metadata(&a.file).map_err(|e| CliError::io("read", &a.file, e))?;
        if !meta.is_file() {
            return Err(CliError::usage(format!(
                "{} is not a regular file",
                a.file.display()
            )));
        }
        Some(meta.len())
    };
    let file_name = match &a.file_name {
        Some(n) => n.clone(),
        None if stdin => {
            return Err(CliError::usage(
                "reading stdin: pass --file-name NAME (the name the recipient sees)",
            ))
        }
        None => a
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| CliError::usage("cannot tell the file name: pass --file-name"))?,
    };
    let content_type = a.content_type.clone().unwrap_or_else(|| {
        mime_guess::from_path(&file_name)
            .first_or_octet_stream()
            .essence_str()
            .to_string()
    });
    let provider = keys.encrypt_provider()?;
    let dk = provider.generate_data_key().await?;
    let pb = progress_bar(len.unwrap_or(0), a.no_progress || output == Output::Stdout);
    let tick = |n: u64| {
        if let Some(pb) = &pb {
            pb.set_position(n);
        }
    };
    // Blocking here is fine: the runtime is single-threaded and has nothing else to run
    // while the file is processed (the key is already in hand).
    let outcome = match &output {
        Output::Atomic(dest) if !stdin => {
            oneseal_media::encrypt_file(&dk.key, suite, &a.file, dest, &tick).map_err(media_err)?
        }
        _ => encrypt_to(&dk.key, suite, &a.file, &output, &tick)?,
    };
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if outcome.encrypted_byte_size > PLATFORM_LIMIT {
        eprintln!(
            "oneseal: warning: {} encrypted is {} bytes, over the One API upload limit of 30 MiB (31 457 280 bytes)",
            file_name, outcome.encrypted_byte_size
        );
    }
    if let Some((limit, kind)) = whatsapp_limit(&content_type) {
        if outcome.byte_size > limit {
            eprintln!(
                "oneseal: warning: {file_name} is {} bytes; WhatsApp accepts a {kind} of at most {} MB",
                outcome.byte_size,
                limit as f64 / (1024.0 * 1024.0)
            );
        }
    }
    let encryption_key = b64::encode(&dk.blob);
    let kms_arn = dk.key_arn.clone().unwrap_or_default();
    if kms_arn.starts_with("local:") {
        eprintln!("oneseal: note: encrypted with the local key; the platform cannot decrypt it (use --kms-key-id for real uploads)");
    }
    let sha = hex_lower(&outcome.sha256);
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("fileName", &file_name);
    match &a.to {
        Some(to) => q.append_pair("to", to),
        None => q.append_pair("broadcastAllowed", "true"),
    };
    q.append_pair("encryptionKey", &encryption_key);
    q.append_pair("kmsArn", &kms_arn);
    q.append_pair("sha256FileHash", &sha);
    let query = q.finish();
    let sep = if a.upload_base_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let out = json!({
        "fileName": file_name,
        "contentType": content_type,
        "byteSize": outcome.byte_size,
        "encryptedByteSize": outcome.encrypted_byte_size,
        "sha256FileHash": sha,
        "encryptionKey": encryption_key,
        "kmsArn": kms_arn,
        "suite": suite.name(),
        "encryptedFile": output.display(),
        "uploadQuery": query,
        "uploadUrl": format!("{}{sep}{query}", a.upload_base_url),
    });
    let text = serde_json::to_string_pretty(&out).unwrap_or_default();
    // With -o - the encrypted bytes own stdout; the parameters go to stderr.
    if output == Output::Stdout {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
    Ok(())
}

/// Encrypts from `input` (a file or stdin) into a non-atomic output (stdout, a pipe) or,
/// from stdin, into an atomic one.
fn encrypt_to(
    key: &oneseal_core::SecretKey,
    suite: oneseal_core::Suite,
    input: &Path,
    output: &Output,
    tick: &(dyn Fn(u64) + Sync),
) -> Result<oneseal_media::EncryptOutcome, CliError> {
    let reader: Box<dyn std::io::Read> = if io::is_dash(input) {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(input).map_err(|e| CliError::io("read", input, e))?)
    };
    let stream_err = |e: oneseal_media::StreamError| match e {
        oneseal_media::StreamError::Read(err) => CliError::io("read", input, err),
        oneseal_media::StreamError::Write(err) => {
            CliError::io("write", Path::new(&output.display()), err)
        }
        other => CliError::crypto(other.to_string()),
    };
    let run = |w: &mut (dyn std::io::Write + Send)| {
        let mut w = std::io::BufWriter::with_capacity(oneseal_media::CHUNK, w);
        let r =
            oneseal_media::encrypt_stream(key, suite, reader, &mut w, tick).map_err(stream_err)?;
        std::io::Write::flush(&mut w)
            .map_err(|e| CliError::io("write", Path::new(&output.display()), e))?;
        Ok::<_, CliError>(r)
    };
    let (byte_size, encrypted_byte_size, sha256) = match output {
        Output::Stdout => run(&mut std::io::stdout())?,
        Output::Direct(p) => run(&mut io::open_direct(p)?)?,
        Output::Atomic(p) => {
            let mut tmp = io::pending_beside(p)?;
            let r = run(tmp.file_mut())?;
            io::commit(tmp)?;
            r
        }
    };
    Ok(oneseal_media::EncryptOutcome {
        byte_size,
        encrypted_byte_size,
        sha256,
    })
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses an expected SHA-256; `usage` decides the exit code (a flag value is a usage
/// error, a callback's value bad input).
fn parse_sha(s: &str, what: &str, usage: bool) -> Result<[u8; 32], CliError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|_| {
        let msg = format!("{what}: not a SHA-256 hash (64 hex digits expected)");
        if usage {
            CliError::usage(msg)
        } else {
            CliError::input(msg)
        }
    })?;
    Ok(out)
}

/// Takes the key and the file's hash from a moMedia callback (One API or legacy).
fn from_callback(path: &Path, index: usize) -> Result<(String, Option<String>), CliError> {
    let text = std::fs::read(path).map_err(|e| CliError::io("read", path, e))?;
    let doc: Value = serde_json::from_slice(&text)
        .map_err(|e| CliError::input(format!("{}: not valid JSON: {e}", path.display())))?;
    let mut items: Vec<(String, &Value)> = Vec::new();
    if let Some(ev) = doc.get("event").and_then(Value::as_object) {
        for (ty, arr) in ev {
            for (i, it) in arr.as_array().into_iter().flatten().enumerate() {
                items.push((format!("event.{ty}[{i}]"), it));
            }
        }
    } else if doc.get("integrationId").is_some() {
        items.push((String::new(), &doc));
    }
    let (p, item) = items
        .into_iter()
        .find(|(_, it)| {
            it.get("files").is_some_and(Value::is_array) || it.get("sha256Hash").is_some()
        })
        .ok_or_else(|| {
            CliError::input(format!(
                "{}: no media item (with \"files\") in this callback",
                path.display()
            ))
        })?;
    let key = item
        .get("encryptionKey")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            CliError::input(format!(
                "{}: {p}.encryptionKey is missing or null: this media is not encrypted",
                path.display()
            ))
        })?
        .to_string();
    let hash = match item.get("files").and_then(Value::as_array) {
        Some(files) => {
            let f = files.get(index).ok_or_else(|| {
                CliError::usage(format!(
                    "--file-index {index}: the callback has {} file(s)",
                    files.len()
                ))
            })?;
            f.get("sha256Hash")
                .and_then(Value::as_str)
                .map(str::to_string)
        }
        None => item
            .get("sha256Hash")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    Ok((key, hash))
}

async fn decrypt(a: MediaDecryptArgs, src: &Sources) -> Result<(), CliError> {
    let suite = config::suite::<oneseal_core::DecryptSuite>(a.suite.as_deref(), src)?;
    let keys = config::keys(&a.keys, src)?;
    if io::is_dash(&a.file) {
        return Err(CliError::usage(
            "media decrypt needs the encrypted file as a file (its tag is at the end): save it first, then pass its path",
        ));
    }
    io::check_not_same(Some(&a.file), Some(&a.output))?;
    let output = Output::from_arg(Some(&a.output))?;
    let (key_b64, cb_hash) = match (&a.encryption_key, &a.callback) {
        (Some(k), _) => (k.clone(), None),
        (None, Some(cb)) => from_callback(cb, a.file_index)?,
        (None, None) => {
            return Err(CliError::usage(
                "give --encryption-key B64 or --callback CALLBACK.json",
            ))
        }
    };
    let expected = match (&a.sha256, &cb_hash) {
        (Some(h), _) => Some(parse_sha(h, "--sha256", true)?),
        (None, Some(h)) => Some(parse_sha(h, "the callback's sha256Hash", false)?),
        (None, None) => None,
    };
    if key_b64.trim().is_empty() {
        return Err(CliError::input(
            "the encryptionKey is empty; expected the base64 wrapped data key",
        ));
    }
    let blob =
        b64::decode(&key_b64).map_err(|_| CliError::input("--encryption-key: not valid base64"))?;
    // Everything that can be checked without the key is checked before any KMS call.
    let meta = std::fs::metadata(&a.file).map_err(|e| CliError::io("read", &a.file, e))?;
    if !meta.is_file() {
        return Err(CliError::usage(format!(
            "{} is not a regular file",
            a.file.display()
        )));
    }
    oneseal_media::precheck(suite, meta.len(), expected).map_err(|e| match e {
        oneseal_core::CryptoError::CbcNeedsHash => CliError::usage(format!(
            "{}: {e} (--sha256 HEX, or --callback with the file's sha256Hash)",
            a.file.display()
        )),
        other => CliError::crypto(format!("{}: {other}", a.file.display())),
    })?;
    let provider = keys.decrypt_provider()?;
    let key = provider
        .decrypt_data_key(&blob)
        .await?
        .ok_or_else(|| CliError::from(oneseal_core::KeyError::Unrecognised))?;
    let pb = progress_bar(meta.len(), a.no_progress);
    let tick = |n: u64| {
        if let Some(pb) = &pb {
            pb.set_position(n);
        }
    };
    // As for encryption: nothing else runs on this runtime meanwhile.
    let outcome = match &output {
        Output::Atomic(dest) => {
            oneseal_media::decrypt_file(&key, suite, &a.file, dest, expected, &tick)
        }
        Output::Stdout => oneseal_media::decrypt_file_to(
            &key,
            suite,
            &a.file,
            &mut std::io::stdout().lock(),
            expected,
            &tick,
        ),
        Output::Direct(p) => oneseal_media::decrypt_file_to(
            &key,
            suite,
            &a.file,
            &mut io::open_direct(p)?,
            expected,
            &tick,
        ),
    }
    .map_err(media_err)?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let out = json!({
        "file": output.display(),
        "byteSize": outcome.byte_size,
        "sha256": hex_lower(&outcome.sha256),
        "suite": outcome.suite.name(),
        "verified": if expected.is_some() { "sha256" } else { "gcm-tag" },
    });
    if output == Output::Stdout {
        eprintln!("{out}");
    } else {
        println!("{out}");
    }
    Ok(())
}
