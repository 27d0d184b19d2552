//! The bodies of oneseal's fuzz targets. Each takes arbitrary bytes, must never panic, and
//! checks the invariants that must hold for any input.

use std::sync::{Arc, OnceLock};

use oneseal_core::{
    CacheConfig, DecryptSuite, Engine, EngineOptions, FieldCipher, KeyCache, LocalProvider, Policy,
    SecretKey, Suite,
};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let p = Arc::new(LocalProvider::from_key(
            &SecretKey::from_bytes([7; 32]),
            "fuzz",
        ));
        Engine::new(
            Arc::new(KeyCache::new(p, CacheConfig::default())),
            Policy::default(),
            EngineOptions::default(),
        )
    })
}

/// Any bytes as a document: encrypt must either fail or round-trip through decrypt to the
/// same JSON value; decrypt of the raw input must not panic.
pub fn walker(data: &[u8]) {
    let e = engine();
    let rt = runtime();
    let _ = rt.block_on(e.decrypt_slice(data, false));
    if let Ok(enc) = rt.block_on(e.encrypt_slice(data, false)) {
        let (dec, _) = rt
            .block_on(e.decrypt_slice(&enc, false))
            .expect("what encrypt wrote must decrypt");
        let a: serde_json::Value = serde_json::from_slice(data).expect("encrypt accepted it");
        let b: serde_json::Value = serde_json::from_slice(&dec).expect("decrypt output is JSON");
        assert_eq!(
            oneseal_core::without_bookkeeping(&b, &a),
            a,
            "round trip changed the document"
        );
    }
}

/// Any bytes as a field ciphertext under a fixed key, every suite setting: never panics;
/// and sealing the bytes opens back to them.
pub fn field_decrypt(data: &[u8]) {
    let c = FieldCipher::new(&SecretKey::from_bytes([9; 32]));
    for s in [DecryptSuite::Auto, DecryptSuite::Gcm, DecryptSuite::Cbc] {
        let _ = c.open(s, data);
    }
    let _ = oneseal_core::b64::decode(data);
    for s in [Suite::Gcm, Suite::Cbc] {
        let ct = c.seal(s, data).expect("seal");
        assert_eq!(c.open(s.into(), &ct).expect("open"), data);
    }
}

/// Any bytes as an encrypted media file: the streaming opener never panics, and for gcm
/// never accepts what it did not seal (forgery odds 2^-128).
pub fn media_decrypt(data: &[u8]) {
    let k = SecretKey::from_bytes([3; 32]);
    for s in [Suite::Gcm, Suite::Cbc] {
        let r = oneseal_core::stream::open_buffer(&k, s, data);
        if s == Suite::Gcm {
            assert!(r.is_err(), "gcm accepted arbitrary bytes");
        }
    }
    let (ct, _) = oneseal_core::stream::seal_with_hash(&k, Suite::Gcm, data).expect("seal");
    // A fuzz target's panic is its finding: opening what was just sealed must succeed.
    assert_eq!(
        oneseal_core::stream::open_buffer(&k, Suite::Gcm, &ct).expect("open"),
        data
    );
}

/// Any bytes as a Flows request body: never panics, never decrypts (no valid wrapped key).
pub fn flows_request(data: &[u8]) {
    static K: OnceLock<oneseal_flows::BusinessKey> = OnceLock::new();
    let pem = include_str!("../../fixtures/vectors/flows-private-key.pem");
    let k = K.get_or_init(|| oneseal_flows::BusinessKey::from_pem(pem, None).expect("key"));
    if let Err(e) = k.decrypt_request(data) {
        assert!(matches!(e.http_status(), 421 | 500));
    }
    let _ = oneseal_flows::verify_signature(b"s", data, &String::from_utf8_lossy(data));
}

/// The targets by name.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("walker", walker),
    ("field_decrypt", field_decrypt),
    ("media_decrypt", media_decrypt),
    ("flows_request", flows_request),
];
