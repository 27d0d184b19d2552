//! The `[gateway]` table of `oneseal.toml`: parsed as written, then validated
//! into a [`GatewayConfig`] with every default filled in. Errors name the key
//! (`gateway.callbacks.forward_to: …`) so `oneseal gateway --check-config` can print one line.

mod checks;
mod files;
mod queue;
mod settings;
mod tables;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use checks::{
    addr, check_paths, err, http_url, plain_http_remote, public_tls, seconds, within, Origin,
};
pub use checks::{is_loopback_host, ConfigError, ConfigErrors, MIN_PASSWORD};
pub use files::{CallbacksFile, CleverTapFile, FlowsFile, GatewayFile, QueueFile};
use oneseal_settings::env::Env;
pub use settings::{
    BasicAuth, CallbacksConfig, CleverTapConfig, FlowsConfig, QueueConfig, QueueKind,
    RedisQueueConfig, Secret, SigningSecret, SqsQueueConfig,
};
use tables::{callbacks_config, clevertap_config, flows_config};

/// The most in-flight requests a limit may allow (the semaphore's own maximum).
const IN_FLIGHT_MAX: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// The validated gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The app side's address (plain One API in; never public).
    pub app_listen: SocketAddr,
    /// The public side's address (callbacks, Flows, CleverTap).
    pub public_listen: SocketAddr,
    /// The admin side's address (`/livez`, `/readyz`, `/metrics`).
    pub admin_listen: SocketAddr,
    /// Scheme and authority of the platform (`https://platform.clickatell.com`).
    pub upstream: http::Uri,
    /// How the business's app reaches the app side (for rewritten download links).
    pub app_url: String,
    /// How CleverTap reaches the public side (media links).
    pub public_url: Option<String>,
    /// Where callbacks wait until the app has them (the local spool).
    pub spool_dir: PathBuf,
    /// In-flight requests on the app side; more are shed with a 503.
    pub max_in_flight: usize,
    /// Time the platform (or the app) has to answer one request.
    pub upstream_timeout: Duration,
    /// Time one app-side request may take in all.
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
    /// Paths strict mode forwards as they are, relative to each message.
    pub passthrough: Vec<oneseal_core::FieldPath>,
    /// One line each, logged at start: settings that work but expose something.
    pub warnings: Vec<String>,
    /// The platform's callbacks (`[gateway.callbacks]`), if configured.
    pub callbacks: Option<CallbacksConfig>,
    /// TLS for the public listener (rustls), when `tls_cert` and `tls_key` are set.
    pub public_tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// The WhatsApp Flows endpoint (`[gateway.flows]`), if configured.
    pub flows: Option<FlowsConfig>,
    /// The CleverTap bridge (`[gateway.clevertap]`), if configured.
    pub clevertap: Option<CleverTapConfig>,
    /// The shared queue callbacks go through; `None`: the local spool.
    pub queue: Option<QueueConfig>,
}

/// The One API's upload limit: larger media is answered 413 before any key-service call.
pub const MAX_MEDIA_BYTES: u64 = 30 * 1024 * 1024;

impl GatewayConfig {
    /// Validates `file`, reporting every error it has at once. `env` looks up environment
    /// variables (secrets are named in the config, read from the environment).
    pub fn from_file(file: &GatewayFile, env: &dyn Env) -> Result<GatewayConfig, ConfigErrors> {
        let mut found = ConfigErrors::default();
        let upstream = found.take(upstream_url(file));
        let app_listen = found.take(addr(
            Origin::file("gateway.app_listen"),
            file.app_listen.as_deref(),
            "127.0.0.1:8080",
        ));
        let app_url = match (&file.app_url, app_listen) {
            (Some(u), _) => found
                .take(http_url(Origin::file("gateway.app_url"), u))
                .map(|_| u.trim_end_matches('/').to_string()),
            (None, Some(a)) => Some(format!("http://{a}")),
            (None, None) => None,
        };
        let max_in_flight = found.take(within(
            Origin::file("gateway.max_in_flight"),
            file.max_in_flight,
            4096,
            1..=IN_FLIGHT_MAX,
        ));
        let secs = |key: &str, v: Option<u64>, default: u64| {
            seconds(Origin::file(key), v, default, 1..=3600)
        };
        let max_body_bytes = found.take(within(
            Origin::file("gateway.max_body_bytes"),
            file.max_body_bytes,
            32 << 20,
            1024..=1 << 30,
        ));
        // One body of the largest size must fit.
        let max_body_memory = found.take(within(
            Origin::file("gateway.max_body_memory_bytes"),
            file.max_body_memory_bytes,
            256 << 20,
            max_body_bytes.unwrap_or(1024)..=1 << 40,
        ));
        let spool_dir = found.take(match &file.spool_dir {
            Some(p) => Ok(p.clone()),
            None => dirs::data_dir()
                .map(|d| d.join("oneseal").join("spool"))
                .ok_or_else(|| {
                    err(
                        "gateway.spool_dir",
                        "no data directory on this system: set it",
                    )
                }),
        });
        let callbacks = found.take_all(
            file.callbacks
                .as_ref()
                .map(|c| callbacks_config(c, env))
                .transpose(),
        );
        let upstream_timeout = found.take(secs(
            "gateway.upstream_timeout_seconds",
            file.upstream_timeout_seconds,
            30,
        ));
        let queue = found.take_all(
            file.queue
                .as_ref()
                .map(|q| {
                    // Checked against the default attempt time if that setting is wrong too.
                    let attempt = upstream_timeout.unwrap_or(Duration::from_secs(30));
                    queue::queue_config(q, attempt, env)
                })
                .transpose(),
        );
        let public_listen = found.take(addr(
            Origin::file("gateway.public_listen"),
            file.public_listen.as_deref(),
            "127.0.0.1:8081",
        ));
        let admin_listen = found.take(addr(
            Origin::file("gateway.admin_listen"),
            file.admin_listen.as_deref(),
            "127.0.0.1:9090",
        ));
        let request_timeout = found.take(secs(
            "gateway.request_timeout_seconds",
            file.request_timeout_seconds,
            60,
        ));
        let public_max_in_flight = found.take(within(
            Origin::file("gateway.public_max_in_flight"),
            file.public_max_in_flight,
            1024,
            1..=IN_FLIGHT_MAX,
        ));
        let max_connections = found.take(within(
            Origin::file("gateway.max_connections"),
            file.max_connections,
            25_000,
            1..=1_000_000,
        ));
        let header_read_timeout = found.take(seconds(
            Origin::file("gateway.header_read_timeout_seconds"),
            file.header_read_timeout_seconds,
            10,
            1..=300,
        ));
        let mut passthrough = Vec::new();
        for p in file.passthrough.iter().flatten() {
            match oneseal_core::FieldPath::parse_many(p) {
                Ok(v) => passthrough.extend(v),
                Err(e) => found.push(err("gateway.passthrough", e.to_string())),
            }
        }
        let public_tls = found.take(public_tls(
            file.tls_cert.as_deref(),
            file.tls_key.as_deref(),
        ));
        let clevertap = found.take_all(
            file.clevertap
                .as_ref()
                .map(|c| clevertap_config(c, file.public_url.as_deref(), env))
                .transpose(),
        );
        let flows = found.take_all(
            file.flows
                .as_ref()
                .map(|f| flows_config(f, env))
                .transpose(),
        );
        // Each `None` here had its error kept above.
        let (
            Some(upstream),
            Some(app_listen),
            Some(app_url),
            Some(max_in_flight),
            Some(max_body_bytes),
            Some(max_body_memory),
            Some(spool_dir),
            Some(callbacks),
            Some(upstream_timeout),
            Some(queue),
            Some(public_listen),
            Some(admin_listen),
            Some(request_timeout),
            Some(public_max_in_flight),
            Some(max_connections),
            Some(header_read_timeout),
            Some(public_tls),
            Some(clevertap),
            Some(flows),
        ) = (
            upstream,
            app_listen,
            app_url,
            max_in_flight,
            max_body_bytes,
            max_body_memory,
            spool_dir,
            callbacks,
            upstream_timeout,
            queue,
            public_listen,
            admin_listen,
            request_timeout,
            public_max_in_flight,
            max_connections,
            header_read_timeout,
            public_tls,
            clevertap,
            flows,
        )
        else {
            return Err(found);
        };
        let mut cfg = GatewayConfig {
            queue,
            app_listen,
            public_listen,
            admin_listen,
            upstream,
            app_url,
            public_url: file.public_url.clone(),
            spool_dir,
            max_in_flight,
            upstream_timeout,
            request_timeout,
            max_body_bytes,
            max_body_memory,
            public_max_in_flight,
            max_connections,
            header_read_timeout,
            http2: file.http2 == Some(true),
            allow_local_key: file.allow_local_key == Some(true),
            strict: file.strict != Some(false),
            passthrough,
            warnings: Vec::new(),
            callbacks,
            public_tls,
            clevertap,
            flows,
        };
        cfg.check_routes(&mut found);
        cfg.warnings = cfg.exposure_warnings();
        found.or(cfg)
    }

    /// The public routes' paths: literal, distinct, and none under the CleverTap media links.
    fn check_routes(&self, found: &mut ConfigErrors) {
        let mut paths: Vec<(&str, &str)> = Vec::new();
        if let Some(c) = &self.callbacks {
            paths.push(("gateway.callbacks.path", &c.path));
        }
        if let Some(c) = &self.clevertap {
            paths.push(("gateway.clevertap.path", &c.path));
            paths.push(("gateway.clevertap.callbacks_path", &c.callbacks_path));
        }
        if let Some(f) = &self.flows {
            paths.push(("gateway.flows.path", &f.path));
        }
        found.take(check_paths(&paths));
        if let Some(c) = &self.clevertap {
            let prefix = format!("{}/media", c.path);
            for (key, p) in &paths {
                if *key != "gateway.clevertap.path" && p.starts_with(prefix.as_str()) {
                    found.push(err(
                        key,
                        format!("{p:?} is under {prefix}, where the CleverTap media links are"),
                    ));
                }
            }
        }
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

/// `gateway.upstream`: scheme and host only, and not plain http to a remote host unless
/// allowed.
fn upstream_url(file: &GatewayFile) -> Result<http::Uri, ConfigError> {
    let upstream = http_url(
        Origin::file("gateway.upstream"),
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
    Ok(upstream)
}
