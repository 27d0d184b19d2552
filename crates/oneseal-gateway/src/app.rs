//! App-side routes: the business's own services speak the plain One API here; everything
//! sent on to the platform is encrypted first (fail closed: on any failure nothing leaves).

use std::io::{self, Write};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Extension;
use futures_util::TryStreamExt;
use oneseal_core::b64;

use crate::body::JsonBody;
use crate::config::MAX_MEDIA_BYTES;
use crate::error::ApiError;
use crate::platform::Platform;
use crate::upstream::{pass_through, Pinned};

/// The app side's state: the shared platform parts, and one engine per route family.
pub struct AppSide {
    pub platform: Arc<Platform>,
    /// `/v1/message`: One API only.
    pub one_api: oneseal_core::Engine,
    /// `/wa/messages`: legacy only.
    pub legacy: oneseal_core::Engine,
}

/// `POST /v1/message`: a plain One API request (One API only: a legacy member is refused),
/// encrypted per policy, then forwarded.
pub async fn message(
    State(g): State<Arc<AppSide>>,
    pin: Option<Extension<Pinned>>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    forward_json(
        &g.one_api,
        &g.platform,
        pin.as_deref(),
        "/v1/message",
        &headers,
        &body.bytes,
    )
    .await
}

/// `POST /wa/messages`: the same for the legacy API (legacy only).
pub async fn legacy_messages(
    State(g): State<Arc<AppSide>>,
    pin: Option<Extension<Pinned>>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    forward_json(
        &g.legacy,
        &g.platform,
        pin.as_deref(),
        "/wa/messages",
        &headers,
        &body.bytes,
    )
    .await
}

async fn forward_json(
    engine: &oneseal_core::Engine,
    g: &Platform,
    pin: Option<&Pinned>,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let sealed = engine
        .encrypt_request_slice(body)
        .await
        .map_err(|e| ApiError::from_engine(&e))?;
    let r = g
        .upstream
        .send_pinned(pin, path, headers, Bytes::from(sealed))
        .await?;
    Ok(pass_through(r))
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn encode_pairs(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Query members the gateway sets on uploads: a caller may not supply them.
const UPLOAD_SET: [&str; 3] = ["encryptionKey", "kmsArn", "sha256FileHash"];

/// `POST /v1/media?<query>`: the plain file, streamed through the media encryptor into a
/// spool file (bounded memory), then uploaded with `encryptionKey`, `kmsArn` and
/// `sha256FileHash` added. Over 30 MiB → 413 before any key-service call.
pub async fn media_upload(
    State(side): State<Arc<AppSide>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let g = &side.platform;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the One API accepts uploads of at most 30 MiB (31 457 280 bytes)",
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_MEDIA_BYTES) {
        return Err(too_large());
    }
    let pairs = query_pairs(q.as_deref().unwrap_or(""));
    // Case-insensitive: a platform that reads query names without regard to case must not
    // see a caller's own `EncryptionKey` beside the gateway's.
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| UPLOAD_SET.iter().any(|s| s.eq_ignore_ascii_case(k)))
    {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the query sets {k}; the gateway sets it (send the plain file)"),
        );
        e.path = Some(k.clone());
        return Err(e);
    }
    let key = g
        .engine
        .cache()
        .sealing_key()
        .await
        .map_err(|e| ApiError::key(&e))?;
    key.record_seals(1);
    let suite = g.engine.options().suite;
    let tmp = g.spool.temp_file().map_err(|e| ApiError::spool(&e))?;
    let stream = body.into_data_stream().map_err(io::Error::other);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let key2 = key.clone();
    let (tmp, outcome) = tokio::task::spawn_blocking(move || {
        let mut limited = io::Read::take(reader, MAX_MEDIA_BYTES + 1);
        let mut w = io::BufWriter::with_capacity(oneseal_media::CHUNK, tmp.as_file());
        let r = oneseal_media::encrypt_stream(key2.key(), suite, &mut limited, &mut w, &|_| {});
        let flushed = w.flush();
        drop(w);
        match (r, flushed) {
            (Ok(o), Ok(())) => Ok((tmp, o)),
            (Err(oneseal_media::StreamError::Read(e)), _) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("reading the upload failed: {e}"),
            )),
            (Err(e), _) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encryption_failed",
                format!("{e}; nothing was sent to the platform"),
            )),
            (_, Err(e)) => Err(ApiError::spool(&e)),
        }
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "encryption task failed",
        )
    })??;
    let (byte_size, _, sha256) = outcome;
    if byte_size > MAX_MEDIA_BYTES {
        return Err(too_large());
    }
    let mut all = pairs;
    all.push(("encryptionKey".into(), key.blob_b64().to_string()));
    all.push((
        "kmsArn".into(),
        key.key_arn().unwrap_or_default().to_string(),
    ));
    all.push(("sha256FileHash".into(), hex::encode(sha256)));
    let path = format!("/v1/media?{}", encode_pairs(&all));
    let file_path = tmp.path().to_path_buf();
    let size = tmp
        .as_file()
        .metadata()
        .map_err(|e| ApiError::spool(&e))?
        .len();
    let length = [(header::CONTENT_LENGTH, HeaderValue::from(size))];
    let r = g
        .upstream
        .send(Method::POST, &path, &headers, &length, &|| {
            let f = std::fs::File::open(&file_path).map_err(|e| ApiError::spool(&e))?;
            let f = tokio::fs::File::from_std(f);
            Ok(Body::from_stream(
                tokio_util::io::ReaderStream::with_capacity(f, oneseal_media::CHUNK),
            ))
        })
        .await?;
    // The encrypted file may go only once the upstream has the whole body.
    let out = pass_through(r);
    drop(tmp);
    Ok(out)
}

/// `GET /v1/media?<platform query>&encryptionKey=…&expectedSha256=…` (a rewritten
/// `downloadUrl`): fetched from the configured upstream only, decrypted and verified into a
/// spool file, then streamed. Any mismatch → 502 and not one plaintext byte.
pub async fn media_download(
    State(g): State<Arc<AppSide>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut pairs = query_pairs(q.as_deref().unwrap_or(""));
    let take = |pairs: &mut Vec<(String, String)>, name: &str| {
        let i = pairs.iter().position(|(k, _)| k == name)?;
        Some(pairs.remove(i).1)
    };
    let key_b64 = take(&mut pairs, "encryptionKey").ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "not a oneseal download link (no encryptionKey): follow the downloadUrl of a callback the gateway delivered",
        )
    })?;
    let expected = match take(&mut pairs, "expectedSha256") {
        Some(h) => {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h.trim(), &mut out).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "expectedSha256 is not 64 hex digits",
                )
            })?;
            Some(out)
        }
        None => None,
    };
    let blob = b64::decode(&key_b64)
        .ok()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "encryptionKey is not valid base64",
            )
        })?;
    let path = format!("/v1/media?{}", encode_pairs(&pairs));
    g.platform
        .download_verified(&path, &headers, &blob, expected)
        .await
}
