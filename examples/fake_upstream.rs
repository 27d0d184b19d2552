//! A platform stand-in for the gateway benchmark (`scripts/load.sh`): answers every request
//! at once (202 and a small One API-shaped body, 200 for callbacks), without reading more
//! than the body. Loopback only. Not a test double for correctness: the end-to-end tests use
//! the independent Python fake platform.
//!
//! ```sh
//! cargo run --release --example fake_upstream -- 18999
//! ```

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;

async fn answer(body: Bytes) -> impl IntoResponse {
    let _ = body.len();
    (
        StatusCode::ACCEPTED,
        [("content-type", "application/json")],
        r#"{"messages":[{"apiMessageId":"bench","accepted":true}],"error":null}"#,
    )
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(18999);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        eprintln!("fake upstream on 127.0.0.1:{port}");
        axum::serve(l, axum::Router::new().fallback(answer)).await
    })
}
