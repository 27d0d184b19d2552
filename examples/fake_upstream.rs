//! A platform stand-in for the gateway benchmarks (`scripts/load.sh`,
//! `scripts/clevertap_load.sh`): answers every request after an optional delay (202 and a
//! small One API-shaped body; 200 with a `fileId` for media uploads), reading the whole body.
//! For the CleverTap benchmark it is also the media host: `GET /media/<name>` serves a
//! 100 KiB "image", and `GET /_stats` counts media fetches and uploads. Loopback only. Not a
//! test double for correctness: the end-to-end tests use the independent Python fakes.
//!
//! ```sh
//! cargo run --release --example fake_upstream -- 18999 [DELAY_MS]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Default)]
struct Stats {
    media_fetches: AtomicU64,
    uploads: AtomicU64,
    delay_ms: u64,
}

async fn answer(State(s): State<Arc<Stats>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let _ = body.len();
    let path = uri.path();
    if method == Method::GET && path == "/_stats" {
        return format!(
            "{{\"media_fetches\":{},\"uploads\":{}}}",
            s.media_fetches.load(Ordering::Relaxed),
            s.uploads.load(Ordering::Relaxed)
        )
        .into_response();
    }
    if method == Method::GET && path.starts_with("/media/") {
        s.media_fetches.fetch_add(1, Ordering::Relaxed);
        let image: Vec<u8> = (0..100 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
        return ([("content-type", "image/jpeg")], image).into_response();
    }
    if s.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(s.delay_ms)).await;
    }
    if path == "/v1/media" {
        let n = s.uploads.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            format!("{{\"fileId\":\"bench-{n}.jpg\",\"accepted\":true,\"error\":null}}"),
        )
            .into_response();
    }
    (
        StatusCode::ACCEPTED,
        [("content-type", "application/json")],
        r#"{"messages":[{"apiMessageId":"bench","accepted":true}],"error":null}"#,
    )
        .into_response()
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(18999);
    let delay_ms: u64 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // A deep accept queue: 1500 clients (or a gateway's 1500 upstream connections)
        // connect at once, and overflowing the default queue makes connects wait for SYN
        // retransmits (1 s, 3 s), which would show up as the gateway's latency.
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(([127, 0, 0, 1], port).into())?;
        let l = sock.listen(4096)?;
        eprintln!("fake upstream on 127.0.0.1:{port}, delay {delay_ms} ms");
        let stats = Arc::new(Stats {
            delay_ms,
            ..Stats::default()
        });
        axum::serve(l, axum::Router::new().fallback(answer).with_state(stats)).await
    })
}
