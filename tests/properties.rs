//! Property tests: round trips over arbitrary Unicode and binary values and arbitrary
//! generated One API messages and callbacks; encryption never alters a non-policy leaf; and
//! decrypting random mutations of ciphertext never panics.

mod support;

use oneseal::core::without_bookkeeping;

use std::sync::Arc;

use oneseal::core::{
    CacheConfig, Engine, EngineOptions, KeyCache, LocalProvider, Policy, SecretKey, Suite,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use support::changed_leaves;

fn engine(suite: Suite) -> Engine {
    let p = Arc::new(LocalProvider::from_key(
        &SecretKey::from_bytes([0x11; 32]),
        "prop",
    ));
    Engine::new(
        Arc::new(KeyCache::new(p, CacheConfig::default())),
        Policy::default(),
        EngineOptions {
            suite,
            decrypt_suite: suite.into(),
            ..Default::default()
        },
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        Just(String::new()),
        "[a-z0-9 ]{0,300}"
    ]
}

fn plain_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn params() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map("[1-9]", text(), 0..4)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
}

/// A generated One API message and the JSON pointers (relative) of its policy leaves.
fn one_message() -> impl Strategy<Value = (Value, Vec<String>)> {
    (
        text(),
        proptest::option::of(text()),
        proptest::option::of((text(), text())),
        proptest::option::of(proptest::collection::vec(proptest::collection::btree_map("[a-z]{1,6}", text(), 1..4), 1..3)),
        proptest::option::of((params(), params(), params())),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..600)),
        proptest::collection::btree_map("x[a-z]{1,5}", plain_leaf(), 0..3),
    )
        .prop_map(|(content, caption, loc, contacts, tmpl, media, extra)| {
            let mut m = json!({"channel": "whatsapp", "to": "2799900001", "clientMessageId": "cid"});
            let mut leaves = vec![];
            match media {
                Some(bytes) => {
                    m["content"] = oneseal::core::b64::encode(&bytes).into();
                    m["media"] = json!({"contentType": "application/pdf", "fileName": "f.pdf"});
                    leaves.push("/content".to_string());
                }
                None => {
                    m["content"] = content.into();
                    leaves.push("/content".to_string());
                }
            }
            if let Some(c) = caption {
                if m.get("media").is_none() {
                    m["media"] = json!({"fileId": "UUID.xxx"});
                }
                m["media"]["caption"] = c.into();
                leaves.push("/media/caption".into());
            }
            if let Some((a, b)) = loc {
                m["location"] = json!({"latitude": a, "longitude": b, "name": null});
                leaves.extend(["/location/latitude".into(), "/location/longitude".into()]);
            }
            if let Some(cs) = contacts {
                for (i, c) in cs.iter().enumerate() {
                    for k in c.keys() {
                        leaves.push(format!("/contacts/{i}/name/{k}"));
                    }
                }
                m["contacts"] = Value::Array(cs.into_iter().map(|c| json!({"name": c})).collect());
            }
            if let Some((h, b, p)) = tmpl {
                for k in h.keys() {
                    leaves.push(format!("/template/header/text/parameters/{k}"));
                }
                for k in b.keys() {
                    leaves.push(format!("/template/body/parameters/{k}"));
                }
                for k in p.keys() {
                    leaves.push(format!("/template/buttons/suggestedResponse/postbackData/{k}"));
                }
                m["template"] = json!({"templateName": "t", "header": {"type": "text", "text": {"parameters": h}},
                    "body": {"parameters": b}, "buttons": {"suggestedResponse": {"postbackData": p}}});
            }
            for (k, v) in extra {
                m[k] = v; // non-policy members of any type
            }
            (m, leaves)
        })
}

fn callback_item() -> impl Strategy<Value = (Value, Vec<String>)> {
    (text(), text(), proptest::option::of(text()), proptest::option::of((text(), text())), any::<u64>())
        .prop_map(|(content, profile, postback, loc, ts)| {
            let mut it = json!({"channel": "whatsapp", "messageId": "m", "from": "2799900001", "timestamp": ts,
                "encryptionKey": null, "content": content, "whatsapp": {"profileName": profile}});
            let mut leaves = vec!["/content".to_string(), "/whatsapp/profileName".to_string()];
            if let Some(p) = postback {
                it["postbackData"] = p.into();
                leaves.push("/postbackData".into());
            }
            if let Some((a, b)) = loc {
                it["latitude"] = a.into();
                it["longitute"] = b.into(); // a typo that is NOT in the policy: must stay plain
                leaves.push("/latitude".into());
            }
            (it, leaves)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn one_api_requests_round_trip_touching_only_policy_leaves(
        msgs in proptest::collection::vec(one_message(), 1..5),
        cbc in any::<bool>(),
    ) {
        let suite = if cbc { Suite::Cbc } else { Suite::Gcm };
        let mut expected: Vec<String> = msgs.iter().enumerate()
            .flat_map(|(i, (_, l))| l.iter().map(move |p| format!("/messages/{i}{p}")))
            .collect();
        expected.sort();
        let plain = json!({"messages": msgs.into_iter().map(|(m, _)| m).collect::<Vec<_>>()});
        let eng = engine(suite);
        let mut enc = plain.clone();
        rt().block_on(eng.encrypt_document(&mut enc)).unwrap();
        let mut changed: Vec<String> = changed_leaves(&plain, &enc);
        // Policy leaves can keep their value only if... never: a fresh nonce makes it differ.
        changed.retain(|p| !p.ends_with("/encryptionKey"));
        prop_assert_eq!(changed, expected);
        let mut dec = enc.clone();
        rt().block_on(eng.decrypt_document(&mut dec)).unwrap();
        let dec = without_bookkeeping(&dec, &plain);
        prop_assert_eq!(serde_json::to_string(&dec).unwrap(), serde_json::to_string(&plain).unwrap());
    }

    #[test]
    fn callbacks_round_trip_touching_only_policy_leaves(
        items in proptest::collection::vec(callback_item(), 1..4),
        legacy in any::<bool>(),
    ) {
        let eng = engine(Suite::Gcm);
        let (plain, mut expected): (Value, Vec<String>) = if legacy {
            let (mut it, l) = items.into_iter().next().unwrap();
            it["integrationId"] = "i".into();
            (it, l)
        } else {
            let exp = items.iter().enumerate()
                .flat_map(|(i, (_, l))| l.iter().map(move |p| format!("/event/moText/{i}{p}")))
                .collect();
            (json!({"integrationId": "i", "event": {"moText": items.into_iter().map(|(m, _)| m).collect::<Vec<_>>(),
                "messageStatusUpdate": [{"status": "READ", "messageId": "x"}]}}), exp)
        };
        expected.sort();
        let mut enc = plain.clone();
        rt().block_on(eng.encrypt_document(&mut enc)).unwrap();
        let mut changed = changed_leaves(&plain, &enc);
        changed.retain(|p| !p.ends_with("/encryptionKey"));
        prop_assert_eq!(changed, expected);
        let mut dec = enc;
        rt().block_on(eng.decrypt_document(&mut dec)).unwrap();
        let dec = without_bookkeeping(&dec, &plain);
        prop_assert_eq!(serde_json::to_string(&dec).unwrap(), serde_json::to_string(&plain).unwrap());
    }

    #[test]
    fn arbitrary_text_and_binary_round_trip(s in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        for suite in [Suite::Gcm, Suite::Cbc] {
            let eng = engine(suite);
            let doc = json!({"messages": [
                {"to": "1", "content": s.clone(), "caption": s.clone()},
                {"to": "2", "contentType": "audio/ogg", "content": oneseal::core::b64::encode(&bytes)}
            ]});
            let bytes_in = serde_json::to_vec(&doc).unwrap();
            let enc = rt().block_on(eng.encrypt_slice(&bytes_in, false)).unwrap();
            let (dec, _) = rt().block_on(eng.decrypt_slice(&enc, false)).unwrap();
            let dec: Value = serde_json::from_slice(&dec).unwrap();
            prop_assert_eq!(without_bookkeeping(&dec, &doc), doc);
        }
    }

    #[test]
    fn decrypting_random_mutations_never_panics(pos in any::<prop::sample::Index>(), byte in any::<u8>(), leaf_flip in any::<prop::sample::Index>()) {
        let eng = engine(Suite::Gcm);
        let doc = br#"{"messages":[{"channel":"whatsapp","to":"1","content":"hello there","media":{"caption":"c"},"contacts":[{"name":{"formattedName":"Zoe"}}]}]}"#;
        let enc = rt().block_on(eng.encrypt_slice(doc, false)).unwrap();
        // Byte-level mutation of the serialized document.
        let mut m = enc.clone();
        let i = pos.index(m.len());
        m[i] = byte;
        let _ = rt().block_on(eng.decrypt_slice(&m, false));
        // Value-level mutation of one ciphertext.
        let mut v: Value = serde_json::from_slice(&enc).unwrap();
        let ct = v["messages"][0]["content"].as_str().unwrap().to_string();
        let mut raw = oneseal::core::b64::decode(&ct).unwrap();
        let j = leaf_flip.index(raw.len());
        raw[j] ^= byte | 1;
        v["messages"][0]["content"] = oneseal::core::b64::encode(&raw).into();
        let res = rt().block_on(eng.decrypt_document(&mut v));
        prop_assert!(res.is_err(), "an altered GCM value must not decrypt");
    }
}
