//! Documents of any size in bounded memory. Instead of parsing the whole
//! document into one tree, the `messages` array (requests) or the `event` arrays (One API
//! callbacks) are read element by element from a file: each message is parsed, encrypted or
//! decrypted by the same per-item code as the tree path, serialized and written before the
//! next is read. Memory is one message plus buffers, whatever the document's size.
//!
//! The file is read twice. The first pass sees what the tree path sees before touching
//! anything: the payload kind (by the same detection), the checks of the dry encryption pass
//! (so no key is taken for a bad document), and for decryption the top-level key and
//! the keys to unwrap ahead. The second pass does the work and writes. The output is the
//! bytes the tree path writes: members in document order, compact or pretty, a newline at
//! the end.
//!
//! Legacy callbacks (one flat item) are not streamed: [`Streamed::UseTree`] says so, as it
//! does for the one layout that would need the results before the items (a legacy request's
//! top-level `encryptionKey` ahead of its messages, decrypted with `keep_going`).

mod scanner;
mod writer;

use std::fs::File;
use std::io::Write;

use serde_json::Value;
use tokio::runtime::Handle;

use super::detect::{detect_shape, Markers, PayloadKind, Shape, ENCRYPTION_KEY};
use super::document::{Sealing, Unsealing};
use super::item::{as_object_mut, refuse_existing_key, Blobs, Engine, Report};
use super::layout::{Items, KeyScope};
use crate::error::{type_name, Error};
use crate::suite::NonceSource;
use scanner::{drive, drive_light, Ev, EVENT_TYPE};
use writer::{item_path, Step, Writer};

/// What a streamed run did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Streamed<T> {
    /// Done; the output is written.
    Done(T),
    /// This document is better handled by the tree path (nothing was written).
    UseTree,
}

/// The first pass: what detection and the checks need.
#[derive(Default)]
struct Scan {
    shape: Shape,
    /// Messages seen.
    messages: usize,
    /// The top-level `encryptionKey` value, and whether it came before `messages`.
    top_key: Option<Value>,
    top_key_first: bool,
    seen_messages: bool,
    /// A message without its own key (decrypt: it would use the top-level one).
    uses_top: bool,
    blobs: Blobs,
    /// The first failure of the dry encryption pass under each request policy, and under
    /// the callback policy.
    dry_one: Option<Error>,
    dry_legacy: Option<Error>,
    dry_callback: Option<Error>,
    /// Top-level members besides the items (strict mode checks them).
    top_members: serde_json::Map<String, Value>,
}

impl Engine {
    fn is_plain_event(&self, ty: &str) -> bool {
        self.policy.plain_events.iter().any(|p| p == ty)
    }

    fn scan(&self, file: &mut File, encrypt: bool) -> Result<Scan, Error> {
        let mut s = Scan::default();
        let mut markers = Markers::default();
        let mut event_ty: Option<String> = None;
        let mut index = 0usize;
        let mut path = String::new();
        let mut nonces = NonceSource::new();
        let pass = if encrypt { drive } else { drive_light };
        pass(file, &mut |ev| {
            match ev {
                Ev::Member(k, v) => {
                    // Bounded: past 64 names one more stands for the rest (a document with
                    // that many top-level members is not one strict mode forwards anyway).
                    let name = if s.top_members.len() < 64 {
                        k
                    } else {
                        "(65th top-level member)"
                    };
                    s.top_members.insert(name.to_string(), Value::Null);
                    if k == ENCRYPTION_KEY {
                        s.shape.top_key = true;
                        s.top_key_first = !s.seen_messages;
                        s.blobs.note(Some(&v));
                        s.top_key = Some(v);
                    } else if k == "integrationId" {
                        s.shape.integration_id = true;
                    }
                }
                Ev::ArrayStart => {
                    index = 0;
                    if event_ty.is_none() {
                        s.seen_messages = true;
                    }
                }
                Ev::ArrayEnd => {}
                Ev::EventStart => s.shape.event = Some(Ok(())),
                Ev::EventType(t) => event_ty = Some(t.to_string()),
                Ev::EventEnd => event_ty = None,
                Ev::Wrong("messages", v) => s.shape.messages = Some(Err(type_name(&v))),
                Ev::Wrong("event", v) => s.shape.event = Some(Err(type_name(&v))),
                Ev::Wrong(_, v) => {
                    let ty = event_ty.clone().unwrap_or_default();
                    if encrypt && !self.is_plain_event(&ty) && s.dry_callback.is_none() {
                        s.dry_callback = Some(Error::WrongType {
                            path: format!("event.{ty}"),
                            expected: "an array of items",
                            found: type_name(&v),
                        });
                    }
                }
                Ev::Item(mut v) => {
                    let i = index;
                    index += 1;
                    let in_messages = event_ty.is_none();
                    if in_messages {
                        s.messages += 1;
                        markers.note(i, &v);
                    }
                    if !encrypt {
                        if let Some(m) = v.as_object() {
                            let own = m.get(ENCRYPTION_KEY);
                            s.blobs.note(own);
                            if in_messages && matches!(own, None | Some(Value::Null)) {
                                s.uses_top = true;
                            }
                        }
                        return Ok(());
                    }
                    if in_messages {
                        for (slot, policy) in [
                            (&mut s.dry_one, PayloadKind::OneRequest),
                            (&mut s.dry_legacy, PayloadKind::LegacyRequest),
                        ] {
                            if slot.is_none() {
                                item_path(&mut path, None, i);
                                *slot = as_object_mut(&mut v, &path)
                                    .and_then(|m| {
                                        refuse_existing_key(m, &path)?;
                                        self.seal_item(m, policy, None, &mut path, &mut nonces)
                                    })
                                    .err();
                            }
                        }
                    } else if let Some(ty) = &event_ty {
                        if s.dry_callback.is_none() && !self.is_plain_event(ty) {
                            item_path(&mut path, Some(ty), i);
                            s.dry_callback = as_object_mut(&mut v, &path)
                                .and_then(|m| {
                                    refuse_existing_key(m, &path)?;
                                    self.seal_item(
                                        m,
                                        PayloadKind::OneCallback,
                                        None,
                                        &mut path,
                                        &mut nonces,
                                    )
                                })
                                .err();
                        }
                    }
                }
            }
            Ok(())
        })?;
        if s.seen_messages && s.shape.messages.is_none() {
            s.shape.messages = Some(Ok(markers));
        }
        Ok(s)
    }
}

impl Engine {
    /// Encrypts the document in `file` into `out` in bounded memory (see the module doc).
    /// Runs on a thread that may block; `rt` serves the key-service calls.
    pub fn encrypt_file(
        &self,
        rt: &Handle,
        file: &mut File,
        out: impl Write,
        pretty: bool,
    ) -> Result<Streamed<PayloadKind>, Error> {
        let mut scan = self.scan(file, true)?;
        let kind = detect_shape(&scan.shape, self.opts.api)?;
        if scan.seen_messages {
            scan.top_members.insert("messages".into(), Value::Null);
        }
        if scan.shape.event.is_some() {
            scan.top_members.insert("event".into(), Value::Null);
        }
        self.compiled_kind(kind).check_top(&scan.top_members)?;
        let dry = match kind {
            PayloadKind::OneRequest => scan.dry_one,
            PayloadKind::LegacyRequest => {
                if matches!(&scan.top_key, Some(v) if !v.is_null()) {
                    return Err(Error::AlreadyEncrypted {
                        path: ENCRYPTION_KEY.into(),
                    });
                }
                scan.dry_legacy
            }
            PayloadKind::OneCallback => scan.dry_callback,
            _ => return Ok(Streamed::UseTree),
        };
        if let Some(e) = dry {
            return Err(e);
        }
        let mut w = Writer::new(out, pretty)?;
        // The same per-document core as the tree path; the first pass did the checks.
        let mut sealing = Sealing::new(self, kind, false);
        sealing.plan(scan.messages);
        let layout = sealing.layout();
        let mut top_key_written = false;
        drive(file, &mut |ev| match w.step(ev)? {
            Step::Layout => Ok(()),
            Step::Member(k, v) if layout.key == KeyScope::Document && k == ENCRYPTION_KEY => {
                // A `null` placeholder: the key goes where it stands (as set_member does), so
                // it is needed now if any message will use it.
                let key = if scan.messages > 0 {
                    rt.block_on(sealing.document_key("messages[0]"))?
                } else {
                    None
                };
                top_key_written = true;
                let v = match key {
                    Some(key) => Value::String(key.blob_b64().to_string()),
                    None => v,
                };
                w.out.member(k, &v)
            }
            Step::Member(k, v) => w.out.member(k, &v),
            // A plain event type may hold anything: passed through, as the tree path does.
            Step::Wrong(EVENT_TYPE, v) => w.out.value(&v),
            Step::Wrong(k, _) => Err(Error::UnknownPayload(format!(
                "{k} changed between the two reads of the input"
            ))),
            Step::Item(mut v) => {
                let path = &mut w.path;
                // As the tree path: requests' messages, callbacks' event items (not the plain
                // types); anything else passes through.
                let ours = match (w.event_ty.as_deref(), layout.items) {
                    (None, Items::Messages) => true,
                    (Some(ty), Items::Events) => !self.is_plain_event(ty),
                    _ => false,
                };
                if ours {
                    rt.block_on(sealing.item(as_object_mut(&mut v, path)?, path))?;
                }
                w.out.element(&v)
            }
        })?;
        if let (Some(key), false) = (sealing.finish(), top_key_written) {
            w.out
                .member(ENCRYPTION_KEY, &Value::String(key.blob_b64().to_string()))?;
        }
        w.finish()?;
        Ok(Streamed::Done(kind))
    }

    /// Decrypts the document in `file` into `out` in bounded memory (see the module doc).
    pub fn decrypt_file(
        &self,
        rt: &Handle,
        file: &mut File,
        out: impl Write,
        pretty: bool,
    ) -> Result<Streamed<Report>, Error> {
        let scan = self.scan(file, false)?;
        let kind = detect_shape(&scan.shape, self.opts.api)?;
        let request = matches!(kind, PayloadKind::OneRequest | PayloadKind::LegacyRequest);
        if kind == PayloadKind::LegacyCallback
            || (request && self.opts.keep_going && scan.top_key_first && scan.uses_top)
        {
            return Ok(Streamed::UseTree);
        }
        // The same per-document core as the tree path.
        let mut unsealing = Unsealing::new(self, kind, scan.top_key.as_ref())?;
        rt.block_on(unsealing.prefetch(scan.blobs));
        let mut w = Writer::new(out, pretty)?;
        drive(file, &mut |ev| match w.step(ev)? {
            Step::Layout => Ok(()),
            Step::Member(k, v) => {
                // The top-level key goes once messages used it. Ahead of them, whether they
                // will is known from the first pass (the keep_going case went the tree path).
                let used = if scan.top_key_first {
                    scan.uses_top
                } else {
                    unsealing.used_top()
                };
                if k == ENCRYPTION_KEY && unsealing.has_top_key() && used {
                    return Ok(());
                }
                w.out.member(k, &v)
            }
            Step::Wrong(EVENT_TYPE, v) => Err(Error::WrongType {
                path: format!("event.{}", w.event_ty.clone().unwrap_or_default()),
                expected: "an array of items",
                found: type_name(&v),
            }),
            Step::Wrong(k, _) => Err(Error::UnknownPayload(format!(
                "{k} changed between the two reads of the input"
            ))),
            // As the tree path: requests' messages, callbacks' event items.
            Step::Item(v) if request == w.event_ty.is_some() => w.out.element(&v),
            Step::Item(mut v) => {
                let path = &mut w.path;
                rt.block_on(unsealing.item(as_object_mut(&mut v, path)?, path))?;
                w.out.element(&v)
            }
        })?;
        let report = unsealing.finish();
        w.finish()?;
        Ok(Streamed::Done(report))
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use std::sync::Arc;

    use super::scanner::drive_chunked;
    use super::*;
    use crate::cache::{CacheConfig, KeyCache};
    use crate::local::LocalProvider;
    use crate::secret::SecretKey;
    use crate::walker::{parse, EngineOptions};

    fn engine(keep_going: bool) -> Engine {
        let p = Arc::new(LocalProvider::from_key(
            &SecretKey::from_bytes([9; 32]),
            "t",
        ));
        Engine::new(
            Arc::new(KeyCache::new(p, CacheConfig::default())),
            crate::Policy::default(),
            EngineOptions {
                keep_going,
                ..EngineOptions::default()
            },
        )
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    /// Every string replaced by "": structure, key order and all other values kept.
    fn shape(v: &Value) -> Value {
        match v {
            Value::String(_) => Value::String(String::new()),
            Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
            }
            other => other.clone(),
        }
    }

    /// A test's failure: what went wrong.
    type Failed = Box<dyn std::error::Error>;

    /// Every fixture, its messages or items repeated so arrays have several elements.
    fn documents() -> Result<Vec<(String, Vec<u8>)>, Failed> {
        let mut out = Vec::new();
        for (name, bytes) in crate::walker::fixture_documents()? {
            let mut v: Value = serde_json::from_slice(&bytes)?;
            if let Some(Value::Array(a)) = v.get_mut("messages") {
                let copy = a.clone();
                for _ in 0..3 {
                    a.extend(copy.iter().cloned());
                }
            }
            if let Some(Value::Object(ev)) = v.get_mut("event") {
                for items in ev.values_mut() {
                    if let Value::Array(a) = items {
                        let copy = a.clone();
                        a.extend(copy);
                    }
                }
            }
            out.push((name, v.to_string().into_bytes()));
        }
        // A request that also has an `event` member: left alone, as the tree path does.
        out.push((
            "request with event".into(),
            br#"{"event":{"moText":[{"content":"x"}]},"messages":[{"channel":"whatsapp","to":"1","content":"a"}]}"#.to_vec(),
        ));
        assert!(out.len() > 30, "{}", out.len());
        Ok(out)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_output_is_the_tree_paths_output() -> Result<(), Failed> {
        let e = engine(false);
        for (name, doc) in documents()? {
            for pretty in [false, true] {
                let tree_enc = e.encrypt_slice(&doc, pretty).await.unwrap();
                let mut f = file_with(&doc);
                let mut streamed = Vec::new();
                let rt = Handle::current();
                let r = tokio::task::block_in_place(|| {
                    e.encrypt_file(&rt, &mut f, &mut streamed, pretty)
                })
                .unwrap();
                let legacy_callback = tree_enc.is_empty() || matches!(r, Streamed::UseTree);
                if legacy_callback {
                    assert!(streamed.is_empty(), "{name}");
                    continue;
                }
                let (t, s) = (parse(&tree_enc).unwrap(), parse(&streamed).unwrap());
                assert_eq!(shape(&t), shape(&s), "{name} pretty={pretty}");
                // Exactly serde_json's formatting of that value.
                let again = crate::walker::serialize(&s, pretty).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&again),
                    String::from_utf8_lossy(&streamed),
                    "{name}"
                );
                // Decrypting streams and trees gives the same bytes, and the original back.
                for enc in [&tree_enc, &streamed] {
                    let (tree_dec, _) = e.decrypt_slice(enc, pretty).await.unwrap();
                    let mut f = file_with(enc);
                    let mut s_dec = Vec::new();
                    let r = tokio::task::block_in_place(|| {
                        e.decrypt_file(&rt, &mut f, &mut s_dec, pretty)
                    })
                    .unwrap();
                    assert!(matches!(r, Streamed::Done(_)), "{name}");
                    assert_eq!(
                        String::from_utf8_lossy(&s_dec),
                        String::from_utf8_lossy(&tree_dec),
                        "{name}"
                    );
                    let orig: Value = serde_json::from_slice(&doc).unwrap();
                    assert_eq!(
                        crate::without_bookkeeping(&parse(&s_dec).unwrap(), &orig),
                        orig,
                        "{name}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn the_scanner_cuts_values_at_any_buffer_size() {
        let doc = r#" { "a" : "x\"}]\\" , "messages" : [ {"k":"[{\"\\\\"}, 12.5e3 , [1,[2]] ,"s",true,null, -7 ] ,
            "event":{"moText":[{"content":"q,]}"}],"odd":5}, "n": 123456789012345678901234567890 }  "#;
        let mut want = None;
        for chunk in [1, 2, 3, 5, 7, 13, 64, 1 << 20] {
            let mut f = file_with(doc.as_bytes());
            let mut seen = Vec::new();
            drive_chunked(&mut f, chunk, false, &mut |ev| {
                seen.push(match ev {
                    Ev::Member(k, v) => format!("member {k}={v}"),
                    Ev::ArrayStart => "[".into(),
                    Ev::Item(v) => format!("item {v}"),
                    Ev::ArrayEnd => "]".into(),
                    Ev::EventStart => "event{".into(),
                    Ev::EventType(t) => format!("type {t}"),
                    Ev::EventEnd => "}".into(),
                    Ev::Wrong(k, v) => format!("wrong {k}={v}"),
                });
                Ok(())
            })
            .unwrap();
            match &want {
                None => want = Some(seen),
                Some(w) => assert_eq!(&seen, w, "chunk {chunk}"),
            }
        }
        let want = want.unwrap();
        assert_eq!(want[0], r#"member a="x\"}]\\""#);
        let num: Value = serde_json::from_str("12.5e3").unwrap();
        assert_eq!(want[3], format!("item {num}"));
        assert_eq!(want[4], "item [1,[2]]");
        assert_eq!(want[7], "item null");
        assert_eq!(want[8], "item -7");
        assert!(
            want.contains(&"wrong event.<type>=5".to_string()),
            "{want:?}"
        );
        assert_eq!(
            want.last().unwrap(),
            "member n=123456789012345678901234567890"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_errors_are_the_tree_paths_errors() {
        let e = engine(false);
        let rt = Handle::current();
        for doc in [
            r#"{"messages":[{"channel":"whatsapp","to":"1","content":"a"},{"channel":"whatsapp","to":"2","content":7}]}"#,
            r#"{"messages":{"a":1}}"#,
            r#"{"messages":[{"channel":"whatsapp","content":"a","encryptionKey":"AAAA"}]}"#,
            r#"{"event":{"moText":[{"content":"x"},5]}}"#,
            r#"{"event":[1]}"#,
            r#"{"nothing":1}"#,
            r#"{"messages":[{"to":"1","content":"a"}],"encryptionKey":"AAAA"}"#,
        ] {
            let tree = e.encrypt_slice(doc.as_bytes(), false).await.unwrap_err();
            let mut f = file_with(doc.as_bytes());
            let mut out = Vec::new();
            let s = tokio::task::block_in_place(|| e.encrypt_file(&rt, &mut f, &mut out, false))
                .unwrap_err();
            assert_eq!(s.to_string(), tree.to_string(), "{doc}");
            assert!(out.is_empty(), "nothing written for {doc}");
        }
        // Broken JSON is broken JSON (the positions are counted differently).
        for doc in [
            r#"{"messages":[] , "x": 1} trailing"#,
            r#"{"messages":[{"a":1}"#,
            r#"{"x":}"#,
        ] {
            let mut f = file_with(doc.as_bytes());
            let s = tokio::task::block_in_place(|| e.encrypt_file(&rt, &mut f, Vec::new(), false))
                .unwrap_err();
            assert!(matches!(s, Error::Json(_)), "{doc}: {s}");
            assert!(matches!(
                e.encrypt_slice(doc.as_bytes(), false).await,
                Err(Error::Json(_))
            ));
        }
        // Decrypt: a bad value fails at its path, with keep_going left as it was.
        let plain = r#"{"messages":[{"channel":"whatsapp","to":"1","content":"a"},{"channel":"whatsapp","to":"2","content":"b"}]}"#;
        let enc = e.encrypt_slice(plain.as_bytes(), false).await.unwrap();
        let mut v: Value = parse(&enc).unwrap();
        v["messages"][1]["content"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
        let bad = serde_json::to_vec(&v).unwrap();
        for keep_going in [false, true] {
            let e = engine(keep_going);
            let tree = e.decrypt_slice(&bad, false).await;
            let mut f = file_with(&bad);
            let mut out = Vec::new();
            let s = tokio::task::block_in_place(|| e.decrypt_file(&rt, &mut f, &mut out, false));
            match (tree, s) {
                (Err(t), Err(s)) => assert_eq!(t.to_string(), s.to_string()),
                (Ok((t, tr)), Ok(Streamed::Done(sr))) => {
                    assert_eq!(String::from_utf8_lossy(&t), String::from_utf8_lossy(&out));
                    assert_eq!(tr.failures.len(), sr.failures.len());
                    assert_eq!(sr.items, 1);
                }
                (t, s) => panic!("keep_going={keep_going}: {t:?} vs {s:?}"),
            }
        }
    }
}
