//! Serving one listener: the accept loop and each connection's HTTP server.
//!
//! What axum's `serve` does not bound, this does, so no client — authenticated or not — can
//! hold a listener's resources:
//! - a connection cap per listener: past `max_connections` a new connection is closed at once
//!   (the accept queue never fills with connections nobody serves);
//! - a header-read timeout counted from accept (a connection that sends nothing is closed) and
//!   again from the end of each answer on a kept-alive connection (so it is also the idle
//!   keep-alive timeout); after a TLS handshake, which has its own 10 s limit;
//! - HTTP/1.1 only unless `http2 = true` (then HTTP/2 too, by prior knowledge or ALPN);
//! - graceful shutdown: on `stop` no new connections; open ones finish their request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::upstream::Pinned;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The limits of one listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Time for a request's headers, from accept or the previous answer.
    pub header_read_timeout: Duration,
    /// HTTP/2 accepted too.
    pub http2: bool,
}

/// How a listener's connections are served.
pub struct Listener {
    /// Which listener (logs and metrics).
    pub name: &'static str,
    pub tcp: TcpListener,
    /// TLS, when the listener speaks it itself.
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
    /// Each connection gets its own upstream connection (the app side), found by handlers
    /// as an `Extension<Pinned>`.
    pub pinned: bool,
}

/// Every accepted connection, plain or TLS: answers go out at once (without TCP_NODELAY a
/// response split over two segments waits for the client's delayed ACK).
fn set_nodelay(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
}

impl Listener {
    /// Serves `router` until `stop`, then waits for the open connections to finish their
    /// requests (the caller bounds the wait).
    pub async fn serve<S>(self, router: S, stop: CancellationToken)
    where
        S: Routes,
    {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let graceful = GracefulShutdown::new();
        let name = self.name;
        loop {
            let (tcp, _peer) = tokio::select! {
                _ = stop.cancelled() => break,
                r = self.tcp.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: pause, as axum does.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // Closed at once: a client over the cap gets a reset, not a wait.
                metrics::counter!("oneseal_gateway_connections_refused_total", "listener" => name)
                    .increment(1);
                drop(tcp);
                continue;
            };
            set_nodelay(&tcp);
            let conn = Connection {
                router: router.clone(),
                pinned: self.pinned.then(Pinned::default),
                limits: self.limits,
                graceful: graceful.watcher(),
            };
            let tls = self.tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => conn.run(tcp).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => conn.run(tls).await,
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }
                }
                drop(slot);
            });
        }
        drop(self.tcp);
        // Open connections finish the request they are on, then close.
        graceful.shutdown().await;
    }
}

/// What a listener serves: a listener's routes as one service, which answers every request
/// (errors are answers) and is cloned per request.
pub trait Routes:
    tower_service::Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Routes for S where
    S: tower_service::Service<
            Request,
            Response = Response,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// One accepted connection.
struct Connection<S> {
    router: S,
    pinned: Option<Pinned>,
    limits: Limits,
    graceful: Watcher,
}

impl<S: Routes> Connection<S> {
    async fn run<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            router,
            pinned,
            limits,
            graceful,
        } = self;
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            if let Some(p) = &pinned {
                req.extensions_mut().insert(p.clone());
            }
            tower::ServiceExt::oneshot(router.clone(), req.map(Body::new))
        });
        let io = TokioIo::new(io);
        let result = if limits.http2 {
            let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            b.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            b.http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(100);
            let conn = b.serve_connection(io, svc);
            graceful.watch(conn.into_owned()).await
        } else {
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let conn = b.serve_connection(io, svc);
            graceful.watch(conn).await.map_err(Into::into)
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}
