//! The tree driver: a whole document parsed into one `serde_json::Value`, checked by a dry
//! pass, then sealed (or opened) item by item with the per-item core.

use serde_json::{Map, Value};

use super::detect::{detect, Api, PayloadKind, ENCRYPTION_KEY};
use super::document::{Sealing, Unsealing};
use super::item::{as_object_mut, events_mut, messages_mut, set_member, Blobs, Engine, Report};
use super::layout::{message_path, push_index, Items};
use crate::error::{type_name, Error};
use crate::policy::{KindPolicy, Segment};

impl Engine {
    /// An engine sharing this one's key cache and policy that assumes `api` (the gateway's
    /// routes decide the family: `/v1/message` is One API, `/wa/messages` legacy).
    pub fn for_api(&self, api: Api) -> Engine {
        let mut e = self.clone();
        e.opts.api = api;
        e
    }

    /// [`Engine::encrypt_document`] for a request body: anything but a request (a callback)
    /// is bad input, refused before any key is made.
    pub(crate) async fn encrypt_request_document(&self, doc: &mut Value) -> Result<(), Error> {
        let kind = detect(doc, self.opts.api)?;
        if !matches!(kind, PayloadKind::OneRequest | PayloadKind::LegacyRequest) {
            return Err(Error::UnknownPayload(format!(
                "this is a {}, not a request: send {{\"messages\":[…]}}",
                kind.name()
            )));
        }
        self.encrypt_pass(doc, kind, true).await?;
        self.encrypt_pass(doc, kind, false).await
    }

    /// The path of the first callback item that carries content — a policy leaf, or media
    /// `files` — without an `encryptionKey`. In an encrypted integration the platform never
    /// sends such an item, so it is a forgery or a misconfiguration; status updates and plain
    /// event types carry no content and never match. `None` for requests.
    pub fn plaintext_content(&self, doc: &Value) -> Option<String> {
        let has_content = |m: &Map<String, Value>, kind: &KindPolicy| {
            let present = |keys: &[&str]| {
                let mut v = m.get(*keys.first()?)?;
                for k in &keys[1..] {
                    v = v.get(k)?;
                }
                (!v.is_null()).then_some(())
            };
            m.get("files").is_some_and(|f| !f.is_null())
                || kind.fields.iter().any(|p| {
                    let keys: Vec<&str> = p
                        .segments()
                        .iter()
                        .map_while(|s| match s {
                            Segment::Key(k) => Some(k.as_str()),
                            _ => None,
                        })
                        .collect();
                    present(&keys).is_some()
                })
        };
        let unkeyed =
            |m: &Map<String, Value>| matches!(m.get(ENCRYPTION_KEY), None | Some(Value::Null));
        match detect(doc, Api::Auto).ok()? {
            PayloadKind::OneCallback => {
                let events = doc.get("event")?.as_object()?;
                for (ty, items) in events {
                    if self.policy.plain_events.iter().any(|e| e == ty) {
                        continue;
                    }
                    for (i, it) in items.as_array().into_iter().flatten().enumerate() {
                        let Some(m) = it.as_object() else { continue };
                        if unkeyed(m) && has_content(m, &self.policy.one_callback) {
                            return Some(format!("event.{ty}[{i}]"));
                        }
                    }
                }
                None
            }
            PayloadKind::LegacyCallback => {
                let m = doc.as_object()?;
                (unkeyed(m) && has_content(m, &self.policy.legacy_callback))
                    .then(|| "(callback)".to_string())
            }
            _ => None,
        }
    }

    /// Encrypts every policy leaf of `doc` in place and sets `encryptionKey`.
    ///
    /// The whole document is checked first (types at policy paths, existing keys), so a bad
    /// document is left untouched and no key is taken for it. (With a cache that makes keys
    /// ahead, the checking pass of a document that needs more than one key starts the others
    /// early; one refused leaves them to the next documents.)
    pub async fn encrypt_document(&self, doc: &mut Value) -> Result<PayloadKind, Error> {
        let kind = detect(doc, self.opts.api)?;
        self.encrypt_pass(doc, kind, true).await?;
        self.encrypt_pass(doc, kind, false).await?;
        Ok(kind)
    }

    /// One pass over the document; `dry` checks without keys or changes.
    pub(crate) async fn encrypt_pass(
        &self,
        doc: &mut Value,
        kind: PayloadKind,
        dry: bool,
    ) -> Result<(), Error> {
        let Value::Object(top) = doc else {
            return Err(Error::UnknownPayload("top level is not an object".into()));
        };
        let mut sealing = Sealing::begin(self, kind, dry, top)?;
        let mut path = String::new();
        match sealing.layout().items {
            Items::Messages => {
                let messages = messages_mut(top)?;
                sealing.plan(messages.len());
                for (i, m) in messages.iter_mut().enumerate() {
                    message_path(&mut path, i);
                    sealing.item(as_object_mut(m, &path)?, &mut path).await?;
                }
            }
            Items::Events => {
                for (ty, items) in events_mut(top)?.iter_mut() {
                    if self.policy.plain_events.iter().any(|e| e == ty) {
                        continue;
                    }
                    path.clear();
                    path.push_str("event.");
                    path.push_str(ty);
                    let Value::Array(items) = items else {
                        return Err(Error::WrongType {
                            path,
                            expected: "an array of items",
                            found: type_name(items),
                        });
                    };
                    let base = path.len();
                    for (i, item) in items.iter_mut().enumerate() {
                        path.truncate(base);
                        push_index(&mut path, i);
                        sealing.item(as_object_mut(item, &path)?, &mut path).await?;
                    }
                }
            }
            Items::Top => sealing.item(top, &mut path).await?,
        }
        if let Some(key) = sealing.finish() {
            set_member(
                top,
                ENCRYPTION_KEY,
                Value::String(key.blob_b64().to_string()),
            );
        }
        Ok(())
    }

    /// Decrypts every item that carries an `encryptionKey`, removing the keys it used.
    pub async fn decrypt_document(&self, doc: &mut Value) -> Result<Report, Error> {
        let kind = detect(doc, self.opts.api)?;
        let Value::Object(top) = doc else {
            return Err(Error::UnknownPayload("top level is not an object".into()));
        };
        let mut unsealing = Unsealing::new(self, kind, top.get(ENCRYPTION_KEY))?;
        unsealing.prefetch(Blobs::of_document(top)).await;
        let mut path = String::new();
        match unsealing.layout().items {
            Items::Messages => {
                for (i, m) in messages_mut(top)?.iter_mut().enumerate() {
                    message_path(&mut path, i);
                    unsealing.item(as_object_mut(m, &path)?, &mut path).await?;
                }
            }
            // Every event type: items without a key (status updates) are skipped.
            Items::Events => {
                for (ty, items) in events_mut(top)?.iter_mut() {
                    path.clear();
                    path.push_str("event.");
                    path.push_str(ty);
                    let Value::Array(items) = items else {
                        return Err(Error::WrongType {
                            path,
                            expected: "an array of items",
                            found: type_name(items),
                        });
                    };
                    let base = path.len();
                    for (i, item) in items.iter_mut().enumerate() {
                        path.truncate(base);
                        push_index(&mut path, i);
                        unsealing
                            .item(as_object_mut(item, &path)?, &mut path)
                            .await?;
                    }
                }
            }
            Items::Top => unsealing.item(top, &mut path).await?,
        }
        if unsealing.used_top() {
            top.shift_remove(ENCRYPTION_KEY);
        }
        Ok(unsealing.finish())
    }
}
