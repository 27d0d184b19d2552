//! The gateway's routers in-process (`tower::ServiceExt::oneshot`, no sockets): every route's
//! error answers, one claim per test. The end-to-end rigs in the workspace's `tests/` cover
//! what needs real processes (the platform, the app, KMS, signals).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use oneseal_core::{CacheConfig, LocalProvider, Policy, SecretKey};
use oneseal_gateway::{Gateway, GatewayConfig, GatewayFile, Parts};
use serde_json::{json, Value};
use tower::ServiceExt;

const PASSWORD: &str = "a-callback-password-of-some-length";

struct Built {
    gw: Gateway,
    _spool: tempfile::TempDir,
}

fn gateway() -> Built {
    let spool = tempfile::tempdir().unwrap();
    let text = format!(
        "upstream = \"http://127.0.0.1:9\"\nspool_dir = \"{}\"\nmax_body_bytes = 4096\n\
         [callbacks]\nforward_to = \"http://127.0.0.1:9/cb\"\nusername = \"clickatell\"\npassword_env = \"PW\"\n\
         [clevertap]\nusername = \"clevertap\"\npassword_env = \"PW\"\none_api_key_env = \"PW\"\n\
         dlr_url = \"http://127.0.0.1:9/d\"\nimo_url = \"http://127.0.0.1:9/i\"\nwaba_number = \"2799\"\n\
         media_link_secret_env = \"LINK\"\nallow_unauthenticated = true\n",
        spool.path().join("s").display()
    );
    let mut text = text;
    text.insert_str(0, "public_url = \"https://wa.example.com\"\n");
    let file: GatewayFile = toml::from_str(&text).unwrap();
    let cfg = GatewayConfig::from_file(&file, &|k: &str| match k {
        "PW" => Some(PASSWORD.into()),
        "LINK" => Some("0123456789abcdef0123456789abcdef".into()),
        _ => None,
    })
    .unwrap();
    let parts = Parts {
        provider: Arc::new(LocalProvider::from_key(
            &SecretKey::from_bytes([9; 32]),
            "t",
        )),
        policy: Policy::default(),
        suite: Default::default(),
        decrypt_suite: Default::default(),
        cache: CacheConfig::default(),
    };
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    Built {
        gw: Gateway::build(&cfg, parts, metrics).unwrap(),
        _spool: spool,
    }
}

async fn call<S: oneseal_gateway::Routes>(
    router: &S,
    req: Request<Body>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
    )
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn with_basic(mut req: Request<Body>, user: &str, pass: &str) -> Request<Body> {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    req.headers_mut()
        .insert(header::AUTHORIZATION, format!("Basic {b}").parse().unwrap());
    req
}

#[tokio::test]
async fn a_message_that_is_not_json_is_a_json_400() {
    let b = gateway();
    let (s, body, _) = call(&b.gw.app, post("/v1/message", "not json")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn a_wrong_type_at_a_policy_path_is_a_400_naming_it() {
    let b = gateway();
    let doc = r#"{"messages":[{"channel":"whatsapp","to":"1","content":7}]}"#;
    let (s, body, _) = call(&b.gw.app, post("/v1/message", doc)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["path"], "messages[0].content");
}

#[tokio::test]
async fn a_member_strict_mode_does_not_know_is_a_400_naming_it() {
    let b = gateway();
    let doc = r#"{"messages":[{"channel":"whatsapp","to":"1","text":{"body":"x"}}]}"#;
    let (s, body, _) = call(&b.gw.app, post("/v1/message", doc)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["path"], "messages[0].text");
}

#[tokio::test]
async fn a_one_api_message_on_the_legacy_route_is_a_400() {
    let b = gateway();
    let doc = r#"{"messages":[{"channel":"whatsapp","to":"1","content":"x"}]}"#;
    let (s, _, _) = call(&b.gw.app, post("/wa/messages", doc)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_a_json_413() {
    let b = gateway();
    let doc = format!(
        r#"{{"messages":[{{"to":"1","content":"{}"}}]}}"#,
        "x".repeat(5000)
    );
    let (s, body, _) = call(&b.gw.app, post("/wa/messages", &doc)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "too_large");
}

#[tokio::test]
async fn an_upload_query_setting_encryption_key_is_a_400_naming_it() {
    let b = gateway();
    let req = Request::post("/v1/media?fileName=a&to=1&ENCRYPTIONKEY=x")
        .body(Body::from("x"))
        .unwrap();
    let (s, body, _) = call(&b.gw.app, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["path"], "ENCRYPTIONKEY");
}

#[tokio::test]
async fn a_download_without_a_key_is_a_400() {
    let b = gateway();
    let req = Request::get("/v1/media?fileId=f")
        .body(Body::empty())
        .unwrap();
    let (s, body, _) = call(&b.gw.app, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn a_callback_without_credentials_is_a_json_401_with_a_challenge() {
    let b = gateway();
    let (s, body, h) = call(&b.gw.public, post("/callbacks", "{}")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(h.contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn a_callback_with_the_wrong_password_is_a_401() {
    let b = gateway();
    let req = with_basic(
        post("/callbacks", "{}"),
        "clickatell",
        "wrong-password-wrong",
    );
    let (s, _, _) = call(&b.gw.public, req).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_authenticated_callback_that_is_not_json_is_a_400() {
    let b = gateway();
    let req = with_basic(post("/callbacks", "{"), "clickatell", PASSWORD);
    let (s, _, _) = call(&b.gw.public, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_authenticated_callback_is_accepted() {
    let b = gateway();
    let req = with_basic(
        post("/callbacks", r#"{"event":{}}"#),
        "clickatell",
        PASSWORD,
    );
    let (s, body, _) = call(&b.gw.public, req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, json!({"status": "accepted"}));
}

#[tokio::test]
async fn a_clevertap_send_without_credentials_is_its_401() {
    let b = gateway();
    let (s, body, _) = call(&b.gw.public, post("/clevertap/messages", "{}")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"message": "Invalid credentials"}));
}

#[tokio::test]
async fn a_forged_media_link_is_a_403() {
    let b = gateway();
    let req = Request::get("/clevertap/messages/media/abc.def")
        .body(Body::empty())
        .unwrap();
    let (s, _, _) = call(&b.gw.public, req).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_route_that_is_not_configured_is_a_404() {
    let b = gateway();
    let (s, _, _) = call(&b.gw.public, post("/flows", "{}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unsafe_request_id_is_replaced() {
    let b = gateway();
    let mut req = post("/v1/message", "x");
    req.headers_mut()
        .insert("x-request-id", "a b".parse().unwrap());
    let (_, _, h) = call(&b.gw.app, req).await;
    let id = h.get("x-request-id").unwrap().to_str().unwrap();
    assert_ne!(id, "a b");
}

#[tokio::test]
async fn livez_answers_ok() {
    let b = gateway();
    let req = Request::get("/livez").body(Body::empty()).unwrap();
    let res = b.gw.admin.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn readyz_is_503_until_a_data_key_was_made() {
    let b = gateway();
    let req = Request::get("/readyz").body(Body::empty()).unwrap();
    let (s, body, _) = call(&b.gw.admin, req).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["key_provider"], "failing");
}
