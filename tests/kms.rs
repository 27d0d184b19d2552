//! AWS KMS end to end, against moto's KMS API on loopback (started by the harness), through a
//! counting, fault-injecting proxy: interop with an independent implementation (boto3 +
//! Python `cryptography`), KMS calls counted at the wire, and injected faults.

mod support;

use oneseal::core::without_bookkeeping;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::moto::{aws_env, create_key, moto, Faults, Proxy};
use support::*;

struct Kms {
    proxy: Proxy,
    key: String,
    dir: tempfile::TempDir,
}

impl Kms {
    fn new() -> Kms {
        let m = moto();
        Kms {
            proxy: Proxy::start(&m.url),
            key: create_key(&m.url),
            dir: tempdir(),
        }
    }
    fn env(&self) -> Vec<(&str, &str)> {
        let mut e = aws_env();
        e.push(("AWS_ENDPOINT_URL_KMS", self.proxy.url.as_str()));
        e
    }
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        // A local key path that does not exist: KMS must be used, never the local provider.
        let local = self.dir.path().join("no-local.key");
        let mut env = self.env();
        let local = local.to_str().unwrap().to_string();
        env.push(("ONESEAL_LOCAL_KEY", &local));
        oneseal(args, stdin, &env)
    }
    fn path(&self, n: &str) -> String {
        self.dir.path().join(n).to_str().unwrap().to_string()
    }
}

fn batch(n: usize) -> String {
    let msgs: Vec<Value> = (0..n)
        .map(|i| json!({"channel": "whatsapp", "to": format!("27999{i:06}"), "content": format!("Statement {i} is ready"), "clientMessageId": format!("m{i}")}))
        .collect();
    json!({ "messages": msgs }).to_string()
}

#[test]
fn kms_output_opens_with_independent_implementation_and_back() {
    let k = Kms::new();
    let moto_url = moto().url.clone();
    for suite in ["gcm", "cbc"] {
        for f in fixtures() {
            let fs = f.to_str().unwrap();
            let enc = k.path("enc.json");
            let o = k.run(
                &[
                    "encrypt",
                    fs,
                    "--suite",
                    suite,
                    "--kms-key-id",
                    &k.key,
                    "-o",
                    &enc,
                ],
                None,
            );
            assert_eq!(code(&o), 0, "{fs}: {}", stderr(&o));
            let (ok, out) = python_env(&[
                "scripts/interop.py",
                "open",
                fs,
                &enc,
                "--kms-endpoint",
                &moto_url,
            ]);
            assert!(ok, "{fs} {suite}: {out}");
            // The platform's side: encrypted by boto3 + cryptography, opened by oneseal.
            let (ok, sealed) = python_env(&[
                "scripts/interop.py",
                "seal",
                fs,
                "--suite",
                suite,
                "--kms-endpoint",
                &moto_url,
                "--kms-key-id",
                &k.key,
            ]);
            assert!(ok, "{sealed}");
            let o = k.run(&["decrypt", "--suite", suite], Some(sealed.as_bytes()));
            assert_eq!(code(&o), 0, "{fs}: {}", stderr(&o));
            let got: Value = serde_json::from_slice(&o.stdout).unwrap();
            let want: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            assert_eq!(without_bookkeeping(&got, &want), want, "{fs} {suite}");
        }
    }
}

fn python_env(args: &[&str]) -> (bool, String) {
    let o = std::process::Command::new("python3")
        .args(args)
        .current_dir(root())
        .envs(aws_env())
        .output()
        .expect("python3");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn kms_calls_counted_at_the_wire() {
    let k = Kms::new();
    let doc = batch(200);
    // 200 messages, default cache: one GenerateDataKey.
    let o = k.run(&["encrypt", "--kms-key-id", &k.key], Some(doc.as_bytes()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(k.proxy.generate.load(Ordering::SeqCst), 1);
    let enc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let arn_blob = enc["messages"][0]["encryptionKey"].clone();
    assert!(enc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["encryptionKey"] == arn_blob));
    // Decrypting them: one Decrypt.
    k.proxy.reset_counts();
    let o = k.run(&["decrypt"], Some(&o.stdout));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(k.proxy.decrypt.load(Ordering::SeqCst), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        serde_json::from_str::<Value>(&doc).unwrap()
    );
    // Fresh keys: one per message.
    k.proxy.reset_counts();
    let o = k.run(
        &["encrypt", "--kms-key-id", &k.key, "--fresh-key-per-message"],
        Some(doc.as_bytes()),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(k.proxy.generate.load(Ordering::SeqCst), 200);
    // A callback with 50 items sharing one key: one Decrypt.
    let items: Vec<Value> = (0..50)
        .map(|i| json!({"channel": "whatsapp", "messageId": format!("id{i}"), "from": "2799900001", "encryptionKey": null, "content": format!("reply {i}"), "whatsapp": {"profileName": "Thandi"}}))
        .collect();
    let cb = json!({"integrationId": "i", "event": {"moText": items}}).to_string();
    let enc = k.run(&["encrypt", "--kms-key-id", &k.key], Some(cb.as_bytes()));
    assert_eq!(code(&enc), 0);
    k.proxy.reset_counts();
    let o = k.run(&["decrypt"], Some(&enc.stdout));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(k.proxy.decrypt.load(Ordering::SeqCst), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        serde_json::from_str::<Value>(&cb).unwrap()
    );
}

#[test]
fn throttling_twice_then_success_exits_0() {
    let k = Kms::new();
    k.proxy.set(Faults {
        throttle_next: 2,
        ..Faults::default()
    });
    let o = k.run(
        &["encrypt", "--kms-key-id", &k.key],
        Some(batch(3).as_bytes()),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        k.proxy.generate.load(Ordering::SeqCst),
        3,
        "two throttled attempts and one success"
    );
}

#[test]
fn permanent_throttling_exits_5_within_bounds() {
    let k = Kms::new();
    k.proxy.set(Faults {
        throttle_next: usize::MAX,
        ..Faults::default()
    });
    let t = Instant::now();
    let o = k.run(
        &["encrypt", "--kms-key-id", &k.key],
        Some(batch(1).as_bytes()),
    );
    assert_fails(&o, 5, "throttled");
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn access_denied_exits_5_and_says_so() {
    let k = Kms::new();
    k.proxy.set(Faults {
        deny: true,
        ..Faults::default()
    });
    let o = k.run(
        &["encrypt", "--kms-key-id", &k.key],
        Some(batch(1).as_bytes()),
    );
    assert_fails(&o, 5, "access denied");
    assert!(stderr(&o).contains("kms:GenerateDataKey"), "{}", stderr(&o));
    // And on decrypt.
    k.proxy.set(Faults::default());
    let enc = k.run(
        &["encrypt", "--kms-key-id", &k.key],
        Some(batch(1).as_bytes()),
    );
    k.proxy.set(Faults {
        deny: true,
        ..Faults::default()
    });
    let o = k.run(&["decrypt"], Some(&enc.stdout));
    assert_fails(&o, 5, "kms:Decrypt");
}

#[test]
fn unreachable_and_hanging_endpoints_exit_5_quickly() {
    let k = Kms::new();
    let dead = format!("http://127.0.0.1:{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let t = Instant::now();
    let o = oneseal(
        &[
            "encrypt",
            "--kms-key-id",
            &k.key,
            "--endpoint-url",
            &dead,
            "--kms-timeout",
            "5",
        ],
        Some(batch(1).as_bytes()),
        &aws_env(),
    );
    assert_fails(&o, 5, "could not reach");
    assert!(t.elapsed() < Duration::from_secs(30));
    k.proxy.set(Faults {
        hang: true,
        ..Faults::default()
    });
    let t = Instant::now();
    let o = k.run(
        &["encrypt", "--kms-key-id", &k.key, "--kms-timeout", "2"],
        Some(batch(1).as_bytes()),
    );
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("timed out") || stderr(&o).contains("could not reach"),
        "{}",
        stderr(&o)
    );
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

#[test]
fn not_found_key_and_wrong_context() {
    let k = Kms::new();
    let o = k.run(
        &["encrypt", "--kms-key-id", "alias/does-not-exist"],
        Some(batch(1).as_bytes()),
    );
    assert_fails(&o, 5, "not found");
    let o = k.run(
        &[
            "encrypt",
            "--kms-key-id",
            &k.key,
            "--encryption-context",
            "tenant=acme",
        ],
        Some(batch(1).as_bytes()),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let ok = k.run(
        &["decrypt", "--encryption-context", "tenant=acme"],
        Some(&o.stdout),
    );
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let bad = k.run(
        &["decrypt", "--encryption-context", "tenant=other"],
        Some(&o.stdout),
    );
    assert_fails(&bad, 4, "encryption context");
}

/// 1500 concurrent library calls on a cold cache: one GenerateDataKey at the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_1500_concurrent_calls_one_kms_call() {
    use oneseal::core::{CacheConfig, KeyCache};
    use oneseal::kms::{AwsKmsProvider, KmsConfig};
    let k = Kms::new();
    for (name, v) in aws_env() {
        std::env::set_var(name, v);
    }
    let kms = AwsKmsProvider::new(KmsConfig {
        key_id: Some(k.key.clone()),
        endpoint_url: Some(k.proxy.url.clone()),
        region: Some("us-east-1".into()),
        ..KmsConfig::default()
    });
    let cache = Arc::new(KeyCache::new(
        Arc::new(kms),
        CacheConfig {
            max_messages: 10_000,
            ..CacheConfig::default()
        },
    ));
    let tasks: Vec<_> = (0..1500)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.sealing_key().await.map(|k| k.blob_b64().clone()) })
        })
        .collect();
    let mut blobs = std::collections::HashSet::new();
    for t in tasks {
        blobs.insert(t.await.unwrap().unwrap());
    }
    assert_eq!(blobs.len(), 1);
    assert_eq!(k.proxy.generate.load(Ordering::SeqCst), 1);
    // Fresh keys: never more calls in flight than the bound (checked in the core's unit
    // tests with a slow provider); here, one call per key at the wire.
    let cache = Arc::new(KeyCache::new(
        Arc::new(AwsKmsProvider::new(KmsConfig {
            key_id: Some(k.key.clone()),
            endpoint_url: Some(k.proxy.url.clone()),
            region: Some("us-east-1".into()),
            ..KmsConfig::default()
        })),
        CacheConfig {
            max_messages: 1,
            max_in_flight: 8,
            ..CacheConfig::default()
        },
    ));
    k.proxy.reset_counts();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.sealing_key().await.is_ok() })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(k.proxy.generate.load(Ordering::SeqCst), 100);
}

/// Regression: `bad_blob_shared_by_200_items_made_200_kms_calls` — a `--keep-going` decrypt
/// of 200 items sharing one bad blob asked KMS 200 times. Now at most 2 calls at the wire
/// (one Decrypt; the SDK does not retry InvalidCiphertext), and every item is reported.
#[test]
fn bad_blob_shared_by_200_items_made_200_kms_calls() {
    let k = Kms::new();
    let items: Vec<Value> = (0..200)
        .map(|i| json!({"messageId": format!("id{i}"), "from": "2799900001", "encryptionKey": null, "content": format!("reply {i}")}))
        .collect();
    let cb = json!({"event": {"moText": items}}).to_string();
    let enc = k.run(&["encrypt", "--kms-key-id", &k.key], Some(cb.as_bytes()));
    assert_eq!(code(&enc), 0, "{}", stderr(&enc));
    let mut doc: Value = serde_json::from_slice(&enc.stdout).unwrap();
    // Alter the shared KMS blob in the same way in every item: KMS answers InvalidCiphertext.
    let blob = doc["event"]["moText"][0]["encryptionKey"]
        .as_str()
        .unwrap()
        .to_string();
    let mut raw = oneseal::core::b64::decode(&blob).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x40;
    let bad = oneseal::core::b64::encode(&raw);
    for it in doc["event"]["moText"].as_array_mut().unwrap() {
        it["encryptionKey"] = bad.clone().into();
    }
    k.proxy.reset_counts();
    let o = k.run(
        &["decrypt", "--keep-going"],
        Some(doc.to_string().as_bytes()),
    );
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let reports = stderr(&o)
        .lines()
        .filter(|l| l.contains(".encryptionKey: "))
        .count();
    assert_eq!(reports, 200, "{}", stderr(&o));
    let calls = k.proxy.total.load(Ordering::SeqCst);
    assert!(calls <= 2, "{calls} KMS calls for one bad blob");
    // Without --keep-going: one call, exit 4 at the first item.
    k.proxy.reset_counts();
    let o = k.run(&["decrypt"], Some(doc.to_string().as_bytes()));
    assert_fails(&o, 4, "event.moText[0].encryptionKey");
    assert!(k.proxy.total.load(Ordering::SeqCst) <= 2);
    // An empty key costs no call at all.
    doc["event"]["moText"][0]["encryptionKey"] = "".into();
    k.proxy.reset_counts();
    let o = k.run(&["decrypt"], Some(doc.to_string().as_bytes()));
    assert_fails(&o, 3, "encryptionKey is empty");
    assert_eq!(k.proxy.total.load(Ordering::SeqCst), 0);
}

/// NDJSON shares one key cache across lines: 5 000 lines cost at most 6 GenerateDataKey
/// and 6 Decrypt calls at the wire.
#[test]
fn ndjson_5000_lines_share_the_key_cache() {
    let k = Kms::new();
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&json!({"messages": [{"channel": "whatsapp", "to": format!("27999{i:06}"), "content": format!("Statement {i}")}]}).to_string());
        text.push('\n');
    }
    k.proxy.reset_counts();
    let o = k.run(
        &["encrypt", "--ndjson", "--kms-key-id", &k.key],
        Some(text.as_bytes()),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let generated = k.proxy.generate.load(Ordering::SeqCst);
    assert!(generated <= 6, "{generated} GenerateDataKey for 5000 lines");
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 5000);
    k.proxy.reset_counts();
    let d = k.run(&["decrypt", "--ndjson"], Some(&o.stdout));
    assert_eq!(code(&d), 0, "{}", stderr(&d));
    let decrypted = k.proxy.decrypt.load(Ordering::SeqCst);
    assert!(decrypted <= 6, "{decrypted} Decrypt for 5000 lines");
    assert_eq!(d.stdout, text.as_bytes());
}

/// Regression: a `Decrypt` refused while `--kms-key-id` restricted it said only that the
/// caller needs kms:Decrypt, when the blob may simply belong to another key.
#[test]
fn a_decrypt_refused_under_kms_key_id_says_the_blob_may_belong_to_another_key() {
    let k = Kms::new();
    let enc = k.run(
        &["encrypt", "--kms-key-id", &k.key],
        Some(batch(1).as_bytes()),
    );
    k.proxy.set(Faults {
        deny: true,
        ..Faults::default()
    });
    let o = k.run(&["decrypt", "--kms-key-id", &k.key], Some(&enc.stdout));
    assert_fails(&o, 5, "may belong to another key");
}
