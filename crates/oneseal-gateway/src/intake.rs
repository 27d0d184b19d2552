//! The callback routes: a callback (its credentials already checked by the route's layer) is
//! written durably to the spool, tagged for its sink, before the platform gets its 200; the
//! relay learns of it at once (its rescan of the spool is the safety net).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::relay::SinkId;
use crate::spool::Spool;

/// One callback route's state: where it spools, for which sink.
pub struct Intake {
    pub spool: Spool,
    /// Names of newly spooled callbacks, for the relay.
    pub spooled: mpsc::UnboundedSender<String>,
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
    let (spool, tag) = (i.spool.clone(), i.sink.tag());
    let name = tokio::task::spawn_blocking(move || spool.put_as(&body, tag))
        .await
        .map_err(|_| ApiError::unavailable("spool_unavailable", "spool task failed", 5))?
        .map_err(|e| ApiError::spool(&e))?;
    metrics::counter!("oneseal_callbacks_received_total").increment(1);
    let _ = i.spooled.send(name);
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "accepted"})),
    )
        .into_response())
}
