//! Campaign media for the bridge: a `mediaURL` is fetched (only from `media_hosts`; no
//! redirects followed) and encrypted **once per URL** — concurrent sends wait for the one
//! fetch (single flight) and share the encrypted bytes, its data key and its hash. Template
//! headers are then uploaded per recipient (`to=`, reference 001 forbids broadcast uploads in
//! media templates); freeform media is uploaded once per URL with `broadcastAllowed=true`
//! and its `fileId` reused until shortly before the platform's 30-day expiry.
//!
//! Incoming media goes the other way through signed links: [`sign_link`] puts what the
//! download needs (the platform's download path, the item's wrapped key, the file's hash, a
//! deadline) into a URL on the public side, MACed with `media_link_secret`; [`open_link`]
//! checks the MAC in constant time and the deadline before anything is fetched.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::OnceCell;

use super::translate::{MediaKind, MediaRef, Refusal};
use super::Bridge;
use crate::config::{CleverTapConfig, MAX_MEDIA_BYTES};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// An encrypted media file, ready to upload any number of times.
#[derive(Debug)]
pub struct Prepared {
    pub bytes: Bytes,
    pub blob_b64: Arc<str>,
    pub kms_arn: String,
    pub sha256_hex: String,
    pub content_type: String,
    pub file_name: String,
}

struct Slot<T> {
    born: Instant,
    cell: Arc<OnceCell<Result<T, Refusal>>>,
}

/// Encrypted files kept for reuse by later sends of a campaign.
const PREPARED_TTL: Duration = Duration::from_secs(3600);
/// At most this many encrypted files, and at most [`PREPARED_BYTES`] of them, in memory.
const PREPARED_MAX: usize = 64;
const PREPARED_BYTES: usize = 256 * 1024 * 1024;
/// Broadcast uploads live 30 days on the platform; stop reusing a `fileId` a day early.
const BROADCAST_TTL: Duration = Duration::from_secs(29 * 86_400);
const BROADCAST_MAX: usize = 10_000;
/// A failed fetch or upload is remembered briefly, so 1500 concurrent sends of a campaign
/// with a broken URL cost one fetch, not 1500.
const FAILURE_TTL: Duration = Duration::from_secs(10);

/// The per-URL caches and the client that fetches from media hosts.
pub struct MediaCache {
    client: Client<Https, Body>,
    prepared: Mutex<HashMap<String, Slot<Arc<Prepared>>>>,
    broadcast: Mutex<HashMap<String, Slot<String>>>,
}

impl MediaCache {
    pub fn new() -> Result<MediaCache, std::io::Error> {
        Ok(MediaCache {
            client: crate::upstream::https_client()?,
            prepared: Mutex::new(HashMap::new()),
            broadcast: Mutex::new(HashMap::new()),
        })
    }
}

/// The cell for `key`: the live one (being made, made and fresh, or failed recently), or
/// a new one. Expired entries and the oldest beyond `max` are dropped on the way.
fn slot<T: Clone>(
    map: &Mutex<HashMap<String, Slot<T>>>,
    key: &str,
    ttl: Duration,
    max: usize,
    weight: impl Fn(&T) -> usize,
    max_weight: usize,
) -> Arc<OnceCell<Result<T, Refusal>>> {
    // A poisoned lock only means another request panicked mid-update; the map is still a
    // valid cache (entries are inserted whole).
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    let live = |s: &Slot<T>| match s.cell.get() {
        None => true,
        Some(Ok(_)) => s.born.elapsed() < ttl,
        Some(Err(_)) => s.born.elapsed() < FAILURE_TTL,
    };
    if let Some(s) = m.get(key) {
        if live(s) {
            return s.cell.clone();
        }
    }
    m.retain(|_, s| live(s));
    let cell = Arc::new(OnceCell::new());
    m.insert(
        key.to_string(),
        Slot {
            born: Instant::now(),
            cell: cell.clone(),
        },
    );
    loop {
        let total: usize = m
            .values()
            .filter_map(|s| s.cell.get().and_then(|r| r.as_ref().ok()).map(&weight))
            .sum();
        if m.len() <= max && total <= max_weight {
            break;
        }
        let oldest = m
            .iter()
            .filter(|(_, s)| s.cell.initialized())
            .min_by_key(|(_, s)| s.born)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => {
                m.remove(&k);
            }
            None => break,
        }
    }
    cell
}

async fn once<T: Clone>(
    cell: Arc<OnceCell<Result<T, Refusal>>>,
    make: impl Future<Output = Result<T, Refusal>>,
) -> Result<T, Refusal> {
    cell.get_or_init(|| make).await.clone()
}

/// `https://` is assumed for a `mediaURL` without a scheme (reference 003's samples have
/// some); only `media_hosts` may be fetched.
pub fn allowed_url(cfg: &CleverTapConfig, url: &str) -> Result<Uri, Refusal> {
    let full = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let uri: Uri = full
        .parse()
        .map_err(|_| Refusal::Template(format!("mediaURL {url:?} is not a URL")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(Refusal::Template(format!(
            "mediaURL {url:?}: only http and https media can be fetched"
        )));
    }
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    let ok = match uri.port_u16() {
        Some(p) => cfg.media_hosts.contains(&format!("{host}:{p}")),
        None => cfg.media_hosts.contains(&host),
    };
    if !ok {
        return Err(Refusal::Template(format!(
            "mediaURL host {:?} is not in gateway.clevertap.media_hosts; nothing was fetched",
            uri.authority().map(|a| a.as_str()).unwrap_or("")
        )));
    }
    Ok(uri)
}

/// The encrypted file for `media`, fetched and encrypted once per URL.
pub async fn prepared(b: &Bridge, media: &MediaRef) -> Result<Arc<Prepared>, Refusal> {
    let uri = allowed_url(&b.cfg, &media.url)?;
    let cell = slot(
        &b.media.prepared,
        &media.url,
        PREPARED_TTL,
        PREPARED_MAX,
        |p: &Arc<Prepared>| p.bytes.len(),
        PREPARED_BYTES,
    );
    once(cell, fetch_and_encrypt(b, uri, media)).await
}

async fn fetch_and_encrypt(
    b: &Bridge,
    uri: Uri,
    media: &MediaRef,
) -> Result<Arc<Prepared>, Refusal> {
    let fail = |what: String| {
        metrics::counter!("oneseal_clevertap_media_fetches_total", "outcome" => "failed")
            .increment(1);
        tracing::warn!(host = uri.host().unwrap_or(""), reason = %what, "media fetch failed");
        Refusal::Template(format!("mediaURL could not be fetched: {what}"))
    };
    let req = Request::builder()
        .method(Method::GET)
        .uri(uri.clone())
        .header(header::USER_AGENT, "oneseal-gateway")
        .body(Body::empty())
        .map_err(|_| fail("bad URL".into()))?;
    let res = tokio::time::timeout(b.cfg.media_fetch_timeout, async {
        let res = b
            .media
            .client
            .request(req)
            .await
            .map_err(|e| fail(format!("{e}")))?;
        if res.status() != StatusCode::OK {
            // Redirects are not followed: a redirect could lead off the allowed hosts.
            return Err(fail(format!("the host answered {}", res.status())));
        }
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .filter(|v| !v.is_empty());
        let body = http_body_util::Limited::new(res.into_body(), MAX_MEDIA_BYTES as usize)
            .collect()
            .await
            .map_err(|_| {
                fail("larger than the platform's 30 MB upload limit, or broke off".into())
            })?
            .to_bytes();
        Ok((content_type, body))
    })
    .await
    .map_err(|_| {
        fail(format!(
            "no answer within {} s (gateway.clevertap.media_fetch_timeout_seconds)",
            b.cfg.media_fetch_timeout.as_secs()
        ))
    })??;
    let (content_type, plain) = res;
    metrics::counter!("oneseal_clevertap_media_fetches_total", "outcome" => "ok").increment(1);
    let key = b
        .platform
        .engine
        .cache()
        .sealing_key()
        .await
        .map_err(|e| Refusal::Other(format!("{e}; nothing was sent")))?;
    key.record_seals(1);
    let suite = b.platform.engine.options().suite;
    let key2 = key.clone();
    let (sealed, sha256) = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(plain.len() + 64);
        oneseal_media::encrypt_stream(key2.key(), suite, &plain[..], &mut out, &|_| {})
            .map(|(_, _, sha)| (out, sha))
    })
    .await
    .map_err(|_| Refusal::Other("encryption task failed".into()))?
    .map_err(|e| Refusal::Other(format!("{e}; nothing was sent")))?;
    let file_name = media
        .filename
        .clone()
        .or_else(|| {
            uri.path()
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "media".into());
    Ok(Arc::new(Prepared {
        bytes: Bytes::from(sealed),
        blob_b64: key.blob_b64().clone(),
        kms_arn: key.key_arn().unwrap_or_default().to_string(),
        sha256_hex: hex::encode(sha256),
        content_type: content_type.unwrap_or_else(|| default_type(media.kind).into()),
        file_name,
    }))
}

fn default_type(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "image/jpeg",
        MediaKind::Video => "video/mp4",
        MediaKind::Audio => "audio/mpeg",
        MediaKind::File => "application/pdf",
    }
}

/// Uploads `p` for `to` (template headers) or for broadcast (`to = None`); returns the
/// `fileId`.
pub async fn upload(b: &Bridge, p: &Prepared, to: Option<&str>) -> Result<String, Refusal> {
    let query = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("fileName", &p.file_name);
        match to {
            Some(to) => q.append_pair("to", to),
            None => q.append_pair("broadcastAllowed", "true"),
        };
        q.append_pair("encryptionKey", &p.blob_b64);
        q.append_pair("kmsArn", &p.kms_arn);
        q.append_pair("sha256FileHash", &p.sha256_hex);
        q.finish()
    };
    let path = format!("/v1/media?{query}");
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, b.api_key_header.clone());
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&p.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    let len = [(header::CONTENT_LENGTH, HeaderValue::from(p.bytes.len()))];
    let bytes = p.bytes.clone();
    let res = b
        .platform
        .upstream
        .send(Method::POST, &path, &h, &len, &|| {
            Ok(Body::from(bytes.clone()))
        })
        .await
        .map_err(|e| Refusal::Other(format!("media upload: {e}")))?;
    let kind = if to.is_some() {
        "recipient"
    } else {
        "broadcast"
    };
    let status = res.status();
    let body = http_body_util::Limited::new(res.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(Refusal::Credentials(format!(
            "the platform rejected the One API key ({status}) on the media upload"
        )));
    }
    let file_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .filter(|_| status.is_success())
        .and_then(|v| v.get("fileId").and_then(|f| f.as_str()).map(str::to_string))
        .filter(|f| !f.is_empty());
    match file_id {
        Some(f) => {
            metrics::counter!("oneseal_clevertap_media_uploads_total", "kind" => kind).increment(1);
            Ok(f)
        }
        None => Err(Refusal::Other(format!(
            "the platform did not accept the media upload ({status})"
        ))),
    }
}

/// The broadcast `fileId` for a freeform `mediaURL`: fetched, encrypted and uploaded once,
/// reused for 29 days.
pub async fn broadcast_file(b: &Bridge, media: &MediaRef) -> Result<String, Refusal> {
    allowed_url(&b.cfg, &media.url)?;
    let cell = slot(
        &b.media.broadcast,
        &media.url,
        BROADCAST_TTL,
        BROADCAST_MAX,
        |_| 0,
        usize::MAX,
    );
    once(cell, async {
        let p = prepared(b, media).await?;
        upload(b, &p, None).await
    })
    .await
}

/// What a signed media link carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Path and query of the platform's `downloadUrl` (always fetched from `upstream`).
    pub u: String,
    /// The item's wrapped data key (base64), as the callback carried it.
    pub k: String,
    /// The file's SHA-256 (hex), when the callback had it.
    pub h: Option<String>,
    /// Unix seconds after which the link is refused.
    pub e: u64,
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `{public_url}{path}/media/<payload>.<mac>`.
pub fn sign_link(cfg: &CleverTapConfig, link: &Link) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(link).unwrap_or_default());
    let mut m = mac(cfg.media_link_secret.0.as_bytes());
    m.update(payload.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{}{}/media/{payload}.{sig}", cfg.public_url, cfg.path)
}

/// A link that will do for `ttl`.
pub fn new_link(u: String, k: String, h: Option<String>, ttl: Duration) -> Link {
    Link {
        u,
        k,
        h,
        e: now_secs() + ttl.as_secs(),
    }
}

/// Why a link is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkError {
    /// Not made by this gateway (or altered).
    Forged,
    /// Past its deadline.
    Expired,
}

/// Checks the MAC (constant time), then the deadline.
pub fn open_link(cfg: &CleverTapConfig, token: &str) -> Result<Link, LinkError> {
    let (payload, sig) = token.split_once('.').ok_or(LinkError::Forged)?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| LinkError::Forged)?;
    let mut m = mac(cfg.media_link_secret.0.as_bytes());
    m.update(payload.as_bytes());
    m.verify_slice(&sig).map_err(|_| LinkError::Forged)?;
    let link: Link = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(LinkError::Forged)?;
    if now_secs() > link.e {
        return Err(LinkError::Expired);
    }
    Ok(link)
}
