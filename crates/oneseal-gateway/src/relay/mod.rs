//! The relay: delivers spooled callbacks to their sinks, at least once and losing nothing.
//!
//! A callback is in the spool (accepted by the intake route) before the platform got its 200.
//! The relay loads it, hands it to the [`Sink`] its spool name's tag says ([`SinkId`], parsed
//! once), and settles the [`Outcome`]: delivered → deleted; retry → again after a capped,
//! doubling backoff; dead → moved to the dead letters with the reason. The retry policy
//! (backoff, horizon) is the relay's, not the sinks': a sink only says what happened.
//!
//! Invariants: a callback is deleted only after its sink said `Delivered`; at most
//! [`PARALLEL`] deliveries run at once; the directory is rescanned every second, so a
//! callback put back by `oneseal gateway replay` (or left by a crash) is picked up.

pub mod app;
pub mod queued;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use oneseal_core::{Engine, ErrorClass};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::spool::Spool;

/// Callbacks delivered at once.
const PARALLEL: usize = 32;

/// What became of one delivery attempt.
#[derive(Debug)]
pub enum Outcome {
    Delivered,
    /// The file is no longer in the spool (delivered meanwhile, or re-listed by a scan).
    Gone,
    Retry(String),
    Dead(String),
}

/// Where a spooled callback goes, from its spool name's tag (`.clevertap.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SinkId {
    /// The business's app (`[gateway.callbacks]`).
    App,
    /// CleverTap (`[gateway.clevertap]`).
    CleverTap,
}

impl SinkId {
    /// The tag the spool puts before `.json`.
    pub fn tag(self) -> &'static str {
        match self {
            SinkId::App => "",
            SinkId::CleverTap => ".clevertap",
        }
    }

    /// The name a shared queue's messages carry.
    pub fn name(self) -> &'static str {
        match self {
            SinkId::App => "app",
            SinkId::CleverTap => "clevertap",
        }
    }

    /// The sink a shared queue's message names.
    pub fn parse(name: &str) -> Option<SinkId> {
        match name {
            "app" => Some(SinkId::App),
            "clevertap" => Some(SinkId::CleverTap),
            _ => None,
        }
    }

    /// The sink of the spooled callback `name`.
    pub fn of(name: &str) -> SinkId {
        if name.ends_with(".clevertap.json") {
            SinkId::CleverTap
        } else {
            SinkId::App
        }
    }
}

/// A destination of callbacks: delivers one (already loaded) and says what happened.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Delivers the callback `doc` (spooled as `name`, a stable message id).
    async fn deliver(&self, name: &str, doc: Value) -> Outcome;
}

/// Decrypts a callback in place for a sink. Refused for good (dead): plaintext content in an
/// encrypted integration (unless `accept_plaintext`), crypto failures, bad input, an unknown
/// payload, and a key the key service refuses for good (access denied, not found, disabled,
/// invalid ciphertext); a passing key-service failure (throttled, timeout, network) is
/// retried.
pub async fn open(engine: &Engine, doc: &mut Value, accept_plaintext: bool) -> Result<(), Outcome> {
    if !accept_plaintext {
        if let Some(at) = engine.plaintext_content(doc) {
            return Err(Outcome::Dead(format!(
                "plaintext content in an encrypted integration ({at} carries content and no encryptionKey; set [gateway.callbacks] accept_plaintext = true if the integration does not encrypt)"
            )));
        }
    }
    match engine.decrypt_document(doc).await {
        Ok(_) => Ok(()),
        Err(e) if e.class() == ErrorClass::KeyService && !permanent(&e) => {
            Err(Outcome::Retry(e.to_string()))
        }
        Err(e) => Err(Outcome::Dead(e.to_string())),
    }
}

/// Whether the item's key was refused for good: retrying cannot help.
fn permanent(e: &oneseal_core::Error) -> bool {
    match e {
        oneseal_core::Error::Key { source, .. } => source.is_permanent(),
        _ => true,
    }
}

/// The relay's retry policy: the backoff cap, and how long a callback may wait in all.
#[derive(Debug, Clone, Copy)]
pub struct RetryLimits {
    pub cap: Duration,
    pub horizon: Duration,
}

/// Delay before attempt `n + 1`: 1 s doubling, capped.
fn backoff(n: u32, cap: Duration) -> Duration {
    Duration::from_secs(1u64 << n.min(16)).min(cap)
}

/// How long ago the callback `name` was accepted (its name starts with the arrival time in
/// microseconds), so the horizon holds across restarts.
fn age(name: &str) -> Option<Duration> {
    let micros: u64 = name.split('-').next()?.parse().ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    now.checked_sub(Duration::from_micros(micros))
}

/// The relay: the spool and the sinks it delivers to.
pub struct Relay {
    pub spool: Spool,
    pub sinks: HashMap<SinkId, Arc<dyn Sink>>,
    pub limits: RetryLimits,
}

impl Relay {
    /// One attempt at `name`: loaded from the spool (gone → done; unreadable → retried;
    /// not JSON → dead), then its sink's outcome.
    async fn deliver(&self, name: &str) -> Outcome {
        let Some(sink) = self.sinks.get(&SinkId::of(name)) else {
            return Outcome::Retry("no sink is configured for this callback".into());
        };
        let body = match self.spool.read(name) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Gone,
            Err(e) => return Outcome::Retry(format!("cannot read the spool file: {e}")),
        };
        match serde_json::from_slice(&body) {
            Ok(doc) => sink.deliver(name, doc).await,
            Err(e) => Outcome::Dead(format!("not JSON: {e}")),
        }
    }

    pub async fn run(
        self: Arc<Self>,
        mut spooled: mpsc::UnboundedReceiver<String>,
        stop: CancellationToken,
    ) {
        let g = self;
        if g.sinks.is_empty() {
            return;
        }
        let limits = g.limits;
        let (done_tx, mut done_rx) = mpsc::channel::<(String, Outcome)>(PARALLEL * 2);
        let mut waiting: BTreeSet<String> = BTreeSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut retry: HashMap<String, (u32, Instant)> = HashMap::new();
        let mut scanned = Instant::now() - Duration::from_secs(60);
        loop {
            while let Ok((name, outcome)) = done_rx.try_recv() {
                in_flight.remove(&name);
                settle(&g, &name, outcome, &mut retry, &mut waiting, limits);
            }
            while let Ok(name) = spooled.try_recv() {
                waiting.insert(name);
            }
            if scanned.elapsed() >= Duration::from_secs(1) {
                scanned = Instant::now();
                for name in g.spool.pending().unwrap_or_default() {
                    if !in_flight.contains(&name) {
                        waiting.insert(name);
                    }
                }
            }
            metrics::gauge!("oneseal_spool_depth").set((waiting.len() + in_flight.len()) as f64);
            let now = Instant::now();
            if !stop.is_cancelled() {
                let due: Vec<String> = waiting
                    .iter()
                    .filter(|n| retry.get(*n).is_none_or(|(_, t)| *t <= now))
                    .take(PARALLEL.saturating_sub(in_flight.len()))
                    .cloned()
                    .collect();
                for name in due {
                    waiting.remove(&name);
                    in_flight.insert(name.clone());
                    let (g2, tx) = (g.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let outcome = g2.deliver(&name).await;
                        let _ = tx.send((name, outcome)).await;
                    });
                }
            }
            if stop.is_cancelled() && in_flight.is_empty() {
                return;
            }
            let next_due = retry
                .values()
                .map(|(_, t)| *t)
                .min()
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(1))
                .clamp(Duration::from_millis(20), Duration::from_secs(1));
            tokio::select! {
                r = spooled.recv() => {
                    if let Some(name) = r {
                        waiting.insert(name);
                    }
                }
                r = done_rx.recv() => {
                    if let Some((name, outcome)) = r {
                        in_flight.remove(&name);
                        settle(&g, &name, outcome, &mut retry, &mut waiting, limits);
                    }
                }
                _ = tokio::time::sleep(next_due) => {}
                _ = stop.cancelled(), if !stop.is_cancelled() => {}
            }
        }
    }
}

fn settle(
    g: &Relay,
    name: &str,
    outcome: Outcome,
    retry: &mut HashMap<String, (u32, Instant)>,
    waiting: &mut BTreeSet<String>,
    limits: RetryLimits,
) {
    let outcome = match outcome {
        Outcome::Retry(why) if age(name).is_some_and(|a| a > limits.horizon) => {
            Outcome::Dead(format!(
                "not delivered within max_retry_age_seconds ({} s); last failure: {why}",
                limits.horizon.as_secs()
            ))
        }
        o => o,
    };
    let cap = limits.cap;
    match outcome {
        Outcome::Gone => {
            retry.remove(name);
        }
        Outcome::Delivered => {
            retry.remove(name);
            if let Err(e) = g.spool.remove(name) {
                tracing::error!(callback = name, error = %e, "delivered, but the spool file could not be removed (it will be delivered again)");
            }
            metrics::counter!("oneseal_callbacks_delivered_total").increment(1);
        }
        Outcome::Retry(why) => {
            let n = retry.get(name).map(|(n, _)| n + 1).unwrap_or(0);
            let wait = backoff(n, cap);
            tracing::warn!(callback = name, attempt = n + 1, retry_in_s = wait.as_secs(), reason = %why, "callback not delivered; will retry");
            retry.insert(name.to_string(), (n, Instant::now() + wait));
            waiting.insert(name.to_string());
            metrics::counter!("oneseal_callbacks_retried_total").increment(1);
        }
        Outcome::Dead(why) => {
            retry.remove(name);
            tracing::error!(callback = name, reason = %why, "callback moved to the dead letters (see `oneseal gateway replay`)");
            if let Err(e) = g.spool.bury(name, &why) {
                tracing::error!(callback = name, error = %e, "could not move the callback to the dead letters");
            }
            metrics::counter!("oneseal_callbacks_dead_total").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        assert_eq!(backoff(0, Duration::from_secs(300)), Duration::from_secs(1));
        assert_eq!(backoff(3, Duration::from_secs(300)), Duration::from_secs(8));
        assert_eq!(
            backoff(20, Duration::from_secs(300)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn the_sink_is_the_spool_names_tag() {
        assert_eq!(
            SinkId::of("00000000000000000001-00000001-7.json"),
            SinkId::App
        );
        assert_eq!(
            SinkId::of("00000000000000000001-00000001-7.clevertap.json"),
            SinkId::CleverTap
        );
    }

    #[test]
    fn a_callbacks_age_comes_from_its_name() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros();
        let name = format!("{:020}-00000001-7.json", now - 5_000_000);
        let a = age(&name).unwrap();
        assert!(
            a >= Duration::from_secs(5) && a < Duration::from_secs(60),
            "{a:?}"
        );
        assert!(age("notes.json").is_none());
    }
}
