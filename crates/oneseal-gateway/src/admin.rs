//! The admin listener: `/livez` (the process is up), `/readyz` (the spool is writable and the
//! key provider can make data keys — learned from real traffic and a 30 s re-check while
//! failing, so probes cost no key-service call; the shared queue's state is reported too,
//! without failing readiness: the app side works without it, and the callback route answers
//! 503 on its own while it is down) and `/metrics` (Prometheus text).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use oneseal_core::KeyCache;

use crate::relay::queued::QueueHealth;
use crate::spool::Spool;

/// What the admin routes read.
pub struct Admin {
    pub spool: Spool,
    /// Whether the last `GenerateDataKey` succeeded.
    pub key_ok: Arc<AtomicBool>,
    pub metrics: PrometheusHandle,
    pub cache: Arc<KeyCache>,
    /// The shared queue, when callbacks go through one.
    pub queue: Option<(String, Arc<QueueHealth>)>,
}

pub async fn livez() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(g): State<Arc<Admin>>) -> Response {
    let spool = g.spool.check_writable().is_ok();
    let keys = g.key_ok.load(Ordering::Relaxed);
    let mut body = serde_json::json!({"config": "ok", "spool": if spool {"ok"} else {"not writable"},
        "key_provider": if keys {"ok"} else {"failing"}});
    if let Some((what, health)) = &g.queue {
        body["queue"] = serde_json::json!({
            "backend": what,
            "state": health.problem().map(|p| format!("unreachable: {p}")).unwrap_or_else(|| "ok".into()),
        });
    }
    let status = if spool && keys {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

pub async fn metrics_text(State(g): State<Arc<Admin>>) -> Response {
    let st = g.cache.stats();
    for (side, hit, miss) in [
        ("seal", st.seal_hits, st.seal_misses),
        ("open", st.open_hits, st.open_misses),
    ] {
        // Counters (they only grow), set to the cache's own running totals.
        metrics::counter!("oneseal_key_cache_lookups_total", "side" => side, "result" => "hit")
            .absolute(hit);
        metrics::counter!("oneseal_key_cache_lookups_total", "side" => side, "result" => "miss")
            .absolute(miss);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        g.metrics.render(),
    )
        .into_response()
}
