//! The `[gateway]` table and its sub-tables exactly as written. Unknown keys are an error,
//! so typos surface.

use std::path::PathBuf;

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
    /// A shared queue for callbacks (absent: the local spool).
    pub queue: Option<QueueFile>,
}

/// `[gateway.queue]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueFile {
    /// `sqs` or `redis`.
    pub kind: Option<String>,
    /// How long a replica holds a callback it is delivering before another may take it
    /// (kept up while the delivery runs).
    pub lease_seconds: Option<u64>,
    // sqs
    pub queue_url: Option<String>,
    pub dead_letter_queue_url: Option<String>,
    pub large_payload_bucket: Option<String>,
    /// Path-style S3 addresses (S3-compatible stores, local test servers).
    pub s3_force_path_style: Option<bool>,
    // redis
    pub url: Option<String>,
    /// The environment variable holding the Redis password (never in the URL).
    pub password_env: Option<String>,
    pub stream: Option<String>,
    pub group: Option<String>,
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
