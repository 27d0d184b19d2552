//! The `[gateway]` table of `oneseal.toml`: parsed as written, then validated
//! into a [`GatewayConfig`] with every default filled in. Errors name the key
//! (`gateway.callbacks.forward_to: …`) so `oneseal gateway --check-config` can print one line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oneseal_flows::BusinessKey;
use serde::Deserialize;

/// The `[gateway]` table exactly as written. Unknown keys are an error, so typos surface.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    pub app_listen: Option<String>,
    pub public_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub upstream: Option<String>,
    pub app_url: Option<String>,
    pub public_url: Option<String>,
    pub spool_dir: Option<PathBuf>,
    pub max_in_flight: Option<usize>,
    pub upstream_timeout_seconds: Option<u64>,
    pub request_timeout_seconds: Option<u64>,
    pub max_body_bytes: Option<usize>,
    /// Bytes of request bodies held in memory at once, per listener.
    pub max_body_memory_bytes: Option<usize>,
    /// In-flight requests per public route (each route has its own budget).
    pub public_max_in_flight: Option<usize>,
    /// Open connections per listener; more are closed at once.
    pub max_connections: Option<usize>,
    /// Time for a request's headers, from accept or from the end of the previous answer on a
    /// kept-alive connection (so also the idle keep-alive timeout).
    pub header_read_timeout_seconds: Option<u64>,
    /// Accept HTTP/2 (h2c, or ALPN h2 on TLS); HTTP/1.1 only unless set.
    pub http2: Option<bool>,
    /// Allow an `http://` upstream that is not on a loopback address.
    pub allow_insecure_upstream: Option<bool>,
    /// Allow the local key (no `kms_key_id`) with an upstream that is not on loopback.
    pub allow_local_key: Option<bool>,
    /// Strict mode (default on): members the policy does not know are refused.
    pub strict: Option<bool>,
    /// Paths strict mode forwards as they are, relative to each message.
    pub passthrough: Option<Vec<String>>,
    /// PEM certificate chain and private key: the public listener speaks TLS itself.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub callbacks: Option<CallbacksFile>,
    /// The CleverTap bridge.
    pub clevertap: Option<CleverTapFile>,
    /// The WhatsApp Flows endpoint.
    pub flows: Option<FlowsFile>,
}

/// `[gateway.clevertap]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleverTapFile {
    pub path: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub one_api_key_env: Option<String>,
    pub dlr_url: Option<String>,
    pub imo_url: Option<String>,
    pub waba_number: Option<String>,
    pub media_hosts: Option<Vec<String>>,
    pub media_link_secret_env: Option<String>,
    pub media_link_ttl_seconds: Option<u64>,
    pub validate_only_namespace: Option<String>,
    pub callbacks_path: Option<String>,
    pub callback_username: Option<String>,
    pub callback_password_env: Option<String>,
    /// The platform's callbacks to the bridge without basic auth (a warning at start).
    pub allow_unauthenticated: Option<bool>,
    pub media_fetch_timeout_seconds: Option<u64>,
}

/// `[gateway.flows]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsFile {
    pub path: Option<String>,
    pub private_key: Option<PathBuf>,
    pub passphrase_env: Option<String>,
    pub previous_private_key: Option<PathBuf>,
    pub previous_passphrase_env: Option<String>,
    pub app_secret_env: Option<String>,
    pub forward_to: Option<String>,
    pub response_timeout_seconds: Option<u64>,
    /// Requests without `X-Hub-Signature-256` checking (no `app_secret_env`).
    pub allow_unauthenticated: Option<bool>,
    /// Signs the requests to the flow handler (Standard Webhooks).
    pub signing_secret_env: Option<String>,
}

/// `[gateway.callbacks]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksFile {
    pub path: Option<String>,
    pub forward_to: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub max_retry_seconds: Option<u64>,
    /// Dead-letter a callback not delivered within this many seconds of its arrival.
    pub max_retry_age_seconds: Option<u64>,
    /// The callback route without basic auth (a warning at start).
    pub allow_unauthenticated: Option<bool>,
    /// Forward items with content and a null `encryptionKey` (an unencrypted integration).
    pub accept_plaintext: Option<bool>,
    /// Signs the callbacks forwarded to the app (Standard Webhooks).
    pub signing_secret_env: Option<String>,
}

/// A configuration error: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The dotted config key (`gateway.upstream`).
    pub key: String,
    /// What is wrong, with advice.
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// HTTP basic auth credentials, the password read from the environment.
#[derive(Clone)]
pub struct BasicAuth {
    pub username: String,
    pub password: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicAuth({}, <redacted>)", self.username)
    }
}

/// The callback relay's settings.
#[derive(Debug, Clone)]
pub struct CallbacksConfig {
    pub path: String,
    pub forward_to: http::Uri,
    pub auth: Option<BasicAuth>,
    /// Cap of the retry backoff.
    pub max_retry: Duration,
    /// After this long in the spool a callback goes to the dead letters.
    pub max_retry_age: Duration,
    /// Items with content and no `encryptionKey` are forwarded (else dead-lettered).
    pub accept_plaintext: bool,
    /// Standard Webhooks signing secret for what is forwarded to the app.
    pub signing: Option<SigningSecret>,
}

/// A Standard Webhooks signing secret (`whsec_` + base64 of 24 to 64 random bytes).
#[derive(Clone)]
pub struct SigningSecret(pub zeroize::Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// The CleverTap bridge's settings, secrets read.
#[derive(Debug, Clone)]
pub struct CleverTapConfig {
    /// Where CleverTap posts template and freeform payloads.
    pub path: String,
    /// CleverTap's basic auth to that endpoint.
    pub auth: BasicAuth,
    /// The One API key the bridge sends (and downloads media) with.
    pub one_api_key: Secret,
    /// CleverTap's delivery-report callback URL.
    pub dlr_url: http::Uri,
    /// CleverTap's incoming-message callback URL.
    pub imo_url: http::Uri,
    /// The business number, as CleverTap knows it (`wabaNumber` of incoming messages).
    pub waba_number: String,
    /// Hosts (`host` or `host:port`, lower case) whose `mediaURL`s may be fetched.
    pub media_hosts: Vec<String>,
    /// Signs the public media links of incoming media.
    pub media_link_secret: Secret,
    /// How long a media link works.
    pub media_link_ttl: Duration,
    /// Template namespace of CleverTap's validation payload: answered, never sent.
    pub validate_only_namespace: String,
    /// Where the platform posts the callbacks of the bridge's One API integration.
    pub callbacks_path: String,
    /// Basic auth the platform sends with those callbacks.
    pub callback_auth: Option<BasicAuth>,
    /// Deadline for fetching one `mediaURL`.
    pub media_fetch_timeout: Duration,
    /// `public_url`: how CleverTap reaches the public side (media links).
    pub public_url: String,
}

/// The Flows endpoint's settings, keys loaded.
#[derive(Debug, Clone)]
pub struct FlowsConfig {
    pub path: String,
    /// The business key requests are encrypted to.
    pub key: Arc<BusinessKey>,
    /// The key being rotated out, still accepted.
    pub previous_key: Option<Arc<BusinessKey>>,
    /// Meta app secret for `X-Hub-Signature-256`; `None` = not checked.
    pub app_secret: Option<Secret>,
    /// The app's flow handler.
    pub forward_to: http::Uri,
    /// Everything (unwrap, the app's answer, sealing) must fit in this; Meta waits ~10 s.
    pub response_timeout: Duration,
    /// Standard Webhooks signing secret for the requests to the flow handler.
    pub signing: Option<SigningSecret>,
}

/// A secret string from the environment, redacted in `Debug`.
#[derive(Clone)]
pub struct Secret(pub zeroize::Zeroizing<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads the secret named by `var` (the value of config key `key`).
fn secret_env(
    key: &str,
    var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    env(var)
        .filter(|p| !p.is_empty())
        .map(|p| Secret(zeroize::Zeroizing::new(p)))
        .ok_or_else(|| {
            err(
                key,
                format!("the environment variable {var} is not set (or empty)"),
            )
        })
}

/// A route path must be literal: axum reads `{…}` and `*` as parameters, and a path used
/// twice would be refused when the routes are built.
fn check_paths(paths: &[(&str, &str)]) -> Result<(), ConfigError> {
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
fn business_key(
    key: &str,
    path: &std::path::Path,
    pass_key: &str,
    pass_var: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
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
        Some(var) => Some(secret_env(pass_key, var, env)?),
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
    BusinessKey::from_pem(&pem, pass.as_ref().map(|p| p.0.as_bytes()))
        .map(Arc::new)
        .map_err(|e| err(key, format!("{}: {e}", path.display())))
}

/// The public listener's TLS settings from PEM files (certificate chain, then any private
/// key format rustls reads: PKCS#8, PKCS#1, SEC1).
fn public_tls(
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

fn basic_auth(
    user_key: &str,
    pass_key: &str,
    user: Option<&String>,
    var: Option<&String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<BasicAuth>, ConfigError> {
    match (user, var) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(err(
            pass_key,
            "missing: name the environment variable that holds the password",
        )),
        (None, Some(_)) => Err(err(user_key, format!("missing ({pass_key} is set)"))),
        (Some(u), Some(var)) => {
            let password = secret_env(pass_key, var, env)?.0;
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

/// Whether `host` (of a URL, brackets allowed) is a loopback address or `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `u` is plain http to a host that is not on loopback.
fn plain_http_remote(u: &http::Uri) -> bool {
    u.scheme_str() == Some("http") && !u.host().is_some_and(is_loopback_host)
}

/// The Standard Webhooks secret named by `var`: `whsec_` + base64, or base64 alone, of 24 to
/// 64 bytes (what the Standard Webhooks libraries accept).
fn signing_secret(
    key: &str,
    var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SigningSecret, ConfigError> {
    use base64::Engine as _;
    let text = secret_env(key, var, env)?;
    let b64 = text.0.trim();
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

fn clevertap_config(
    c: &CleverTapFile,
    public_url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CleverTapConfig, ConfigError> {
    let k = |name: &str| format!("gateway.clevertap.{name}");
    let need = |name: &str, v: &Option<String>, what: &str| {
        v.clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| err(&k(name), format!("missing: {what}")))
    };
    let path_of = |name: &str, v: &Option<String>, default: &str| {
        let p = v.clone().unwrap_or_else(|| default.to_string());
        if p.starts_with('/') && p.len() > 1 {
            Ok(p.trim_end_matches('/').to_string())
        } else {
            Err(err(
                &k(name),
                "must start with '/' (e.g. /clevertap/messages)",
            ))
        }
    };
    let path = path_of("path", &c.path, "/clevertap/messages")?;
    let callbacks_path = path_of("callbacks_path", &c.callbacks_path, "/clevertap/callbacks")?;
    if callbacks_path == path || callbacks_path.starts_with(&format!("{path}/media")) {
        return Err(err(
            &k("callbacks_path"),
            "must differ from gateway.clevertap.path and its /media links",
        ));
    }
    let auth = basic_auth(
        &k("username"),
        &k("password_env"),
        c.username.as_ref(),
        c.password_env.as_ref(),
        env,
    )?
    .ok_or_else(|| {
        err(
            &k("username"),
            "missing: CleverTap calls the bridge with basic auth; set username and password_env",
        )
    })?;
    let one_api_key = secret_env(
        &k("one_api_key_env"),
        &need(
            "one_api_key_env",
            &c.one_api_key_env,
            "name the environment variable that holds the One API key the bridge sends with",
        )?,
        env,
    )?;
    let dlr_url = http_url(
        &k("dlr_url"),
        &need(
            "dlr_url",
            &c.dlr_url,
            "CleverTap's Delivery Report Callback URL (from its provider settings)",
        )?,
    )?;
    let imo_url = http_url(
        &k("imo_url"),
        &need(
            "imo_url",
            &c.imo_url,
            "CleverTap's Inbound Message Callback URL (from its provider settings)",
        )?,
    )?;
    let waba_number = need(
        "waba_number",
        &c.waba_number,
        "the WhatsApp business number entered in CleverTap",
    )?;
    let mut media_hosts = Vec::new();
    for h in c.media_hosts.clone().unwrap_or_default() {
        let h = h.trim().to_ascii_lowercase();
        if h.is_empty() || h.contains('/') || h.contains('*') {
            return Err(err(
                &k("media_hosts"),
                format!("{h:?}: give host names (or host:port), no scheme, path or wildcard"),
            ));
        }
        media_hosts.push(h);
    }
    let media_link_secret = secret_env(
        &k("media_link_secret_env"),
        &need(
            "media_link_secret_env",
            &c.media_link_secret_env,
            "name the environment variable holding a secret (32+ random bytes) that signs media links",
        )?,
        env,
    )?;
    if media_link_secret.0.len() < 32 {
        return Err(err(
            &k("media_link_secret_env"),
            "the secret is shorter than 32 bytes; use 32 or more random bytes (e.g. `openssl rand -base64 32`)",
        ));
    }
    let public_url = public_url
        .map(|u| u.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            err(
                "gateway.public_url",
                "missing: the CleverTap bridge links incoming media on the public side; set how CleverTap reaches it (https://wa.example.com)",
            )
        })?;
    http_url("gateway.public_url", &public_url)?;
    let secs = |name: &str, v: Option<u64>, default: u64, max: u64| match v.unwrap_or(default) {
        s if s >= 1 && s <= max => Ok(Duration::from_secs(s)),
        _ => Err(err(&k(name), format!("must be 1 to {max} seconds"))),
    };
    Ok(CleverTapConfig {
        path,
        auth,
        one_api_key,
        dlr_url,
        imo_url,
        waba_number: waba_number.trim().trim_start_matches('+').to_string(),
        media_hosts,
        media_link_secret,
        media_link_ttl: secs(
            "media_link_ttl_seconds",
            c.media_link_ttl_seconds,
            86_400,
            30 * 86_400,
        )?,
        validate_only_namespace: c
            .validate_only_namespace
            .clone()
            .unwrap_or_else(|| "whatsapp:hsm:technology:generic:verify".into()),
        callbacks_path,
        callback_auth: required_auth(
            basic_auth(
                &k("callback_username"),
                &k("callback_password_env"),
                c.callback_username.as_ref(),
                c.callback_password_env.as_ref(),
                env,
            )?,
            c.allow_unauthenticated,
            &k("callback_username"),
            "the platform's callbacks to the CleverTap bridge",
        )?,
        media_fetch_timeout: secs(
            "media_fetch_timeout_seconds",
            c.media_fetch_timeout_seconds,
            10,
            300,
        )?,
        public_url,
    })
}

fn flows_config(
    f: &FlowsFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FlowsConfig, ConfigError> {
    let path = f.path.clone().unwrap_or_else(|| "/flows".into());
    if !path.starts_with('/') {
        return Err(err("gateway.flows.path", "must start with '/'"));
    }
    let forward_to = http_url(
        "gateway.flows.forward_to",
        f.forward_to.as_deref().ok_or_else(|| {
            err(
                "gateway.flows.forward_to",
                "missing: the URL of the app's flow handler (plain JSON in, plain JSON out)",
            )
        })?,
    )?;
    let key_path = f.private_key.as_deref().ok_or_else(|| {
        err(
            "gateway.flows.private_key",
            "missing: the business private key file (make one with `oneseal flows keygen`)",
        )
    })?;
    let key = business_key(
        "gateway.flows.private_key",
        key_path,
        "gateway.flows.passphrase_env",
        f.passphrase_env.as_deref(),
        env,
    )?;
    let previous_key = match &f.previous_private_key {
        None => None,
        Some(p) => {
            // The old key usually shares the passphrase; it may have its own.
            let (pass_key, var) = match &f.previous_passphrase_env {
                Some(v) => ("gateway.flows.previous_passphrase_env", Some(v.as_str())),
                None => ("gateway.flows.passphrase_env", f.passphrase_env.as_deref()),
            };
            Some(business_key(
                "gateway.flows.previous_private_key",
                p,
                pass_key,
                var,
                env,
            )?)
        }
    };
    let app_secret = match &f.app_secret_env {
        Some(var) => Some(secret_env("gateway.flows.app_secret_env", var, env)?),
        None if f.allow_unauthenticated == Some(true) => None,
        None => {
            return Err(err(
                "gateway.flows.app_secret_env",
                "missing: every public route authenticates; name the environment variable holding the Meta app secret (X-Hub-Signature-256 is then checked), or set allow_unauthenticated = true",
            ))
        }
    };
    let signing = f
        .signing_secret_env
        .as_deref()
        .map(|var| signing_secret("gateway.flows.signing_secret_env", var, env))
        .transpose()?;
    let response_timeout = match f.response_timeout_seconds.unwrap_or(9) {
        s @ 1..=60 => Duration::from_secs(s),
        _ => {
            return Err(err(
                "gateway.flows.response_timeout_seconds",
                "must be 1 to 60 seconds (Meta waits about 10 s for an answer)",
            ))
        }
    };
    Ok(FlowsConfig {
        path,
        key,
        previous_key,
        app_secret,
        forward_to,
        response_timeout,
        signing,
    })
}

/// A public route's credentials: required unless the config explicitly allows the route
/// without them.
fn required_auth(
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

/// The validated gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub app_listen: SocketAddr,
    pub public_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Scheme and authority of the platform (`https://platform.clickatell.com`).
    pub upstream: http::Uri,
    /// How the business's app reaches the app side (for rewritten download links).
    pub app_url: String,
    pub public_url: Option<String>,
    pub spool_dir: PathBuf,
    pub max_in_flight: usize,
    pub upstream_timeout: Duration,
    pub request_timeout: Duration,
    /// Largest JSON body accepted (every JSON route).
    pub max_body_bytes: usize,
    /// Bytes of request bodies held in memory at once, per listener (more are shed).
    pub max_body_memory: usize,
    /// In-flight requests per public route.
    pub public_max_in_flight: usize,
    /// Open connections per listener.
    pub max_connections: usize,
    /// Time for a request's headers (from accept, or from the previous answer).
    pub header_read_timeout: Duration,
    /// HTTP/2 accepted besides HTTP/1.1.
    pub http2: bool,
    /// The local key may be used with an upstream that is not on loopback.
    pub allow_local_key: bool,
    /// The field policy's strict mode, and the paths it forwards as they are.
    pub strict: bool,
    pub passthrough: Vec<oneseal_core::FieldPath>,
    /// One line each, logged at start: settings that work but expose something.
    pub warnings: Vec<String>,
    pub callbacks: Option<CallbacksConfig>,
    /// TLS for the public listener (rustls), when `tls_cert` and `tls_key` are set.
    pub public_tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    pub flows: Option<FlowsConfig>,
    pub clevertap: Option<CleverTapConfig>,
}

/// The One API's upload limit: larger media is answered 413 before any key-service call.
pub const MAX_MEDIA_BYTES: u64 = 30 * 1024 * 1024;

fn addr(key: &str, v: Option<&str>, default: &str) -> Result<SocketAddr, ConfigError> {
    v.unwrap_or(default)
        .parse()
        .map_err(|_| err(key, "expected IP:PORT, e.g. 127.0.0.1:8080"))
}

fn http_url(key: &str, v: &str) -> Result<http::Uri, ConfigError> {
    let u: http::Uri = v
        .parse()
        .map_err(|_| err(key, format!("{v:?} is not a URL")))?;
    match u.scheme_str() {
        Some("http" | "https") if u.authority().is_some() => Ok(u),
        _ => Err(err(
            key,
            format!("{v:?}: expected an http:// or https:// URL"),
        )),
    }
}

impl GatewayConfig {
    /// Validates `file`. `env` looks up environment variables (secrets are named in the
    /// config, read from the environment).
    pub fn from_file(
        file: &GatewayFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GatewayConfig, ConfigError> {
        let upstream = http_url(
            "gateway.upstream",
            file.upstream
                .as_deref()
                .unwrap_or("https://platform.clickatell.com"),
        )?;
        if upstream.path() != "/" && !upstream.path().is_empty() {
            return Err(err(
                "gateway.upstream",
                "give only scheme and host (e.g. https://platform.clickatell.com), no path",
            ));
        }
        if plain_http_remote(&upstream) && file.allow_insecure_upstream != Some(true) {
            return Err(err(
                "gateway.upstream",
                format!("{upstream} is plain http to a host that is not on loopback: API keys and ciphertext would cross the network in clear; use https, or set allow_insecure_upstream = true"),
            ));
        }
        let app_listen = addr(
            "gateway.app_listen",
            file.app_listen.as_deref(),
            "127.0.0.1:8080",
        )?;
        let app_url = match &file.app_url {
            Some(u) => {
                http_url("gateway.app_url", u)?;
                u.trim_end_matches('/').to_string()
            }
            None => format!("http://{app_listen}"),
        };
        let max_in_flight = file.max_in_flight.unwrap_or(4096);
        if max_in_flight == 0 {
            return Err(err("gateway.max_in_flight", "must be at least 1"));
        }
        let secs = |key: &str, v: Option<u64>, default: u64| match v.unwrap_or(default) {
            0 => Err(err(key, "must be at least 1 second")),
            s if s > 3600 => Err(err(key, "must be at most 3600 seconds")),
            s => Ok(Duration::from_secs(s)),
        };
        let spool_dir = match &file.spool_dir {
            Some(p) => p.clone(),
            None => dirs::data_dir()
                .map(|d| d.join("oneseal").join("spool"))
                .ok_or_else(|| {
                    err(
                        "gateway.spool_dir",
                        "no data directory on this system: set it",
                    )
                })?,
        };
        let callbacks = match &file.callbacks {
            None => None,
            Some(c) => {
                let path = c.path.clone().unwrap_or_else(|| "/callbacks".into());
                if !path.starts_with('/') {
                    return Err(err("gateway.callbacks.path", "must start with '/'"));
                }
                let forward_to = http_url(
                    "gateway.callbacks.forward_to",
                    c.forward_to.as_deref().ok_or_else(|| {
                        err(
                            "gateway.callbacks.forward_to",
                            "missing: the URL of the app's callback handler",
                        )
                    })?,
                )?;
                let auth = required_auth(
                    basic_auth(
                        "gateway.callbacks.username",
                        "gateway.callbacks.password_env",
                        c.username.as_ref(),
                        c.password_env.as_ref(),
                        env,
                    )?,
                    c.allow_unauthenticated,
                    "gateway.callbacks.username",
                    "its callbacks",
                )?;
                let max_retry_age = match c.max_retry_age_seconds.unwrap_or(86_400) {
                    s @ 1..=2_592_000 => Duration::from_secs(s),
                    _ => {
                        return Err(err(
                            "gateway.callbacks.max_retry_age_seconds",
                            "must be 1 to 2592000 seconds (30 days)",
                        ))
                    }
                };
                Some(CallbacksConfig {
                    path,
                    forward_to,
                    auth,
                    max_retry: secs(
                        "gateway.callbacks.max_retry_seconds",
                        c.max_retry_seconds,
                        300,
                    )?,
                    max_retry_age,
                    accept_plaintext: c.accept_plaintext == Some(true),
                    signing: c
                        .signing_secret_env
                        .as_deref()
                        .map(|var| signing_secret("gateway.callbacks.signing_secret_env", var, env))
                        .transpose()?,
                })
            }
        };
        let cfg =
            GatewayConfig {
                app_listen,
                public_listen: addr(
                    "gateway.public_listen",
                    file.public_listen.as_deref(),
                    "127.0.0.1:8081",
                )?,
                admin_listen: addr(
                    "gateway.admin_listen",
                    file.admin_listen.as_deref(),
                    "127.0.0.1:9090",
                )?,
                upstream,
                app_url,
                public_url: file.public_url.clone(),
                spool_dir,
                max_in_flight,
                upstream_timeout: secs(
                    "gateway.upstream_timeout_seconds",
                    file.upstream_timeout_seconds,
                    30,
                )?,
                request_timeout: secs(
                    "gateway.request_timeout_seconds",
                    file.request_timeout_seconds,
                    60,
                )?,
                max_body_bytes: match file.max_body_bytes.unwrap_or(32 * 1024 * 1024) {
                    n @ 1024..=1_073_741_824 => n,
                    _ => {
                        return Err(err(
                            "gateway.max_body_bytes",
                            "must be 1024 to 1073741824 (1 GiB)",
                        ))
                    }
                },
                max_body_memory: match file.max_body_memory_bytes.unwrap_or(256 * 1024 * 1024) {
                    n if n >= file.max_body_bytes.unwrap_or(32 * 1024 * 1024) && n <= 1 << 40 => n,
                    _ => return Err(err(
                        "gateway.max_body_memory_bytes",
                        "must be at least max_body_bytes (one body of the largest size must fit)",
                    )),
                },
                public_max_in_flight: match file.public_max_in_flight.unwrap_or(1024) {
                    0 => return Err(err("gateway.public_max_in_flight", "must be at least 1")),
                    n => n,
                },
                max_connections: match file.max_connections.unwrap_or(10_000) {
                    n @ 1..=1_000_000 => n,
                    _ => return Err(err("gateway.max_connections", "must be 1 to 1000000")),
                },
                header_read_timeout: match file.header_read_timeout_seconds.unwrap_or(10) {
                    s @ 1..=300 => Duration::from_secs(s),
                    _ => {
                        return Err(err(
                            "gateway.header_read_timeout_seconds",
                            "must be 1 to 300 seconds",
                        ))
                    }
                },
                http2: file.http2 == Some(true),
                allow_local_key: file.allow_local_key == Some(true),
                strict: file.strict != Some(false),
                passthrough: {
                    let mut v = Vec::new();
                    for p in file.passthrough.iter().flatten() {
                        v.extend(
                            oneseal_core::FieldPath::parse_many(p)
                                .map_err(|e| err("gateway.passthrough", e.to_string()))?,
                        );
                    }
                    v
                },
                warnings: Vec::new(),
                callbacks,
                public_tls: public_tls(file.tls_cert.as_deref(), file.tls_key.as_deref())?,
                clevertap: file
                    .clevertap
                    .as_ref()
                    .map(|c| clevertap_config(c, file.public_url.as_deref(), env))
                    .transpose()?,
                flows: file
                    .flows
                    .as_ref()
                    .map(|f| flows_config(f, env))
                    .transpose()?,
            };
        let media_prefix = cfg.clevertap.as_ref().map(|c| format!("{}/media", c.path));
        let mut paths: Vec<(&str, &str)> = Vec::new();
        if let Some(c) = &cfg.callbacks {
            paths.push(("gateway.callbacks.path", &c.path));
        }
        if let Some(c) = &cfg.clevertap {
            paths.push(("gateway.clevertap.path", &c.path));
            paths.push(("gateway.clevertap.callbacks_path", &c.callbacks_path));
        }
        if let Some(f) = &cfg.flows {
            paths.push(("gateway.flows.path", &f.path));
        }
        check_paths(&paths)?;
        if let Some(prefix) = &media_prefix {
            if let Some((key, p)) = paths
                .iter()
                .find(|(k, p)| *k != "gateway.clevertap.path" && p.starts_with(prefix.as_str()))
            {
                return Err(err(
                    key,
                    format!("{p:?} is under {prefix}, where the CleverTap media links are"),
                ));
            }
        }
        let mut cfg = cfg;
        cfg.warnings = cfg.exposure_warnings();
        Ok(cfg)
    }

    /// Settings that work but expose something: one warning line each at start.
    fn exposure_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (name, ip) in [
            ("app_listen", self.app_listen),
            ("admin_listen", self.admin_listen),
        ] {
            if !ip.ip().is_loopback() {
                warnings.push(format!(
                    "gateway.{name} = {ip} is not a loopback address: {} is then reachable from the network; put it behind a firewall or bind 127.0.0.1",
                    if name == "app_listen" { "the plain app side (it encrypts and forwards with the caller's credentials)" } else { "the admin side (/metrics, /readyz)" }
                ));
            }
        }
        let plain_http = |key: &str, u: &http::Uri| {
            plain_http_remote(u).then(|| format!(
                "{key} = {u} is plain http to a host that is not on loopback: decrypted content crosses the network in clear; use https"
            ))
        };
        if let Some(c) = &self.callbacks {
            warnings.extend(plain_http("gateway.callbacks.forward_to", &c.forward_to));
            if c.auth.is_none() {
                warnings.push(format!("gateway.callbacks.allow_unauthenticated = true: anyone who reaches {} can post callbacks", c.path));
            }
        }
        if let Some(f) = &self.flows {
            warnings.extend(plain_http("gateway.flows.forward_to", &f.forward_to));
            if f.app_secret.is_none() {
                warnings.push(format!("gateway.flows.allow_unauthenticated = true: requests to {} are not checked against X-Hub-Signature-256", f.path));
            }
        }
        if let Some(c) = &self.clevertap {
            warnings.extend(plain_http("gateway.clevertap.dlr_url", &c.dlr_url));
            warnings.extend(plain_http("gateway.clevertap.imo_url", &c.imo_url));
            if c.callback_auth.is_none() {
                warnings.push(format!("gateway.clevertap.allow_unauthenticated = true: anyone who reaches {} can post callbacks", c.callbacks_path));
            }
        }
        warnings
    }

    /// The local key (no `kms_key_id`) encrypts under a key the platform can never read: with
    /// an upstream that is not on loopback that is refused unless `allow_local_key = true`.
    pub fn check_local_key(&self, local: bool) -> Result<(), ConfigError> {
        if local && !self.allow_local_key && !self.upstream.host().is_some_and(is_loopback_host) {
            return Err(err(
                "kms_key_id",
                format!("missing: without it the gateway encrypts with the local key, which {} can never decrypt; set kms_key_id to the KMS key shared with the platform (or gateway.allow_local_key = true for a test platform)", self.upstream),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<GatewayConfig, ConfigError> {
        let f: GatewayFile = toml::from_str(t).unwrap();
        GatewayConfig::from_file(&f, &|k| match k {
            "PW" => Some("secret-of-16-chars!".to_string()),
            "SHORT" => Some("secret".to_string()),
            "WH" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()),
            _ => None,
        })
    }

    const CB: &str = "[callbacks]\nforward_to = \"http://127.0.0.1:9\"\n";

    #[test]
    fn a_public_route_without_credentials_is_refused_unless_allowed() {
        assert_eq!(parse(CB).unwrap_err().key, "gateway.callbacks.username");
        let c = parse(&format!("{CB}allow_unauthenticated = true")).unwrap();
        assert!(c.callbacks.unwrap().auth.is_none());
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    }

    #[test]
    fn a_short_password_is_refused() {
        let e = parse(&format!("{CB}username = \"u\"\npassword_env = \"SHORT\"")).unwrap_err();
        assert_eq!(e.key, "gateway.callbacks.password_env");
    }

    #[test]
    fn plain_http_upstream_is_refused_unless_loopback_or_allowed() {
        assert_eq!(
            parse("upstream = \"http://platform.example.com\"")
                .unwrap_err()
                .key,
            "gateway.upstream"
        );
        assert!(parse("upstream = \"http://127.0.0.1:9\"").is_ok());
        assert!(parse("upstream = \"http://[::1]:9\"").is_ok());
        assert!(parse("upstream = \"http://localhost:9\"").is_ok());
        assert!(
            parse("upstream = \"http://p.example.com\"\nallow_insecure_upstream = true").is_ok()
        );
    }

    #[test]
    fn the_local_key_with_a_remote_upstream_is_refused_unless_allowed() {
        let c = parse("").unwrap();
        assert_eq!(c.check_local_key(true).unwrap_err().key, "kms_key_id");
        assert!(c.check_local_key(false).is_ok());
        assert!(parse("allow_local_key = true")
            .unwrap()
            .check_local_key(true)
            .is_ok());
        assert!(parse("upstream = \"http://127.0.0.1:9\"")
            .unwrap()
            .check_local_key(true)
            .is_ok());
    }

    #[test]
    fn plain_http_delivery_and_open_listeners_are_warned_about() {
        let c = parse("app_listen = \"0.0.0.0:8080\"\n[callbacks]\nforward_to = \"http://app.example.com/cb\"\nusername = \"u\"\npassword_env = \"PW\"").unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings.iter().any(|w| w.contains("gateway.app_listen")));
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains("gateway.callbacks.forward_to")));
    }

    #[test]
    fn signing_secrets_are_standard_webhooks_secrets() {
        let c = parse(&format!(
            "{CB}allow_unauthenticated = true\nsigning_secret_env = \"WH\""
        ))
        .unwrap();
        assert_eq!(c.callbacks.unwrap().signing.unwrap().0.len(), 24);
        let e = parse(&format!(
            "{CB}allow_unauthenticated = true\nsigning_secret_env = \"SHORT\""
        ))
        .unwrap_err();
        assert_eq!(e.key, "gateway.callbacks.signing_secret_env");
    }

    #[test]
    fn defaults_and_errors_name_the_key() {
        let c = parse("").unwrap();
        assert_eq!(c.app_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.max_in_flight, 4096);
        assert_eq!(c.app_url, "http://127.0.0.1:8080");
        let e = parse("upstream = \"ftp://x\"").unwrap_err();
        assert_eq!(e.key, "gateway.upstream");
        let e = parse("[callbacks]\npath = \"/cb\"").unwrap_err();
        assert_eq!(e.key, "gateway.callbacks.forward_to");
        let e = parse("[callbacks]\nforward_to = \"http://127.0.0.1:9\"\nusername = \"u\"\npassword_env = \"NOPE\"").unwrap_err();
        assert!(e.message.contains("NOPE"), "{e}");
        let c = parse("[callbacks]\nforward_to = \"http://127.0.0.1:9\"\nusername = \"u\"\npassword_env = \"PW\"").unwrap();
        let dbg = format!("{:?}", c.callbacks.unwrap().auth);
        assert!(!dbg.contains("secret"), "{dbg}");
        assert_eq!(
            parse("[clevertap]\n").unwrap_err().key,
            "gateway.clevertap.username"
        );
        // Route paths are literal and distinct (axum would refuse them at start otherwise).
        let cb = "[callbacks]\nforward_to = \"http://127.0.0.1:9\"\nallow_unauthenticated = true\npath = ";
        assert_eq!(
            parse(&format!("{cb}\"/cb/{{id}}\"")).unwrap_err().key,
            "gateway.callbacks.path"
        );
        assert_eq!(
            parse(&format!("{cb}\"/cb/*x\"")).unwrap_err().key,
            "gateway.callbacks.path"
        );
        assert!(parse(&format!("{cb}\"/whatsapp/cb-1\"")).is_ok());
    }
}
