//! Deny by default, end to end: each test pins one way the gateway failed open when tried as
//! an attacker would (plaintext forwarded, forged callbacks delivered, the public side
//! starving the app side, a caller taking the instance out of rotation), against the real
//! binary with the independent fake platform and app.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use oneseal::core::b64;
use serde_json::{json, Value};
use support::gateway::*;
use support::http::{self, eventually, get};
use support::moto::{create_key, moto, Proxy};
use support::*;

fn dead_reasons(r: &Rig) -> Vec<String> {
    std::fs::read_dir(r.spool().join("dead"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".reason"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

fn plain_mo_text(id: &str) -> Value {
    json!({"event":{"moText":[{"channel":"whatsapp","messageId":id,"from":"2799900001",
        "to":"2799900000","timestamp":1_700_000_000,"content":"forged","encryptionKey":null}]}})
}

/// Regression: `/wa/messages` forwarded a legacy caption in clear when a One API message stood
/// beside it (the document was detected as One API, whose policy has no top-level caption).
#[test]
fn a_legacy_caption_beside_a_one_api_message_is_refused_with_nothing_forwarded() {
    let mut r = Rig::local("");
    r.start_gateway();
    let mixed = json!({"messages":[
        {"to":"2799900001","content":b64::encode(b"\x89PNG"),"contentType":"image/png","caption":"Your statement"},
        {"channel":"whatsapp","to":"2799900001","content":"hi"}]});
    let one_with_caption = json!({"messages":[{"channel":"whatsapp","to":"2799900001","content":"hi","caption":"secret"}]});
    for (path, doc, at) in [
        ("/wa/messages", &mixed, "messages[0].contentType, caption"),
        ("/v1/message", &mixed, "messages[0].contentType, caption"),
        ("/v1/message", &one_with_caption, "messages[0].caption"),
    ] {
        let a = r.send(path, doc.to_string().as_bytes());
        assert_eq!(
            a.status,
            400,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.json()["error"]["path"], at, "{path}");
    }
    assert!(
        r.platform_records().is_empty(),
        "nothing reaches the platform"
    );
}

/// Strict mode (the gateway's default): a member the policy does not know is refused by its
/// path instead of being sent in clear; `passthrough` names the ones to send as they are.
#[test]
fn members_the_policy_does_not_know_are_refused_by_path_unless_passed_through() {
    let mut r = Rig::local("passthrough = [\"customData\"]");
    r.start_gateway();
    for (doc, at) in [
        (
            json!({"messages":[{"channel":"whatsapp","to":"1","text":{"body":"secret"}}]}),
            "messages[0].text",
        ),
        (
            json!({"messages":[{"channel":"whatsapp","to":"1","interactive":{"body":{"text":"x"}}}]}),
            "messages[0].interactive",
        ),
        (
            json!({"messages":[{"channel":"whatsapp","to":"1","content":"a"}],"note":"x"}),
            "note",
        ),
    ] {
        let a = r.send("/v1/message", doc.to_string().as_bytes());
        assert_eq!(a.status, 400, "{doc}");
        assert_eq!(a.json()["error"]["path"], at);
    }
    // A legacy message on the One API route, a callback on a request route: refused.
    let a = r.send(
        "/v1/message",
        br#"{"messages":[{"to":"1","content":"a","contentType":"text/plain"}]}"#,
    );
    assert_eq!(a.status, 400);
    let a = r.send(
        "/wa/messages",
        br#"{"messages":[{"channel":"whatsapp","to":"1","content":"a"}]}"#,
    );
    assert_eq!(a.status, 400);
    let a = r.send("/v1/message", plain_mo_text("x").to_string().as_bytes());
    assert_eq!(a.status, 400);
    assert!(r.platform_records().is_empty());
    let ok =
        json!({"messages":[{"channel":"whatsapp","to":"1","content":"a","customData":{"ref":7}}]});
    assert_eq!(r.send("/v1/message", ok.to_string().as_bytes()).status, 202);
    assert_eq!(
        r.platform_records()[0]["plain"]["messages"][0]["customData"],
        json!({"ref":7})
    );
}

/// Regression: a forged plaintext callback (content, no encryptionKey) was delivered to the app
/// as if the platform had sent it. Status updates carry no content and still pass.
#[test]
fn a_plaintext_callback_in_an_encrypted_integration_goes_to_the_dead_letters() {
    let mut r = Rig::local("");
    r.start_app();
    r.start_gateway();
    assert_eq!(
        r.post_callback(&plain_mo_text("forged-1"), Some((CB_USER, CB_PASS)))
            .status,
        200
    );
    let status = json!({"event":{"messageStatusUpdate":[{"messageId":"m1","clientMessageId":"c1",
        "status":"DELIVERED","statusCode":5,"timestamp":1_700_000_000,"channel":"whatsapp"}]}});
    assert_eq!(
        r.post_callback(&status, Some((CB_USER, CB_PASS))).status,
        200
    );
    // Generous: on a loaded 2-core CI machine the full suite once took longer than 20 s here.
    eventually(60, "the status update at the app", || {
        (r.app_records().len() == 1).then_some(())
    });
    let reasons = eventually(60, "a dead letter", || {
        let d = dead_reasons(&r);
        (!d.is_empty()).then_some(d)
    });
    assert!(
        reasons[0].contains("plaintext content in an encrypted integration"),
        "{reasons:?}"
    );
    assert_eq!(
        r.app_records().len(),
        1,
        "the forged callback never reaches the app"
    );
    assert_eq!(r.app_records()[0]["body"], status);
}

/// Regression: control characters in a value a caller chose (here an event type, which ends
/// up in a dead letter's reason) could forge log lines.
#[test]
fn a_forged_log_line_in_a_callback_is_escaped_in_the_log() {
    let mut r = Rig::local("");
    r.start_app();
    r.start_gateway();
    let forged = json!({"event":{"moText\nERROR oneseal_gateway: forged line":[{"content":"x"}]}});
    assert_eq!(
        r.post_callback(&forged, Some((CB_USER, CB_PASS))).status,
        200
    );
    eventually(20, "a dead letter", || {
        (!dead_reasons(&r).is_empty()).then_some(())
    });
    eventually(10, "the dead letter logged", || {
        r.log().contains("dead letters").then_some(())
    });
    let log = r.log();
    assert!(log.contains("moText\\nERROR"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("ERROR oneseal_gateway: forged")),
        "{log}"
    );
}

/// Every callback has a retry horizon: an app that stays down does not keep a callback (and
/// its retries) forever.
#[test]
fn a_callback_not_delivered_within_its_retry_horizon_is_dead_lettered_with_the_reason() {
    let mut r = Rig::local("");
    r.callbacks_config = "max_retry_age_seconds = 2".into();
    r.start_gateway(); // no app: every delivery fails
    let plain = json!({"event":{"moText":[{"channel":"whatsapp","messageId":"m","from":"1","to":"2","content":"hi"}]}});
    assert_eq!(r.callback(&plain, Some((CB_USER, CB_PASS))).status, 200);
    let reasons = eventually(30, "a dead letter", || {
        let d = dead_reasons(&r);
        (!d.is_empty()).then_some(d)
    });
    assert!(reasons[0].contains("max_retry_age_seconds"), "{reasons:?}");
}

/// Regression: a callback whose key KMS refuses for good was retried forever, and every
/// refusal took the instance out of rotation (`/readyz` 503): one poison callback, or a
/// download link with a foreign key, could drain a fleet.
#[test]
fn a_poison_callback_leaves_readiness_and_ends_in_the_dead_letters() {
    let proxy = Proxy::start(&moto().url);
    let key = create_key(&moto().url);
    let mut r = Rig::kms("", &proxy, &key);
    r.start_app();
    r.start_gateway();
    eventually(20, "ready", || {
        (get(&r.admin_url("/readyz")).status == 200).then_some(())
    });
    // A well-formed blob KMS did not make: InvalidCiphertext, for good.
    let foreign = b64::encode(&[7u8; 180]);
    let poison = json!({"event":{"moText":[{"channel":"whatsapp","messageId":"p","from":"1","to":"2",
        "content":b64::encode(&[1u8; 40]),"encryptionKey":foreign}]}});
    assert_eq!(
        r.post_callback(&poison, Some((CB_USER, CB_PASS))).status,
        200
    );
    let reasons = eventually(30, "a dead letter", || {
        let d = dead_reasons(&r);
        (!d.is_empty()).then_some(d)
    });
    assert!(!reasons[0].is_empty());
    // A decrypting download with the same foreign key: a failed download, nothing else.
    let a = http::request(
        "GET",
        &r.app_url(&format!(
            "/v1/media?fileId=f&encryptionKey={}",
            urlencode(&foreign)
        )),
        &[("Authorization", APP_KEY)],
        b"",
    )
    .unwrap();
    assert!(
        a.status == 502 || (400..500).contains(&a.status),
        "{}",
        a.status
    );
    assert_eq!(
        get(&r.admin_url("/readyz")).status,
        200,
        "readiness is the encrypt side's"
    );
    assert!(r.app_records().is_empty());
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// Forwarded callbacks carry Standard Webhooks signatures that the Standard Webhooks library
/// (independent of oneseal) verifies; the same message id on every retry.
#[test]
fn forwarded_callbacks_carry_standard_webhooks_signatures() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut r = Rig::local("");
    r.env.push(("APP_SIGNING".into(), SECRET.into()));
    r.callbacks_config = "signing_secret_env = \"APP_SIGNING\"".into();
    r.start_app_with(&["--signing-secret", SECRET]);
    r.start_gateway();
    let plain = json!({"event":{"moText":[{"channel":"whatsapp","messageId":"s","from":"1","to":"2","content":"signed"}]}});
    assert_eq!(r.callback(&plain, Some((CB_USER, CB_PASS))).status, 200);
    let recs = eventually(20, "the callback at the app", || {
        let recs = r.app_records();
        (!recs.is_empty()).then_some(recs)
    });
    assert_eq!(recs[0]["verified"], true, "{}", recs[0]);
    assert!(recs[0]["webhookId"]
        .as_str()
        .is_some_and(|id| id.starts_with("msg_")));
}

/// Regression: the callback route read (and buffered) the whole body before checking basic
/// auth, so unauthenticated clients could make the gateway hold their bodies.
#[test]
fn credentials_are_checked_before_the_body_is_read() {
    let mut r = Rig::local("");
    r.start_gateway();
    let mut s = TcpStream::connect(("127.0.0.1", r.ports[1])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Headers promising 5 MB that never come: the answer must not wait for them.
    s.write_all(b"POST /callbacks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n{")
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 401");
    assert!(t.elapsed() < Duration::from_secs(2));
    // Lower-case scheme (RFC 7617: case-insensitive) is accepted.
    let basic = format!(
        "basic {}",
        b64::encode(format!("{CB_USER}:{CB_PASS}").as_bytes())
    );
    let a = http::request(
        "POST",
        &r.public_url("/callbacks"),
        &[
            ("Authorization", &basic),
            ("Content-Type", "application/json"),
        ],
        json!({"event":{"messageStatusUpdate":[]}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(a.status, 200);
}

/// Regression: slow unauthenticated clients on the public side shed every app request (one
/// in-flight limit for both listeners, no header-read timeout, no connection cap).
#[test]
fn slow_and_idle_public_clients_leave_the_app_side_and_callbacks_answering() {
    let mut r = Rig::local(
        "header_read_timeout_seconds = 2\nmax_in_flight = 64\npublic_max_in_flight = 16",
    );
    r.start_app();
    r.start_gateway();
    let public = ("127.0.0.1", r.ports[1]);
    // 1 000 idle connections and 300 that send half a header, byte by byte, forever.
    let mut idle: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect(public).ok())
        .collect();
    let mut slow: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(public).ok())
        .collect();
    for s in &mut slow {
        let _ = s.write_all(b"POST /callbacks HTTP/1.1\r\nHost: x\r\n");
    }
    // And 32 unauthenticated posts that never finish their bodies.
    let mut bodies: Vec<TcpStream> = (0..32)
        .filter_map(|_| TcpStream::connect(public).ok())
        .collect();
    for s in &mut bodies {
        let _ =
            s.write_all(b"POST /callbacks HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{");
    }
    for i in 0..20 {
        let m = json!({"messages":[{"channel":"whatsapp","to":"2799900001","content":format!("m{i}")}]});
        assert_eq!(
            r.send("/v1/message", m.to_string().as_bytes()).status,
            202,
            "app request {i}"
        );
        let cb = json!({"event":{"moText":[{"channel":"whatsapp","messageId":format!("c{i}"),"from":"1","to":"2","content":"x"}]}});
        assert_eq!(
            r.callback(&cb, Some((CB_USER, CB_PASS))).status,
            200,
            "callback {i}"
        );
    }
    // A connection that sends nothing is closed after the header-read timeout.
    let s = &mut idle[0];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    let n = s.read(&mut [0u8; 64]).unwrap_or(0);
    assert_eq!(n, 0, "closed, not answered");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop((idle, slow, bodies));
}

/// Regression: HTTP/2 (h2c, 200 streams a connection) was accepted by accident of feature
/// unification; HTTP/1.1 only unless `http2 = true`.
#[test]
fn http2_prior_knowledge_is_refused_unless_configured() {
    let mut r = Rig::local("");
    r.start_gateway();
    let mut s = TcpStream::connect(("127.0.0.1", r.ports[0])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The connection preface and an empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1"),
        "an HTTP/2 answer: {:?}",
        &got[..got.len().min(16)]
    );
}

/// Regression: JSON routes stopped at axum's 2 MiB default with a plain-text 413, so a
/// legitimate batch or an inline-media callback was refused. One limit, `max_body_bytes`
/// (32 MiB by default), answered in the JSON error contract.
#[test]
fn a_five_mib_batch_and_callback_are_accepted_and_larger_bodies_get_a_json_413() {
    let mut r = Rig::local("");
    r.start_app();
    r.start_gateway();
    let text = "x".repeat(4000);
    let messages: Vec<Value> = (0..1300)
        .map(|i| json!({"channel":"whatsapp","to":"2799900001","content":text,"clientMessageId":format!("c{i}")}))
        .collect();
    let batch = json!({ "messages": messages }).to_string();
    assert!(batch.len() > 5 << 20);
    let a = r.send("/v1/message", batch.as_bytes());
    assert_eq!(
        a.status,
        202,
        "{}",
        String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
    );
    let items: Vec<Value> = (0..1300)
        .map(|i| json!({"messageId":format!("m{i}"),"status":"DELIVERED","statusCode":5,"note":text}))
        .collect();
    let cb = json!({"event":{"messageStatusUpdate": items}});
    assert_eq!(r.post_callback(&cb, Some((CB_USER, CB_PASS))).status, 200);
    // Over the limit: answered from Content-Length, before the body is read.
    let mut s = TcpStream::connect(("127.0.0.1", r.ports[0])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /v1/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 34603008\r\n\r\n{")
        .unwrap();
    let mut got = vec![0u8; 4096];
    let n = s.read(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"too_large\""), "{text}");
}

/// The spool is private, and only ever touches its own files.
#[test]
fn the_spool_is_private_and_a_foreign_file_in_it_survives_a_restart() {
    let mut r = Rig::local("");
    r.start_gateway(); // no app: callbacks stay in the spool
    let plain = json!({"event":{"moText":[{"channel":"whatsapp","messageId":"m","from":"1","to":"2","content":"hi"}]}});
    assert_eq!(r.callback(&plain, Some((CB_USER, CB_PASS))).status, 200);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in ["", "incoming", "dead", "tmp"] {
        assert_eq!(mode(&r.spool().join(d)), 0o700, "{d}");
    }
    for e in std::fs::read_dir(r.spool().join("incoming")).unwrap() {
        assert_eq!(mode(&e.unwrap().path()), 0o600);
    }
    let foreign = r.spool().join("tmp").join("operator-notes.txt");
    std::fs::write(&foreign, b"keep me").unwrap();
    r.gateway = None;
    r.start_gateway();
    assert_eq!(std::fs::read(&foreign).unwrap(), b"keep me");
    // A spool_dir that is somebody's directory is refused, and left as it was.
    let home = tempdir();
    std::fs::write(home.path().join(".bashrc"), b"x").unwrap();
    r.extra_config = format!("spool_dir = \"{}\"", home.path().display());
    r.write_config();
    let text = std::fs::read_to_string(r.config_path()).unwrap().replacen(
        &format!("spool_dir = \"{}\"\n", r.spool().display()),
        "",
        1,
    );
    std::fs::write(r.config_path(), text).unwrap();
    let o = r.gateway_cmd(&["gateway"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a oneseal spool"));
    assert!(home.path().join(".bashrc").exists());
}

/// Configuration that would leak does not start: a public route without credentials, an
/// http upstream off loopback, the local key with the real platform.
#[test]
fn config_that_would_leak_is_refused_by_check_config() {
    let r = Rig::local("");
    r.write_config();
    let base = std::fs::read_to_string(r.config_path()).unwrap();
    let check = |text: String| {
        std::fs::write(r.config_path(), text).unwrap();
        let o = r
            .gateway_cmd(&["gateway", "--check-config"])
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let no_auth = base
        .replace(&format!("username = \"{CB_USER}\"\n"), "")
        .replace("password_env = \"CB_PASSWORD\"\n", "");
    let (code, e) = check(no_auth.clone());
    assert_eq!(code, Some(2), "{e}");
    assert!(
        e.contains("gateway.callbacks.username") && e.contains("allow_unauthenticated"),
        "{e}"
    );
    let (code, e) = check(format!("{no_auth}allow_unauthenticated = true\n"));
    assert_eq!(code, Some(0), "{e}");
    assert!(
        e.contains("warning") && e.contains("anyone who reaches"),
        "{e}"
    );
    let upstream = format!("upstream = \"http://127.0.0.1:{}\"", r.platform_port);
    let (code, e) = check(base.replace(&upstream, "upstream = \"http://platform.example.com\""));
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("gateway.upstream") && e.contains("https"), "{e}");
    let (code, e) = check(base.replace(&upstream, "upstream = \"https://platform.example.com\""));
    assert_eq!(code, Some(2), "{e}");
    assert!(
        e.contains("kms_key_id") && e.contains("allow_local_key"),
        "{e}"
    );
}

/// A caller's `x-request-id` is kept only when it is safe to log.
#[test]
fn an_unsafe_request_id_is_replaced_by_the_gateways_own() {
    let mut r = Rig::local("");
    r.start_gateway();
    let m = br#"{"messages":[{"channel":"whatsapp","to":"1","content":"a"}]}"#;
    let with_id = |id: &str| {
        http::request(
            "POST",
            &r.app_url("/v1/message"),
            &[
                ("Authorization", APP_KEY),
                ("Content-Type", "application/json"),
                ("x-request-id", id),
            ],
            m,
        )
        .unwrap()
        .header("x-request-id")
        .map(str::to_string)
    };
    assert_eq!(with_id("abc-123").as_deref(), Some("abc-123"));
    let long = "a".repeat(200);
    for bad in ["a b\"c", long.as_str()] {
        let got = with_id(bad).unwrap();
        assert_ne!(got, bad);
    }
}

/// Regression: the upload guard compared query names case-sensitively, so a caller's own
/// `EncryptionKey` reached the platform beside the gateway's.
#[test]
fn an_upload_query_setting_the_gateways_members_in_any_case_is_refused() {
    let mut r = Rig::local("");
    r.start_gateway();
    for q in [
        "encryptionKey=x",
        "EncryptionKey=x",
        "KMSARN=y",
        "sha256filehash=z",
    ] {
        let a = http::request(
            "POST",
            &r.app_url(&format!("/v1/media?fileName=a.jpg&to=1&{q}")),
            &[("Authorization", APP_KEY), ("Content-Type", "image/jpeg")],
            b"\xff\xd8\xff",
        )
        .unwrap();
        assert_eq!(a.status, 400, "{q}");
    }
    assert!(r.platform_records().is_empty());
}
