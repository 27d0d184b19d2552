//! The splice driver against the tree driver: the same bytes, errors and key calls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use proptest::prelude::*;
use serde_json::json;

use super::copier::{special, Copier};
use super::*;
use crate::cache::{CacheConfig, KeyCache};
use crate::provider::{KeyError, KeyProvider};
use crate::secret::{DataKey, SecretKey};
use crate::suite::FIXED_NONCES;
use crate::walker::{parse, serialize, EngineOptions};
use crate::Policy;

/// One data key for everything, and a count of the keys asked for: with fixed nonces,
/// two drivers' outputs of one document compare byte for byte.
#[derive(Debug, Default)]
struct Fixed {
    made: AtomicUsize,
}

const BLOB: &[u8] = b"the-one-data-key";

#[async_trait]
impl KeyProvider for Fixed {
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        self.made.fetch_add(1, Ordering::SeqCst);
        Ok(DataKey {
            key: SecretKey::from_bytes([5; 32]),
            blob: Arc::from(BLOB),
            key_arn: None,
        })
    }
    async fn decrypt_data_key(&self, blob: &[u8]) -> Result<Option<SecretKey>, KeyError> {
        match blob == BLOB {
            true => Ok(Some(SecretKey::from_bytes([5; 32]))),
            false => Err(KeyError::BadBlob("not the test's")),
        }
    }
}

fn engine(policy: Policy, opts: EngineOptions) -> (Engine, Arc<Fixed>) {
    let p = Arc::new(Fixed::default());
    let cache = KeyCache::new(p.clone(), CacheConfig::default());
    (Engine::new(Arc::new(cache), policy, opts), p)
}

fn plain() -> (Engine, Arc<Fixed>) {
    engine(Policy::default(), EngineOptions::default())
}

/// A test's failure: what went wrong, as text.
type Failed = Box<dyn std::error::Error>;

/// Runs `f` with fixed nonces on a runtime of its own (its error: the runtime's).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    FIXED_NONCES.with(|f| f.set(true));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("no runtime: {e}"))?;
    Ok(rt.block_on(f))
}

/// What a driver gave: its bytes or its error (as the user reads it), and the keys it
/// asked for.
type Outcome = (Result<Vec<u8>, String>, usize);

fn tree_encrypt(doc: &[u8]) -> Outcome {
    let (e, p) = plain();
    let r = block_on(async {
        let mut v = parse(doc)?;
        e.encrypt_document(&mut v).await?;
        serialize(&v, false)
    })
    .and_then(|r| r.map_err(|e| e.to_string()));
    (r, p.made.load(Ordering::SeqCst))
}

fn sliced_encrypt(doc: &[u8]) -> Outcome {
    let (e, p) = plain();
    let r = block_on(e.encrypt_slice(doc, false)).and_then(|r| r.map_err(|e| e.to_string()));
    (r, p.made.load(Ordering::SeqCst))
}

fn took_encrypt(doc: &[u8]) -> bool {
    let (e, _) = plain();
    !matches!(block_on(e.splice_encrypt(doc)), Ok(Err(Stop::Tree)))
}

fn tree_decrypt(doc: &[u8]) -> Result<(Vec<u8>, usize, usize), String> {
    let (e, _) = plain();
    block_on(async {
        let mut v = parse(doc)?;
        let r = e.decrypt_document(&mut v).await?;
        Ok((serialize(&v, false)?, r.items, r.skipped))
    })
    .and_then(|r| r.map_err(|e: Error| e.to_string()))
}

fn sliced_decrypt(doc: &[u8]) -> Result<(Vec<u8>, usize, usize), String> {
    let (e, _) = plain();
    block_on(e.decrypt_slice(doc, false)).and_then(|r| {
        r.map(|(out, r)| (out, r.items, r.skipped))
            .map_err(|e| e.to_string())
    })
}

fn took_decrypt(doc: &[u8]) -> bool {
    let (e, _) = plain();
    !matches!(block_on(e.splice_decrypt(doc)), Ok(Err(Stop::Tree)))
}

/// Both drivers give the same bytes (or error) and ask for the same keys, encrypting
/// and then decrypting; returns whether the splice driver took the encryption.
fn same_as_tree(name: &str, doc: &[u8]) -> bool {
    let tree = tree_encrypt(doc);
    let sliced = sliced_encrypt(doc);
    let show = |o: &Outcome| match &o.0 {
        Ok(b) => String::from_utf8_lossy(b).into_owned(),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(show(&sliced), show(&tree), "{name}");
    assert_eq!(sliced.1, tree.1, "{name}: keys made");
    if let Ok(enc) = &tree.0 {
        assert_eq!(sliced_decrypt(enc), tree_decrypt(enc), "{name}: decrypt");
    }
    took_encrypt(doc)
}

/// The mixed batch of the benchmarks (text, templates, locations, contacts, captions).
fn mixed(n: usize) -> Result<Vec<u8>, Failed> {
    let msgs: Vec<Value> = (0..n)
        .map(|i| match i % 5 {
            0 => json!({"channel": "whatsapp", "to": format!("2779{i:07}"), "content": format!("Balance R{i}.00")}),
            1 => json!({"channel": "whatsapp", "to": "1", "template": {"templateName": "t",
                "header": {"type": "text", "text": {"parameters": {"1": "Nov"}}},
                "body": {"parameters": {"1": format!("R{i}"), "2": "x"}},
                "buttons": {"websiteUrl": [{"listPosition": 1, "parameters": {"1": "a/1"}}]}}}),
            2 => json!({"channel": "whatsapp", "to": "1", "location": {"longitude": "18.6",
                "latitude": "-33.8", "name": "Branch", "address": "100 Edward Street"}}),
            3 => json!({"channel": "whatsapp", "to": "1", "contacts": [{"name": {"firstName": "J"},
                "phones": [{"phone": "+1 940", "type": "HOME"}], "urls": [], "org": {}}]}),
            _ => json!({"channel": "whatsapp", "to": "1", "media": {"fileId": "f.pdf", "caption": "c"}}),
        })
        .collect();
    Ok(serde_json::to_vec_pretty(&json!({ "messages": msgs }))?)
}

proptest! {
    /// The eight-bytes-at-a-time search finds the first quote, backslash or control
    /// character exactly.
    #[test]
    fn special_finds_the_first_quote_backslash_or_control(bytes in any::<[u8; 8]>()) {
        let first = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        let m = special(u64::from_le_bytes(bytes));
        prop_assert_eq!((m != 0).then(|| (m.trailing_zeros() / 8) as usize), first);
    }

    /// A string token read by the copier is the one serde_json reads (or neither reads it).
    #[test]
    fn strings_are_cut_where_serde_json_cuts_them(
        body in prop::collection::vec(prop_oneof![
            8 => 0x20u8..0x7f, 1 => Just(b'\\'), 1 => Just(b'"'), 1 => 0u8..0x20, 1 => 0x80u8..=0xff,
        ], 0..40),
    ) {
        let mut doc = vec![b'"'];
        doc.extend_from_slice(&body);
        let mut c = Copier::new(&doc);
        let ours = c.string().ok().map(|(raw, _)| raw.len() + 2);
        let mut stream = serde_json::Deserializer::from_slice(&doc).into_iter::<String>();
        let theirs = matches!(stream.next(), Some(Ok(_))).then(|| stream.byte_offset());
        // Where serde_json reads a string, the copier cuts it at the same place; the copier
        // may refuse more (escapes are checked later), never less.
        if let Some(n) = ours {
            let escaped = doc[1..n - 1].contains(&b'\\');
            if !escaped {
                prop_assert_eq!(Some(n), theirs);
            }
        }
        if let Some(n) = theirs {
            prop_assert_eq!(Some(n), ours);
        }
    }
}

#[test]
fn every_fixture_gives_the_tree_drivers_bytes() -> Result<(), Failed> {
    let mut took = 0;
    let fixtures = crate::walker::fixture_documents()?;
    assert!(fixtures.len() > 20, "{}", fixtures.len());
    for (name, doc) in fixtures {
        took += usize::from(same_as_tree(&name, &doc));
    }
    // The request fixtures without inline media are the splice driver's to take.
    assert!(took >= 10, "the splice driver took {took} fixtures");
    Ok(())
}

#[test]
fn a_mixed_batch_gives_the_tree_drivers_bytes() -> Result<(), Failed> {
    let doc = mixed(2500)?;
    assert!(same_as_tree("mixed", &doc));
    Ok(())
}

/// Documents the splice driver takes: serde_json's formatting of everything it copies.
const TAKEN: &[&str] = &[
    r#"{"messages":[{"channel":"whatsapp","to":"1","content":"caf\u00e9 \"q\" \\ \/ \n\t\u0001 \ud83d\ude00","clientMessageId":"\u00e9\u007f"}]}"#,
    r#"{"messages":[{"channel":"whatsapp","to":"1","content":"x","n":[1E5,-0,0.10,1e-7,12345678901234567890123,-1.5E+300,2e0]}]}"#,
    "{ \"messages\" :\n [ { \"channel\" : \"whatsapp\" ,\r\n\t\"content\" : \"é 😀\" } ] , \"x\" : [ ] , \"y\" : { } }  \n",
    r#"{"messages":[{"channel":"whatsapp","content":null,"location":{"name":null,"address":"a"},"x":null}]}"#,
    r#"{"messages":[]}"#,
    r#"{"a":{"b":[1,{},[[]],true,false,null]},"messages":[{}],"z":true}"#,
    r#"{"messages":[{"to":"1","content":"hi","caption":"c"},{"to":"2","hsm":{"parameters":{"1":"p"}}}]}"#,
    r#"{"messages":[{"channel":"whatsapp","contacts":[{"name":{"n":["a",null,{"b":"c"}]}},null,[]]}]}"#,
    r#"{"messages":[{"channel":"whatsapp","template":{"body":{"parameters":{}},"buttons":{"websiteUrl":[]}}}]}"#,
];

#[test]
fn what_it_copies_is_written_as_serde_json_writes_it() {
    for doc in TAKEN {
        assert!(same_as_tree(doc, doc.as_bytes()), "not taken: {doc}");
    }
}

/// Documents the splice driver hands to the tree driver, which then gives its usual
/// output or error.
const HANDED_ON: &[&str] = &[
    // A repeated member: the tree keeps the last value at the first one's place.
    r#"{"messages":[{"channel":"w","content":"a","content":"b"}]}"#,
    r#"{"messages":[{"channel":"w","content":"a"}],"messages":[]}"#,
    r#"{"messages":[{"chan\u006eel":"whatsapp","content":"a"}]}"#,
    r#"{"messages":[{"channel":"whatsapp","content":5}]}"#,
    r#"{"messages":[{"channel":"whatsapp","location":{"name":true}}]}"#,
    r#"{"messages":[{"channel":"whatsapp","contacts":[{"age":3}]}]}"#,
    r#"{"messages":[{"channel":"whatsapp","content":"a","encryptionKey":null}]}"#,
    r#"{"messages":[{"channel":"whatsapp","content":"a","encryptionKey":"eA=="}]}"#,
    r#"{"encryptionKey":null,"messages":[{"to":"1","content":"a"}]}"#,
    r#"{"messages":[{"content":"a"},]}"#,
    r#"{"messages":[{"content":"a",}]}"#,
    r#"{"messages":[]} x"#,
    r#"{"messages":[01]}"#,
    "",
    "  ",
    "[1]",
    r#"{"messages":{}}"#,
    r#"{"messages":[1]}"#,
    r#"{"event":{"moText":[{"content":"x"}]}}"#,
    r#"{"integrationId":"i","content":"x"}"#,
    r#"{"event":{"moText":[{"content":"x"}]},"messages":[{"channel":"whatsapp","content":"a"}]}"#,
    r#"{"messages":[{"channel":"whatsapp","content":"aGk=","media":{"contentType":"image/png"}}]}"#,
    r#"{"messages":[{"to":"1","content":"aGk=","contentType":"image/png"}]}"#,
    r#"{"messages":[{"channel":"whatsapp","caption":"legacy beside One API"}]}"#,
    "{\"messages\":[{\"content\":\"a\u{1}\"}]}",
    r#"{"messages":[{"content":"a"}]"#,
    r#"{"messages":[{"content":"\ud800"}]}"#,
    r#"{"messages":[{"channel":"whatsapp","content":"\ud800"}]}"#,
    r#"{"messages":[{"channel":"whatsapp","to":"\ud800"}]}"#,
    r#"{"messages":[{"channel":"whatsapp","location":{"name":"\x"}}]}"#,
];

#[test]
fn what_it_does_not_take_the_tree_driver_does() {
    for doc in HANDED_ON {
        assert!(!same_as_tree(doc, doc.as_bytes()), "taken: {doc}");
    }
    let deep = format!(
        r#"{{"messages":[{{"content":"a","x":{}1{}}}]}}"#,
        "[".repeat(110),
        "]".repeat(110)
    );
    assert!(!same_as_tree("deep", deep.as_bytes()));
    let invalid_utf8 = b"{\"messages\":[{\"content\":\"\xff\"}]}";
    assert!(!same_as_tree("invalid UTF-8", invalid_utf8));
}

#[test]
fn decryption_gives_the_tree_drivers_bytes_and_report() -> Result<(), Failed> {
    let one = sliced_encrypt(br#"{"messages":[{"channel":"whatsapp","content":"a"}]}"#).0?;
    let sealed: Value = serde_json::from_slice(&one)?;
    let ct = sealed["messages"][0]["content"]
        .as_str()
        .ok_or("no sealed content")?
        .to_string();
    let blob = crate::b64::encode(BLOB);
    let docs = [
        // Legacy: the document's key, used by messages without their own, then removed.
        json!({"encryptionKey": blob, "messages": [{"to": "1", "content": ct}, {"to": "2", "content": ct, "encryptionKey": blob}]}),
        // A message without its own key and a null one, with the document's key.
        json!({"messages": [{"to": "1", "content": ct, "encryptionKey": null}], "encryptionKey": blob}),
        // No key anywhere: skipped, left as it is (wrong types and all).
        json!({"messages": [{"channel": "whatsapp", "content": 5}, {"channel": "whatsapp", "content": ct, "encryptionKey": blob}]}),
    ];
    for d in &docs {
        let doc = serde_json::to_vec(d)?;
        assert!(took_decrypt(&doc), "{d}");
        assert_eq!(sliced_decrypt(&doc), tree_decrypt(&doc), "{d}");
    }
    Ok(())
}

#[test]
fn a_wrong_type_met_while_decrypting_hands_the_document_on() -> Result<(), Failed> {
    let blob = crate::b64::encode(BLOB);
    let d = json!({"messages": [{"channel": "whatsapp", "content": 5, "encryptionKey": blob}]});
    let doc = serde_json::to_vec(&d)?;
    assert!(!took_decrypt(&doc));
    let (s, t) = (sliced_decrypt(&doc), tree_decrypt(&doc));
    assert!(
        s.as_ref().is_err_and(|e| e.contains("messages[0].content")),
        "{s:?}"
    );
    assert_eq!(s, t);
    Ok(())
}

#[test]
fn a_decryption_failure_is_the_tree_drivers_error_at_the_same_path() -> Result<(), Failed> {
    let enc = sliced_encrypt(&mixed(12)?).0?;
    let mut v: Value = serde_json::from_slice(&enc)?;
    let text = v["messages"][5]["content"]
        .as_str()
        .ok_or("no sealed content")?
        .replace('A', "B");
    v["messages"][5]["content"] = Value::String(text + "AAAA");
    v["messages"][7]["location"]["name"] = json!("not base64!");
    v["messages"][9]["encryptionKey"] = json!("b3RoZXI=");
    for bad in [5, 7, 9] {
        let mut d = v.clone();
        for other in [5, 7, 9].iter().filter(|i| **i < bad) {
            d["messages"][*other] = json!({"channel": "whatsapp"});
        }
        let doc = serde_json::to_vec(&d)?;
        assert!(took_decrypt(&doc));
        let (s, t) = (sliced_decrypt(&doc), tree_decrypt(&doc));
        assert!(s.is_err(), "message {bad}");
        assert_eq!(s, t, "message {bad}");
    }
    Ok(())
}

#[test]
fn options_the_splice_driver_does_not_take_go_to_the_tree_driver() {
    let doc = br#"{"messages":[{"channel":"whatsapp","content":"a"}]}"#;
    let strict = Policy {
        strict: true,
        ..Policy::default()
    };
    let (e, _) = engine(strict, EngineOptions::default());
    assert!(matches!(
        block_on(e.splice_encrypt(doc)),
        Ok(Err(Stop::Tree))
    ));
    let keep_going = EngineOptions {
        keep_going: true,
        ..EngineOptions::default()
    };
    let (e, _) = engine(Policy::default(), keep_going);
    assert!(matches!(
        block_on(e.splice_decrypt(doc)),
        Ok(Err(Stop::Tree))
    ));
    let (e, _) = plain();
    assert!(matches!(block_on(e.splice_encrypt(doc)), Ok(Ok(_))));
}

/// JSON values of every kind, shallow enough to stay quick.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[ -~é😀\u{1}\"\\\\]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,3}|content|name|phones", inner), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Messages with policy members (text, nested, arrays, deep) and others.
fn any_message() -> impl Strategy<Value = Value> {
    let member = prop_oneof![
        Just("content".to_string()),
        Just("channel".to_string()),
        Just("to".to_string()),
        Just("location".to_string()),
        Just("template".to_string()),
        Just("contacts".to_string()),
        Just("media".to_string()),
        "[a-z]{1,6}",
    ];
    let value = prop_oneof![
        3 => "[ -~é\"\\\\]{0,16}".prop_map(Value::String),
        1 => any_json(),
        1 => Just(json!({"name": "n", "address": "a", "caption": "c"})),
        1 => Just(json!({"body": {"parameters": {"1": "p"}}, "templateName": "t"})),
        1 => Just(json!([{"name": {"first": "x"}, "phones": [{"phone": "1"}]}])),
    ];
    prop::collection::vec((member, value), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Whatever the request, the bytes out are the tree driver's, taken or handed on; and
/// the splice driver takes a good share of them (else this would prove little).
#[test]
fn any_request_gives_the_tree_drivers_bytes() -> Result<(), Failed> {
    let strategy = (
        prop::collection::vec(any_message(), 0..5),
        any_json(),
        any::<bool>(),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(128));
    let taken = std::cell::Cell::new(0usize);
    runner
        .run(&strategy, |(msgs, extra, pretty)| {
            let doc = json!({"messages": msgs, "x": extra});
            let bytes = if pretty {
                serde_json::to_vec_pretty(&doc)
            } else {
                serde_json::to_vec(&doc)
            }
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
            taken.set(taken.get() + usize::from(same_as_tree("generated", &bytes)));
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    // About 42 of 128 are taken (12 runs: 27-50, standard deviation about 6): at least 12,
    // five deviations below, so a random draw never fails it. It was 32, which about one
    // run in twenty missed (27 seen).
    assert!(taken.get() >= 12, "taken: {} of 128", taken.get());
    Ok(())
}

/// An engine whose cache makes keys ahead (as the gateway's and the Python package's do),
/// with a runtime for the keys it starts in the background.
fn ahead() -> Result<(Engine, Arc<Fixed>, tokio::runtime::Runtime), Failed> {
    let p = Arc::new(Fixed::default());
    let cfg = CacheConfig {
        refresh_ahead: true,
        ..CacheConfig::default()
    };
    let e = Engine::new(
        Arc::new(KeyCache::new(p.clone(), cfg)),
        Policy::default(),
        EngineOptions::default(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()?;
    Ok((e, p, rt))
}

/// Keys started in the background have been asked for by now.
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

/// Each driver's checking pass alone (no key taken, nothing written) starts the keys a
/// 3 000-message document will need: three, on a cold cache.
#[test]
fn both_checking_passes_start_a_large_documents_keys() -> Result<(), Failed> {
    let doc = mixed(3000)?;
    let kind = PayloadKind::OneRequest;
    for tree in [false, true] {
        let (e, p, rt) = ahead()?;
        rt.block_on(async {
            if tree {
                let mut v = parse(&doc)?;
                e.encrypt_pass(&mut v, kind, true).await?;
            } else {
                let watch = e.watched().ok_or("no watched names")?;
                e.shape(&doc, &watch, Some(kind))
                    .map_err(|_| "the shape pass did not take it")?;
            }
            settle().await;
            assert_eq!(p.made.load(Ordering::SeqCst), 3, "tree driver: {tree}");
            Ok::<_, Failed>(())
        })?;
    }
    Ok(())
}

/// With keys made ahead, a large document's later keys are started while it is checked. One
/// refused by its checks leaves them to the next document: the two cost the calls the good
/// one alone costs (its three keys, and the next made ahead as its last is used up).
#[test]
fn keys_started_for_a_refused_document_serve_the_next() -> Result<(), Failed> {
    let (e, p, rt) = ahead()?;
    let good = mixed(3000)?;
    let mut bad: Value = serde_json::from_slice(&good)?;
    bad["messages"][2999] = json!({"channel": "whatsapp", "to": "1", "content": 5});
    let bad = serde_json::to_vec(&bad)?;
    let made = || p.made.load(Ordering::SeqCst);
    rt.block_on(async {
        let refused = e.encrypt_slice(&bad, false).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.path() == Some("messages[2999].content")),
            "{refused:?}"
        );
        // The keys started while it was checked: one per thousand messages.
        settle().await;
        assert_eq!(made(), 3);
        e.encrypt_slice(&good, false).await?;
        settle().await;
        assert_eq!(made(), 4);
        Ok(())
    })
}
