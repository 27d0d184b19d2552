//! The `[gateway]` table and its sub-tables exactly as written. Unknown keys are an error,
//! so typos surface.

use std::path::PathBuf;

use serde::Deserialize;

/// The `[gateway]` table exactly as written. Unknown keys are an error, so typos surface.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// `app_listen`: the app side's address.
    pub app_listen: Option<String>,
    /// `public_listen`: the public side's address.
    pub public_listen: Option<String>,
    /// `admin_listen`: the admin side's address.
    pub admin_listen: Option<String>,
    /// `upstream`: the platform's scheme and host.
    pub upstream: Option<String>,
    /// `app_url`: how the app reaches the app side (rewritten download links).
    pub app_url: Option<String>,
    /// `public_url`: how CleverTap reaches the public side.
    pub public_url: Option<String>,
    /// `spool_dir`: the local spool's directory.
    pub spool_dir: Option<PathBuf>,
    /// `max_in_flight`: in-flight requests on the app side.
    pub max_in_flight: Option<usize>,
    /// `upstream_timeout_seconds`: time the platform has to answer.
    pub upstream_timeout_seconds: Option<u64>,
    /// `request_timeout_seconds`: time one app-side request may take.
    pub request_timeout_seconds: Option<u64>,
    /// `max_body_bytes`: the largest JSON body accepted.
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
    /// `tls_key`: the PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// `[gateway.callbacks]`: the platform's callbacks.
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
    /// SQS: the queue's URL.
    pub queue_url: Option<String>,
    /// SQS: the dead-letter queue's URL.
    pub dead_letter_queue_url: Option<String>,
    /// SQS: the S3 bucket for large callbacks.
    pub large_payload_bucket: Option<String>,
    /// Path-style S3 addresses (S3-compatible stores, local test servers).
    pub s3_force_path_style: Option<bool>,
    // redis
    /// Redis: the server's URL (no password in it).
    pub url: Option<String>,
    /// The environment variable holding the Redis password (never in the URL).
    pub password_env: Option<String>,
    /// Redis: the stream's key.
    pub stream: Option<String>,
    /// Redis: the consumer group.
    pub group: Option<String>,
}

/// `[gateway.clevertap]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleverTapFile {
    /// The route's path on the public side.
    pub path: Option<String>,
    /// Basic auth user name.
    pub username: Option<String>,
    /// The environment variable holding the basic auth password.
    pub password_env: Option<String>,
    /// The environment variable holding the One API key the bridge sends with.
    pub one_api_key_env: Option<String>,
    /// CleverTap's Delivery Report Callback URL.
    pub dlr_url: Option<String>,
    /// CleverTap's Inbound Message Callback URL.
    pub imo_url: Option<String>,
    /// The WhatsApp business number entered in CleverTap.
    pub waba_number: Option<String>,
    /// Hosts CleverTap's media may be fetched from.
    pub media_hosts: Option<Vec<String>>,
    /// The environment variable holding the secret that signs media links.
    pub media_link_secret_env: Option<String>,
    /// How long a media link is valid.
    pub media_link_ttl_seconds: Option<u64>,
    /// The template namespace CleverTap uses to validate the provider.
    pub validate_only_namespace: Option<String>,
    /// The path of the platform's callbacks to the bridge.
    pub callbacks_path: Option<String>,
    /// Basic auth user name of the platform's callbacks to the bridge.
    pub callback_username: Option<String>,
    /// The environment variable holding that password.
    pub callback_password_env: Option<String>,
    /// The platform's callbacks to the bridge without basic auth (a warning at start).
    pub allow_unauthenticated: Option<bool>,
    /// Time a media fetch from CleverTap may take.
    pub media_fetch_timeout_seconds: Option<u64>,
}

/// `[gateway.flows]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsFile {
    /// The route's path on the public side.
    pub path: Option<String>,
    /// The business private key file (PEM).
    pub private_key: Option<PathBuf>,
    /// The environment variable holding its passphrase.
    pub passphrase_env: Option<String>,
    /// The key before a rotation, still accepted.
    pub previous_private_key: Option<PathBuf>,
    /// The environment variable holding its passphrase.
    pub previous_passphrase_env: Option<String>,
    /// The environment variable holding the Meta app secret (X-Hub-Signature-256).
    pub app_secret_env: Option<String>,
    /// The app's handler the decrypted requests are posted to.
    pub forward_to: Option<String>,
    /// Time the handler has to answer.
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
    /// The route's path on the public side.
    pub path: Option<String>,
    /// The app's handler the decrypted requests are posted to.
    pub forward_to: Option<String>,
    /// Basic auth user name.
    pub username: Option<String>,
    /// The environment variable holding the basic auth password.
    pub password_env: Option<String>,
    /// The cap of the delivery backoff.
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
