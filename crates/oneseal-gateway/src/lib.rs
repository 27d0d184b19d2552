//! # oneseal-gateway
//!
//! The HTTP gateway: an application in any language speaks the **plain** One API
//! to the app side, and everything on the wire to and from the platform is client-side
//! encrypted. Three listeners: **app** (message, legacy and media routes, the decrypting
//! download route), **public** (the platform's callbacks, relayed through a durable spool;
//! the CleverTap bridge; the WhatsApp Flows endpoint; optionally over TLS), **admin**
//! (`/livez`, `/readyz`, `/metrics`).
//!
//! Deny by default: the routes decide the payload family and strict mode refuses members the
//! policy does not know; every public route authenticates (before its body is read); each
//! listener, and each public route, has its own in-flight and body-memory budget, and each
//! listener a connection cap and a header-read timeout, so the public side can never starve
//! the app side. Each listener is a stack of layers around plain handlers: request ids, then
//! per route an access log and one admission guard (shedding, deadline, body budget,
//! metrics). One process keeps one warm key cache, so a fleet of app instances costs one KMS
//! call per 1000 messages.
//!
//! ```
//! use oneseal_gateway::{GatewayConfig, GatewayFile};
//!
//! let file: GatewayFile = toml::from_str(r#"
//!     upstream = "https://platform.clickatell.com"
//!     [callbacks]
//!     forward_to = "http://127.0.0.1:9000/whatsapp/callbacks"
//!     username = "clickatell"
//!     password_env = "ONESEAL_CALLBACK_PASSWORD"
//! "#).unwrap();
//! let env = |var: &str| (var == "ONESEAL_CALLBACK_PASSWORD").then(|| "a-long-random-password".to_string());
//! let cfg = GatewayConfig::from_file(&file, &env).unwrap();
//! assert_eq!(cfg.app_listen.to_string(), "127.0.0.1:8080");
//! assert_eq!(cfg.callbacks.unwrap().path, "/callbacks");
//! // Then: oneseal_gateway::run(cfg, parts, shutdown).await — see `oneseal gateway`.
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
mod auth;
mod body;
mod callbacks;
mod clevertap;
#[allow(missing_docs)]
pub mod config;
mod error;
mod flows;
mod serve;
mod sign;
mod spool;
mod upstream;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use oneseal_core::{
    Api, CacheConfig, DataKey, DecryptSuite, Engine, EngineOptions, ErrorClass, KeyCache, KeyError,
    KeyProvider, Policy, SecretKey, Suite,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use callbacks::rewrite_download_urls;
pub use config::{ConfigError, GatewayConfig, GatewayFile};
pub use error::ApiError;
pub use spool::Spool;

/// How long in-flight work may take to finish after SIGTERM.
pub const DRAIN: Duration = Duration::from_secs(30);

/// What the gateway runs with besides its own config: resolved once by the CLI from flags,
/// environment and the config file.
#[derive(Debug)]
pub struct Parts {
    /// Makes data keys (KMS, or local) and unwraps any blob (a `BlobRouter`).
    pub provider: Arc<dyn KeyProvider>,
    /// The field policy.
    pub policy: Policy,
    /// Suite for new ciphertext.
    pub suite: Suite,
    /// Suite accepted on callbacks and downloads.
    pub decrypt_suite: DecryptSuite,
    /// Key-cache limits.
    pub cache: CacheConfig,
}

/// Errors that stop the gateway from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({which}): {source}")]
    Bind {
        /// Which listener.
        which: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The spool directory is not usable.
    #[error("spool directory {path}: {source}")]
    Spool {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built (no TLS roots).
    #[error("cannot set up the HTTP client: {0}")]
    Client(std::io::Error),
    /// The metrics recorder could not be installed.
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    /// A server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// State shared by every handler.
pub(crate) struct Shared {
    cfg: GatewayConfig,
    engine: Engine,
    /// The engine for `/v1/message` (One API only) and for `/wa/messages` (legacy only).
    one_api: Engine,
    legacy: Engine,
    upstream: upstream::Upstream,
    app: upstream::Upstream,
    spool: Spool,
    /// Names of newly spooled callbacks, for the relay.
    spooled: tokio::sync::mpsc::UnboundedSender<String>,
    key_ok: Arc<AtomicBool>,
    metrics: PrometheusHandle,
    /// The Flows endpoint, when configured.
    flows: Option<flows::Flows>,
    /// The CleverTap bridge, when configured.
    clevertap: Option<clevertap::Bridge>,
}

/// A provider wrapper that counts key-service calls by operation and outcome, and keeps
/// the readiness flag (a probe never calls the key service itself).
#[derive(Debug)]
struct Observed {
    inner: Arc<dyn KeyProvider>,
    ok: Arc<AtomicBool>,
}

impl Observed {
    fn note<T>(&self, op: &'static str, r: &Result<T, KeyError>) {
        let outcome = match r {
            Ok(_) => "ok",
            Err(e) if e.class() == ErrorClass::KeyService => "unavailable",
            Err(_) => "rejected",
        };
        metrics::counter!("oneseal_kms_calls_total", "operation" => op, "outcome" => outcome)
            .increment(1);
    }

    /// Readiness follows GenerateDataKey only: whether this instance can encrypt. A `Decrypt`
    /// failure is about the blob a caller sent (a foreign key, a forged callback), and nothing
    /// a caller sends may take the instance out of rotation.
    fn ready(&self, r: &Result<DataKey, KeyError>) {
        self.ok.store(r.is_ok(), Ordering::Relaxed);
    }
}

#[async_trait]
impl KeyProvider for Observed {
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        let r = self.inner.generate_data_key().await;
        self.note("GenerateDataKey", &r);
        self.ready(&r);
        r
    }
    async fn decrypt_data_key(&self, blob: &[u8]) -> Result<Option<SecretKey>, KeyError> {
        let r = self.inner.decrypt_data_key(blob).await;
        self.note("Decrypt", &r);
        r
    }
}

/// Counts and times every request by listener, route and status.
fn record(listener: &'static str, route: String, status: StatusCode, t: Instant) {
    let status = status.as_u16().to_string();
    metrics::counter!("oneseal_gateway_requests_total", "listener" => listener, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("oneseal_gateway_request_duration_seconds", "listener" => listener, "route" => route)
        .record(t.elapsed().as_secs_f64());
}

fn matched_route(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into())
}

/// The admin listener's metrics layer.
async fn observe(listener: &'static str, req: Request, next: Next) -> Response {
    let route = matched_route(&req);
    let t = Instant::now();
    let res = next.run(req).await;
    record(listener, route, res.status(), t);
    res
}

/// The admission of one listener or public route: its own in-flight limit (so a flood on one
/// never sheds another), its deadline, its body budget, and how it answers when shedding
/// (CleverTap's callers expect 429 in their format, everyone else the JSON error).
#[derive(Clone)]
struct Guard {
    sem: Arc<Semaphore>,
    listener: &'static str,
    timeout: Duration,
    budget: body::BodyBudget,
    shed: fn() -> Response,
}

fn shed_json() -> Response {
    ApiError::unavailable(
        "overloaded",
        "the gateway is at its in-flight limit; retry shortly",
        1,
    )
    .into_response()
}

fn shed_clevertap() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(serde_json::json!({"message": "Too many requests to process"})),
    )
        .into_response()
}

impl Guard {
    fn new(
        listener: &'static str,
        in_flight: usize,
        body_memory: usize,
        cfg: &GatewayConfig,
        shed: fn() -> Response,
    ) -> Guard {
        Guard {
            sem: Arc::new(Semaphore::new(in_flight)),
            listener,
            timeout: cfg.request_timeout,
            budget: body::BodyBudget::new(body_memory.max(cfg.max_body_bytes), cfg.max_body_bytes),
            shed,
        }
    }
}

/// Request ids unique across restarts and instances without a random draw per request (a
/// `getrandom` syscall each, 2% of the gateway's CPU under load): one random UUID per
/// process (tower-http's), then a counter.
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> RequestIds {
        use tower_http::request_id::{MakeRequestId, MakeRequestUuid};
        let probe = axum::http::Request::new(());
        let prefix = MakeRequestUuid
            .make_request_id(&probe)
            .and_then(|id| id.header_value().to_str().ok().map(str::to_string))
            .unwrap_or_else(|| format!("{:x}", std::process::id()));
        RequestIds {
            prefix: prefix.into(),
            next: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }
}

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(
        &mut self,
        _: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n:x}", self.prefix);
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// One middleware for what every request of the app and public listeners goes through
/// (one layer, not three: each `from_fn` layer costs a boxed clone of the stack per request,
/// measured at 4-11% of the gateway's throughput each):
/// - shedding: over the listener's (or public route's) in-flight limit a request is answered
///   at once instead of queued;
/// - the per-request deadline (504);
/// - the body budget its JSON body is read within;
/// - request metrics by listener, route and status.
async fn guard(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    let route = matched_route(&req);
    let t = Instant::now();
    let res = match g.sem.try_acquire() {
        Ok(_permit) => {
            req.extensions_mut().insert(g.budget.clone());
            match tokio::time::timeout(g.timeout, next.run(req)).await {
                Ok(r) => r,
                Err(_) => ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "deadline_exceeded",
                    "the request took longer than request_timeout_seconds",
                )
                .into_response(),
            }
        }
        Err(_) => {
            metrics::counter!("oneseal_gateway_shed_total", "listener" => g.listener).increment(1);
            (g.shed)()
        }
    };
    record(g.listener, route, res.status(), t);
    res
}

/// An `x-request-id` a caller sent is kept only when it is short and of a safe charset
/// (letters, digits, `-_.:`), so it can be logged and echoed as it is; otherwise the gateway
/// makes its own.
fn sanitize_request_id(mut req: Request) -> Request {
    let ok = req.headers().get("x-request-id").is_none_or(|v| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= 64
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
    });
    if !ok {
        req.headers_mut().remove("x-request-id");
    }
    req
}

/// Puts the listener-wide layers around a listener's routes: request ids (a caller's kept
/// only when safe to log). Each route has its own admission and access log ([`admitted`]).
fn stack(router: Router) -> Router {
    use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
    router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(RequestIds::new()))
        .layer(axum::middleware::map_request(|req: Request| async move {
            sanitize_request_id(req)
        }))
}

/// A listener's (or public route's) routes behind their admission guard, and the request span
/// and access log around it. Per route, not per listener, so the log names the route template
/// the router matched: never a signed link token or the key-bearing query of a download.
fn admitted(router: Router, guard: Guard) -> Router {
    use tower_http::trace::TraceLayer;
    let listener = guard.listener;
    let router = router.layer(axum::middleware::from_fn_with_state(guard, self::guard));
    // Only when it is written (`-v`, the gateway's default): with the log at `warn` the layer
    // still timed, classified and wrapped every response (measured: 12-17% of throughput).
    if !(tracing::enabled!(target: "oneseal_gateway", tracing::Level::INFO)
        || tracing::enabled!(target: "tower_http::trace::on_response", tracing::Level::INFO))
    {
        return router;
    }
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(move |req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                // Method and route only: never headers (Authorization) or bodies.
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str())
                    .unwrap_or("unmatched");
                tracing::info_span!("request", listener, id, method = %req.method(), route)
            })
            // One access-log line per request: status and latency, in the request's span.
            .on_response(
                tower_http::trace::DefaultOnResponse::new()
                    .level(tracing::Level::INFO)
                    .latency_unit(tower_http::LatencyUnit::Millis),
            ),
    )
}

/// A route that requires basic auth before its handler (and body extractor) runs.
fn authenticated(
    router: Router,
    auth: Option<&config::BasicAuth>,
    deny: fn() -> Response,
) -> Router {
    match auth {
        Some(a) => router.route_layer(axum::middleware::from_fn_with_state(
            auth::Require {
                credentials: Arc::new(auth::Credentials::new(a)),
                deny,
            },
            auth::require,
        )),
        None => router,
    }
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(g): State<Arc<Shared>>) -> Response {
    let spool = g.spool.check_writable().is_ok();
    let keys = g.key_ok.load(Ordering::Relaxed);
    let body = serde_json::json!({"config": "ok", "spool": if spool {"ok"} else {"not writable"},
        "key_provider": if keys {"ok"} else {"failing"}});
    let status = if spool && keys {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics_text(State(g): State<Arc<Shared>>) -> Response {
    let st = g.engine.cache().stats();
    for (side, hit, miss) in [
        ("seal", st.seal_hits, st.seal_misses),
        ("open", st.open_hits, st.open_misses),
    ] {
        metrics::gauge!("oneseal_key_cache_lookups", "side" => side, "result" => "hit")
            .set(hit as f64);
        metrics::gauge!("oneseal_key_cache_lookups", "side" => side, "result" => "miss")
            .set(miss as f64);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        g.metrics.render(),
    )
        .into_response()
}

/// Moves every dead letter back to the spool (`oneseal gateway replay`); a running gateway
/// picks them up within a second, a stopped one at its next start.
pub fn replay(cfg: &GatewayConfig) -> Result<usize, GatewayError> {
    let spool = Spool::open(&cfg.spool_dir).map_err(|source| GatewayError::Spool {
        path: cfg.spool_dir.display().to_string(),
        source,
    })?;
    spool.replay().map_err(|source| GatewayError::Spool {
        path: cfg.spool_dir.display().to_string(),
        source,
    })
}

async fn bind(
    which: &'static str,
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, GatewayError> {
    let err = |source| GatewayError::Bind {
        which,
        addr,
        source,
    };
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    sock.set_reuseaddr(true).map_err(err)?;
    sock.bind(addr).map_err(err)?;
    // A burst of 1500 clients connecting at once must not overflow the accept queue.
    sock.listen(4096).map_err(err)
}

/// Runs the gateway until `shutdown` resolves, then stops accepting, lets in-flight
/// requests and deliveries finish (at most [`DRAIN`]) and returns. Spooled callbacks wait
/// for the next start.
pub async fn run(
    cfg: GatewayConfig,
    parts: Parts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    // Each client and each pooled upstream connection is a file descriptor.
    match rlimit::increase_nofile_limit(65_536) {
        Ok(n) => tracing::debug!(limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| GatewayError::Metrics(e.to_string()))?;
    let spool = Spool::open(&cfg.spool_dir).map_err(|source| GatewayError::Spool {
        path: cfg.spool_dir.display().to_string(),
        source,
    })?;
    let key_ok = Arc::new(AtomicBool::new(false));
    let provider: Arc<dyn KeyProvider> = Arc::new(Observed {
        inner: parts.provider,
        ok: key_ok.clone(),
    });
    let cache = Arc::new(KeyCache::new(provider, parts.cache));
    let policy = if cfg.strict {
        parts.policy.strict(cfg.passthrough.clone())
    } else {
        parts.policy
    };
    let engine = Engine::new(
        cache,
        policy,
        EngineOptions {
            suite: parts.suite,
            decrypt_suite: parts.decrypt_suite,
            ..EngineOptions::default()
        },
    );
    let upstream = upstream::Upstream::new(cfg.upstream.clone(), cfg.upstream_timeout)
        .map_err(GatewayError::Client)?;
    let app_client = match &cfg.callbacks {
        Some(c) => upstream::Upstream::for_url(&c.forward_to, cfg.upstream_timeout),
        None => upstream::Upstream::new(cfg.upstream.clone(), cfg.upstream_timeout),
    }
    .map_err(GatewayError::Client)?;
    let flows = match &cfg.flows {
        Some(f) => Some(flows::Flows {
            cfg: f.clone(),
            app: upstream::Upstream::for_url(&f.forward_to, f.response_timeout)
                .map_err(GatewayError::Client)?,
        }),
        None => None,
    };
    let clevertap = match &cfg.clevertap {
        Some(c) => Some(
            clevertap::Bridge::new(c.clone(), cfg.upstream_timeout)
                .map_err(GatewayError::Client)?,
        ),
        None => None,
    };
    let (app_l, pub_l, adm_l) = (
        bind("app_listen", cfg.app_listen).await?,
        bind("public_listen", cfg.public_listen).await?,
        bind("admin_listen", cfg.admin_listen).await?,
    );
    let (spooled, spooled_rx) = tokio::sync::mpsc::unbounded_channel();
    let g = Arc::new(Shared {
        cfg: cfg.clone(),
        one_api: engine.for_api(Api::One),
        legacy: engine.for_api(Api::Legacy),
        engine,
        upstream,
        app: app_client,
        spool,
        spooled,
        key_ok: key_ok.clone(),
        metrics,
        flows,
        clevertap,
    });
    // Warm the key cache (and learn whether the provider works) before traffic arrives.
    match g.engine.cache().sealing_key().await {
        Ok(_) => tracing::info!("key provider ready"),
        Err(e) => tracing::warn!(error = %e, "key provider not usable yet; /readyz reports it"),
    }
    let stop = CancellationToken::new();
    // While the provider is failing (and only then), re-check it every 30 s: readiness
    // recovers by itself.
    {
        let (g, stop) = (g.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                if !g.key_ok.load(Ordering::Relaxed) {
                    let _ = g.engine.cache().sealing_key().await;
                }
            }
        });
    }
    // The app side: one admission for all its routes.
    let app_router = admitted(
        Router::new()
            .route("/v1/message", post(app::message))
            .route("/wa/messages", post(app::legacy_messages))
            .route(
                "/v1/media",
                post(app::media_upload).get(app::media_download),
            )
            .with_state(g.clone()),
        Guard::new(
            "app",
            cfg.max_in_flight,
            cfg.max_body_memory,
            &cfg,
            shed_json,
        ),
    );
    // The public side: each route with its own admission and body budget (a flood on one
    // never sheds another), and its credentials checked before its body is read.
    let public_routes = usize::from(cfg.callbacks.is_some())
        + usize::from(cfg.flows.is_some())
        + 3 * usize::from(cfg.clevertap.is_some());
    let route_guard = |shed| {
        Guard::new(
            "public",
            cfg.public_max_in_flight,
            cfg.max_body_memory / public_routes.max(1),
            &cfg,
            shed,
        )
    };
    let mut public_router = Router::new();
    if let Some(c) = &cfg.callbacks {
        let r = Router::new()
            .route(&c.path, post(callbacks::receive))
            .with_state(g.clone());
        let r = authenticated(r, c.auth.as_ref(), callbacks::unauthorized);
        public_router = public_router.merge(admitted(r, route_guard(shed_json)));
    }
    if let Some(f) = &cfg.flows {
        let r = Router::new()
            .route(&f.path, post(flows::receive))
            .route_layer(axum::middleware::from_fn_with_state(
                g.clone(),
                flows::signature_first,
            ))
            .with_state(g.clone());
        public_router = public_router.merge(admitted(r, route_guard(shed_json)));
    }
    if let Some(c) = &cfg.clevertap {
        let send = Router::new()
            .route(&c.path, post(clevertap::send))
            .with_state(g.clone());
        let send = authenticated(send, Some(&c.auth), clevertap::unauthorized);
        public_router = public_router.merge(admitted(send, route_guard(shed_clevertap)));
        // Media links authenticate by their signed token.
        let links = Router::new()
            .route(
                &format!("{}/media/{{token}}", c.path),
                get(clevertap::media_link),
            )
            .with_state(g.clone());
        public_router = public_router.merge(admitted(links, route_guard(shed_json)));
        let inbound = Router::new()
            .route(&c.callbacks_path, post(clevertap::inbound::receive))
            .with_state(g.clone());
        let inbound = authenticated(inbound, c.callback_auth.as_ref(), callbacks::unauthorized);
        public_router = public_router.merge(admitted(inbound, route_guard(shed_json)));
    }
    let admin_router = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(g.clone())
        .layer(axum::middleware::from_fn(move |req, next| {
            observe("admin", req, next)
        }));

    let relay = tokio::spawn(callbacks::relay(g.clone(), spooled_rx, stop.clone()));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing in-flight work");
            stop.cancel();
        });
    }
    tracing::info!(app = %cfg.app_listen, public = %cfg.public_listen, public_tls = cfg.public_tls.is_some(), admin = %cfg.admin_listen, upstream = %cfg.upstream, "oneseal gateway listening");
    let limits = serve::Limits {
        max_connections: cfg.max_connections,
        header_read_timeout: cfg.header_read_timeout,
        http2: cfg.http2,
    };
    let tls = cfg.public_tls.as_ref().map(|t| {
        let mut t = (**t).clone();
        if cfg.http2 {
            t.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        tokio_rustls::TlsAcceptor::from(Arc::new(t))
    });
    // Each listener's server, stopping (and then draining) when `stop` is cancelled.
    let listeners = [
        // The app listener: each connection gets its own upstream connection (`Pinned`).
        (
            serve::Listener {
                name: "app",
                tcp: app_l,
                tls: None,
                limits,
                pinned: true,
            },
            stack(app_router),
        ),
        (
            serve::Listener {
                name: "public",
                tcp: pub_l,
                tls,
                limits,
                pinned: false,
            },
            stack(public_router),
        ),
        (
            serve::Listener {
                name: "admin",
                tcp: adm_l,
                tls: None,
                limits,
                pinned: false,
            },
            admin_router,
        ),
    ];
    let servers: Vec<_> = listeners
        .into_iter()
        .map(|(l, router)| tokio::spawn(l.serve(router, stop.clone())))
        .collect();
    stop.cancelled().await;
    let drained = tokio::time::timeout(DRAIN, async {
        for s in servers {
            let _ = s.await;
        }
        let _ = relay.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight work did not finish within 30 s; stopping anyway (spooled callbacks are kept)");
    }
    Ok(())
}
