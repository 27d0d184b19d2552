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

mod admin;
mod admission;
mod app;
mod auth;
mod body;
mod clevertap;
pub mod config;
mod error;
mod flows;
mod intake;
mod platform;
mod queue;
mod relay;
mod serve;
mod sign;
mod spool;
mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use oneseal_core::{
    Api, CacheConfig, DataKey, DecryptSuite, Engine, EngineOptions, ErrorClass, KeyCache, KeyError,
    KeyProvider, Policy, SecretKey, Suite,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use admission::Stacked;
use admission::{admitted, authenticated, shed_clevertap, shed_json, stack, Guard};
use intake::Store;
use queue::Queue;
use relay::queued::{QueueHealth, QueueRelay};
use relay::{Relay, RetryLimits, Sink, SinkId};
pub use serve::Routes;

pub use config::{ConfigError, GatewayConfig, GatewayFile};
pub use error::ApiError;
pub use relay::app::rewrite_download_urls;
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
    /// The shared callback queue could not be opened or used.
    #[error("callback queue: {0}")]
    Queue(String),
    /// The metrics recorder could not be installed.
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    /// A server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Latency buckets (seconds) of every `*_duration_seconds` histogram: fine below 10 ms
/// (where the gateway's own cost is), coarse up to the 60 s request timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A provider wrapper that counts key-service calls by operation and outcome, times them, and keeps
/// the readiness flag (a probe never calls the key service itself).
#[derive(Debug)]
struct Observed {
    inner: Arc<dyn KeyProvider>,
    ok: Arc<AtomicBool>,
}

impl Observed {
    fn note<T>(&self, op: &'static str, started: std::time::Instant, r: &Result<T, KeyError>) {
        let outcome = match r {
            Ok(_) => "ok",
            Err(e) if e.class() == ErrorClass::KeyService => "unavailable",
            Err(_) => "rejected",
        };
        metrics::counter!("oneseal_kms_calls_total", "operation" => op, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("oneseal_kms_call_duration_seconds", "operation" => op)
            .record(started.elapsed().as_secs_f64());
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
        let t = std::time::Instant::now();
        let r = self.inner.generate_data_key().await;
        self.note("GenerateDataKey", t, &r);
        self.ready(&r);
        r
    }
    async fn decrypt_data_key(&self, blob: &[u8]) -> Result<Option<SecretKey>, KeyError> {
        let t = std::time::Instant::now();
        let r = self.inner.decrypt_data_key(blob).await;
        self.note("Decrypt", t, &r);
        r
    }
}

/// The gateway built, not yet serving: each listener's router, and the relay with the
/// channel its callback routes announce new callbacks on. Tests drive the routers with
/// `tower::ServiceExt::oneshot`; [`run`] binds and serves them.
pub struct Gateway {
    /// The app listener's routes.
    pub app: Stacked,
    /// The public listener's routes (each with its own admission and credentials).
    pub public: Stacked,
    /// The admin listener's routes.
    pub admin: Router,
    relay: Relaying,
    engine: Engine,
    key_ok: Arc<AtomicBool>,
}

/// Which relay delivers the callbacks.
enum Relaying {
    /// From this replica's spool, told of new callbacks on the channel.
    Spool(Arc<Relay>, mpsc::UnboundedReceiver<String>),
    /// From the shared queue.
    Queue(Arc<QueueRelay>),
}

impl Gateway {
    /// Builds the gateway from its validated config and parts; `metrics` renders `/metrics`.
    /// A config with a shared queue needs it open: [`run`] opens it and calls
    /// `build_on`.
    pub fn build(
        cfg: &GatewayConfig,
        parts: Parts,
        metrics: PrometheusHandle,
    ) -> Result<Gateway, GatewayError> {
        Gateway::build_on(cfg, parts, metrics, None)
    }

    /// [`Gateway::build`] with the shared queue `cfg.queue` names, opened.
    fn build_on(
        cfg: &GatewayConfig,
        parts: Parts,
        metrics: PrometheusHandle,
        queue: Option<Arc<dyn Queue>>,
    ) -> Result<Gateway, GatewayError> {
        if cfg.queue.is_some() && queue.is_none() {
            return Err(GatewayError::Queue(
                "[gateway.queue] is configured but was not opened".into(),
            ));
        }
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
            cache.clone(),
            policy,
            EngineOptions {
                suite: parts.suite,
                decrypt_suite: parts.decrypt_suite,
                ..EngineOptions::default()
            },
        );
        let platform = Arc::new(platform::Platform {
            engine: engine.clone(),
            upstream: upstream::Upstream::new(cfg.upstream.clone(), cfg.upstream_timeout)
                .map_err(GatewayError::Client)?,
            spool: spool.clone(),
        });
        let (spooled_tx, spooled) = mpsc::unbounded_channel();
        let store = match &queue {
            Some(q) => Store::Queue(q.clone()),
            None => Store::Spool {
                spool: spool.clone(),
                spooled: spooled_tx,
            },
        };
        let intake = |sink| {
            Arc::new(intake::Intake {
                store: store.clone(),
                sink,
            })
        };
        let health = Arc::new(QueueHealth::default());
        let mut sinks: HashMap<SinkId, Arc<dyn Sink>> = HashMap::new();

        // The app side: one admission for all its routes, one engine per route family.
        let app_side = Arc::new(app::AppSide {
            one_api: engine.for_api(Api::One),
            legacy: engine.for_api(Api::Legacy),
            platform: platform.clone(),
        });
        let app = admitted(
            Router::new()
                .route("/v1/message", post(app::message))
                .route("/wa/messages", post(app::legacy_messages))
                .route(
                    "/v1/media",
                    post(app::media_upload).get(app::media_download),
                )
                .with_state(app_side),
            Guard::new(
                "app",
                cfg.max_in_flight,
                cfg.max_body_memory,
                cfg,
                shed_json,
            ),
        );

        // The public side: each route on its own state, with its own admission and body
        // budget (a flood on one never sheds another), its credentials checked before its
        // body is read. Routers exist only for what is configured.
        let routes = usize::from(cfg.callbacks.is_some())
            + usize::from(cfg.flows.is_some())
            + 3 * usize::from(cfg.clevertap.is_some());
        let route_guard = |shed| {
            Guard::new(
                "public",
                cfg.public_max_in_flight,
                cfg.max_body_memory / routes.max(1),
                cfg,
                shed,
            )
        };
        let mut public = Router::new();
        if let Some(c) = &cfg.callbacks {
            let r = Router::new()
                .route(&c.path, post(intake::receive))
                .with_state(intake(SinkId::App));
            let r = authenticated(r, c.auth.as_ref(), intake::unauthorized);
            public = public.merge(admitted(r, route_guard(shed_json)));
            sinks.insert(
                SinkId::App,
                Arc::new(relay::app::AppSink {
                    engine: engine.clone(),
                    client: upstream::Upstream::for_url(
                        &c.forward_to,
                        cfg.upstream_timeout,
                        "the app",
                    )
                    .map_err(GatewayError::Client)?,
                    cfg: c.clone(),
                    app_url: cfg.app_url.clone(),
                }),
            );
        }
        if let Some(f) = &cfg.flows {
            let flows = Arc::new(flows::Flows {
                cfg: f.clone(),
                app: upstream::Upstream::for_url(
                    &f.forward_to,
                    f.response_timeout,
                    "the flow handler",
                )
                .map_err(GatewayError::Client)?,
            });
            let r = Router::new()
                .route(&f.path, post(flows::receive))
                .route_layer(axum::middleware::from_fn_with_state(
                    flows.clone(),
                    flows::signature_first,
                ))
                .with_state(flows);
            public = public.merge(admitted(r, route_guard(shed_json)));
        }
        if let Some(c) = &cfg.clevertap {
            let bridge = Arc::new(
                clevertap::Bridge::new(c.clone(), platform.clone(), cfg.upstream_timeout)
                    .map_err(GatewayError::Client)?,
            );
            let send = Router::new()
                .route(&c.path, post(clevertap::send))
                .with_state(bridge.clone());
            let send = authenticated(send, Some(&c.auth), clevertap::unauthorized);
            public = public.merge(admitted(send, route_guard(shed_clevertap)));
            // Media links authenticate by their signed token.
            let links = Router::new()
                .route(
                    &format!("{}/media/{{token}}", c.path),
                    get(clevertap::media_link),
                )
                .with_state(bridge.clone());
            public = public.merge(admitted(links, route_guard(shed_json)));
            let inbound = Router::new()
                .route(&c.callbacks_path, post(intake::receive))
                .with_state(intake(SinkId::CleverTap));
            let inbound = authenticated(inbound, c.callback_auth.as_ref(), intake::unauthorized);
            public = public.merge(admitted(inbound, route_guard(shed_json)));
            sinks.insert(
                SinkId::CleverTap,
                Arc::new(clevertap::inbound::CleverTapSink { bridge }),
            );
        }

        let admin = Router::new()
            .route("/livez", get(admin::livez))
            .route("/readyz", get(admin::readyz))
            .route("/metrics", get(admin::metrics_text))
            .with_state(Arc::new(admin::Admin {
                spool: spool.clone(),
                key_ok: key_ok.clone(),
                metrics,
                cache,
                queue: queue.as_ref().map(|q| (q.describe(), health.clone())),
            }))
            .layer(axum::middleware::from_fn(|req, next| {
                admission::observe("admin", req, next)
            }));
        let limits = RetryLimits {
            cap: cfg
                .callbacks
                .as_ref()
                .map(|c| c.max_retry)
                .unwrap_or(Duration::from_secs(300)),
            horizon: cfg
                .callbacks
                .as_ref()
                .map(|c| c.max_retry_age)
                .unwrap_or(Duration::from_secs(86_400)),
        };
        Ok(Gateway {
            app: stack(app),
            public: stack(public),
            admin,
            relay: match queue {
                Some(queue) => Relaying::Queue(Arc::new(QueueRelay {
                    queue,
                    sinks,
                    limits,
                    health,
                })),
                None => Relaying::Spool(
                    Arc::new(Relay {
                        spool,
                        sinks,
                        limits,
                    }),
                    spooled,
                ),
            },
            engine,
            key_ok,
        })
    }
}

/// Moves every dead letter back into the spool or the shared queue (`oneseal gateway
/// replay`), attempts and retry horizon starting again; a running gateway picks them up
/// within a second, a stopped one at its next start.
pub async fn replay(cfg: &GatewayConfig) -> Result<usize, GatewayError> {
    if let Some(q) = &cfg.queue {
        let queue = queue::open(q)
            .await
            .map_err(|e| GatewayError::Queue(e.to_string()))?;
        return queue
            .replay()
            .await
            .map_err(|e| GatewayError::Queue(e.to_string()));
    }
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
        // Latencies as histograms with fixed buckets, not summaries: buckets sum over a
        // fleet of replicas (quantiles cannot), and a dashboard takes any quantile from them.
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_duration_seconds".into()),
            LATENCY_BUCKETS,
        )
        .map_err(|e| GatewayError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| GatewayError::Metrics(e.to_string()))?;
    let queue = match &cfg.queue {
        Some(q) => {
            let queue = queue::open(q)
                .await
                .map_err(|e| GatewayError::Queue(e.to_string()))?;
            tracing::info!(queue = %queue.describe(), "callbacks go through the shared queue");
            Some(queue)
        }
        None => None,
    };
    let gw = Gateway::build_on(&cfg, parts, metrics, queue)?;
    let (app_l, pub_l, adm_l) = (
        bind("app_listen", cfg.app_listen).await?,
        bind("public_listen", cfg.public_listen).await?,
        bind("admin_listen", cfg.admin_listen).await?,
    );
    // Warm the key cache (and learn whether the provider works) before traffic arrives.
    match gw.engine.cache().sealing_key().await {
        Ok(_) => tracing::info!("key provider ready"),
        Err(e) => tracing::warn!(error = %e, "key provider not usable yet; /readyz reports it"),
    }
    let stop = CancellationToken::new();
    // While the provider is failing (and only then), re-check it every 30 s: readiness
    // recovers by itself.
    {
        let (engine, key_ok, stop) = (gw.engine.clone(), gw.key_ok.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                if !key_ok.load(Ordering::Relaxed) {
                    let _ = engine.cache().sealing_key().await;
                }
            }
        });
    }
    let relay = match gw.relay {
        Relaying::Spool(r, spooled) => tokio::spawn(r.run(spooled, stop.clone())),
        Relaying::Queue(r) => tokio::spawn(r.run(stop.clone())),
    };
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
    let listener = |name, tcp, tls, pinned| serve::Listener {
        name,
        tcp,
        tls,
        limits,
        pinned,
    };
    // Each listener's server, stopping (and then draining) when `stop` is cancelled. App
    // connections each get their own upstream connection (`Pinned`).
    let servers = [
        tokio::spawn(listener("app", app_l, None, true).serve(gw.app, stop.clone())),
        tokio::spawn(listener("public", pub_l, tls, false).serve(gw.public, stop.clone())),
        tokio::spawn(listener("admin", adm_l, None, false).serve(gw.admin, stop.clone())),
    ];
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
