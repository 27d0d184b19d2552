//! Public-side callback route and the relay behind it. A callback is on disk
//! (fsynced) before the platform gets its 200; the relay decrypts it, rewrites moMedia
//! `downloadUrl`s to the app side, POSTs the plain JSON to `callbacks.forward_to`, and deletes
//! it only after a 2xx. Failures are retried with capped exponential backoff (across restarts:
//! the spool is the queue); a callback that can never be decrypted goes to the dead letters.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use oneseal_core::ErrorClass;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::Shared;

/// Callbacks delivered to the app at once.
const PARALLEL: usize = 32;

/// The callback routes' answer to wrong or missing credentials (checked before the body is
/// read, so nothing is stored).
pub(crate) fn unauthorized() -> Response {
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "wrong or missing basic auth credentials for the callback URL",
    )
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"oneseal\""),
    );
    r
}

/// `POST {callbacks.path}` (its credentials checked by the route's layer).
pub async fn receive(State(g): State<Arc<Shared>>, body: JsonBody) -> Result<Response, ApiError> {
    accept(&g, body, "").await
}

/// Writes the callback durably to the spool (tagged for its destination) before answering
/// 200, and tells the relay.
pub(crate) async fn accept(
    g: &Shared,
    body: JsonBody,
    tag: &'static str,
) -> Result<Response, ApiError> {
    let body = body.bytes;
    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the callback body is not JSON",
        ));
    }
    let spool = g.spool.clone();
    let name = tokio::task::spawn_blocking(move || spool.put_as(&body, tag))
        .await
        .map_err(|_| ApiError::unavailable("spool_unavailable", "spool task failed", 5))?
        .map_err(|e| crate::app::spool_error(&e))?;
    metrics::counter!("oneseal_callbacks_received_total").increment(1);
    // The relay learns of it at once; its periodic rescan of the spool is the safety net.
    let _ = g.spooled.send(name);
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "accepted"})),
    )
        .into_response())
}

/// What became of one delivery attempt.
#[derive(Debug)]
pub(crate) enum Outcome {
    Delivered,
    /// The file is no longer in the spool (delivered meanwhile, or re-listed by a scan).
    Gone,
    Retry(String),
    Dead(String),
}

/// Rewrites every moMedia `files[*].downloadUrl` to the app side, carrying the item's
/// `encryptionKey` and the file's `sha256Hash`, so the app follows it with its usual
/// `Authorization` and receives verified plaintext. Runs before decryption (which sets the
/// key to null).
pub fn rewrite_download_urls(doc: &mut Value, app_url: &str) {
    fn item(it: &mut Value, app_url: &str) {
        let Some(key) = it
            .get("encryptionKey")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return;
        };
        let Some(files) = it.get_mut("files").and_then(Value::as_array_mut) else {
            return;
        };
        for f in files {
            let hash = f
                .get("sha256Hash")
                .and_then(Value::as_str)
                .map(str::to_string);
            let Some(url) = f.get("downloadUrl").and_then(Value::as_str) else {
                continue;
            };
            let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                if k != "encryptionKey" && k != "expectedSha256" {
                    s.append_pair(&k, &v);
                }
            }
            s.append_pair("encryptionKey", &key);
            if let Some(h) = &hash {
                s.append_pair("expectedSha256", h);
            }
            f["downloadUrl"] = format!("{app_url}/v1/media?{}", s.finish()).into();
        }
    }
    if let Some(ev) = doc.get_mut("event").and_then(Value::as_object_mut) {
        for items in ev.values_mut() {
            for it in items.as_array_mut().into_iter().flatten() {
                item(it, app_url);
            }
        }
    } else {
        item(doc, app_url);
    }
}

async fn deliver(g: &Shared, name: &str) -> Outcome {
    if name.ends_with(&format!("{}.json", crate::clevertap::inbound::TAG)) {
        return crate::clevertap::inbound::deliver(g, name).await;
    }
    let Some(cb) = &g.cfg.callbacks else {
        return Outcome::Retry("no callbacks configured".into());
    };
    let mut doc = match load(g, name) {
        Ok(d) => d,
        Err(o) => return o,
    };
    rewrite_download_urls(&mut doc, &g.cfg.app_url);
    if let Err(o) = decrypt(g, &mut doc).await {
        return o;
    }
    let plain = match serde_json::to_vec(&doc) {
        Ok(p) => Bytes::from(p),
        Err(e) => return Outcome::Dead(format!("cannot serialize: {e}")),
    };
    // The spool name is the message id: the same on every retry, so the app can drop
    // duplicates of an at-least-once delivery.
    let signed = cb
        .signing
        .as_ref()
        .map(|s| {
            crate::sign::headers(
                s,
                &format!("msg_{}", name.trim_end_matches(".json")),
                &plain,
            )
        })
        .unwrap_or_default();
    match g.app.post_json(&cb.forward_to, plain, &signed).await {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) => Outcome::Retry(format!("the app answered {}", r.status())),
        Err(e) => Outcome::Retry(format!("{}: {}", e.code, e.message)),
    }
}

/// A spooled callback, parsed: gone (delivered meanwhile), unreadable (retried) or not JSON
/// (dead) are outcomes.
pub(crate) fn load(g: &Shared, name: &str) -> Result<Value, Outcome> {
    let body = match g.spool.read(name) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Outcome::Gone),
        Err(e) => return Err(Outcome::Retry(format!("cannot read the spool file: {e}"))),
    };
    serde_json::from_slice(&body).map_err(|e| Outcome::Dead(format!("not JSON: {e}")))
}

/// Decrypts a callback in place. Refused for good (dead): plaintext content in an encrypted
/// integration (unless `accept_plaintext`), crypto failures, bad input, an unknown payload,
/// and a key the key service refuses for good (access denied, not found, disabled, invalid
/// ciphertext); a passing key-service failure (throttled, timeout, network) is retried.
pub(crate) async fn decrypt(g: &Shared, doc: &mut Value) -> Result<(), Outcome> {
    let accept_plaintext = g.cfg.callbacks.as_ref().is_some_and(|c| c.accept_plaintext);
    if !accept_plaintext {
        if let Some(at) = g.engine.plaintext_content(doc) {
            return Err(Outcome::Dead(format!(
                "plaintext content in an encrypted integration ({at} carries content and no encryptionKey; set [gateway.callbacks] accept_plaintext = true if the integration does not encrypt)"
            )));
        }
    }
    match g.engine.decrypt_document(doc).await {
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

/// Delay before attempt `n + 1`: 1 s doubling, capped.
fn backoff(n: u32, cap: Duration) -> Duration {
    Duration::from_secs(1u64 << n.min(16)).min(cap)
}

/// The relay loop: delivers spooled callbacks until `stop`, then waits for deliveries in
/// flight (the caller bounds the wait). New callbacks arrive on `spooled`; the spool directory
/// is rescanned at start and every second (dead letters re-queued by `oneseal gateway
/// replay`, and anything else put there), so the directory is listed once a second, not once
/// per callback.
pub async fn relay(
    g: Arc<Shared>,
    mut spooled: mpsc::UnboundedReceiver<String>,
    stop: CancellationToken,
) {
    if g.cfg.callbacks.is_none() && g.cfg.clevertap.is_none() {
        return;
    }
    let limits = RetryLimits {
        cap: g
            .cfg
            .callbacks
            .as_ref()
            .map(|c| c.max_retry)
            .unwrap_or(Duration::from_secs(300)),
        horizon: g
            .cfg
            .callbacks
            .as_ref()
            .map(|c| c.max_retry_age)
            .unwrap_or(Duration::from_secs(86_400)),
    };
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
                    let outcome = deliver(&g2, &name).await;
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

/// The relay's retry policy: the backoff cap, and how long a callback may wait in all.
#[derive(Debug, Clone, Copy)]
struct RetryLimits {
    cap: Duration,
    horizon: Duration,
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

fn settle(
    g: &Shared,
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
    fn download_urls_are_rewritten_to_the_app_side() {
        let mut doc = serde_json::json!({"event": {"moMedia": [{"encryptionKey": "K+/=",
            "files": [{"downloadUrl": "https://platform.clickatell.com/v1/media?fileId=UUID-1.xxx&sha256Hash=ab&source=client", "sha256Hash": "ab"}]}]}});
        rewrite_download_urls(&mut doc, "http://127.0.0.1:8080");
        let u = doc["event"]["moMedia"][0]["files"][0]["downloadUrl"]
            .as_str()
            .unwrap();
        assert_eq!(
            u,
            "http://127.0.0.1:8080/v1/media?fileId=UUID-1.xxx&sha256Hash=ab&source=client&encryptionKey=K%2B%2F%3D&expectedSha256=ab"
        );
        assert_eq!(backoff(0, Duration::from_secs(300)), Duration::from_secs(1));
        assert_eq!(
            backoff(20, Duration::from_secs(300)),
            Duration::from_secs(300)
        );
    }
}
