//! The HTTP client to the platform (hyper over rustls): a shared pool (hyper-util's), and for
//! the app's busy routes a connection of each app connection's own ([`Pinned`]). Connections
//! idle out after 20 s, below common server keep-alives (60 s and more), so a connection the
//! far end has closed is not picked for a request. A request is retried only when it provably
//! never left: a connect failure, or a connection hyper reports closed before it wrote the
//! request.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::ApiError;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// How long a connection may sit unused before it is not used again.
const IDLE: Duration = Duration::from_secs(20);

/// How every outgoing connection is made (rustls, native roots, HTTP/1, TCP_NODELAY).
fn https_connector() -> Result<Https, std::io::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.set_nodelay(true);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The pooled HTTP(S) client every outgoing call uses but the pinned ones.
pub fn https_client() -> Result<Client<Https, Body>, std::io::Error> {
    Ok(pool(https_connector()?))
}

fn pool(connector: Https) -> Client<Https, Body> {
    // No cap on idle connections per host: under 1500 concurrent requests a cap makes the
    // pool close and reopen connections on every request (measured: a cap of 256 cost
    // throughput); idle ones go after 20 s anyway.
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE)
        .build(connector)
}

/// An app connection's own connection to the platform, for the message routes.
///
/// Why not the pool for everything: each request through hyper-util's pool checks a
/// connection out and back in and goes through the pool's dispatch; measured on this
/// machine, a bare axum proxy makes ~31 000 requests/s through the pool and ~43 000 with
/// each client connection pinned to one upstream connection (same load, 1500 connections).
/// An HTTP/1 app connection sends one request at a time, so its upstream connection is never
/// shared, and it closes when the app's connection closes. The first request of an app
/// connection still goes through the pool: a client that sends one request per connection
/// opens no connection (and TLS session) of its own upstream.
///
/// Made per accepted app connection by the server loop and found by handlers as an
/// `Extension<Pinned>`.
#[derive(Clone, Default)]
pub struct Pinned(Arc<PinnedState>);

#[derive(Default)]
struct PinnedState {
    /// Whether the app connection has sent a request before.
    seen: AtomicBool,
    /// The upstream connection and when it was last used; taken out while a request uses it.
    conn: Mutex<Option<(Own, Instant)>>,
}

/// hyper's connection driver: it reads and writes the socket when polled, and resolves when
/// the connection is over.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// A connection of a [`Pinned`]'s own: the request handle and its driver, which the request
/// using it polls (no task of its own: no hand-off to another task, or another thread, and
/// back for each request).
struct Own {
    send: SendRequest<Body>,
    driver: Driver,
}

impl Pinned {
    fn take(&self) -> Option<Own> {
        // A poisoned lock only means a panic elsewhere while holding it; the slot is still
        // a valid Option.
        let mut slot = self.0.conn.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some((c, used)) if used.elapsed() < IDLE => Some(c),
            _ => None,
        }
    }

    fn put(&self, c: Own) {
        let mut slot = self.0.conn.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some((c, Instant::now()));
    }
}

impl Own {
    /// Whether the platform closed the connection while it sat unused: its driver, polled
    /// now, reads the end of the stream and finishes.
    async fn closed(&mut self) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(self.driver.as_mut().poll(cx).is_ready())).await
    }
}

/// Runs `exchange` (which uses the connection's `SendRequest`) while polling its `driver`,
/// until `exchange` is done. A driver that finishes (the connection ended) is not polled
/// again; `exchange` then sees the connection closed. Returns whether the connection is
/// still usable.
async fn drive<T>(driver: &mut Driver, exchange: impl Future<Output = T>) -> (T, bool) {
    let mut exchange = pin!(exchange);
    let mut open = true;
    let out = std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = exchange.as_mut().poll(cx) {
            return Poll::Ready(v);
        }
        if open && driver.as_mut().poll(cx).is_ready() {
            open = false;
            // Ended: the exchange's side of the connection is closed now.
            return exchange.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await;
    (out, open)
}

/// The client and where it may go.
#[derive(Clone)]
pub struct Upstream {
    client: Client<Https, Body>,
    connector: Https,
    base: Uri,
    timeout: Duration,
    /// Who answers there, as errors and logs name it ("the platform", "the app").
    peer: &'static str,
}

/// Why a request to an upstream got no answer. The routes turn it into their HTTP answer once
/// (`From<UpstreamError> for ApiError`); the relay's sinks into a retry reason.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The caller's path, query or headers cannot make a request.
    #[error("bad request {0}")]
    BadRequest(&'static str),
    /// The body could not be made (a spooled file); already an answer of ours.
    #[error("{}", .0.message)]
    Body(ApiError),
    /// Nothing was sent: no connection could be made.
    #[error("could not connect to {peer}")]
    Connect { peer: &'static str },
    /// The connection closed before an answer came.
    #[error("{peer} closed the connection before answering")]
    Dropped { peer: &'static str },
    /// No answer in time.
    #[error("{peer} did not answer within {secs} s")]
    Timeout { peer: &'static str, secs: u64 },
}

impl UpstreamError {
    /// Whether the time limit ran out (Flows answers those with its own status).
    pub fn is_timeout(&self) -> bool {
        matches!(self, UpstreamError::Timeout { .. })
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> ApiError {
        let message = e.to_string();
        match e {
            UpstreamError::BadRequest(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
            }
            UpstreamError::Body(e) => e,
            UpstreamError::Connect { .. } | UpstreamError::Dropped { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "upstream_failed", message)
            }
            UpstreamError::Timeout { .. } => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", message)
            }
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .finish()
    }
}

/// `req` with the caller's headers that are passed on upstream: `Authorization`,
/// `Content-Type` and `Accept`; everything else stays here.
fn passed_on(
    mut req: axum::http::request::Builder,
    headers: &HeaderMap,
) -> axum::http::request::Builder {
    for h in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = headers.get(&h) {
            req = req.header(h, v);
        }
    }
    req
}

impl Upstream {
    /// A client for the platform at `base` (scheme and authority only).
    pub fn new(base: Uri, timeout: Duration) -> Result<Upstream, std::io::Error> {
        Upstream::with_peer(base, timeout, "the platform")
    }

    fn with_peer(
        base: Uri,
        timeout: Duration,
        peer: &'static str,
    ) -> Result<Upstream, std::io::Error> {
        let connector = https_connector()?;
        Ok(Upstream {
            client: pool(connector.clone()),
            connector,
            base,
            timeout,
            peer,
        })
    }

    /// A client for the host of any URL (the app's callback handler, CleverTap's receivers),
    /// which errors call `peer`; same pool settings.
    pub fn for_url(
        url: &Uri,
        timeout: Duration,
        peer: &'static str,
    ) -> Result<Upstream, std::io::Error> {
        let base = Uri::builder()
            .scheme(url.scheme_str().unwrap_or("http"))
            .authority(url.authority().map(|a| a.as_str()).unwrap_or(""))
            .path_and_query("/")
            .build()
            .map_err(std::io::Error::other)?;
        Upstream::with_peer(base, timeout, peer)
    }

    /// POSTs JSON to `url`'s path on this client's host (the app's handlers, CleverTap's
    /// receivers): no caller headers are passed on.
    pub async fn post_json(
        &self,
        url: &Uri,
        body: Bytes,
        extra: &[(header::HeaderName, HeaderValue)],
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let path = url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        self.send(Method::POST, path, &h, extra, &|| {
            Ok(Body::from(body.clone()))
        })
        .await
    }

    /// `path_and_query` on the configured upstream: never another host.
    fn url(&self, path_and_query: &str) -> Result<Uri, UpstreamError> {
        let bad = |_| UpstreamError::BadRequest("path or query");
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = Some(path_and_query.parse().map_err(bad)?);
        Uri::from_parts(parts).map_err(|_| UpstreamError::BadRequest("path or query"))
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
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let url = self.url(path_and_query)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = passed_on(
                Request::builder().method(method.clone()).uri(url.clone()),
                headers,
            );
            for (k, v) in extra {
                req = req.header(k, v);
            }
            let req = req
                .body(body().map_err(UpstreamError::Body)?)
                .map_err(|_| UpstreamError::BadRequest("headers"))?;
            let res = tokio::time::timeout(self.timeout, self.client.request(req)).await;
            match res {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) if e.is_connect() && attempt < 2 => {
                    tracing::warn!(error = %e, "upstream connect failed; retrying once (nothing was sent)");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, connect = e.is_connect(), "upstream request failed");
                    return Err(self.failed(e.is_connect()));
                }
                Err(_) => return Err(self.timed_out()),
            }
        }
    }

    /// [`Upstream::send`] of a POST with `body`.
    async fn post(
        &self,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        self.send(Method::POST, path_and_query, headers, &[], &|| {
            Ok(Body::from(body.clone()))
        })
        .await
    }

    fn timed_out(&self) -> UpstreamError {
        UpstreamError::Timeout {
            peer: self.peer,
            secs: self.timeout.as_secs(),
        }
    }

    /// No answer: nothing was sent (`connect`), or the connection dropped.
    fn failed(&self, connect: bool) -> UpstreamError {
        let peer = self.peer;
        if connect {
            UpstreamError::Connect { peer }
        } else {
            UpstreamError::Dropped { peer }
        }
    }

    /// A new connection of a [`Pinned`]'s own to the platform; it lasts as long as the app
    /// connection (or until the platform closes it).
    async fn connect(&self) -> Result<Own, Box<dyn std::error::Error + Send + Sync>> {
        use tower_service::Service;
        let mut c = self.connector.clone();
        std::future::poll_fn(|cx| c.poll_ready(cx)).await?;
        let io = c.call(self.base.clone()).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
        Ok(Own {
            send,
            driver: Box::pin(conn),
        })
    }

    /// [`Upstream::send`] for a JSON body, on `pin`'s own connection to the platform (made
    /// on the app connection's second request, remade when the platform closed it or it sat
    /// idle). Anything that goes wrong before the request could have left falls back to the
    /// pool, which applies its own retry rule; after that, the same answers as `send`. The
    /// request drives the connection until the answer's head, the answer's body (an
    /// [`Answer`]) until its end, which gives the connection back to `pin`.
    /// Without a `pin` (a request that did not come through the app listener) the pool.
    pub async fn send_pinned(
        &self,
        pin: Option<&Pinned>,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, UpstreamError> {
        let pooled = || async {
            self.post(path_and_query, headers, &body)
                .await
                .map(|r| r.map(Body::new))
        };
        let Some(pin) = pin else {
            return pooled().await;
        };
        if !pin.0.seen.swap(true, Ordering::Relaxed) {
            return pooled().await;
        }
        let kept = match pin.take() {
            Some(mut c) => (!c.closed().await).then_some(c),
            None => None,
        };
        let mut own = match kept {
            Some(c) => c,
            None => match tokio::time::timeout(self.timeout, self.connect()).await {
                Ok(Ok(c)) => c,
                _ => return pooled().await,
            },
        };
        let authority = self.base.authority().map(|a| a.as_str()).unwrap_or("");
        let req = Request::builder()
            .method(Method::POST)
            .uri(path_and_query)
            .header(header::HOST, authority);
        let req = passed_on(req, headers)
            .body(Body::from(body.clone()))
            .map_err(|_| UpstreamError::BadRequest("path or headers"))?;
        let Own { send, driver } = &mut own;
        let exchange = async {
            if send.ready().await.is_err() {
                return Exchange::NotSent;
            }
            let r = match send.try_send_request(req).await {
                Ok(r) => r,
                Err(mut e) => {
                    // hyper gave the request back: it was never written.
                    if e.take_message().is_some() {
                        return Exchange::NotSent;
                    }
                    return Exchange::Failed(e.into_error());
                }
            };
            Exchange::Answer(r)
        };
        let sent = tokio::time::timeout(self.timeout, drive(driver, exchange)).await;
        match sent {
            Ok((Exchange::NotSent, _)) => pooled().await,
            Ok((Exchange::Answer(r), open)) => {
                let conn = open.then(|| (own, pin.clone()));
                Ok(r.map(|body| Body::new(Answer { body, conn })))
            }
            Ok((Exchange::Failed(e), _)) => {
                tracing::warn!(error = %e, "upstream request failed");
                Err(self.failed(false))
            }
            Err(_) => Err(self.timed_out()),
        }
    }
}

/// How a request on a pinned connection went.
enum Exchange {
    /// Nothing was written: the pool may send it.
    NotSent,
    /// The answer's head.
    Answer(Response<Incoming>),
    /// Written, then no answer.
    Failed(hyper::Error),
}

/// The body of an answer on a pinned connection. Reading it drives the connection (no other
/// task does); at its end the connection goes back to its [`Pinned`] for the app
/// connection's next request. Dropped before its end (the app went away), it closes the
/// connection, which is then in an unknown state.
struct Answer {
    body: Incoming,
    /// `None` once the connection ended or went back.
    conn: Option<(Own, Pinned)>,
}

impl Answer {
    fn give_back(&mut self) {
        if let Some((own, pin)) = self.conn.take() {
            pin.put(own);
        }
    }
}

impl Drop for Answer {
    /// An answer whose end was read but never polled for (an empty body, or a last frame the
    /// server saw was the last) still gives its connection back.
    fn drop(&mut self) {
        if axum::body::HttpBody::is_end_stream(&self.body) {
            self.give_back();
        }
    }
}

impl axum::body::HttpBody for Answer {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(None) => {
                    this.give_back();
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if this.body.is_end_stream() {
                        this.give_back();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Pending => {
                    let Some((own, _)) = &mut this.conn else {
                        return Poll::Pending;
                    };
                    if own.driver.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // The connection ended: the body has its end or its error now.
                    this.conn = None;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The upstream's answer as ours: same status, same body, its content type.
pub fn pass_through<B>(r: Response<B>) -> axum::response::Response
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
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
