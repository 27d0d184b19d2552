//! The gateway end to end (issue 12): real processes on loopback — `oneseal gateway`, a fake
//! platform and a fake app written independently in Python (scripts/fake_platform.py,
//! scripts/fake_app.py, on scripts/interop.py's implementation of the wire format), and moto
//! for KMS behind the counting, fault-injecting proxy.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use oneseal::core::{b64, without_bookkeeping};
use serde_json::{json, Value};
use support::gateway::*;
use support::http::{self, eventually, get, post_json};
use support::moto::{create_key, moto, Faults, Proxy};
use support::*;

#[test]
fn app_side_routes_send_only_ciphertext_and_return_the_platforms_answer() {
    let mut r = Rig::local("");
    r.start_app();
    r.start_gateway();
    // Every One API request fixture, then every legacy one.
    for (sub, path) in [
        ("one-api/requests", "/v1/message"),
        ("legacy/requests", "/wa/messages"),
    ] {
        for f in fixtures_under(sub) {
            let plain: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            let before = r.platform_records().len();
            let a = r.send(path, plain.to_string().as_bytes());
            assert_eq!(
                a.status,
                202,
                "{}: {}",
                f.display(),
                String::from_utf8_lossy(&a.body)
            );
            assert!(
                a.json()["messages"].is_array(),
                "the platform's body comes back unchanged"
            );
            let recs = r.platform_records();
            assert_eq!(recs.len(), before + 1);
            let rec = &recs[before];
            assert!(rec.get("error").is_none(), "{}: {rec}", f.display());
            assert_eq!(rec["path"], path);
            assert_eq!(rec["authorization"], APP_KEY);
            assert_eq!(rec["contentType"], "application/json");
            // Exactly the policy leaves were encrypted: the platform's independent decryption
            // gives back the original, and what went on the wire differs in those leaves only.
            assert_eq!(
                without_bookkeeping(&rec["plain"], &plain),
                plain,
                "{}",
                f.display()
            );
            let mut changed = changed_leaves(&plain, &rec["encrypted"]);
            changed.retain(|p| !p.ends_with("/encryptionKey") && !p.ends_with("/sha256Hash"));
            assert_eq!(changed, expected_leaves(&f), "{}", f.display());
        }
    }
    // Bad input: 400 naming the path, nothing forwarded.
    let before = r.platform_records().len();
    let a = r.send(
        "/v1/message",
        br#"{"messages":[{"channel":"whatsapp","to":"2799","content":7}]}"#,
    );
    assert_eq!(a.status, 400);
    let e = a.json();
    assert_eq!(e["error"]["code"], "bad_request");
    assert_eq!(e["error"]["path"], "messages[0].content");
    let a = r.send("/v1/message", b"not json");
    assert_eq!(a.status, 400);
    assert_eq!(
        r.platform_records().len(),
        before,
        "nothing may be forwarded"
    );

    // Media upload: streamed, encrypted, uploaded with the query values added.
    let file: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let a = http::request(
        "POST",
        &r.app_url("/v1/media?fileName=statement.pdf&to=2799900001"),
        &[
            ("Authorization", APP_KEY),
            ("Content-Type", "application/pdf"),
        ],
        &file,
    )
    .unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.json()["fileId"].is_string());
    let rec = r.platform_records().last().unwrap().clone();
    assert_eq!(rec["path"], "POST /v1/media");
    assert_eq!(rec["query"]["fileName"], "statement.pdf");
    assert_eq!(rec["query"]["to"], "2799900001");
    assert!(rec["query"]["kmsArn"]
        .as_str()
        .unwrap()
        .starts_with("local:"));
    assert_eq!(rec["hashOk"], true, "{rec}");
    assert_eq!(rec["plainSize"], file.len());
    assert_eq!(rec["encryptedSize"], file.len() + 28);
    assert_eq!(rec["contentType"], "application/pdf");
    assert_eq!(rec["authorization"], APP_KEY);
    // Over 30 MB: 413 at once, nothing uploaded.
    let before = r.platform_records().len();
    let big = vec![0u8; 31 * 1024 * 1024];
    let a = http::request(
        "POST",
        &r.app_url("/v1/media?fileName=big.bin&to=2799"),
        &[("Authorization", APP_KEY)],
        &big,
    );
    if let Ok(a) = a {
        assert_eq!(a.status, 413);
    }
    assert_eq!(r.platform_records().len(), before);

    // Inbound media: the platform's moMedia callback, its link rewritten to the app side,
    // followed by the app with its usual Authorization → verified plaintext.
    let img: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let img_path = r.dir.path().join("photo.jpg");
    std::fs::write(&img_path, &img).unwrap();
    let enc_path = r.dir.path().join("photo.enc");
    let key = r.env[0].1.clone();
    let o = oneseal(
        &[
            "media",
            "encrypt",
            img_path.to_str().unwrap(),
            "-o",
            enc_path.to_str().unwrap(),
            "--broadcast",
        ],
        None,
        &[("ONESEAL_LOCAL_KEY", key.as_str())],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let meta: Value = serde_json::from_slice(&o.stdout).unwrap();
    let enc = std::fs::read(&enc_path).unwrap();
    for (id, bytes) in [
        ("UUID-1.jpg", enc.clone()),
        ("UUID-2.jpg", {
            let mut t = enc.clone();
            t[1000] ^= 1;
            t
        }),
    ] {
        post_json(
            &r.platform_url("/_files"),
            &json!({"fileId": id, "contentType": "image/jpeg", "data": b64::encode(&bytes)}),
        );
    }
    let sha = meta["sha256FileHash"].as_str().unwrap();
    let mo = |id: &str| {
        json!({"integrationId": "i", "event": {"moMedia": [{"channel": "whatsapp", "messageId": id, "from": "2799900001",
            "timestamp": 1506607698000u64, "encryptionKey": meta["encryptionKey"], "caption": null,
            "files": [{"contentType": "image/jpeg", "downloadUrl": format!("https://platform.clickatell.com/v1/media?fileId={id}&sha256Hash={sha}&source=client"),
                       "sha256Hash": sha, "byteSize": img.len(), "fileName": "photo.jpg"}]}]}})
    };
    for id in ["UUID-1.jpg", "UUID-2.jpg"] {
        let a = r.post_callback(&mo(id), Some((CB_USER, CB_PASS)));
        assert_eq!(a.status, 200);
    }
    let recs = eventually(30, "2 moMedia callbacks at the app", || {
        let recs = r.app_records();
        (recs.len() >= 2).then_some(recs)
    });
    let url_of = |rec: &Value| {
        rec["body"]["event"]["moMedia"][0]["files"][0]["downloadUrl"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The relay delivers in parallel: find each callback by its message id.
    let rec_of = |id: &str| {
        recs.iter()
            .find(|x| x["body"]["event"]["moMedia"][0]["messageId"] == id)
            .unwrap_or_else(|| panic!("no callback {id} at the app"))
            .clone()
    };
    let (good, tampered) = (rec_of("UUID-1.jpg"), rec_of("UUID-2.jpg"));
    let link = url_of(&good);
    assert!(link.starts_with(&r.app_url("/v1/media?")), "{link}");
    assert!(good["body"]["event"]["moMedia"][0]["encryptionKey"].is_null());
    let a = http::request("GET", &link, &[("Authorization", APP_KEY)], b"").unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("image/jpeg"));
    assert_eq!(a.body, img, "the app receives the plaintext file");
    let fetched = r
        .platform_records()
        .into_iter()
        .rev()
        .find(|x| x["path"] == "GET /v1/media")
        .unwrap();
    assert_eq!(fetched["authorization"], APP_KEY);
    assert!(
        fetched["query"].get("encryptionKey").is_none(),
        "the key never goes back upstream"
    );
    // Tampered file: 502 and not one plaintext byte.
    let a = http::request(
        "GET",
        &url_of(&tampered),
        &[("Authorization", APP_KEY)],
        b"",
    )
    .unwrap();
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["error"]["code"], "media_verification_failed");
    // The upstream's 401 is passed through.
    let a = http::request("GET", &link, &[("Authorization", "Bearer wrong")], b"").unwrap();
    assert_eq!(a.status, 401);
    // No temp files of media in transit remain.
    assert_eq!(std::fs::read_dir(r.spool().join("tmp")).unwrap().count(), 0);

    // Admin endpoints.
    assert_eq!(get(&r.admin_url("/livez")).status, 200);
    let ready = get(&r.admin_url("/readyz"));
    assert_eq!(
        ready.status,
        200,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    let m = String::from_utf8(get(&r.admin_url("/metrics")).body).unwrap();
    for needle in [
        "oneseal_gateway_requests_total",
        "oneseal_gateway_request_duration_seconds",
        "oneseal_kms_calls_total",
        "oneseal_spool_depth",
        "# TYPE oneseal_key_cache_lookups_total counter",
        "route=\"/v1/message\"",
        // Latency as histograms (buckets sum over replicas), not summaries.
        "# TYPE oneseal_gateway_request_duration_seconds histogram",
        "oneseal_gateway_request_duration_seconds_bucket{",
        "le=\"0.005\"",
        "# TYPE oneseal_kms_call_duration_seconds histogram",
    ] {
        assert!(m.contains(needle), "{needle} missing from /metrics:\n{m}");
    }
    assert!(!m.contains("quantile="), "a summary in /metrics:\n{m}");
    // An access-log line per request (request id, path, status, latency); no plaintext,
    // keys or Authorization in the logs.
    let log = r.log();
    assert!(
        log.lines().any(|l| l.contains("/v1/message")
            && l.contains("status=202")
            && l.contains("latency=")
            && l.contains("id=")),
        "{log}"
    );
    for secret in ["app-key", CB_PASS, "February 2021", "Statement"] {
        assert!(!log.contains(secret), "{secret:?} in the gateway log");
    }
    // SIGTERM: clean exit 0.
    let st = r.sigterm();
    assert_eq!(st.code(), Some(0), "{}", r.log());
}

/// An app's kept-alive connection gets a platform connection of its own from its second
/// request on (the first goes through the shared pool); when the platform closes that
/// connection, saying so or not, the next request opens another and nothing is lost or sent
/// twice; a connection that drops a request that was sent is a 502, not a retry.
#[test]
fn kept_alive_app_connections_are_pinned_to_a_platform_connection_that_is_remade_when_closed() {
    let mut r = Rig::local("");
    r.start_gateway();
    let host = format!("127.0.0.1:{}", r.ports[0]);
    let headers = [
        ("Authorization", APP_KEY),
        ("Content-Type", "application/json"),
    ];
    let mut conn = http::Conn::open(&host).unwrap();
    let mut sent = Vec::new();
    let send = |conn: &mut http::Conn, sent: &mut Vec<Value>, mode: &str| {
        let i = sent.len();
        let plain = plain_message(&format!("pin-{i}"));
        let a = conn
            .send(
                "POST",
                "/v1/message",
                &headers,
                plain.to_string().as_bytes(),
                false,
            )
            .unwrap();
        assert_eq!(
            a.status,
            202,
            "{mode} {i}: {}",
            String::from_utf8_lossy(&a.body)
        );
        sent.push(plain);
    };
    for _ in 0..4 {
        send(&mut conn, &mut sent, "ok");
    }
    // The platform answers and closes with Connection: close, then without saying so (its
    // keep-alive timeout); the gateway notices either before the next request.
    for mode in ["close", "silent-close"] {
        r.platform_mode(mode);
        for _ in 0..3 {
            send(&mut conn, &mut sent, mode);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    r.platform_mode("ok");
    send(&mut conn, &mut sent, "ok again");
    send(&mut conn, &mut sent, "ok again");
    // A second app connection: a platform connection of its own.
    let mut other = http::Conn::open(&host).unwrap();
    for _ in 0..3 {
        send(&mut other, &mut sent, "other");
    }

    let recs = r.platform_records();
    assert_eq!(
        recs.len(),
        sent.len(),
        "each message exactly once: {recs:?}"
    );
    for (rec, plain) in recs.iter().zip(&sent) {
        assert!(rec.get("error").is_none(), "{rec}");
        assert_eq!(rec["authorization"], APP_KEY);
        assert_eq!(without_bookkeeping(&rec["plain"], plain), *plain);
    }
    let peer = |i: usize| recs[i]["peer"].as_u64().unwrap();
    // Requests 2-4 of the first connection share one platform connection; the first came
    // through the pool.
    assert_eq!(peer(1), peer(2));
    assert_eq!(peer(2), peer(3));
    assert_ne!(peer(0), peer(1));
    // Each closed connection was replaced: the six requests in close modes went over six
    // connections, and the connection made after them carried both later requests.
    let closing: std::collections::HashSet<u64> = (4..10).map(peer).collect();
    assert_eq!(closing.len(), 6, "{recs:?}");
    assert_eq!(peer(10), peer(11));
    assert!(!closing.contains(&peer(10)));
    // The second app connection: pool first, then its own connection, not the first's.
    assert_eq!(peer(13), peer(14));
    assert_ne!(peer(13), peer(11));

    // The platform drops a request it has read: it may have acted on it, so no retry: 502.
    r.platform_mode("drop");
    let a = conn
        .send(
            "POST",
            "/v1/message",
            &headers,
            plain_message("dropped").to_string().as_bytes(),
            false,
        )
        .unwrap();
    assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["error"]["code"], "upstream_failed");
    r.platform_mode("ok");
    send(&mut conn, &mut sent, "after a drop");
    assert_eq!(r.platform_records().len(), sent.len());
}

#[test]
fn callbacks_reach_the_app_in_plaintext_and_nothing_is_lost_across_sigkill() {
    let mut r = Rig::local("");
    // The app is down at first.
    r.start_gateway();
    // Wrong credentials: 401, nothing stored.
    let plain = fixture("one-api/callbacks/mo_text.json");
    assert_eq!(r.callback(&plain, Some((CB_USER, "wrong"))).status, 401);
    assert_eq!(r.callback(&plain, None).status, 401);
    assert_eq!(files_in(&r.spool().join("incoming")), 0);
    // 20 callbacks while the app is down: all acknowledged, all on disk.
    let mut sent = Vec::new();
    for i in 0..20 {
        let mut p = plain.clone();
        p["event"]["moText"][0]["messageId"] = format!("m{i}").into();
        assert_eq!(r.callback(&p, Some((CB_USER, CB_PASS))).status, 200);
        sent.push(p);
    }
    assert_eq!(files_in(&r.spool().join("incoming")), 20);
    // SIGKILL (no chance to flush anything), restart, then the app comes up.
    let mut g = r.gateway.take().unwrap();
    g.0.kill().unwrap();
    g.0.wait().unwrap();
    drop(g);
    r.start_gateway();
    r.start_app();
    let recs = eventually(60, "20 callbacks at the app", || {
        let recs = r.app_records();
        (recs.len() >= 20).then_some(recs)
    });
    let mut got: Vec<String> = recs
        .iter()
        .map(|x| {
            x["body"]["event"]["moText"][0]["messageId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 20, "every callback delivered");
    for x in &recs {
        assert_eq!(x["path"], "/whatsapp/callbacks");
        let id = x["body"]["event"]["moText"][0]["messageId"]
            .as_str()
            .unwrap();
        let want = sent
            .iter()
            .find(|s| s["event"]["moText"][0]["messageId"] == id)
            .unwrap();
        assert_eq!(without_bookkeeping(&x["body"], want), *want);
    }
    eventually(10, "an empty spool", || {
        (files_in(&r.spool().join("incoming")) == 0).then_some(())
    });
    // Every callback fixture, One API and legacy, platform-encrypted → plaintext at the app.
    for f in fixtures_under("callbacks") {
        let plain: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let before = r.app_records().len();
        assert_eq!(
            r.callback(&plain, Some((CB_USER, CB_PASS))).status,
            200,
            "{}",
            f.display()
        );
        let recs = eventually(20, "the callback at the app", || {
            let recs = r.app_records();
            (recs.len() > before).then_some(recs)
        });
        let mut got = recs[before]["body"].clone();
        // moMedia links now point at the gateway's app side (checked in the app-side test).
        restore_download_urls(&mut got, &plain, &r.app_url("/v1/media?"));
        assert_eq!(without_bookkeeping(&got, &plain), plain, "{}", f.display());
    }
    // A callback that can never be decrypted: dead letter with its reason, never forwarded;
    // `oneseal gateway replay` puts it back (where it fails again).
    let mut sealed = post_json(
        &r.platform_url("/_seal"),
        &json!({"plain": plain_text("dead")}),
    )
    .json();
    let c = sealed["event"]["moText"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let mut raw = b64::decode(&c).unwrap();
    raw[13] ^= 1;
    sealed["event"]["moText"][0]["content"] = b64::encode(&raw).into();
    let before = r.app_records().len();
    assert_eq!(
        r.post_callback(&sealed, Some((CB_USER, CB_PASS))).status,
        200
    );
    eventually(20, "a dead letter", || {
        (files_in(&r.spool().join("dead")) == 1).then_some(())
    });
    let reason: Vec<_> = std::fs::read_dir(r.spool().join("dead"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".reason"))
        .collect();
    assert_eq!(reason.len(), 1);
    assert!(std::fs::read_to_string(reason[0].path())
        .unwrap()
        .contains("could not be decrypted"));
    assert_eq!(r.app_records().len(), before);
    let o = r.gateway_cmd(&["gateway", "replay"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("re-queued 1"));
    eventually(20, "the dead letter again", || {
        (files_in(&r.spool().join("dead")) == 1).then_some(())
    });
    assert_eq!(r.app_records().len(), before);
    // The app failing: retried until it recovers.
    post_json(
        &format!("http://127.0.0.1:{}/_mode", r.app_port),
        &json!({"mode": "fail"}),
    );
    assert_eq!(
        r.callback(&plain_text("retry"), Some((CB_USER, CB_PASS)))
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(1500));
    post_json(
        &format!("http://127.0.0.1:{}/_mode", r.app_port),
        &json!({"mode": "ok"}),
    );
    eventually(30, "the retried callback", || {
        r.app_records()
            .iter()
            .any(|x| x["body"]["event"]["moText"][0]["messageId"] == "retry")
            .then_some(())
    });
    assert_eq!(r.sigterm().code(), Some(0));
}

/// Puts the original `downloadUrl`s back after checking each was rewritten to `prefix`.
fn restore_download_urls(got: &mut Value, plain: &Value, prefix: &str) {
    if let (Some(ev), Some(pev)) = (
        got.get_mut("event").and_then(Value::as_object_mut),
        plain.get("event"),
    ) {
        for (ty, items) in ev.iter_mut() {
            for (i, it) in items.as_array_mut().into_iter().flatten().enumerate() {
                for (j, f) in it
                    .get_mut("files")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let u = f["downloadUrl"].as_str().unwrap_or("").to_string();
                    assert!(u.starts_with(prefix), "{u}");
                    f["downloadUrl"] = pev[ty][i]["files"][j]["downloadUrl"].clone();
                }
            }
        }
    }
}

/// A one-message One API request.
fn plain_message(id: &str) -> Value {
    json!({"messages": [{"channel": "whatsapp", "to": "2799900001", "clientMessageId": id,
        "content": "Your one-time PIN is 482913"}]})
}

fn plain_text(id: &str) -> Value {
    json!({"integrationId": "i", "event": {"moText": [{"channel": "whatsapp", "messageId": id, "from": "2799900001",
        "timestamp": 1506607698000u64, "content": "Hello, I need help with my account", "encryptionKey": null}]}})
}

#[test]
fn with_kms_failing_or_the_upstream_broken_nothing_plain_leaves_and_answers_are_json() {
    let m = moto();
    let proxy = Proxy::start(&m.url);
    let key = create_key(&m.url);
    let mut r = Rig::kms("upstream_timeout_seconds = 2\n", &proxy, &key);
    r.start_app();
    r.start_gateway();
    let msg = |i: usize| {
        json!({"messages": [{"channel": "whatsapp", "to": "2799900001", "content": format!("Your code is {i}")}]})
            .to_string()
    };
    // Warm: works, through KMS.
    let a = r.send("/v1/message", msg(0).as_bytes());
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        r.platform_records().last().unwrap()["plain"]["messages"][0]["content"],
        "Your code is 0"
    );
    // 1500 concurrent one-message requests: all succeed, at most 3 GenerateDataKey.
    rlimit::increase_nofile_limit(65_536).unwrap();
    r.platform_mode("fast");
    proxy.reset_counts();
    let url = r.app_url("/v1/message");
    let handles: Vec<_> = (0..1500)
        .map(|i| {
            let (url, body) = (url.clone(), msg(i));
            std::thread::spawn(move || {
                http::request(
                    "POST",
                    &url,
                    &[
                        ("Authorization", APP_KEY),
                        ("Content-Type", "application/json"),
                    ],
                    body.as_bytes(),
                )
                .map(|a| a.status)
                .unwrap_or(0)
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let bad: Vec<_> = statuses.iter().filter(|s| **s != 202).collect();
    assert!(
        bad.is_empty(),
        "{} of 1500 failed: {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    let gen = proxy.generate.load(Ordering::SeqCst);
    assert!(gen <= 3, "{gen} GenerateDataKey calls for 1500 messages");
    r.platform_mode("ok");
    // Nothing reached the platform that it could not decrypt (no plaintext leaf).
    assert!(
        r.platform_records()
            .iter()
            .all(|x| x.get("error").is_none()),
        "plaintext reached the platform"
    );
    // Upstream broken: 5xx passed through, hanging → 504, dropped → 502, refused → 502.
    r.platform_mode("fail");
    assert_eq!(r.send("/v1/message", msg(1).as_bytes()).status, 503);
    r.platform_mode("hang");
    let t = Instant::now();
    let a = r.send("/v1/message", msg(2).as_bytes());
    assert_eq!(a.status, 504, "{}", String::from_utf8_lossy(&a.body));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(a.json()["error"]["code"], "upstream_timeout");
    r.platform_mode("drop");
    let a = r.send("/v1/message", msg(3).as_bytes());
    assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    r.platform_mode("ok");
    r.platform = None; // the platform process is gone: connection refused
    let a = r.send("/v1/message", msg(4).as_bytes());
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["error"]["code"], "upstream_failed");
    assert_eq!(r.sigterm().code(), Some(0));
}

#[test]
fn kms_down_on_a_cold_gateway_sends_nothing_and_413_costs_no_kms_call() {
    let m = moto();
    let proxy = Proxy::start(&m.url);
    let key = create_key(&m.url);
    proxy.set(Faults {
        deny: true,
        ..Faults::default()
    });
    let mut r = Rig::kms("", &proxy, &key);
    r.start_gateway();
    // Not ready while the key provider fails; probes make no KMS call. (Once the admin side
    // answers, the start-up warm-up call is done.)
    assert_eq!(get(&r.admin_url("/readyz")).status, 503);
    proxy.reset_counts();
    for _ in 0..5 {
        assert_eq!(get(&r.admin_url("/readyz")).status, 503);
    }
    assert_eq!(
        proxy.total.load(Ordering::SeqCst),
        0,
        "readiness probes called KMS"
    );
    let a = r.send(
        "/v1/message",
        br#"{"messages":[{"channel":"whatsapp","to":"2799","content":"secret"}]}"#,
    );
    assert_eq!(a.status, 503);
    assert!(a.header("retry-after").is_some());
    assert!(
        r.platform_records().is_empty(),
        "nothing may reach the platform"
    );
    // A 31 MB upload: 413 before any KMS call.
    proxy.reset_counts();
    let big = vec![1u8; 31 * 1024 * 1024];
    if let Ok(a) = http::request(
        "POST",
        &r.app_url("/v1/media?fileName=x.bin&to=1"),
        &[("Authorization", APP_KEY)],
        &big,
    ) {
        assert_eq!(a.status, 413);
        assert_eq!(a.json()["error"]["code"], "too_large");
    }
    assert_eq!(proxy.total.load(Ordering::SeqCst), 0);
    assert!(r.platform_records().is_empty());
    assert_eq!(r.sigterm().code(), Some(0));
}

#[test]
fn overload_is_shed_bodies_are_limited_and_bad_config_is_named() {
    let mut r =
        Rig::local("max_in_flight = 2\nmax_body_bytes = 4096\nupstream_timeout_seconds = 20\n");
    r.log_json = true;
    r.start_app();
    r.start_gateway();
    r.platform_mode("hang");
    let url = r.app_url("/v1/message");
    let body = br#"{"messages":[{"channel":"whatsapp","to":"2799","content":"hi"}]}"#;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                http::request("POST", &url, &[("Authorization", APP_KEY)], body)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let t = Instant::now();
    let a = r.send("/v1/message", body);
    assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["error"]["code"], "overloaded");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "shed at once, not queued"
    );
    let m = String::from_utf8(get(&r.admin_url("/metrics")).body).unwrap();
    assert!(m.contains("oneseal_gateway_shed_total"), "{m}");
    r.platform_mode("ok");
    for h in slow {
        let _ = h.join();
    }
    // --log-format json: every line is a JSON object; access lines carry the request id.
    let log = r.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|v| v["span"]["id"].is_string() && v["fields"]["status"] == 503),
        "{log}"
    );
    // Body limit.
    let big = format!(
        "{{\"messages\":[{{\"channel\":\"whatsapp\",\"to\":\"1\",\"content\":\"{}\"}}]}}",
        "x".repeat(5000)
    );
    assert_eq!(r.send("/v1/message", big.as_bytes()).status, 413);
    assert_eq!(r.sigterm().code(), Some(0));
    // Config errors: one line naming the key, exit 2.
    std::fs::write(r.config_path(), "[gateway]\nupstream = \"ftp://nope\"\n").unwrap();
    let o = r
        .gateway_cmd(&["gateway", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("gateway.upstream"), "{err}");
    std::fs::write(r.config_path(), "[gateway]\nmax_in_fligth = 3\n").unwrap();
    let o = r
        .gateway_cmd(&["gateway", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 2"));
    r.write_config();
    let o = r
        .gateway_cmd(&["gateway", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
