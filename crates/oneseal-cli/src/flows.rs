//! `oneseal flows ...`: WhatsApp Flows endpoint crypto.

use std::io::{IsTerminal, Write};
use std::path::Path;

use oneseal_flows::{BusinessKey, FlowsError};
use zeroize::Zeroizing;

use crate::cli::FlowsCommand;
use crate::error::CliError;
use crate::io;

use oneseal_settings::env::{FLOWS_APP_SECRET as SECRET_ENV, FLOWS_PASSPHRASE as PASS_ENV};

fn flows_err(e: FlowsError) -> CliError {
    let status = e.http_status();
    let msg = format!("{e} (an endpoint should answer HTTP {status})");
    match e {
        FlowsError::Malformed(_) | FlowsError::NotJson(_) | FlowsError::MalformedSignature => {
            CliError::input(msg)
        }
        FlowsError::Undecryptable(_) | FlowsError::BadSignature => CliError::crypto(msg),
        FlowsError::Key(_) => CliError::usage(e.to_string()),
        _ => CliError::usage(e.to_string()),
    }
}

/// A secret from the environment, else a no-echo prompt on the terminal; never a flag.
fn secret(env: &str, prompt: &str) -> Result<Zeroizing<String>, CliError> {
    if let Ok(v) = std::env::var(env) {
        return Ok(Zeroizing::new(v));
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "set {env} (no terminal to prompt on)"
        )));
    }
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|e| CliError::usage(format!("cannot read the passphrase: {e}")))
}

fn load_key(path: &Path) -> Result<BusinessKey, CliError> {
    let pem =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| CliError::io("read", path, e))?);
    let pass = if pem.contains("ENCRYPTED PRIVATE KEY") {
        Some(secret(PASS_ENV, "Private key passphrase: ")?)
    } else {
        None
    };
    BusinessKey::from_pem(&pem, pass.as_ref().map(|p| p.as_bytes()))
        .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
}

/// Writes a new file that must not exist, with `mode`, atomically.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    if path.exists() {
        return Err(CliError::usage(format!(
            "{} already exists; oneseal never overwrites a key",
            path.display()
        )));
    }
    io::require_parent_dir(path)?;
    let mut tmp = io::pending_beside(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| CliError::io("set permissions on", path, e))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.file_mut()
        .write_all(bytes)
        .map_err(|e| CliError::io("write", path, e))?;
    tmp.commit_new().map_err(|e| CliError::io("write", path, e))
}

fn emit(output: Option<&Path>, mut bytes: Vec<u8>) -> Result<(), CliError> {
    let out = io::Output::from_arg(output)?;
    // A newline only for a person at a terminal: bodies piped on must stay exact.
    if out == io::Output::Stdout && std::io::stdout().is_terminal() {
        bytes.push(b'\n');
    }
    out.write(&bytes)
}

pub fn run(cmd: FlowsCommand) -> Result<(), CliError> {
    match cmd {
        FlowsCommand::Keygen {
            private_key_out,
            public_key_out,
            encrypt,
            print_upload_body,
        } => {
            if private_key_out == public_key_out {
                return Err(CliError::usage(
                    "--private-key-out and --public-key-out must differ",
                ));
            }
            for p in [&private_key_out, &public_key_out] {
                if p.exists() {
                    return Err(CliError::usage(format!(
                        "{} already exists; oneseal never overwrites a key",
                        p.display()
                    )));
                }
                io::require_parent_dir(p)?;
            }
            let pass = if encrypt {
                Some(secret(PASS_ENV, "New private key passphrase: ")?)
            } else {
                None
            };
            if pass.as_ref().is_some_and(|p| p.is_empty()) {
                return Err(CliError::usage("the passphrase is empty"));
            }
            let key = BusinessKey::generate().map_err(flows_err)?;
            let private = key
                .private_key_pem(pass.as_ref().map(|p| p.as_bytes()))
                .map_err(flows_err)?;
            let public = key.public_key_pem().map_err(flows_err)?;
            write_new(&private_key_out, private.as_bytes(), 0o600)?;
            write_new(&public_key_out, public.as_bytes(), 0o644)?;
            if print_upload_body {
                println!("{}", key.upload_body().map_err(flows_err)?);
            } else {
                eprintln!(
                    "oneseal: wrote {} (private, mode 0600) and {} (public); upload the public key, e.g. with --print-upload-body",
                    private_key_out.display(),
                    public_key_out.display()
                );
            }
            Ok(())
        }
        FlowsCommand::DecryptRequest {
            input,
            private_key,
            output,
        } => {
            let key = load_key(&private_key)?;
            let body = io::read_input(input.as_deref())?;
            let (flow, _) = key.decrypt_request(&body).map_err(flows_err)?;
            emit(output.as_deref(), flow)
        }
        FlowsCommand::EncryptResponse {
            input,
            private_key,
            request,
            output,
        } => {
            let key = load_key(&private_key)?;
            let req = std::fs::read(&request).map_err(|e| CliError::io("read", &request, e))?;
            let response = io::read_input(input.as_deref())?;
            let (_, sealer) = key
                .decrypt_request(&req)
                .map_err(|e| flows_err(e).in_file(Some(&request)))?;
            let body = sealer.seal(&response).map_err(flows_err)?;
            emit(output.as_deref(), body.into_bytes())
        }
        FlowsCommand::VerifySignature { input, signature } => {
            let secret = secret(SECRET_ENV, "App secret: ")?;
            let body = io::read_input(input.as_deref())?;
            oneseal_flows::verify_signature(secret.as_bytes(), &body, &signature)
                .map_err(flows_err)?;
            eprintln!("oneseal: signature OK");
            Ok(())
        }
    }
}
