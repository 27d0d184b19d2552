//! The CleverTap bridge: the middleware reference 003 asks a CleverTap customer
//! to build between CleverTap and its WhatsApp provider, with One API client-side
//! encryption inside it.
//!
//! - `POST {path}`: CleverTap's template and freeform payloads (basic auth) →
//!   [`translate`] → media fetched, encrypted and uploaded ([`media`]) → the One API message
//!   encrypted by the engine → `POST {upstream}/v1/message` with the bridge's One API key.
//!   Answered in CleverTap's format: `{"status":"success"}` or `{"status":"failure",
//!   "error":{"code":2000|2001|2002|2004,"message"}}`; nothing is sent half-way.
//! - `GET {path}/media/<signed>`: a signed, expiring link to incoming media, served as
//!   verified plaintext.
//! - `POST {callbacks_path}`: the platform's callbacks for the bridge's One API integration,
//!   spooled durably like any callback, then delivered to CleverTap as DLRs and incoming
//!   messages ([`inbound`]).

pub mod inbound;
pub mod media;
pub mod translate;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use oneseal_core::ErrorClass;
use serde_json::{json, Value};

use crate::body::JsonBody;
use crate::config::CleverTapConfig;
use crate::platform::Platform;
use crate::upstream::Upstream;
use translate::{Outbound, Refusal};

/// The bridge's state.
pub(crate) struct Bridge {
    pub cfg: CleverTapConfig,
    /// The engine, the platform client and the spool.
    pub platform: Arc<Platform>,
    /// The bridge sends One API messages only.
    pub one_api: oneseal_core::Engine,
    pub media: media::MediaCache,
    /// `Authorization` for the platform: the bridge's One API key (marked sensitive).
    pub api_key_header: HeaderValue,
    pub dlr: Upstream,
    pub imo: Upstream,
}

impl Bridge {
    pub fn new(
        cfg: CleverTapConfig,
        platform: Arc<Platform>,
        timeout: std::time::Duration,
    ) -> std::io::Result<Bridge> {
        let mut api_key_header = HeaderValue::from_str(cfg.one_api_key.0.trim())
            .map_err(|_| std::io::Error::other("the One API key is not a valid header value"))?;
        api_key_header.set_sensitive(true);
        Ok(Bridge {
            one_api: platform.engine.for_api(oneseal_core::Api::One),
            platform,
            media: media::MediaCache::new()?,
            api_key_header,
            dlr: Upstream::for_url(&cfg.dlr_url, timeout, "CleverTap")?,
            imo: Upstream::for_url(&cfg.imo_url, timeout, "CleverTap")?,
            cfg,
        })
    }
}

/// CleverTap's answer to a send: always HTTP 200 with the outcome in the body (CleverTap
/// reads the body of a 200 only).
fn answer(r: &Result<&'static str, Refusal>) -> Response {
    match r {
        Ok(_) => (StatusCode::OK, axum::Json(json!({"status": "success"}))).into_response(),
        Err(e) => (
            StatusCode::OK,
            axum::Json(
                json!({"status": "failure", "error": {"code": e.code(), "message": e.message()}}),
            ),
        )
            .into_response(),
    }
}

/// CleverTap's answer to wrong or missing credentials (checked before the body is read).
pub(crate) fn unauthorized() -> Response {
    metrics::counter!("oneseal_clevertap_requests_total", "kind" => "unknown", "outcome" => "401")
        .increment(1);
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"message": "Invalid credentials"})),
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"oneseal\""),
    );
    r
}

/// `POST {clevertap.path}` (its credentials checked by the route's layer).
pub(crate) async fn send(State(b): State<Arc<Bridge>>, body: JsonBody) -> Response {
    let Ok(payload) = serde_json::from_slice::<Value>(&body.bytes) else {
        metrics::counter!("oneseal_clevertap_requests_total", "kind" => "unknown", "outcome" => "400")
            .increment(1);
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": "Bad Request"})),
        )
            .into_response();
    };
    let mut kind = "unknown";
    let r = handle(&b, &payload, &mut kind).await;
    let outcome = match &r {
        Ok(_) => "success".to_string(),
        Err(e) => e.code().to_string(),
    };
    metrics::counter!("oneseal_clevertap_requests_total", "kind" => kind, "outcome" => outcome)
        .increment(1);
    if let Err(e) = &r {
        // The message names what is unsupported or failed; never parameters or numbers.
        tracing::info!(kind, code = e.code(), reason = %e.message(), "CleverTap send refused");
    }
    answer(&r)
}

async fn handle(
    b: &Bridge,
    payload: &Value,
    kind: &mut &'static str,
) -> Result<&'static str, Refusal> {
    let out = translate::translate(payload, &b.cfg.validate_only_namespace)?;
    *kind = out.kind();
    let message = match out {
        Outbound::Validation => return Ok("validation"),
        Outbound::Text { message } => message,
        Outbound::Template {
            mut message,
            header_media,
        } => {
            if let Some(m) = header_media {
                let p = media::prepared(b, &m).await?;
                let to = message.get("to").and_then(Value::as_str).unwrap_or("");
                let file_id = media::upload(b, &p, Some(to)).await?;
                if let Some(t) = message.get_mut("template").and_then(Value::as_object_mut) {
                    t.insert(
                        "header".into(),
                        json!({"type": "media", "media": {"fileId": file_id}}),
                    );
                }
            }
            message
        }
        Outbound::Media { mut message, media } => {
            // A freeform media problem is not a template problem: 2004.
            let file_id = media::broadcast_file(b, &media)
                .await
                .map_err(|r| match r {
                    Refusal::Template(m) => Refusal::Other(m),
                    other => other,
                })?;
            if let Some(m) = message.get_mut("media").and_then(Value::as_object_mut) {
                m.insert("fileId".into(), file_id.into());
            }
            message
        }
    };
    send_message(b, translate::request(message)).await?;
    Ok("sent")
}

/// Encrypts the One API request and sends it with the bridge's key.
async fn send_message(b: &Bridge, request: Value) -> Result<(), Refusal> {
    let plain = serde_json::to_vec(&request).map_err(|e| Refusal::Other(e.to_string()))?;
    let sealed = b
        .one_api
        .encrypt_request_slice(&plain)
        .await
        .map_err(|e| match e.class() {
            ErrorClass::Input | ErrorClass::Config => Refusal::Template(e.to_string()),
            _ => Refusal::Other(format!("{e}; nothing was sent")),
        })?;
    let sealed = Bytes::from(sealed);
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, b.api_key_header.clone());
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let res = b
        .platform
        .upstream
        .send(Method::POST, "/v1/message", &h, &[], &|| {
            Ok(Body::from(sealed.clone()))
        })
        .await
        .map_err(|e| Refusal::Other(e.to_string()))?;
    let status = res.status();
    let body = http_body_util::Limited::new(res.into_body(), 256 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    platform_verdict(status, &body)
}

/// The platform's answer to `/v1/message` as CleverTap's outcome.
fn platform_verdict(status: StatusCode, body: &[u8]) -> Result<(), Refusal> {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(Refusal::Credentials(format!(
            "the platform rejected the One API key ({status})"
        )));
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let item = v.pointer("/messages/0");
    let accepted = item
        .and_then(|m| m.get("accepted"))
        .and_then(Value::as_bool);
    if status.is_success() && accepted != Some(false) {
        return Ok(());
    }
    let err = item
        .and_then(|m| m.get("error"))
        .filter(|e| !e.is_null())
        .or_else(|| v.get("error").filter(|e| !e.is_null()));
    let description = err
        .and_then(|e| e.get("description").or_else(|| e.get("message")))
        .and_then(Value::as_str)
        .unwrap_or("");
    let message = format!(
        "the platform did not accept the message ({status}{}{description})",
        if description.is_empty() { "" } else { ": " }
    );
    let lower = description.to_ascii_lowercase();
    if ["destination", "number", "msisdn", "recipient"]
        .iter()
        .any(|w| lower.contains(w))
    {
        Err(Refusal::Number(message))
    } else {
        Err(Refusal::Other(message))
    }
}

/// `GET {clevertap.path}/media/{token}`: a signed link of an incoming media message.
pub(crate) async fn media_link(
    State(b): State<Arc<Bridge>>,
    Path(token): Path<String>,
) -> Response {
    let link = match media::open_link(&b.cfg, &token) {
        Ok(l) => l,
        Err(e) => {
            let (status, msg) = match e {
                media::LinkError::Forged => (StatusCode::FORBIDDEN, "not a valid media link"),
                media::LinkError::Expired => (StatusCode::GONE, "this media link has expired"),
            };
            metrics::counter!("oneseal_clevertap_media_links_total", "outcome" => if status == StatusCode::GONE { "expired" } else { "forged" }).increment(1);
            return (status, axum::Json(json!({"message": msg}))).into_response();
        }
    };
    let Some(blob) = oneseal_core::b64::decode(&link.k)
        .ok()
        .filter(|b| !b.is_empty() && inbound::is_media_download(&link.u))
    else {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"message": "not a valid media link"})),
        )
            .into_response();
    };
    let expected = link.h.as_deref().and_then(|h| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(h, &mut out).ok().map(|_| out)
    });
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, b.api_key_header.clone());
    metrics::counter!("oneseal_clevertap_media_links_total", "outcome" => "served").increment(1);
    match b
        .platform
        .download_verified(&link.u, &h, &blob, expected)
        .await
    {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_answers_map_to_clevertap_codes() {
        assert!(platform_verdict(
            StatusCode::ACCEPTED,
            br#"{"messages":[{"apiMessageId":"a","accepted":true}],"error":null}"#
        )
        .is_ok());
        assert_eq!(
            platform_verdict(StatusCode::UNAUTHORIZED, b"{}")
                .unwrap_err()
                .code(),
            2000
        );
        let e = platform_verdict(
            StatusCode::ACCEPTED,
            br#"{"messages":[{"accepted":false,"error":{"code":105,"description":"Invalid destination address"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.code(), 2002);
        assert!(e.message().contains("Invalid destination"), "{e:?}");
        assert_eq!(
            platform_verdict(StatusCode::BAD_GATEWAY, b"")
                .unwrap_err()
                .code(),
            2004
        );
    }
}
