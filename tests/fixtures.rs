//! Every reference payload (fixtures/) through encrypt and decrypt, both suites: exactly its
//! policy leaves change, with the lengths the suite implies; `encryptionKey` lands where
//! the policy puts it; inline media gets `sha256Hash`; decrypt restores the document exactly;
//! and an independent implementation (Python `cryptography`) agrees both ways.

mod support;

use oneseal::core::without_bookkeeping;

use std::sync::Arc;

use oneseal::core::{
    b64, CacheConfig, Engine, EngineOptions, KeyCache, LocalProvider, PayloadKind, Policy,
    SecretKey, Suite,
};
use serde_json::Value;
use support::*;

fn engine(suite: Suite) -> Engine {
    let p = Arc::new(LocalProvider::from_key(
        &SecretKey::from_bytes([0x5a; 32]),
        "test",
    ));
    let cache = Arc::new(KeyCache::new(p, CacheConfig::default()));
    Engine::new(
        cache,
        Policy::default(),
        EngineOptions {
            suite,
            decrypt_suite: suite.into(),
            ..Default::default()
        },
    )
}

fn ptr_get<'a>(v: &'a Value, ptr: &str) -> &'a Value {
    v.pointer(ptr).unwrap_or_else(|| panic!("missing {ptr}"))
}

#[tokio::test]
async fn every_fixture_changes_exactly_its_policy_leaves_and_round_trips() {
    for suite in [Suite::Gcm, Suite::Cbc] {
        let eng = engine(suite);
        for f in fixtures() {
            let name = f.display().to_string();
            let plain_bytes = std::fs::read(&f).unwrap();
            let plain: Value = serde_json::from_slice(&plain_bytes).unwrap();
            let mut enc = plain.clone();
            let kind = eng.encrypt_document(&mut enc).await.unwrap();
            let leaves = expected_leaves(&f);
            // Which leaves changed (keys added by encryption are not "changed leaves").
            let changed: Vec<String> = changed_leaves(&plain, &enc)
                .into_iter()
                .filter(|p| !p.ends_with("/encryptionKey"))
                .collect();
            assert_eq!(changed, leaves, "{name} {suite}");
            for leaf in &leaves {
                let before = ptr_get(&plain, leaf).as_str().unwrap();
                let after = b64::decode(ptr_get(&enc, leaf).as_str().unwrap()).unwrap();
                let n = if leaf.ends_with("/content")
                    && after.len() != suite.sealed_len(before.len())
                {
                    b64::decode(before).unwrap().len() // inline media: the file's bytes
                } else {
                    before.len()
                };
                assert_eq!(after.len(), suite.sealed_len(n), "{name} {leaf} {suite}");
            }
            // encryptionKey placement.
            match kind {
                PayloadKind::OneRequest => {
                    for m in enc["messages"].as_array().unwrap() {
                        assert!(m["encryptionKey"].is_string(), "{name}");
                    }
                    assert!(enc.get("encryptionKey").is_none());
                }
                PayloadKind::LegacyRequest => {
                    assert!(enc["encryptionKey"].is_string(), "{name}");
                    for m in enc["messages"].as_array().unwrap() {
                        assert!(m.get("encryptionKey").is_none(), "{name}");
                    }
                }
                PayloadKind::OneCallback => {
                    for (ty, items) in enc["event"].as_object().unwrap() {
                        for it in items.as_array().unwrap() {
                            assert_eq!(
                                it["encryptionKey"].is_string(),
                                ty != "messageStatusUpdate",
                                "{name}"
                            );
                        }
                    }
                }
                PayloadKind::LegacyCallback => assert!(enc["encryptionKey"].is_string(), "{name}"),
                _ => unreachable!(),
            }
            // Inline media: sha256Hash of the file bytes.
            for leaf in leaves.iter().filter(|l| l.ends_with("/content")) {
                let raw = b64::decode(ptr_get(&plain, leaf).as_str().unwrap());
                let Ok(raw) = raw else { continue };
                let hash_ptr = match kind {
                    PayloadKind::OneRequest => leaf.replace("/content", "/media/sha256Hash"),
                    _ => leaf.replace("/content", "/sha256Hash"),
                };
                if let Some(h) = enc.pointer(&hash_ptr) {
                    use sha2::Digest;
                    assert_eq!(
                        h.as_str().unwrap(),
                        hex::encode(sha2::Sha256::digest(&raw)),
                        "{name}"
                    );
                }
            }
            // Decrypt restores the exact document, key order included.
            let mut dec = enc.clone();
            let report = eng.decrypt_document(&mut dec).await.unwrap();
            assert!(report.failures.is_empty());
            let dec = without_bookkeeping(&dec, &plain);
            assert_eq!(dec, plain, "{name} {suite}");
            assert_eq!(
                serde_json::to_string(&dec).unwrap(),
                serde_json::to_string(&plain).unwrap(),
                "{name} {suite}: key order"
            );
        }
    }
}

#[tokio::test]
async fn inline_media_gets_sha256_of_the_file() {
    let eng = engine(Suite::Gcm);
    let f = root().join("fixtures/one-api/requests/inline_media.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    eng.encrypt_document(&mut doc).await.unwrap();
    assert_eq!(
        doc["messages"][0]["media"]["sha256Hash"],
        "c414cd0e204de974f73753c7e28d7638e7b3691bb8b1a2bab6b25bb7fed7ce77"
    );
}

/// The CLI output, opened by the independent Python implementation, and platform-style
/// ciphertext from Python, opened by the CLI.
#[test]
fn cli_interop_with_independent_implementation_both_ways() {
    let dir = tempdir();
    let key = dir.path().join("local.key");
    let key_s = key.to_str().unwrap();
    let o = oneseal(&["key", "init", "--local-key", key_s], None, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for suite in ["gcm", "cbc"] {
        for f in fixtures() {
            let fs = f.to_str().unwrap();
            let enc = dir.path().join("enc.json");
            let o = oneseal(
                &[
                    "encrypt",
                    fs,
                    "--suite",
                    suite,
                    "-o",
                    enc.to_str().unwrap(),
                    "--local-key",
                    key_s,
                ],
                None,
                &[],
            );
            assert_eq!(code(&o), 0, "{fs}: {}", stderr(&o));
            let (ok, out) = python(&[
                "scripts/interop.py",
                "open",
                fs,
                enc.to_str().unwrap(),
                "--local-key",
                key_s,
            ]);
            assert!(ok, "{fs} {suite}: {out}");

            let (ok, sealed) = python(&[
                "scripts/interop.py",
                "seal",
                fs,
                "--suite",
                suite,
                "--local-key",
                key_s,
            ]);
            assert!(ok, "{sealed}");
            let o = oneseal(
                &["decrypt", "--suite", suite, "--local-key", key_s],
                Some(sealed.as_bytes()),
                &[],
            );
            assert_eq!(code(&o), 0, "{fs}: {}", stderr(&o));
            let got: Value = serde_json::from_slice(&o.stdout).unwrap();
            let want: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            assert_eq!(without_bookkeeping(&got, &want), want, "{fs} {suite}");
        }
    }
}

/// The strict tables are complete for what the references document: every fixture taken from
/// them encrypts in strict mode, exactly as without it.
#[tokio::test]
async fn every_fixture_passes_strict_mode() {
    let p = Arc::new(LocalProvider::from_key(
        &SecretKey::from_bytes([0x5a; 32]),
        "test",
    ));
    let strict = Engine::new(
        Arc::new(KeyCache::new(p, CacheConfig::default())),
        Policy::default().strict(Vec::new()),
        EngineOptions::default(),
    );
    for f in fixtures() {
        let mut doc: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        strict
            .encrypt_document(&mut doc)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}
