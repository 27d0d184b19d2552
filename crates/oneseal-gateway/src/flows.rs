//! The public-side WhatsApp Flows endpoint. Meta posts an encrypted
//! data-exchange request; the gateway checks `X-Hub-Signature-256` (before any decryption),
//! unwraps the AES key with the business key (then the previous one during a rotation),
//! answers `ping` itself, forwards everything else to the app's flow handler as the exact
//! plain JSON, and returns the handler's JSON encrypted under the flipped IV with the
//! request's key — used once (`ResponseSealer::seal` consumes it).
//!
//! Status codes are Meta's: 421 = "could not decrypt, re-fetch the public key", 432 = bad
//! signature, 427 = the app says the flow token is no longer valid. Any other failure of the
//! app is a 500 that carries nothing of the app's answer or of the flow data.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use oneseal_flows::{BusinessKey, FlowsError, ResponseSealer};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::body::JsonBody;
use crate::config::FlowsConfig;
use crate::error::ApiError;
use crate::upstream::Upstream;

/// Largest answer read from the app's flow handler (a screen's data; Meta caps responses
/// far below this).
const MAX_APP_ANSWER: usize = 1024 * 1024;

/// The Flows route's state: settings and the client to the app's handler.
pub(crate) struct Flows {
    pub cfg: FlowsConfig,
    pub app: Upstream,
}

/// What the gateway did with a request, for metrics and logs (never flow data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    BadSignature,
    Undecryptable,
    BadRequest,
    App427,
    AppFailed,
    Timeout,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::BadSignature => "bad_signature",
            Outcome::Undecryptable => "undecryptable",
            Outcome::BadRequest => "bad_request",
            Outcome::App427 => "app_427",
            Outcome::AppFailed => "app_failed",
            Outcome::Timeout => "timeout",
        }
    }
}

/// The request's action as a metrics label; `unknown` before decryption.
fn action_label(flow: &Value) -> &'static str {
    if is_error_notification(flow) {
        return "error_notification";
    }
    match flow.get("action").and_then(Value::as_str) {
        Some("ping") => "ping",
        Some("INIT") => "INIT",
        Some("data_exchange") => "data_exchange",
        Some("BACK") => "BACK",
        _ => "other",
    }
}

/// Meta reports a client-side error of an earlier response as `data.error`.
fn is_error_notification(flow: &Value) -> bool {
    flow.get("data")
        .and_then(|d| d.get("error"))
        .is_some_and(|e| !e.is_null())
}

struct Failure {
    outcome: Outcome,
    error: ApiError,
}

impl Failure {
    /// The handler (or the whole exchange) overran `response_timeout_seconds`.
    fn timeout() -> Self {
        Failure::new(
            Outcome::Timeout,
            StatusCode::INTERNAL_SERVER_ERROR,
            "flow_handler_timeout",
            "the flow handler did not answer within flows.response_timeout_seconds",
        )
    }

    fn new(outcome: Outcome, status: StatusCode, code: &'static str, msg: &str) -> Self {
        Failure {
            outcome,
            error: ApiError::new(status, code, msg),
        }
    }
}

fn bad_signature() -> Failure {
    Failure::new(
        Outcome::BadSignature,
        StatusCode::from_u16(432).unwrap_or(StatusCode::UNAUTHORIZED),
        "bad_signature",
        "X-Hub-Signature-256 is missing or does not match the body (flows.app_secret_env)",
    )
}

/// The route's credentials before its body is read: with an app secret configured, a request
/// without a well-formed `X-Hub-Signature-256` (`sha256=` and 64 hex digits) is answered 432
/// at once; the signature itself is checked against the body before anything is decrypted.
pub(crate) async fn signature_first(
    State(f): State<Arc<Flows>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let needs = f.cfg.app_secret.is_some();
    let well_formed = req
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if needs && !well_formed {
        metrics::counter!("oneseal_flows_requests_total", "action" => "unknown", "outcome" => Outcome::BadSignature.label())
            .increment(1);
        return bad_signature().error.into_response();
    }
    next.run(req).await
}

/// `POST {flows.path}`.
pub(crate) async fn receive(
    State(f): State<Arc<Flows>>,
    headers: HeaderMap,
    body: JsonBody,
) -> Response {
    let f = &*f;
    let mut action = "unknown";
    let answer = tokio::time::timeout(
        f.cfg.response_timeout,
        handle(f, &headers, body.bytes, &mut action),
    )
    .await
    .unwrap_or_else(|_| Err(Failure::timeout()));
    let (outcome, response) = match answer {
        Ok(r) => (Outcome::Ok, r),
        Err(e) => (e.outcome, e.error.into_response()),
    };
    metrics::counter!("oneseal_flows_requests_total", "action" => action, "outcome" => outcome.label())
        .increment(1);
    match outcome {
        Outcome::Ok | Outcome::App427 => {
            tracing::debug!(action, outcome = outcome.label(), "flows request")
        }
        _ => tracing::warn!(action, outcome = outcome.label(), "flows request failed"),
    }
    response
}

async fn handle(
    f: &Flows,
    headers: &HeaderMap,
    body: Bytes,
    action: &mut &'static str,
) -> Result<Response, Failure> {
    // The signature first: nothing is decrypted or forwarded for an unsigned request.
    if let Some(secret) = &f.cfg.app_secret {
        let sig = headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if oneseal_flows::verify_signature(secret.0.as_bytes(), &body, sig).is_err() {
            return Err(bad_signature());
        }
    }
    let id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let (flow, sealer) = decrypt(f, body).await?;
    let parsed: Value = serde_json::from_slice(&flow).map_err(|_| {
        Failure::new(
            Outcome::BadRequest,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the flow data is not JSON",
        )
    })?;
    *action = action_label(&parsed);
    drop(parsed);
    match *action {
        "ping" => seal(sealer, br#"{"data":{"status":"active"}}"#),
        "other" => Err(Failure::new(
            Outcome::BadRequest,
            StatusCode::BAD_REQUEST,
            "unsupported_action",
            "the flow action is not ping, INIT, data_exchange or BACK; nothing was forwarded",
        )),
        notification_or_screen => {
            let answer = forward(f, flow, &id).await?;
            match answer {
                Some(json) => seal(sealer, &json),
                None if notification_or_screen == "error_notification" => {
                    seal(sealer, br#"{"data":{"acknowledged":true}}"#)
                }
                None => Err(Failure::new(
                    Outcome::AppFailed,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "flow_handler_failed",
                    "the flow handler answered without a body; it must answer the next screen as JSON",
                )),
            }
        }
    }
}

/// RSA-OAEP unwrap (a few milliseconds of CPU: off the async threads) with the current key,
/// then the previous one. Every unwrap or tag failure is one 421.
async fn decrypt(f: &Flows, body: Bytes) -> Result<(Zeroizing<Vec<u8>>, ResponseSealer), Failure> {
    let keys: Vec<Arc<BusinessKey>> = std::iter::once(f.cfg.key.clone())
        .chain(f.cfg.previous_key.clone())
        .collect();
    let r = tokio::task::spawn_blocking(move || {
        let mut last = None;
        for (i, k) in keys.iter().enumerate() {
            match k.decrypt_request(&body) {
                Ok((flow, sealer)) => return Ok((Zeroizing::new(flow), sealer, i > 0)),
                // Only a key mismatch is worth the next key; a malformed body is malformed
                // for every key.
                Err(e @ FlowsError::Undecryptable(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(FlowsError::Undecryptable("no key")))
    })
    .await
    .map_err(|_| {
        Failure::new(
            Outcome::AppFailed,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "decryption task failed",
        )
    })?;
    match r {
        Ok((flow, sealer, previous)) => {
            if previous {
                metrics::counter!("oneseal_flows_previous_key_total").increment(1);
            }
            Ok((flow, sealer))
        }
        Err(FlowsError::Malformed(_) | FlowsError::Undecryptable(_)) => Err(Failure::new(
            Outcome::Undecryptable,
            StatusCode::MISDIRECTED_REQUEST,
            "undecryptable",
            "the request could not be decrypted with the business key; the client should re-fetch the public key",
        )),
        Err(FlowsError::NotJson(_)) => Err(Failure::new(
            Outcome::BadRequest,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the flow data is not JSON",
        )),
        Err(_) => Err(Failure::new(
            Outcome::AppFailed,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request could not be processed",
        )),
    }
}

/// POSTs the plain flow JSON to the app's handler. `Some(json)` for a 2xx with a JSON body,
/// `None` for a 2xx without one; 427 passed on; anything else a 500 that carries nothing of
/// the app's answer.
async fn forward(
    f: &Flows,
    flow: Zeroizing<Vec<u8>>,
    request_id: &str,
) -> Result<Option<Vec<u8>>, Failure> {
    let failed = |what: &str| {
        Failure::new(
            Outcome::AppFailed,
            StatusCode::INTERNAL_SERVER_ERROR,
            "flow_handler_failed",
            &format!("the flow handler {what}"),
        )
    };
    let bytes = Bytes::copy_from_slice(&flow);
    drop(flow);
    let signed = f
        .cfg
        .signing
        .as_ref()
        .map(|s| crate::sign::headers(s, &format!("msg_{request_id}"), &bytes))
        .unwrap_or_default();
    let res = f
        .app
        .post_json(&f.cfg.forward_to, bytes, &signed)
        .await
        .map_err(|e| {
            if e.is_timeout() {
                return Failure::timeout();
            }
            tracing::warn!(error = %e, "flow handler unreachable");
            failed("could not be reached")
        })?;
    let status = res.status();
    if status.as_u16() == 427 {
        return Err(Failure::new(
            Outcome::App427,
            StatusCode::from_u16(427).unwrap_or(StatusCode::BAD_REQUEST),
            "flow_token_invalid",
            "the flow handler answered 427: the flow token is no longer valid",
        ));
    }
    if !status.is_success() {
        tracing::warn!(status = status.as_u16(), "flow handler failed");
        return Err(failed("failed"));
    }
    let body = http_body_util::Limited::new(res.into_body(), MAX_APP_ANSWER)
        .collect()
        .await
        .map_err(|_| failed("answer could not be read or is larger than 1 MiB"))?
        .to_bytes();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return Err(failed("answered something that is not JSON"));
    }
    Ok(Some(body.to_vec()))
}

fn seal(sealer: ResponseSealer, json: &[u8]) -> Result<Response, Failure> {
    let text = sealer.seal(json).map_err(|_| {
        Failure::new(
            Outcome::AppFailed,
            StatusCode::INTERNAL_SERVER_ERROR,
            "flow_handler_failed",
            "the flow handler's answer could not be encrypted",
        )
    })?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_labelled_without_flow_data() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(action_label(&v(r#"{"action":"ping"}"#)), "ping");
        assert_eq!(
            action_label(&v(r#"{"action":"data_exchange","data":{"x":1}}"#)),
            "data_exchange"
        );
        assert_eq!(
            action_label(&v(r#"{"action":"INIT","data":{"error":"e"}}"#)),
            "error_notification"
        );
        assert_eq!(action_label(&v(r#"{"action":"navigate"}"#)), "other");
        assert_eq!(action_label(&v(r#"[1]"#)), "other");
    }
}
