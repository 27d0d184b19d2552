//! Criterion benchmarks of oneseal's hot paths. Run: `cargo bench --bench hot_paths`
//! (add a filter, e.g. `-- walker`). Figures are compared as ratios within one run; see
//! scripts/compare.sh for the side-by-side against sops and openssl.
//!
//! - `fields`: one value sealed/opened, per suite, 16 B to 64 KiB.
//! - `walker`: a 200-message batch and a 5 000-message mixed document, encrypted and decrypted
//!   with a warm key cache, beside `baseline` = plain serde_json parse + serialize of the same.
//! - `streamed`: the bounded-memory path for large documents (a file read twice, messages
//!   cut out and processed one at a time) on the 5 000- and 50 000-message documents, beside
//!   the tree path on the same bytes.
//! - `ndjson`: 10 000 callback lines encrypted and decrypted one line at a time (what each
//!   NDJSON worker does per chunk), beside a plain parse + serialize of each line.
//! - `media`: the streaming encryptor from 1 KiB to 64 MiB, beside SHA-256 alone.
//! - `flows`: decrypting one Flows request (RSA-OAEP-2048 + AES-128-GCM).
//! - `cache`: the key-cache hit path.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use oneseal::core::{
    CacheConfig, DecryptSuite, Engine, EngineOptions, FieldCipher, KeyCache, LocalProvider, Policy,
    SecretKey, Suite,
};
use serde_json::{json, Value};
use sha2::Digest;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn engine(suite: Suite) -> Engine {
    let p = Arc::new(LocalProvider::from_key(
        &SecretKey::from_bytes([1; 32]),
        "bench",
    ));
    let cache = Arc::new(KeyCache::new(
        p,
        CacheConfig {
            max_messages: usize::MAX,
            ..CacheConfig::default()
        },
    ));
    Engine::new(
        cache,
        Policy::default(),
        EngineOptions {
            suite,
            decrypt_suite: suite.into(),
            ..EngineOptions::default()
        },
    )
}

/// A mixed One API document: text, templates, locations, contacts, media captions.
pub fn mixed_batch(n: usize) -> Vec<u8> {
    let msgs: Vec<Value> = (0..n)
        .map(|i| match i % 5 {
            0 => json!({"channel": "whatsapp", "to": format!("2779{i:07}"), "clientMessageId": format!("c{i}"),
                        "content": format!("Dear customer, your statement for account ****{:04} is ready. Balance R{}.{:02}", i % 10000, i * 13, i % 100)}),
            1 => json!({"channel": "whatsapp", "to": format!("2779{i:07}"), "clientMessageId": format!("c{i}"),
                        "template": {"templateName": "payment_alert", "header": {"type": "text", "text": {"parameters": {"1": "November 2026"}}},
                                     "body": {"parameters": {"1": format!("R{}.00", i), "2": format!("{:04}", i % 10000)}},
                                     "buttons": {"websiteUrl": [{"listPosition": 1, "parameters": {"1": format!("accounts/{i}")}}]}}}),
            2 => json!({"channel": "whatsapp", "to": format!("2779{i:07}"), "clientMessageId": format!("c{i}"),
                        "location": {"longitude": "18.635891216806", "latitude": "-33.881037287485", "name": "Branch", "address": "100 Edward Street, Bellville 7530"}}),
            3 => json!({"channel": "whatsapp", "to": format!("2779{i:07}"), "clientMessageId": format!("c{i}"),
                        "contacts": [{"name": {"firstName": "John", "formattedName": "John Smith", "lastName": "Smith"},
                                      "phones": [{"phone": "+1 (940) 555-1234", "type": "HOME"}], "emails": [{"email": "john@example.com", "type": "WORK"}]}]}),
            _ => json!({"channel": "whatsapp", "to": format!("2779{i:07}"), "clientMessageId": format!("c{i}"),
                        "media": {"fileId": format!("{i:08x}-8a51-4413-a134-928c2b085d31.pdf"), "caption": "Your policy schedule"}}),
        })
        .collect();
    serde_json::to_vec(&json!({ "messages": msgs })).unwrap()
}

fn fields(c: &mut Criterion) {
    let cipher = FieldCipher::new(&SecretKey::from_bytes([2; 32]));
    let mut g = c.benchmark_group("fields");
    for size in [16usize, 256, 4096, 65536] {
        let pt = vec![b'a'; size];
        g.throughput(Throughput::Bytes(size as u64));
        for suite in [Suite::Gcm, Suite::Cbc] {
            g.bench_with_input(
                BenchmarkId::new(format!("seal-{suite}"), size),
                &pt,
                |b, pt| b.iter(|| cipher.seal(suite, black_box(pt)).unwrap()),
            );
            let ct = cipher.seal(suite, &pt).unwrap();
            g.bench_with_input(
                BenchmarkId::new(format!("open-{suite}"), size),
                &ct,
                |b, ct| {
                    b.iter(|| {
                        cipher
                            .open(DecryptSuite::from(suite), black_box(ct))
                            .unwrap()
                    })
                },
            );
        }
    }
    g.finish();
}

fn walker(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("walker");
    g.sample_size(20);
    for n in [1usize, 200, 5000] {
        let doc = mixed_batch(n);
        g.throughput(Throughput::Bytes(doc.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("baseline-parse-serialize", n),
            &doc,
            |b, doc| {
                b.iter(|| {
                    let v: Value = serde_json::from_slice(black_box(doc)).unwrap();
                    serde_json::to_vec(&v).unwrap()
                })
            },
        );
        for suite in [Suite::Gcm, Suite::Cbc] {
            let e = engine(suite);
            rt.block_on(e.encrypt_slice(&doc, false)).unwrap(); // warm the key cache
            g.bench_with_input(
                BenchmarkId::new(format!("encrypt-{suite}"), n),
                &doc,
                |b, doc| b.iter(|| rt.block_on(e.encrypt_slice(black_box(doc), false)).unwrap()),
            );
            let enc = rt.block_on(e.encrypt_slice(&doc, false)).unwrap();
            rt.block_on(e.decrypt_slice(&enc, false)).unwrap();
            g.bench_with_input(
                BenchmarkId::new(format!("decrypt-{suite}"), n),
                &enc,
                |b, enc| b.iter(|| rt.block_on(e.decrypt_slice(black_box(enc), false)).unwrap()),
            );
        }
    }
    g.finish();
}

fn streamed(c: &mut Criterion) {
    use std::io::Write as _;
    // encrypt_file/decrypt_file block on the runtime for key calls: called from this (non
    // runtime) thread, as the CLI does from a blocking section.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("streamed");
    g.sample_size(10);
    for n in [5000usize, 50_000] {
        let doc = mixed_batch(n);
        g.throughput(Throughput::Bytes(doc.len() as u64));
        let e = engine(Suite::Gcm);
        let mut plain = tempfile::tempfile().unwrap();
        plain.write_all(&doc).unwrap();
        g.bench_function(BenchmarkId::new("tree-encrypt", n), |b| {
            b.iter(|| {
                rt.block_on(e.encrypt_slice(black_box(&doc), false))
                    .unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("streamed-encrypt", n), |b| {
            b.iter(|| {
                e.encrypt_file(rt.handle(), &mut plain, std::io::sink(), false)
                    .unwrap()
            })
        });
        let enc = rt.block_on(e.encrypt_slice(&doc, false)).unwrap();
        let mut sealed = tempfile::tempfile().unwrap();
        sealed.write_all(&enc).unwrap();
        g.bench_function(BenchmarkId::new("tree-decrypt", n), |b| {
            b.iter(|| {
                rt.block_on(e.decrypt_slice(black_box(&enc), false))
                    .unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("streamed-decrypt", n), |b| {
            b.iter(|| {
                e.decrypt_file(rt.handle(), &mut sealed, std::io::sink(), false)
                    .unwrap()
            })
        });
    }
    g.finish();
}

/// One-line One API callbacks, as an archive holds them.
fn callback_lines(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let v = match i % 3 {
                0 => json!({"event": {"moText": [{"channel": "whatsapp", "messageId": format!("m{i}"), "from": "2799900001",
                        "timestamp": 1506607698000u64, "content": format!("Hello, question {i} about my account"),
                        "encryptionKey": null, "whatsapp": {"profileName": "Thandi"}}]}}),
                1 => json!({"event": {"moLocation": [{"channel": "whatsapp", "messageId": format!("l{i}"), "from": "2799900001",
                        "latitude": "-33.9", "longitude": "18.4", "locationName": "Cape Town", "encryptionKey": null}]}}),
                _ => json!({"event": {"messageStatusUpdate": [{"messageId": format!("s{i}"), "statusCode": 5, "status": "DELIVERED"}]}}),
            };
            serde_json::to_vec(&v).unwrap()
        })
        .collect()
}

fn ndjson(c: &mut Criterion) {
    let rt = rt();
    let e = engine(Suite::Gcm);
    let lines = callback_lines(10_000);
    let sealed: Vec<Vec<u8>> = lines
        .iter()
        .map(|l| rt.block_on(e.encrypt_slice(l, false)).unwrap())
        .collect();
    let mut g = c.benchmark_group("ndjson");
    g.sample_size(10);
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("baseline-parse-serialize-10000-lines", |b| {
        b.iter(|| {
            for l in &sealed {
                let v: Value = serde_json::from_slice(black_box(l)).unwrap();
                black_box(serde_json::to_vec(&v).unwrap());
            }
        })
    });
    g.bench_function("decrypt-10000-lines", |b| {
        b.iter(|| {
            for l in &sealed {
                black_box(rt.block_on(e.decrypt_slice(l, false)).unwrap());
            }
        })
    });
    g.bench_function("encrypt-10000-lines", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(rt.block_on(e.encrypt_slice(l, false)).unwrap());
            }
        })
    });
    g.finish();
}

fn media(c: &mut Criterion) {
    let key = SecretKey::from_bytes([4; 32]);
    let mut g = c.benchmark_group("media");
    for size in [1usize << 10, 1 << 16, 1 << 20, 16 << 20, 64 << 20] {
        let data = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 16 << 20 {
            g.sample_size(10);
        }
        g.bench_with_input(BenchmarkId::new("sha256-only", size), &data, |b, d| {
            b.iter(|| sha2::Sha256::digest(black_box(d)))
        });
        for suite in [Suite::Gcm, Suite::Cbc] {
            g.bench_with_input(
                BenchmarkId::new(format!("encrypt-stream-{suite}"), size),
                &data,
                |b, d| {
                    b.iter(|| {
                        oneseal::media::encrypt_stream(
                            &key,
                            suite,
                            &d[..],
                            &mut std::io::sink(),
                            &|_| {},
                        )
                        .unwrap()
                    })
                },
            );
        }
        let mut sealed = Vec::new();
        oneseal::media::encrypt_stream(&key, Suite::Gcm, &data[..], &mut sealed, &|_| {}).unwrap();
        g.bench_with_input(
            BenchmarkId::new("decrypt-stream-gcm", size),
            &sealed,
            |b, s| {
                b.iter(|| {
                    oneseal::media::decrypt_stream(
                        &key,
                        Suite::Gcm,
                        &s[..],
                        s.len() as u64,
                        &mut std::io::sink(),
                        &|_| {},
                    )
                    .unwrap()
                })
            },
        );
    }
    g.finish();
}

fn flows(c: &mut Criterion) {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/vectors/flows-private-key.pem"
    ))
    .unwrap();
    let key = oneseal::flows::BusinessKey::from_pem(&pem, None).unwrap();
    let public = key.public_key_pem().unwrap();
    let body = oneseal::flows::testing::encrypt_request_for_tests(
        &public,
        br#"{"version":"3.0","action":"data_exchange","data":{"a":1}}"#,
    )
    .unwrap();
    let mut g = c.benchmark_group("flows");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decrypt-request", |b| {
        b.iter(|| key.decrypt_request(black_box(body.as_bytes())).unwrap())
    });
    g.finish();
}

fn cache(c: &mut Criterion) {
    let rt = rt();
    let p = Arc::new(LocalProvider::from_key(
        &SecretKey::from_bytes([1; 32]),
        "bench",
    ));
    let cache = KeyCache::new(
        p,
        CacheConfig {
            max_messages: usize::MAX,
            ..CacheConfig::default()
        },
    );
    let blob = rt.block_on(cache.sealing_key()).unwrap().blob().to_vec();
    rt.block_on(cache.opening_key(&blob)).unwrap();
    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sealing-key-hit", |b| {
        b.iter(|| rt.block_on(cache.sealing_key()).unwrap())
    });
    g.bench_function("opening-key-hit", |b| {
        b.iter(|| rt.block_on(cache.opening_key(black_box(&blob))).unwrap())
    });
    g.finish();
}

criterion_group!(benches, fields, walker, streamed, ndjson, media, flows, cache);
criterion_main!(benches);
