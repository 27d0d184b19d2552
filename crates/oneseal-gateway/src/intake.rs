//! The callback routes: a callback (its credentials already checked by the route's layer) is
//! stored durably, tagged for its sink, before the platform gets its 200: in the local spool
//! (the relay learns of it at once; its rescan of the spool is the safety net), or in the
//! shared queue once the backend acknowledged the write. A store that cannot take it answers
//! 503 and the platform retries: nothing is acknowledged and lost.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::queue::{Envelope, Queue};
use crate::relay::SinkId;
use crate::spool::Spool;

/// Where accepted callbacks are stored.
#[derive(Clone)]
pub enum Store {
    /// This replica's spool directory.
    Spool {
        spool: Spool,
        /// Names of newly spooled callbacks, for the relay.
        spooled: mpsc::UnboundedSender<String>,
    },
    /// A queue every replica shares.
    Queue(Arc<dyn Queue>),
}

/// One callback route's state: where it stores, for which sink.
pub struct Intake {
    pub store: Store,
    pub sink: SinkId,
}

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

/// `POST {callbacks.path}` and `POST {clevertap.callbacks_path}`.
pub async fn receive(State(i): State<Arc<Intake>>, body: JsonBody) -> Result<Response, ApiError> {
    let body = body.bytes;
    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the callback body is not JSON",
        ));
    }
    match &i.store {
        Store::Spool { spool, spooled } => {
            let (spool, tag) = (spool.clone(), i.sink.tag());
            let name = tokio::task::spawn_blocking(move || spool.put_as(&body, tag))
                .await
                .map_err(|_| ApiError::unavailable("spool_unavailable", "spool task failed", 5))?
                .map_err(|e| ApiError::spool(&e))?;
            let _ = spooled.send(name);
        }
        Store::Queue(q) => {
            let envelope = Envelope::new(i.sink.name(), &body).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
            })?;
            q.put(envelope).await.map_err(|e| {
                tracing::error!(error = %e, "a callback could not be queued; answered 503 (the platform retries)");
                ApiError::unavailable("queue_unavailable", "the callback queue is unavailable; retry later", 5)
            })?;
        }
    }
    metrics::counter!("oneseal_callbacks_received_total").increment(1);
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "accepted"})),
    )
        .into_response())
}
