//! The pooled HTTP client to the platform (hyper-util over rustls). Pooled connections idle
//! out after 20 s, below common server keep-alives (60 s and more), so a connection the far
//! end has closed is not picked for a request. A request is retried only when it provably
//! never left: a connect failure.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::ApiError;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The pooled HTTP(S) client every outgoing call uses (rustls, native roots, HTTP/1).
pub fn https_client() -> Result<Client<Https, Body>, std::io::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    // No cap on idle connections per host: under 1500 concurrent requests a cap makes the
    // pool close and reopen connections on every request (measured: a cap of 256 cost
    // throughput); idle ones go after 20 s anyway.
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(20))
        .build(https))
}

/// The client and where it may go.
#[derive(Clone)]
pub struct Upstream {
    client: Client<Https, Body>,
    base: Uri,
    timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .finish()
    }
}

/// Headers of the caller's request passed on upstream; everything else stays here.
const PASSED_ON: [header::HeaderName; 3] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];

impl Upstream {
    /// A client for `base` (scheme and authority only).
    pub fn new(base: Uri, timeout: Duration) -> Result<Upstream, std::io::Error> {
        Ok(Upstream {
            client: https_client()?,
            base,
            timeout,
        })
    }

    /// A client for any URL (the app's callback handler); same pool settings.
    pub fn for_url(url: &Uri, timeout: Duration) -> Result<Upstream, std::io::Error> {
        let base = Uri::builder()
            .scheme(url.scheme_str().unwrap_or("http"))
            .authority(url.authority().map(|a| a.as_str()).unwrap_or(""))
            .path_and_query("/")
            .build()
            .map_err(std::io::Error::other)?;
        Upstream::new(base, timeout)
    }

    /// POSTs JSON to `url`'s path on this client's host (the app's handlers, CleverTap's
    /// receivers): no caller headers are passed on.
    pub async fn post_json(
        &self,
        url: &Uri,
        body: Bytes,
    ) -> Result<Response<hyper::body::Incoming>, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let path = url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        self.send(Method::POST, path, &h, &[], &|| {
            Ok(Body::from(body.clone()))
        })
        .await
    }

    /// `path_and_query` on the configured upstream: never another host.
    fn url(&self, path_and_query: &str) -> Result<Uri, ApiError> {
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = Some(path_and_query.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "bad request path or query",
            )
        })?);
        Uri::from_parts(parts).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "bad request path or query",
            )
        })
    }

    /// Sends a request with a body made by `body` (called again for the one retry after a
    /// connect failure), passing on the caller's `Authorization`, `Content-Type` and
    /// `Accept`. Connect failure → 502, timeout → 504.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        extra: &[(header::HeaderName, HeaderValue)],
        body: &(dyn Fn() -> Result<Body, ApiError> + Sync),
    ) -> Result<Response<hyper::body::Incoming>, ApiError> {
        let url = self.url(path_and_query)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = Request::builder().method(method.clone()).uri(url.clone());
            for h in PASSED_ON.iter() {
                if let Some(v) = headers.get(h) {
                    req = req.header(h, v);
                }
            }
            for (k, v) in extra {
                req = req.header(k, v);
            }
            let req = req.body(body()?).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "bad request headers",
                )
            })?;
            let res = tokio::time::timeout(self.timeout, self.client.request(req)).await;
            match res {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) if e.is_connect() && attempt < 2 => {
                    tracing::warn!(error = %e, "upstream connect failed; retrying once (nothing was sent)");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, connect = e.is_connect(), "upstream request failed");
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_failed",
                        if e.is_connect() {
                            "could not connect to the platform"
                        } else {
                            "the platform closed the connection before answering"
                        },
                    ));
                }
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream_timeout",
                        format!(
                            "the platform did not answer within {} s",
                            self.timeout.as_secs()
                        ),
                    ))
                }
            }
        }
    }
}

/// The upstream's answer as ours: same status, same body, its content type.
pub fn pass_through(r: Response<hyper::body::Incoming>) -> axum::response::Response {
    let (parts, body) = r.into_parts();
    let mut out = axum::response::Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    for h in [header::CONTENT_TYPE, header::RETRY_AFTER, header::LOCATION] {
        if let Some(v) = parts.headers.get(&h) {
            out.headers_mut().insert(h, v.clone());
        }
    }
    out
}
