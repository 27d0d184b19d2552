//! The relay on a shared queue: any replica delivers any callback.
//!
//! Each replica leases due callbacks from the [`Queue`], keeps each lease up while its sink
//! delivers it, and settles the outcome with the same policy as the spool's relay: delivered
//! → removed; retry → again after the capped, doubling backoff of its attempt count (which
//! travels in the message), or dead once past the horizon counted from its first arrival;
//! dead → the backend's dead letters with the reason.
//!
//! Invariants: a callback is removed only after its sink said `Delivered`; a replica that
//! dies mid-delivery stops keeping its leases, and another replica gets those callbacks when
//! they run out (at-least-once); at most [`PARALLEL`](super::PARALLEL) deliveries run at once
//! per replica; a settlement that fails leaves the callback leased until its lease runs out,
//! then it is delivered again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{backoff, Outcome, RetryLimits, Sink, SinkId, PARALLEL};
use crate::queue::{Leased, Queue, QueueError};

/// The queue's state as the last operation found it, for `/readyz`.
#[derive(Debug, Default)]
pub struct QueueHealth(Mutex<Option<String>>);

impl QueueHealth {
    pub fn set(&self, r: &Result<(), QueueError>) {
        if let Ok(mut h) = self.0.lock() {
            *h = r.as_ref().err().map(|e| e.to_string());
        }
    }

    /// `None` when the queue answered last time, else why not.
    pub fn problem(&self) -> Option<String> {
        self.0.lock().ok().and_then(|h| h.clone())
    }
}

/// The relay on a shared queue.
pub struct QueueRelay {
    pub queue: Arc<dyn Queue>,
    pub sinks: HashMap<SinkId, Arc<dyn Sink>>,
    pub limits: RetryLimits,
    pub health: Arc<QueueHealth>,
}

impl QueueRelay {
    /// Delivers until `stop`, then lets the deliveries under way finish.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if self.sinks.is_empty() {
            return;
        }
        tokio::spawn(self.clone().watch(stop.clone()));
        let slots = Arc::new(Semaphore::new(PARALLEL));
        while !stop.is_cancelled() {
            let free = slots.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = slots.acquire() => {}
                    _ = stop.cancelled() => {}
                }
                continue;
            }
            let got = tokio::select! {
                r = self.queue.receive(free) => r,
                _ = stop.cancelled() => break,
            };
            match got {
                Ok(batch) => {
                    self.health.set(&Ok(()));
                    for leased in batch {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let me = self.clone();
                        tokio::spawn(async move {
                            me.deliver(leased).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read callbacks from the queue; trying again in 1 s");
                    self.health.set(&Err(e));
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }
        }
        // Deliveries under way finish (each at most one attempt's time).
        let _ = slots.acquire_many(PARALLEL as u32).await;
    }

    /// One delivery: its lease kept up meanwhile, then its outcome settled.
    async fn deliver(&self, leased: Leased) {
        let keep = CancellationToken::new();
        let keeper = {
            let (queue, handle, keep) = (self.queue.clone(), leased.handle.clone(), keep.clone());
            tokio::spawn(async move {
                let every = (queue.lease() / 3).max(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = keep.cancelled() => return,
                    }
                    if let Err(e) = queue.extend(&handle).await {
                        tracing::warn!(error = %e, "could not extend a callback's lease (another replica may deliver it too)");
                    }
                }
            })
        };
        let outcome = self.attempt(&leased).await;
        keep.cancel();
        let _ = keeper.await;
        self.settle(&leased, outcome).await;
    }

    async fn attempt(&self, leased: &Leased) -> Outcome {
        let Some(sink) = SinkId::parse(&leased.envelope.sink).and_then(|s| self.sinks.get(&s))
        else {
            return Outcome::Retry(format!(
                "no sink is configured here for {:?} callbacks",
                leased.envelope.sink
            ));
        };
        match serde_json::from_slice(&leased.body) {
            Ok(doc) => sink.deliver(&leased.envelope.id, doc).await,
            Err(e) => Outcome::Dead(format!("not JSON: {e}")),
        }
    }

    async fn settle(&self, leased: &Leased, outcome: Outcome) {
        let id = &leased.envelope.id;
        let limits = self.limits;
        let outcome = match outcome {
            Outcome::Retry(why) if leased.envelope.age() > limits.horizon => {
                Outcome::Dead(format!(
                    "not delivered within max_retry_age_seconds ({} s); last failure: {why}",
                    limits.horizon.as_secs()
                ))
            }
            o => o,
        };
        let r = match outcome {
            Outcome::Delivered | Outcome::Gone => {
                metrics::counter!("oneseal_callbacks_delivered_total").increment(1);
                self.queue.ack(leased).await
            }
            Outcome::Retry(why) => {
                let wait = backoff(leased.envelope.attempts, limits.cap);
                tracing::warn!(callback = %id, attempt = leased.envelope.attempts + 1, retry_in_s = wait.as_secs(), reason = %why, "callback not delivered; will retry");
                metrics::counter!("oneseal_callbacks_retried_total").increment(1);
                self.queue.retry(leased, wait).await
            }
            Outcome::Dead(why) => {
                tracing::error!(callback = %id, reason = %why, "callback moved to the dead letters (see `oneseal gateway replay`)");
                metrics::counter!("oneseal_callbacks_dead_total").increment(1);
                self.queue.bury(leased, &why).await
            }
        };
        if let Err(e) = &r {
            tracing::error!(callback = %id, error = %e, "could not settle the callback in the queue; it comes back when its lease runs out");
        }
        self.health.set(&r);
    }

    /// Depth, dead letters and the oldest callback's age as metrics, every 5 s.
    async fn watch(self: Arc<Self>, stop: CancellationToken) {
        while !stop.is_cancelled() {
            match self.queue.stats().await {
                Ok(s) => {
                    metrics::gauge!("oneseal_queue_depth").set(s.depth as f64);
                    metrics::gauge!("oneseal_queue_dead_letters").set(s.dead as f64);
                    metrics::gauge!("oneseal_queue_oldest_age_seconds")
                        .set(s.oldest.map(|d| d.as_secs_f64()).unwrap_or(0.0));
                    self.health.set(&Ok(()));
                }
                Err(e) => self.health.set(&Err(e)),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.cancelled() => {}
            }
        }
    }
}
