//! App-side routes: the business's own services speak the plain One API here; everything
//! sent on to the platform is encrypted first (fail closed: on any failure nothing leaves).

use std::io::{self, Write};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures_util::TryStreamExt;
use oneseal_core::b64;

use crate::body::JsonBody;
use crate::config::MAX_MEDIA_BYTES;
use crate::error::ApiError;
use crate::upstream::{pass_through, Pinned};
use crate::Shared;

/// `POST /v1/message`: a plain One API request (One API only: a legacy member is refused),
/// encrypted per policy, then forwarded.
pub async fn message(
    State(g): State<Arc<Shared>>,
    ConnectInfo(pin): ConnectInfo<Pinned>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    forward_json(&g.one_api, &g, &pin, "/v1/message", &headers, &body.bytes).await
}

/// `POST /wa/messages`: the same for the legacy API (legacy only).
pub async fn legacy_messages(
    State(g): State<Arc<Shared>>,
    ConnectInfo(pin): ConnectInfo<Pinned>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    forward_json(&g.legacy, &g, &pin, "/wa/messages", &headers, &body.bytes).await
}

async fn forward_json(
    engine: &oneseal_core::Engine,
    g: &Shared,
    pin: &Pinned,
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
/// `sha256FileHash` added. Over 30 MB → 413 before any key-service call.
pub async fn media_upload(
    State(g): State<Arc<Shared>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the One API accepts uploads of at most 30 MB",
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
        .map_err(|e| key_error(&e))?;
    key.record_seals(1);
    let suite = g.engine.options().suite;
    let tmp = g.spool.temp_file().map_err(|e| spool_error(&e))?;
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
            (_, Err(e)) => Err(spool_error(&e)),
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
    let size = tmp.as_file().metadata().map_err(|e| spool_error(&e))?.len();
    let length = [(header::CONTENT_LENGTH, HeaderValue::from(size))];
    let r = g
        .upstream
        .send(Method::POST, &path, &headers, &length, &|| {
            let f = std::fs::File::open(&file_path).map_err(|e| spool_error(&e))?;
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
    State(g): State<Arc<Shared>>,
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
    download_verified(&g, &path, &headers, &blob, expected).await
}

/// Fetches `path` from the configured upstream (with the `Authorization` in `headers`),
/// decrypts it with the data key `blob` and verifies tag and SHA-256 into a spool file,
/// then streams the plaintext. Any mismatch → 502 and not one plaintext byte.
pub(crate) async fn download_verified(
    g: &Shared,
    path: &str,
    headers: &HeaderMap,
    blob: &[u8],
    expected: Option<[u8; 32]>,
) -> Result<Response, ApiError> {
    let r = g
        .upstream
        .send(Method::GET, path, headers, &[], &|| Ok(Body::empty()))
        .await?;
    if !r.status().is_success() {
        return Ok(pass_through(r));
    }
    let content_type = r.headers().get(header::CONTENT_TYPE).cloned();
    // The encrypted file, whole, into the spool (bounded memory; a size cap against a
    // misbehaving upstream).
    let enc = g.spool.temp_file().map_err(|e| spool_error(&e))?;
    let mut file = tokio::fs::File::from_std(enc.reopen().map_err(|e| spool_error(&e))?);
    let mut body = r.into_body();
    let mut total = 0u64;
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| upstream_broke())?;
        if let Some(data) = frame.data_ref() {
            total += data.len() as u64;
            if total > 2 * MAX_MEDIA_BYTES {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_failed",
                    "the platform sent a file larger than any upload it accepts",
                ));
            }
            tokio::io::AsyncWriteExt::write_all(&mut file, data)
                .await
                .map_err(|e| spool_error(&e))?;
        }
    }
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(|e| spool_error(&e))?;
    drop(file);
    let key = g
        .engine
        .cache()
        .opening_key(blob)
        .await
        .map_err(|e| match e {
            // A passing key-service failure: retry later. A key the service refuses for good
            // (a foreign or forged link) is the link's fault, answered as a failed download:
            // neither changes readiness, which follows the encrypt side only.
            e if !e.is_permanent() => key_error(&e),
            _ => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "media_verification_failed",
                "the download link's encryptionKey could not be unwrapped; no plaintext was released",
            ),
        })?;
    let suite = g.engine.options().decrypt_suite;
    let scratch = g.spool.tmp();
    let (plain, _outcome) = tokio::task::spawn_blocking(move || {
        let r = oneseal_media::decrypt_file_verified(
            key.key(),
            suite,
            enc.path(),
            &scratch,
            expected,
            &|_| {},
        );
        drop(enc);
        r
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "decryption task failed",
        )
    })?
    .map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "media_verification_failed",
            format!(
                "the downloaded file did not verify ({}); no plaintext was released",
                e.short()
            ),
        )
    })?;
    let stream = tokio_util::io::ReaderStream::with_capacity(
        tokio::fs::File::from_std(plain),
        oneseal_media::CHUNK,
    );
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    Ok(resp)
}

fn upstream_broke() -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_failed",
        "the platform's answer broke off",
    )
}

pub(crate) fn key_error(e: &oneseal_core::KeyError) -> ApiError {
    ApiError::not_sent(e.class(), e, "key_provider_failed")
}

pub(crate) fn spool_error(e: &io::Error) -> ApiError {
    tracing::error!(error = %e, "spool directory failure");
    ApiError::unavailable(
        "spool_unavailable",
        "the gateway cannot write its spool directory",
        5,
    )
}
