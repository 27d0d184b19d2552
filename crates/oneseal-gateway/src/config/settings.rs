//! The validated settings of each table, secrets read and redacted in `Debug`.

use std::sync::Arc;
use std::time::Duration;

use oneseal_flows::BusinessKey;

/// HTTP basic auth credentials, the password read from the environment.
#[derive(Clone)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password (wiped on drop).
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
    /// The route's path on the public side.
    pub path: String,
    /// The app's handler the decrypted callbacks are posted to.
    pub forward_to: http::Uri,
    /// Basic auth the platform sends (None only if allowed to be unauthenticated).
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
    /// The route's path on the public side.
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

/// `[gateway.queue]`: the shared queue the callbacks go through.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// The backend.
    pub kind: QueueKind,
    /// How long a delivery holds a callback unless kept up (longer than one attempt).
    pub lease: Duration,
}

/// Which backend, with its settings.
#[derive(Debug, Clone)]
pub enum QueueKind {
    /// Amazon SQS, with S3 for large callbacks.
    Sqs(SqsQueueConfig),
    /// A Redis stream with a consumer group.
    Redis(RedisQueueConfig),
}

/// Amazon SQS, with S3 for large bodies.
#[derive(Debug, Clone)]
pub struct SqsQueueConfig {
    /// The queue callbacks wait in.
    pub queue_url: String,
    /// The queue for callbacks refused for good.
    pub dead_letter_queue_url: String,
    /// The S3 bucket for callbacks above SQS's 256 KiB.
    pub large_payload_bucket: String,
    /// Path-style S3 addresses (S3-compatible stores, local test servers).
    pub s3_force_path_style: bool,
}

/// Redis Streams.
#[derive(Clone)]
pub struct RedisQueueConfig {
    /// Where and how to connect, the password included (from the environment).
    pub connection: redis::ConnectionInfo,
    /// The URL as written (it holds no password), for logs.
    pub display_url: String,
    /// The stream's key.
    pub stream: String,
    /// The consumer group the replicas share.
    pub group: String,
}

impl std::fmt::Debug for RedisQueueConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueueConfig")
            .field("url", &self.display_url)
            .field("stream", &self.stream)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}
