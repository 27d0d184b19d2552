//! What the app side, the CleverTap bridge and the relay share: the document engine, the
//! client to the platform, and the spool's scratch space.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use oneseal_core::Engine;

use crate::config::MAX_MEDIA_BYTES;
use crate::error::ApiError;
use crate::spool::Spool;
use crate::upstream::{pass_through, Upstream};

/// The engine, the platform client and the spool.
pub struct Platform {
    pub engine: Engine,
    pub upstream: Upstream,
    pub spool: Spool,
}

fn upstream_broke() -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_failed",
        "the platform's answer broke off",
    )
}

impl Platform {
    /// Fetches `path` from the configured upstream (with the `Authorization` in `headers`),
    /// decrypts it with the data key `blob` and verifies tag and SHA-256 into a spool file,
    /// then streams the plaintext. Any mismatch → 502 and not one plaintext byte.
    pub async fn download_verified(
        &self,
        path: &str,
        headers: &HeaderMap,
        blob: &[u8],
        expected: Option<[u8; 32]>,
    ) -> Result<Response, ApiError> {
        let r = self
            .upstream
            .send(Method::GET, path, headers, &[], &|| Ok(Body::empty()))
            .await?;
        if !r.status().is_success() {
            return Ok(pass_through(r));
        }
        let content_type = r.headers().get(header::CONTENT_TYPE).cloned();
        // The encrypted file, whole, into the spool (bounded memory; a size cap against a
        // misbehaving upstream).
        let enc = self.spool.temp_file().map_err(|e| ApiError::spool(&e))?;
        let mut file = tokio::fs::File::from_std(enc.reopen().map_err(|e| ApiError::spool(&e))?);
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
                    .map_err(|e| ApiError::spool(&e))?;
            }
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(|e| ApiError::spool(&e))?;
        drop(file);
        let key = self
            .engine
            .cache()
            .opening_key(blob)
            .await
            .map_err(|e| match e {
                // A passing key-service failure: retry later. A key the service refuses for good
                // (a foreign or forged link) is the link's fault, answered as a failed download:
                // neither changes readiness, which follows the encrypt side only.
                e if !e.is_permanent() => ApiError::key(&e),
                _ => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "media_verification_failed",
                    "the download link's encryptionKey could not be unwrapped; no plaintext was released",
                ),
            })?;
        let suite = self.engine.options().decrypt_suite;
        let scratch = self.spool.tmp();
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
}
