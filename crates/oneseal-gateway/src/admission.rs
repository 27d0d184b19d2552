//! Admission: what every request of the app and public listeners goes through before its
//! handler, in the order the layers run:
//! 1. request ids (`stack`, around the listener's router): a caller's `x-request-id` kept only
//!    when safe to log, else ours;
//! 2. per route, the access log (`admitted`): one line per request naming the route template;
//! 3. per listener or public route, the admission guard (`Guard`, a layer): shedding over its
//!    own in-flight limit, the deadline, the body budget, request metrics;
//! 4. for a public route, its credentials (`authenticated`), before the body is read.
//!
//! Sheds and deadlines answer here; everything else is the handler's answer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::config::{BasicAuth, GatewayConfig};
use crate::error::ApiError;
use crate::{auth, body};

/// The request metrics of one route of one listener, registered once. Building a metric's
/// key per request (its labels, their strings, the registry lookup) was several allocations
/// on the hottest path; a handle is an `Arc` to the same atomic.
struct RouteMetrics {
    duration: metrics::Histogram,
    /// By status; a route answers a handful of them.
    requests: RwLock<Vec<(u16, metrics::Counter)>>,
}

/// Listener → route template → its metrics.
type MetricsByRoute = HashMap<&'static str, HashMap<String, Arc<RouteMetrics>>>;

fn route_metrics(listener: &'static str, route: &str) -> Arc<RouteMetrics> {
    static ALL: OnceLock<RwLock<MetricsByRoute>> = OnceLock::new();
    let all = ALL.get_or_init(Default::default);
    // A poisoned lock only means a panic elsewhere mid-insert of a plain map; keep going.
    if let Some(m) = all
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(listener)
        .and_then(|r| r.get(route))
    {
        return m.clone();
    }
    all.write()
        .unwrap_or_else(|p| p.into_inner())
        .entry(listener)
        .or_default()
        .entry(route.to_string())
        .or_insert_with(|| {
            Arc::new(RouteMetrics {
                duration: metrics::histogram!("oneseal_gateway_request_duration_seconds", "listener" => listener, "route" => route.to_string()),
                requests: RwLock::new(Vec::new()),
            })
        })
        .clone()
}

/// Counts and times every request by listener, route and status.
fn record(listener: &'static str, route: &str, status: StatusCode, t: Instant) {
    let m = route_metrics(listener, route);
    m.duration.record(t.elapsed().as_secs_f64());
    let code = status.as_u16();
    let found = m
        .requests
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, counter)| counter.clone());
    let counter = found.unwrap_or_else(|| {
        let c = metrics::counter!("oneseal_gateway_requests_total", "listener" => listener, "route" => route.to_string(), "status" => code.to_string());
        m.requests
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((code, c.clone()));
        c
    });
    counter.increment(1);
}

/// The route template the request matched (an `Arc` inside: no copy).
fn matched_route(req: &Request) -> Option<MatchedPath> {
    req.extensions().get::<MatchedPath>().cloned()
}

fn route_name(p: &Option<MatchedPath>) -> &str {
    p.as_ref().map_or("unmatched", |p| p.as_str())
}

/// The admin listener's metrics layer.
pub async fn observe(listener: &'static str, req: Request, next: Next) -> Response {
    let route = matched_route(&req);
    let t = Instant::now();
    let res = next.run(req).await;
    record(listener, route_name(&route), res.status(), t);
    res
}

/// The admission of one listener or public route: its own in-flight limit (so a flood on one
/// never sheds another), its deadline, its body budget, and how it answers when shedding
/// (CleverTap's callers expect 429 in their format, everyone else the JSON error).
#[derive(Clone)]
pub struct Guard {
    sem: Arc<Semaphore>,
    listener: &'static str,
    timeout: Duration,
    budget: body::BodyBudget,
    shed: fn() -> Response,
}

pub fn shed_json() -> Response {
    ApiError::unavailable(
        "overloaded",
        "the gateway is at its in-flight limit; retry shortly",
        1,
    )
    .into_response()
}

pub fn shed_clevertap() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(serde_json::json!({"message": "Too many requests to process"})),
    )
        .into_response()
}

impl Guard {
    pub fn new(
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
pub struct RequestIds {
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

/// One layer for what every request of the app and public listeners goes through (one
/// layer, not three: each layer costs a boxed clone of the stack per request, measured at
/// 4-11% of the gateway's throughput each; and a plain `Service`, not `from_fn`, which clones
/// and boxes the rest of the stack for each request too):
/// - shedding: over the listener's (or public route's) in-flight limit a request is answered
///   at once instead of queued;
/// - the per-request deadline (504);
/// - the body budget its JSON body is read within;
/// - request metrics by listener, route and status.
#[derive(Clone)]
pub struct Guarded<S> {
    guard: Guard,
    inner: S,
}

impl<S> tower::Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            guard: self.clone(),
            inner,
        }
    }
}

impl<S> tower::Service<Request> for Guarded<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is the inner service's business, checked by `oneshot` below; shedding
        // answers instead of waiting, so this layer is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let g = self.guard.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let route = matched_route(&req);
            let t = Instant::now();
            let res = match g.sem.try_acquire() {
                Ok(_permit) => {
                    req.extensions_mut().insert(g.budget.clone());
                    match tokio::time::timeout(g.timeout, inner.oneshot(req)).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(never)) => match never {},
                        Err(_) => ApiError::new(
                            StatusCode::GATEWAY_TIMEOUT,
                            "deadline_exceeded",
                            "the request took longer than request_timeout_seconds",
                        )
                        .into_response(),
                    }
                }
                Err(_) => {
                    metrics::counter!("oneseal_gateway_shed_total", "listener" => g.listener)
                        .increment(1);
                    (g.shed)()
                }
            };
            record(g.listener, route_name(&route), res.status(), t);
            Ok(res)
        })
    }
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

/// A listener's routes inside the listener-wide layers ([`stack`]).
pub type Stacked = tower::util::MapRequest<
    tower_http::request_id::SetRequestId<
        tower_http::request_id::PropagateRequestId<Router>,
        RequestIds,
    >,
    fn(Request) -> Request,
>;

/// Puts the listener-wide layers around a listener's routes: request ids (a caller's kept
/// only when safe to log). Each route has its own admission and access log ([`admitted`]).
///
/// Around the router, not `Router::layer`s: those box every route again, a boxed clone and a
/// boxed future per request for each layer; request ids need no route. The id check is a
/// plain function, not an async middleware.
pub fn stack(router: Router) -> Stacked {
    use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
    tower::ServiceBuilder::new()
        .map_request(sanitize_request_id as fn(Request) -> Request)
        .layer(SetRequestIdLayer::x_request_id(RequestIds::new()))
        .layer(PropagateRequestIdLayer::x_request_id())
        .service(router)
}

/// A listener's (or public route's) routes behind their admission guard, and the request span
/// and access log around it. Per route, not per listener, so the log names the route template
/// the router matched: never a signed link token or the key-bearing query of a download.
pub fn admitted(router: Router, guard: Guard) -> Router {
    use tower_http::trace::TraceLayer;
    let listener = guard.listener;
    let router = router.layer(guard);
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
pub fn authenticated(router: Router, auth: Option<&BasicAuth>, deny: fn() -> Response) -> Router {
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
