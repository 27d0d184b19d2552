//! The gateway's own checks (route paths, credentials, key files, TLS, signing secrets), on
//! top of the checks every setting goes through (`oneseal_settings::check`: ranges, URLs,
//! addresses, secrets from the environment). Each error names its config key.

use std::sync::Arc;

use oneseal_flows::BusinessKey;
use oneseal_settings::check::secret_env;
pub use oneseal_settings::check::{
    addr, http_url, is_loopback_host, plain_http_remote, seconds, within,
};
use oneseal_settings::env::Env;
pub use oneseal_settings::{ConfigError, ConfigErrors, Origin};

use super::settings::{BasicAuth, Secret, SigningSecret};

/// An error about the config key `key`.
pub(crate) fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::file(key, message)
}

/// The value of the config key `key`, which must be given and not blank (`what` says what
/// it is, for the message).
pub(crate) fn required(key: &str, v: &Option<String>, what: &str) -> Result<String, ConfigError> {
    v.clone()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| err(key, format!("missing: {what}")))
}

/// A secret from the environment variable `var` (named by the config key `key`).
pub(crate) fn secret(key: &str, var: &str, env: &dyn Env) -> Result<Secret, ConfigError> {
    secret_env(Origin::file(key), var, env).map(Secret)
}

/// A route path must be literal: axum reads `{…}` and `*` as parameters, and a path used
/// twice would be refused when the routes are built.
pub(crate) fn check_paths(paths: &[(&str, &str)]) -> Result<(), ConfigError> {
    for (i, (key, p)) in paths.iter().enumerate() {
        let literal = p.len() > 1
            && p.starts_with('/')
            && !p.ends_with('/')
            && !p.contains("//")
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
        if !literal {
            return Err(err(
                key,
                format!("{p:?}: use a literal path of letters, digits, '/', '-', '_', '.' (e.g. /callbacks)"),
            ));
        }
        if let Some((other, _)) = paths[..i].iter().find(|(_, q)| q == p) {
            return Err(err(key, format!("{p:?} is already the path of {other}")));
        }
    }
    Ok(())
}

/// Loads a business key file; `pass_var` names the passphrase's environment variable.
pub(crate) fn business_key(
    key: &str,
    path: &std::path::Path,
    pass_key: &str,
    pass_var: Option<&str>,
    env: &dyn Env,
) -> Result<Arc<BusinessKey>, ConfigError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(err(
                key,
                format!(
                    "{} is readable by others (mode {:o}): a private key must be readable only by its owner; run chmod 600 {}",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ),
            ));
        }
    }
    let pass = match pass_var {
        Some(var) => Some(secret_env(Origin::file(pass_key), var, env)?),
        None => None,
    };
    if pass.is_none() && pem.contains("ENCRYPTED") {
        return Err(err(
            pass_key,
            format!(
                "{} is encrypted: name the environment variable that holds its passphrase",
                path.display()
            ),
        ));
    }
    BusinessKey::from_pem(&pem, pass.as_ref().map(|p| p.as_bytes()))
        .map(Arc::new)
        .map_err(|e| err(key, format!("{}: {e}", path.display())))
}

/// The public listener's TLS settings from PEM files (certificate chain, then any private
/// key format rustls reads: PKCS#8, PKCS#1, SEC1).
pub(crate) fn public_tls(
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(err("gateway.tls_key", "missing (tls_cert is set)")),
        (None, Some(_)) => return Err(err("gateway.tls_cert", "missing (tls_key is set)")),
        (Some(c), Some(k)) => (c, k),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err("gateway.tls_cert", format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(err(
            "gateway.tls_cert",
            format!("{}: no PEM certificate in it", cert.display()),
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| err("gateway.tls_key", format!("{}: {e}", key.display())))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| {
            err(
                "gateway.tls_key",
                format!("{} with {}: {e}", key.display(), cert.display()),
            )
        })?;
    Ok(Some(Arc::new(cfg)))
}

pub(crate) fn basic_auth(
    user_key: &str,
    pass_key: &str,
    user: Option<&String>,
    var: Option<&String>,
    env: &dyn Env,
) -> Result<Option<BasicAuth>, ConfigError> {
    match (user, var) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(err(
            pass_key,
            "missing: name the environment variable that holds the password",
        )),
        (None, Some(_)) => Err(err(user_key, format!("missing ({pass_key} is set)"))),
        (Some(u), Some(var)) => {
            let password = secret_env(Origin::file(pass_key), var, env)?;
            if password.chars().count() < MIN_PASSWORD {
                return Err(err(
                    pass_key,
                    format!("the password in {var} is shorter than {MIN_PASSWORD} characters; use a long random one (e.g. `openssl rand -base64 24`)"),
                ));
            }
            Ok(Some(BasicAuth {
                username: u.clone(),
                password,
            }))
        }
    }
}

/// Shortest basic-auth password accepted.
pub const MIN_PASSWORD: usize = 16;

/// The Standard Webhooks secret named by `var`: `whsec_` + base64, or base64 alone, of 24 to
/// 64 bytes (what the Standard Webhooks libraries accept).
pub(crate) fn signing_secret(
    key: &str,
    var: &str,
    env: &dyn Env,
) -> Result<SigningSecret, ConfigError> {
    use base64::Engine as _;
    let text = secret_env(Origin::file(key), var, env)?;
    let b64 = text.trim();
    let b64 = b64.strip_prefix("whsec_").unwrap_or(b64);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| {
            err(
                key,
                format!("{var} is not a Standard Webhooks secret: expected whsec_ followed by base64 (make one with: echo whsec_$(openssl rand -base64 32))"),
            )
        })?;
    if !(24..=64).contains(&bytes.len()) {
        return Err(err(
            key,
            format!("the secret in {var} decodes to {} bytes; use 24 to 64 random bytes (echo whsec_$(openssl rand -base64 32))", bytes.len()),
        ));
    }
    Ok(SigningSecret(zeroize::Zeroizing::new(bytes)))
}

/// A public route's credentials: required unless the config explicitly allows the route
/// without them.
pub(crate) fn required_auth(
    auth: Option<BasicAuth>,
    allow_unauthenticated: Option<bool>,
    key: &str,
    what: &str,
) -> Result<Option<BasicAuth>, ConfigError> {
    match (auth, allow_unauthenticated) {
        (Some(a), _) => Ok(Some(a)),
        (None, Some(true)) => Ok(None),
        (None, _) => Err(err(
            key,
            format!("missing: every public route authenticates; set the username and password the platform sends with {what} (basic auth), or set allow_unauthenticated = true"),
        )),
    }
}
