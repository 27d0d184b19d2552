//! The per-item core both drivers share: the engine's state, data keys per item or per
//! document (through the cache, at most one unwrap per distinct blob), and sealing and
//! opening one message or callback item — its text leaves and inline media — in place.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::b64;
use crate::cache::{KeyCache, OpeningKey, SealingKey};
use crate::error::{type_name, Error};
use crate::policy::{InlineMedia, KindPolicy, Policy};
use crate::provider::KeyError;
use crate::suite::{CryptoError, DecryptSuite, FieldCipher, NonceSource, Suite};

use super::detect::{Api, PayloadKind, ENCRYPTION_KEY};
use super::layout::{
    get, inline_media_applies, parent_mut, push_key, sub_path, walk_object, Compiled, KeyPlacement,
    KeyScope, Layout,
};

/// What a decrypt run did.
#[derive(Debug, Default)]
pub struct Report {
    /// The detected (or forced) payload kind.
    pub kind: Option<PayloadKind>,
    /// Messages or callback items processed.
    pub items: usize,
    /// Items left untouched (no `encryptionKey`, or a plain event type).
    pub skipped: usize,
    /// With `keep_going`: items that failed and were left as they were.
    pub failures: Vec<Error>,
}

/// Options for [`Engine`].
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Suite for new ciphertext.
    pub suite: Suite,
    /// Suite(s) accepted when decrypting.
    pub decrypt_suite: DecryptSuite,
    /// Payload family override.
    pub api: Api,
    /// On decrypt, leave failing items as they were and carry on.
    pub keep_going: bool,
    /// On decrypt, the most distinct `encryptionKey`s one document may carry (each costs a
    /// key-service call); 0 means the default, [`MAX_DISTINCT_KEYS`].
    pub max_distinct_keys: usize,
}

/// How often a checking pass tells the key cache how many items it has read: a lock taken
/// once per this many items, a quarter of the default messages per key.
pub(crate) const CHECKED_HINT_EVERY: usize = 256;

/// Default cap on distinct `encryptionKey`s per decrypted document: the decrypt cache's
/// capacity, beyond which unwrapping would thrash the cache anyway.
pub const MAX_DISTINCT_KEYS: usize = 10_000;

/// Encrypts and decrypts documents. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) cache: Arc<KeyCache>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) compiled: Arc<[Compiled; 4]>,
    pub(crate) opts: EngineOptions,
    pub(crate) overlap_guard: bool,
}

pub(crate) fn check_hash_value(v: &Value, path: &str) -> Result<Option<[u8; 32]>, Error> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let mut out = [0u8; 32];
            hex::decode_to_slice(s.trim(), &mut out).map_err(|_| Error::BadHash {
                path: path.to_string(),
            })?;
            Ok(Some(out))
        }
        other => Err(Error::WrongType {
            path: path.to_string(),
            expected: "a hex string",
            found: type_name(other),
        }),
    }
}

pub(crate) fn seal_text(
    cipher: &FieldCipher,
    suite: Suite,
    v: &mut Value,
    path: &str,
    scratch: &mut Vec<u8>,
    nonces: &mut NonceSource,
) -> Result<(), Error> {
    let Value::String(s) = v else { return Ok(()) };
    seal_bytes(cipher, suite, s.as_bytes(), path, scratch, nonces)?;
    s.clear();
    b64::encode_into(scratch, s);
    Ok(())
}

/// Seals one text value into `scratch` (the raw sealed bytes, to be base64-encoded).
pub(crate) fn seal_bytes(
    cipher: &FieldCipher,
    suite: Suite,
    text: &[u8],
    path: &str,
    scratch: &mut Vec<u8>,
    nonces: &mut NonceSource,
) -> Result<(), Error> {
    scratch.clear();
    cipher
        .seal_into_with(suite, text, scratch, nonces)
        .map_err(|source| Error::Crypto {
            path: path.to_string(),
            source,
        })
}

pub(crate) fn open_text(
    cipher: &FieldCipher,
    suite: DecryptSuite,
    v: &mut Value,
    path: &str,
) -> Result<(), Error> {
    let Value::String(s) = v else { return Ok(()) };
    *s = open_str(cipher, suite, s.as_bytes(), path)?;
    Ok(())
}

/// Opens one sealed text value (base64).
pub(crate) fn open_str(
    cipher: &FieldCipher,
    suite: DecryptSuite,
    s: &[u8],
    path: &str,
) -> Result<String, Error> {
    let ct = b64::decode(s).map_err(|_| Error::Base64 {
        path: path.to_string(),
    })?;
    cipher
        .open_text(suite, &ct)
        .map_err(|source| Error::Crypto {
            path: path.to_string(),
            source,
        })
}

impl Engine {
    /// An engine over `cache` with the given policy and options.
    pub fn new(cache: Arc<KeyCache>, policy: Policy, opts: EngineOptions) -> Self {
        let defaults = Policy::default();
        // Extra user paths may overlap built-in ones; then guard against sealing a leaf twice.
        let overlap_guard = policy.one_request.fields.len() != defaults.one_request.fields.len()
            || policy.legacy_request.fields.len() != defaults.legacy_request.fields.len()
            || policy.one_callback.fields.len() != defaults.one_callback.fields.len();
        let compiled = Arc::new([
            Compiled::new(&policy.one_request, PayloadKind::OneRequest, &policy),
            Compiled::new(&policy.legacy_request, PayloadKind::LegacyRequest, &policy),
            Compiled::new(&policy.one_callback, PayloadKind::OneCallback, &policy),
            Compiled::new(
                &policy.legacy_callback,
                PayloadKind::LegacyCallback,
                &policy,
            ),
        ]);
        Engine {
            cache,
            policy: Arc::new(policy),
            compiled,
            opts,
            overlap_guard,
        }
    }

    /// Unwraps the document's distinct data keys concurrently before the item loop, so a
    /// document with several keys costs one round trip to the key service, not one per key.
    /// Results, failures included, go into `keys`: the loop reports failures with their paths
    /// and never asks the key service about the same blob twice.
    pub(crate) async fn prefetch_blobs(&self, blobs: Blobs, keys: &mut DocKeys) {
        let mut blobs = blobs.0;
        if blobs.len() < 2 {
            return;
        }
        blobs.truncate(keys.max);
        let decoded: Vec<(String, Vec<u8>)> = blobs
            .into_iter()
            .filter_map(|b| b64::decode(&b).ok().map(|d| (b, d)))
            .collect();
        let results =
            futures_util::future::join_all(decoded.iter().map(|(_, b)| self.cache.opening_key(b)))
                .await;
        for ((b, _), r) in decoded.into_iter().zip(results) {
            keys.map.insert(b, r);
        }
    }

    /// The unwrapped key for `blob_b64`, at most one key-service call per distinct blob per
    /// document (failures remembered too), and at most `max_distinct_keys` blobs.
    pub(crate) async fn doc_key(
        &self,
        keys: &mut DocKeys,
        blob_b64: &str,
        key_path: &str,
    ) -> Result<Arc<OpeningKey>, Error> {
        let with_path = |source: KeyError| Error::Key {
            path: key_path.to_string(),
            source,
        };
        if let Some(r) = keys.map.get(blob_b64) {
            return r.clone().map_err(with_path);
        }
        if blob_b64.trim().is_empty() {
            return Err(Error::EmptyKey {
                path: key_path.to_string(),
            });
        }
        let blob = b64::decode(blob_b64).map_err(|_| Error::Base64 {
            path: key_path.to_string(),
        })?;
        if keys.map.len() >= keys.max {
            return Err(Error::TooManyKeys {
                path: key_path.to_string(),
                max: keys.max,
            });
        }
        let r = self.cache.opening_key(&blob).await;
        keys.map.insert(blob_b64.to_string(), r.clone());
        r.map_err(with_path)
    }

    /// Applies `leaf` to every text leaf of one message/item under `kind` (each leaf once,
    /// even where user paths overlap). Returns the inline-media rule when the item carries
    /// inline media, whose `content` was left for the caller.
    fn visit_text_leaves<F>(
        &self,
        m: &mut Map<String, Value>,
        payload: PayloadKind,
        path: &mut String,
        leaf: &mut F,
    ) -> Result<Option<&InlineMedia>, Error>
    where
        F: FnMut(&mut Value, &str) -> Result<(), Error>,
    {
        let media = self
            .kind_policy(payload)
            .inline_media
            .as_ref()
            .filter(|im| inline_media_applies(m, im));
        let compiled = self.compiled_kind(payload);
        let node = if media.is_some() {
            &compiled.no_content
        } else {
            &compiled.all
        };
        let base = path.len();
        let mut seen: HashSet<*const Value> = HashSet::new();
        let guard = self.overlap_guard;
        let res = walk_object(m, node, path, &mut |v, p| {
            if guard && !seen.insert(v as *const Value) {
                return Ok(());
            }
            leaf(v, p)
        });
        path.truncate(base);
        res.map(|()| media)
    }

    pub(crate) fn compiled_kind(&self, kind: PayloadKind) -> &Compiled {
        &self.compiled[match kind {
            PayloadKind::OneRequest => 0,
            PayloadKind::LegacyRequest => 1,
            PayloadKind::OneCallback => 2,
            PayloadKind::LegacyCallback => 3,
        }]
    }

    /// The field policy of `payload`.
    pub(crate) fn kind_policy(&self, payload: PayloadKind) -> &KindPolicy {
        let p = &self.policy;
        match payload {
            PayloadKind::OneRequest => &p.one_request,
            PayloadKind::LegacyRequest => &p.legacy_request,
            PayloadKind::OneCallback => &p.one_callback,
            PayloadKind::LegacyCallback => &p.legacy_callback,
        }
    }

    /// The key cache in use.
    pub fn cache(&self) -> &Arc<KeyCache> {
        &self.cache
    }

    /// The options in force.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    pub(crate) async fn sealing_key(
        &self,
        path: &str,
        dry: bool,
    ) -> Result<Option<Arc<SealingKey>>, Error> {
        if dry {
            return Ok(None);
        }
        self.key_at(path).await.map(Some)
    }

    /// A data key for the item at `path` (named in the error).
    pub(crate) async fn key_at(&self, path: &str) -> Result<Arc<SealingKey>, Error> {
        self.keys_at(path, 1).await.map(|(k, _)| k)
    }

    /// A checking pass has read `n` items of a `kind` document (before any key is taken).
    /// Every [`CHECKED_HINT_EVERY`] items of a kind whose items take their own keys, the key
    /// cache hears it ([`KeyCache::expect_messages`]): the keys a large document will need
    /// are then on their way while it is still being checked, and arrive while it is being
    /// written.
    pub(crate) fn checked(&self, kind: PayloadKind, n: usize) {
        if n % CHECKED_HINT_EVERY == 0 && Layout::of(kind).key == KeyScope::PerItem {
            self.cache.expect_messages(n);
        }
    }

    /// A data key for up to `n` items from the one at `path` (named in the error), and how
    /// many it covers.
    pub(crate) async fn keys_at(
        &self,
        path: &str,
        n: usize,
    ) -> Result<(Arc<SealingKey>, usize), Error> {
        self.cache
            .sealing_key_for(n)
            .await
            .map_err(|source| Error::Key {
                path: if path.is_empty() {
                    "(document)".into()
                } else {
                    path.to_string()
                },
                source,
            })
    }

    /// Seals one item's leaves with `key` (none: the dry pass, which only checks); returns
    /// how many values were sealed, for the caller to record against the key.
    pub(crate) fn seal_item(
        &self,
        m: &mut Map<String, Value>,
        payload: PayloadKind,
        key: Option<&SealingKey>,
        path: &mut String,
        nonces: &mut NonceSource,
    ) -> Result<u64, Error> {
        if key.is_none() {
            // The dry pass (tree and streamed paths alike) checks every item before any key
            // is made: strict mode refuses what the policy does not know.
            let compiled = self.compiled_kind(payload);
            if let Some(allowed) = &compiled.allowed {
                allowed.check(m, path, compiled.name)?;
            }
        }
        let suite = self.opts.suite;
        let mut scratch = Vec::new();
        let mut sealed = 0u64;
        let media = self.visit_text_leaves(m, payload, path, &mut |v, p| {
            let Some(key) = key else { return Ok(()) };
            sealed += 1;
            seal_text(key.cipher(), suite, v, p, &mut scratch, nonces)
        })?;
        if let Some(im) = media {
            sealed += 1;
            self.seal_media(m, im, key, path)?;
        }
        Ok(sealed)
    }

    pub(crate) fn seal_media(
        &self,
        m: &mut Map<String, Value>,
        im: &InlineMedia,
        key: Option<&SealingKey>,
        path: &str,
    ) -> Result<(), Error> {
        let Some(InlineContent {
            text: s,
            given,
            content_path,
            hash_path,
        }) = inline_content(m, im, path)?
        else {
            return Ok(());
        };
        let Some(key) = key else { return Ok(()) };
        let bytes = b64::decode(&*s).map_err(|_| Error::Base64 {
            path: content_path.clone(),
        })?;
        let (sealed, digest) = crate::stream::seal_with_hash(key.key(), self.opts.suite, &bytes)
            .map_err(|source| Error::Crypto {
                path: content_path.clone(),
                source,
            })?;
        if given.is_some_and(|g| g != digest) {
            return Err(Error::HashMismatch { path: hash_path });
        }
        s.clear();
        b64::encode_into(&sealed, s);
        if given.is_none() {
            let Some((hh, hk)) = parent_mut(m, &im.hash) else {
                return Err(Error::WrongType {
                    path: hash_path,
                    expected: "an object to hold sha256Hash",
                    found: "something else",
                });
            };
            set_member(hh, hk, Value::String(hex::encode(digest)));
        }
        Ok(())
    }

    /// Opens one item with the key `at` names (unwrapped at most once per document); with
    /// `keep_going` on a copy, so a failure leaves the item exactly as it was.
    pub(crate) async fn open_guarded(
        &self,
        m: &mut Map<String, Value>,
        at: Opening<'_>,
        keys: &mut DocKeys,
        path: &mut String,
    ) -> Result<(), Error> {
        let key = self.doc_key(keys, at.blob_b64, at.key_path).await?;
        if self.opts.keep_going {
            let mut copy = m.clone();
            self.open_item(&mut copy, &at, &key, path)?;
            *m = copy;
            Ok(())
        } else {
            self.open_item(m, &at, &key, path)
        }
    }

    fn open_item(
        &self,
        m: &mut Map<String, Value>,
        at: &Opening<'_>,
        key: &OpeningKey,
        path: &mut String,
    ) -> Result<(), Error> {
        let suite = self.opts.decrypt_suite;
        let cipher = key.cipher();
        let media = self.visit_text_leaves(m, at.payload, path, &mut |v, p| {
            open_text(cipher, suite, v, p)
        })?;
        if let Some(im) = media {
            self.open_media(m, im, cipher, path)?;
        }
        if at.own_key {
            place_key_after_decrypt(m, at.placement);
        }
        Ok(())
    }

    /// Decrypts inline media, verifying `sha256Hash` when present (and kept: it is the
    /// verified plaintext hash). CBC content is only released against a hash, and under CBC a
    /// hash mismatch is the same error as bad padding: otherwise "hash mismatch" would say
    /// "padding was valid", a padding oracle.
    pub(crate) fn open_media(
        &self,
        m: &mut Map<String, Value>,
        im: &InlineMedia,
        cipher: &FieldCipher,
        path: &str,
    ) -> Result<(), Error> {
        let Some(InlineContent {
            text: s,
            given,
            content_path,
            hash_path,
        }) = inline_content(m, im, path)?
        else {
            return Ok(());
        };
        let ct = b64::decode(&*s).map_err(|_| Error::Base64 {
            path: content_path.clone(),
        })?;
        let suite = self.opts.decrypt_suite;
        let crypto = |source| Error::Crypto {
            path: content_path.clone(),
            source,
        };
        let gcm = if suite == DecryptSuite::Cbc {
            None
        } else {
            cipher.open_as(DecryptSuite::Gcm, &ct).ok()
        };
        let pt = match gcm {
            Some((pt, _)) => {
                if given.is_some_and(|g| !hash_eq(&Sha256::digest(&pt).into(), &g)) {
                    return Err(Error::HashMismatch { path: hash_path });
                }
                pt
            }
            None if !suite.allows_cbc() => return Err(crypto(CryptoError::Undecryptable(suite))),
            None => {
                // Refused before CBC runs, so the refusal says nothing about the bytes.
                let Some(g) = given else {
                    return Err(crypto(CryptoError::CbcNeedsHash));
                };
                match cipher.open_as(DecryptSuite::Cbc, &ct) {
                    Ok((pt, _)) if hash_eq(&Sha256::digest(&pt).into(), &g) => pt,
                    _ => return Err(crypto(CryptoError::Undecryptable(suite))),
                }
            }
        };
        s.clear();
        b64::encode_into(&pt, s);
        Ok(())
    }
}

/// An item's inline media, as both sealing and opening find it: the base64 `content`, the
/// hash given beside it (checked to be one), and their JSON paths.
struct InlineContent<'m> {
    text: &'m mut String,
    given: Option<[u8; 32]>,
    content_path: String,
    hash_path: String,
}

/// The inline media of `m` (at `path`) under `im`; `None` when `content` is absent.
fn inline_content<'m>(
    m: &'m mut Map<String, Value>,
    im: &InlineMedia,
    path: &str,
) -> Result<Option<InlineContent<'m>>, Error> {
    let content_path = sub_path(path, &im.content);
    let hash_path = sub_path(path, &im.hash);
    let given = match get(m, &im.hash) {
        Some(v) => check_hash_value(v, &hash_path)?,
        None => None,
    };
    let Some((holder, ck)) = parent_mut(m, &im.content) else {
        return Ok(None);
    };
    match holder.get_mut(ck) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(InlineContent {
            text,
            given,
            content_path,
            hash_path,
        })),
        Some(other) => Err(Error::WrongType {
            path: content_path,
            expected: "a base64 string",
            found: type_name(other),
        }),
    }
}

pub(crate) fn hash_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    // Hashes are public values; a plain comparison is fine, but keep it branch-free anyway.
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The first distinct `encryptionKey` values of a document, to unwrap ahead of the items.
#[derive(Debug, Default)]
pub(crate) struct Blobs(Vec<String>);

impl Blobs {
    /// The distinct keys of a parsed document: its top level's, its messages', its event
    /// items'.
    pub(crate) fn of_document(top: &Map<String, Value>) -> Blobs {
        let mut blobs = Blobs::default();
        blobs.note(top.get(ENCRYPTION_KEY));
        if let Some(Value::Array(msgs)) = top.get("messages") {
            msgs.iter().for_each(|m| blobs.note(m.get(ENCRYPTION_KEY)));
        }
        if let Some(Value::Object(ev)) = top.get("event") {
            for items in ev.values() {
                if let Value::Array(items) = items {
                    items.iter().for_each(|m| blobs.note(m.get(ENCRYPTION_KEY)));
                }
            }
        }
        blobs
    }

    const MAX: usize = 64;

    pub(crate) fn note(&mut self, v: Option<&Value>) {
        if let Some(Value::String(s)) = v {
            self.note_str(s);
        }
    }

    pub(crate) fn note_str(&mut self, s: &str) {
        if self.0.len() < Self::MAX && !s.trim().is_empty() && !self.0.iter().any(|b| b == s) {
            self.0.push(s.to_string());
        }
    }
}

/// The data keys one decrypt run has unwrapped (or failed to), by `encryptionKey` value.
pub(crate) struct DocKeys {
    pub(crate) map: HashMap<String, Result<Arc<OpeningKey>, KeyError>>,
    pub(crate) max: usize,
}

/// Which key opens an item, and what becomes of the item's own key afterwards.
pub(crate) struct Opening<'a> {
    pub(crate) payload: PayloadKind,
    /// The `encryptionKey` value (the item's own, or the document's).
    pub(crate) blob_b64: &'a str,
    /// Its JSON path, for errors.
    pub(crate) key_path: &'a str,
    /// The item carries the key itself (then it is removed or nulled per `placement`).
    pub(crate) own_key: bool,
    pub(crate) placement: KeyPlacement,
}

pub(crate) fn place_key_after_decrypt(m: &mut Map<String, Value>, placement: KeyPlacement) {
    match placement {
        KeyPlacement::Remove => {
            m.shift_remove(ENCRYPTION_KEY);
        }
        KeyPlacement::Restore => {
            if let Some(v) = m.get_mut(ENCRYPTION_KEY) {
                *v = Value::Null;
            }
        }
    }
}

pub(crate) fn sub_key_path(path: &str) -> String {
    let mut s = path.to_string();
    push_key(&mut s, ENCRYPTION_KEY);
    s
}

/// An item that carries its own key (One API messages and callback items): the blob of the
/// key its values were sealed with goes into its `encryptionKey` (nothing on a dry run).
pub(crate) fn put_key_blob(m: &mut Map<String, Value>, key: Option<&SealingKey>) {
    if let Some(key) = key {
        set_member(m, ENCRYPTION_KEY, Value::String(key.blob_b64().to_string()));
    }
}

/// Replaces `key` in place if present, else appends it.
pub(crate) fn set_member(m: &mut Map<String, Value>, key: &str, v: Value) {
    match m.get_mut(key) {
        Some(slot) => *slot = v,
        None => {
            m.insert(key.to_string(), v);
        }
    }
}

pub(crate) fn refuse_existing_key(m: &Map<String, Value>, path: &str) -> Result<(), Error> {
    match m.get(ENCRYPTION_KEY) {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(Error::AlreadyEncrypted {
            path: sub_key_path(path),
        }),
    }
}

pub(crate) fn item_key(m: &Map<String, Value>, path: &str) -> Result<Option<String>, Error> {
    match m.get(ENCRYPTION_KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::WrongType {
            path: sub_key_path(path),
            expected: "a base64 string",
            found: type_name(other),
        }),
    }
}

pub(crate) fn messages_mut(top: &mut Map<String, Value>) -> Result<&mut Vec<Value>, Error> {
    match top.get_mut("messages") {
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(Error::WrongType {
            path: "messages".into(),
            expected: "an array",
            found: type_name(other),
        }),
        None => Err(Error::UnknownPayload("no \"messages\" array".into())),
    }
}

pub(crate) fn events_mut(top: &mut Map<String, Value>) -> Result<&mut Map<String, Value>, Error> {
    match top.get_mut("event") {
        Some(Value::Object(e)) => Ok(e),
        Some(other) => Err(Error::WrongType {
            path: "event".into(),
            expected: "an object",
            found: type_name(other),
        }),
        None => Err(Error::UnknownPayload("no \"event\" object".into())),
    }
}

pub(crate) fn as_object_mut<'a>(
    v: &'a mut Value,
    path: &str,
) -> Result<&'a mut Map<String, Value>, Error> {
    let found = type_name(v);
    v.as_object_mut().ok_or_else(|| Error::WrongType {
        path: path.to_string(),
        expected: "an object",
        found,
    })
}
