//! Shared queues for callbacks: the relay's backends when several replicas deliver the same
//! callbacks (`[gateway.queue]`; without it, each replica's local spool).
//!
//! A backend stores a callback durably before the callback route answers 200 ([`Queue::put`]),
//! leases due callbacks to one replica at a time ([`Queue::receive`]; a lease that is not
//! kept up, because the replica died, runs out and another replica gets the callback), and
//! settles each as the relay decides: removed, again later, or to the dead letters with the
//! reason. The backoff state (attempts, first-seen time) travels in the [`Envelope`], so it
//! survives replicas. Backends: Amazon SQS with S3 for large bodies (`sqs`), Redis Streams
//! (`redis`).

pub mod redis;
pub mod sqs;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::{QueueConfig, QueueKind};

/// A callback as it travels in a shared queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// A stable id (signatures and logs name the callback by it).
    pub id: String,
    /// The sink that delivers it (`app`, `clevertap`).
    pub sink: String,
    /// Delivery attempts that failed so far.
    pub attempts: u32,
    /// When the gateway first accepted it, in milliseconds since the Unix epoch: the retry
    /// horizon counts from here on every replica.
    pub first_seen_ms: u64,
    /// The callback itself, verbatim (absent when stored aside, see `claim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Box<RawValue>>,
    /// Where the body is stored when it is too large for the queue (an S3 key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Why it is in the dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Envelope {
    /// A new callback for `sink`, accepted now. `body` must be JSON (the route checked it).
    pub fn new(sink: &str, body: &[u8]) -> Result<Envelope, QueueError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| QueueError::Refused("the callback body is not UTF-8".into()))?;
        let raw = RawValue::from_string(text.to_string())
            .map_err(|e| QueueError::Refused(format!("the callback body is not JSON: {e}")))?;
        Ok(Envelope {
            id: new_id(),
            sink: sink.to_string(),
            attempts: 0,
            first_seen_ms: now_ms(),
            body: Some(raw),
            claim: None,
            reason: None,
        })
    }

    /// How long ago it was first accepted.
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.first_seen_ms))
    }

    /// Its wire form in the queue.
    pub fn to_json(&self) -> Result<String, QueueError> {
        serde_json::to_string(self).map_err(|e| QueueError::Refused(e.to_string()))
    }

    /// Read back from the queue.
    pub fn from_json(text: &str) -> Result<Envelope, QueueError> {
        serde_json::from_str(text)
            .map_err(|e| QueueError::Malformed(format!("not a oneseal callback envelope: {e}")))
    }

    /// The same callback with one more failed attempt.
    fn retried(&self) -> Envelope {
        Envelope {
            attempts: self.attempts.saturating_add(1),
            reason: None,
            ..self.clone()
        }
    }

    /// The same callback as a dead letter.
    fn buried(&self, reason: &str) -> Envelope {
        Envelope {
            reason: Some(reason.to_string()),
            ..self.clone()
        }
    }

    /// A dead letter brought back: attempts and horizon start again.
    fn replayed(&self) -> Envelope {
        Envelope {
            attempts: 0,
            first_seen_ms: now_ms(),
            reason: None,
            ..self.clone()
        }
    }
}

/// A callback leased to this replica, with its body.
#[derive(Debug)]
pub struct Leased {
    pub envelope: Envelope,
    pub body: Bytes,
    /// The backend's handle on this delivery (an SQS receipt handle, a stream entry id).
    pub handle: String,
}

/// Depth and age, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Callbacks waiting or being delivered (dead letters not counted).
    pub depth: u64,
    /// Dead letters.
    pub dead: u64,
    /// Age of the oldest callback the backend can tell of.
    pub oldest: Option<Duration>,
}

/// A queue operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The backend did not answer or refused the operation: the callback route answers 503
    /// (the platform retries); the relay tries again.
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    /// What the queue holds is not a callback envelope (written by something else).
    #[error("{0}")]
    Malformed(String),
    /// The callback cannot be queued as it is.
    #[error("{0}")]
    Refused(String),
}

/// A shared queue backend.
#[async_trait]
pub trait Queue: Send + Sync {
    /// What it is, for logs and `/readyz` (`sqs https://…/callbacks`).
    fn describe(&self) -> String;
    /// How long a lease lasts unless kept up.
    fn lease(&self) -> Duration;
    /// Stores a new callback; `Ok` only once the backend acknowledged the write.
    async fn put(&self, envelope: Envelope) -> Result<(), QueueError>;
    /// Up to `max` callbacks due now, each leased to this replica (may wait up to a second
    /// for one to arrive).
    async fn receive(&self, max: usize) -> Result<Vec<Leased>, QueueError>;
    /// Keeps a lease while its delivery runs.
    async fn extend(&self, handle: &str) -> Result<(), QueueError>;
    /// Delivered: gone for good.
    async fn ack(&self, leased: &Leased) -> Result<(), QueueError>;
    /// Not delivered: again after `delay`, one attempt more.
    async fn retry(&self, leased: &Leased, delay: Duration) -> Result<(), QueueError>;
    /// Refused for good: to the dead letters with `reason`.
    async fn bury(&self, leased: &Leased, reason: &str) -> Result<(), QueueError>;
    /// Every dead letter back into the queue (attempts and horizon reset); how many.
    async fn replay(&self) -> Result<usize, QueueError>;
    /// Depth, dead letters and the age of the oldest callback.
    async fn stats(&self) -> Result<Stats, QueueError>;
}

/// The backend `cfg` names, connected.
pub async fn open(cfg: &QueueConfig) -> Result<Arc<dyn Queue>, QueueError> {
    Ok(match &cfg.kind {
        QueueKind::Sqs(c) => Arc::new(sqs::SqsQueue::open(c, cfg.lease).await?),
        QueueKind::Redis(c) => Arc::new(redis::RedisQueue::open(c, cfg.lease).await?),
    })
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// 128 random bits, hex: unique per callback without coordination between replicas.
fn new_id() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// `fut`, or `Unavailable` after `limit`: a queue that hangs is a queue that is down.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, QueueError>>,
) -> Result<T, QueueError> {
    tokio::time::timeout(limit, fut).await.map_err(|_| {
        QueueError::Unavailable(format!("{what}: no answer within {} s", limit.as_secs()))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_travels_verbatim() {
        let body = br#"{"event":{"moText":[{"content":"x"}]}, "n": 1.50}"#;
        let e = Envelope::new("app", body).unwrap();
        let back = Envelope::from_json(&e.to_json().unwrap()).unwrap();
        assert_eq!(back.body.unwrap().get().as_bytes(), body);
    }

    #[test]
    fn a_retry_counts_and_a_replay_starts_again() {
        let e = Envelope::new("app", b"{}").unwrap();
        let r = e.retried().retried();
        assert_eq!(r.attempts, 2);
        assert_eq!(r.first_seen_ms, e.first_seen_ms);
        let d = r.buried("why");
        assert_eq!(d.reason.as_deref(), Some("why"));
        let p = d.replayed();
        assert_eq!((p.attempts, p.reason), (0, None));
        assert_eq!(p.id, e.id);
    }

    #[test]
    fn something_else_in_the_queue_is_malformed() {
        assert!(matches!(
            Envelope::from_json("{\"x\":1}"),
            Err(QueueError::Malformed(_))
        ));
    }
}
