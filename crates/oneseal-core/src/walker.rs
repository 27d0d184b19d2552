//! The document engine: detects the payload kind and applies the [`Policy`] to every
//! message or callback item, with data keys from a [`KeyCache`].

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::b64;
use crate::cache::{KeyCache, OpeningKey, SealingKey};
use crate::error::{type_name, Error};
use crate::policy::{FieldPath, InlineMedia, KindPolicy, Policy, Segment};
use crate::provider::KeyError;
use crate::suite::{CryptoError, DecryptSuite, FieldCipher, NonceSource, Suite};

mod bigdoc;
pub use bigdoc::Streamed;

/// The member that carries the wrapped data key.
pub const ENCRYPTION_KEY: &str = "encryptionKey";

/// The four payload kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PayloadKind {
    /// One API request: `{"messages":[...]}`, keys per message.
    OneRequest,
    /// Legacy `/wa/messages` request: one top-level `encryptionKey`.
    LegacyRequest,
    /// One API callback: `{"event":{"<type>":[...]}}`, keys per item.
    OneCallback,
    /// Legacy flat callback with `integrationId`.
    LegacyCallback,
}

impl PayloadKind {
    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            PayloadKind::OneRequest => "One API request",
            PayloadKind::LegacyRequest => "legacy request",
            PayloadKind::OneCallback => "One API callback",
            PayloadKind::LegacyCallback => "legacy callback",
        }
    }
}

/// Which API family to assume (`--api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Api {
    /// Detect from the document.
    #[default]
    Auto,
    /// One API.
    One,
    /// Legacy `/wa/messages` API.
    Legacy,
}

impl FromStr for Api {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Api::Auto),
            "one" => Ok(Api::One),
            "legacy" => Ok(Api::Legacy),
            _ => Err(format!("unknown API {s:?}: use auto, one or legacy")),
        }
    }
}

const ONE_API_MARKERS: &[&str] = &["channel", "media", "template", "location", "contacts"];
/// Message members only the legacy API has (One API nests them under `media`).
const LEGACY_MARKERS: &[&str] = &["contentType", "caption"];

/// The first message that carries any of `markers`, as `messages[i]` and the names found.
fn first_with_markers(msgs: &[Value], markers: &[&str]) -> Option<(usize, Vec<&'static str>)> {
    msgs.iter().enumerate().find_map(|(i, m)| {
        let m = m.as_object()?;
        let found: Vec<&'static str> = markers
            .iter()
            .filter(|k| m.contains_key(**k))
            .map(|k| marker_name(k))
            .collect();
        (!found.is_empty()).then_some((i, found))
    })
}

fn marker_name(k: &str) -> &'static str {
    ONE_API_MARKERS
        .iter()
        .chain(LEGACY_MARKERS)
        .find(|m| **m == k)
        .copied()
        .unwrap_or("?")
}

/// What payload detection looks at, gathered from a parsed document or while streaming
/// one: detection is the same function either way.
#[derive(Debug, Default)]
pub(crate) struct Shape {
    /// `messages`: absent, an array (the first messages with One API / legacy members), or
    /// the type it has instead.
    messages: Option<Result<Markers, &'static str>>,
    /// A top-level `encryptionKey` member (any value).
    top_key: bool,
    /// `event`: absent, an object, or the type it has instead.
    event: Option<Result<(), &'static str>>,
    integration_id: bool,
}

/// The first messages carrying One API and legacy members.
#[derive(Debug, Default)]
pub(crate) struct Markers {
    one: Option<(usize, Vec<&'static str>)>,
    legacy: Option<(usize, Vec<&'static str>)>,
}

impl Markers {
    /// Notes message `i` (called in document order).
    fn note(&mut self, i: usize, m: &Value) {
        if self.one.is_none() {
            self.one =
                first_with_markers(std::slice::from_ref(m), ONE_API_MARKERS).map(|(_, f)| (i, f));
        }
        if self.legacy.is_none() {
            self.legacy =
                first_with_markers(std::slice::from_ref(m), LEGACY_MARKERS).map(|(_, f)| (i, f));
        }
    }
}

/// Works out the payload kind of a parsed document. A forced `api` that the document
/// contradicts is an error naming the markers: silently applying the other family's policy
/// would leave its leaves in plaintext.
pub fn detect(doc: &Value, api: Api) -> Result<PayloadKind, Error> {
    let Value::Object(top) = doc else {
        return Err(Error::UnknownPayload(format!(
            "not a WhatsApp payload: the top level is {}, expected an object with \"messages\" (request) or \"event\"/\"integrationId\" (callback)",
            type_name(doc)
        )));
    };
    let shape = Shape {
        messages: top.get("messages").map(|m| match m {
            Value::Array(msgs) => Ok(Markers {
                one: first_with_markers(msgs, ONE_API_MARKERS),
                legacy: first_with_markers(msgs, LEGACY_MARKERS),
            }),
            other => Err(type_name(other)),
        }),
        top_key: top.contains_key(ENCRYPTION_KEY),
        event: top.get("event").map(|e| match e {
            Value::Object(_) => Ok(()),
            other => Err(type_name(other)),
        }),
        integration_id: top.contains_key("integrationId"),
    };
    detect_shape(&shape, api)
}

fn detect_shape(shape: &Shape, api: Api) -> Result<PayloadKind, Error> {
    if let Some(msgs) = &shape.messages {
        let markers = msgs.as_ref().map_err(|found| Error::WrongType {
            path: "messages".into(),
            expected: "an array",
            found,
        })?;
        let one = &markers.one;
        // In every mode: whichever family's policy ran, the other's content would be sent
        // in plaintext (a legacy top-level `caption` is not One API's `media.caption`).
        if let (Some((i, one)), Some((j, legacy))) = (one, &markers.legacy) {
            return Err(Error::MixedFamilies {
                path: format!("messages[{j}].{}", legacy.join(", ")),
                message: format!(
                    "a legacy member in a document with One API members (messages[{i}] has {}); One API puts captions and content types under \"media\" — send One API and legacy messages in separate requests",
                    one.join(", ")
                ),
            });
        }
        return match api {
            Api::One => match &markers.legacy {
                Some((i, found)) if one.is_none() => Err(Error::ApiMismatch(format!(
                    "--api one, but messages[{i}] has the legacy member(s) {} (One API nests them under \"media\"): drop --api, or use --api legacy",
                    found.join(", ")
                ))),
                _ if one.is_none() && shape.top_key => Err(Error::ApiMismatch(
                    "--api one, but the document has a top-level encryptionKey (a legacy request): drop --api, or use --api legacy".into(),
                )),
                _ => Ok(PayloadKind::OneRequest),
            },
            Api::Legacy => match one {
                Some((i, found)) => Err(Error::ApiMismatch(format!(
                    "--api legacy, but messages[{i}] has the One API member(s) {}: the legacy policy would leave their content in plaintext; drop --api, or use --api one",
                    found.join(", ")
                ))),
                None => Ok(PayloadKind::LegacyRequest),
            },
            Api::Auto => Ok(if one.is_some() && !shape.top_key {
                PayloadKind::OneRequest
            } else {
                PayloadKind::LegacyRequest
            }),
        };
    }
    if let Some(ev) = &shape.event {
        if let Err(found) = ev {
            return Err(Error::WrongType {
                path: "event".into(),
                expected: "an object of event arrays",
                found,
            });
        }
        if api == Api::Legacy {
            return Err(Error::ApiMismatch(
                "--api legacy, but this is a One API callback (it has \"event\"): drop --api or use --api one".into(),
            ));
        }
        return Ok(PayloadKind::OneCallback);
    }
    if shape.integration_id {
        if api == Api::One {
            return Err(Error::ApiMismatch(
                "--api one, but this is a legacy callback (\"integrationId\" and no \"event\"): drop --api or use --api legacy".into(),
            ));
        }
        return Ok(PayloadKind::LegacyCallback);
    }
    Err(Error::UnknownPayload(
        "not a WhatsApp payload: expected \"messages\" (request), \"event\" (One API callback) or \"integrationId\" (legacy callback) at the top level".into(),
    ))
}

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

/// Default cap on distinct `encryptionKey`s per decrypted document: the decrypt cache's
/// capacity, beyond which unwrapping would thrash the cache anyway.
pub const MAX_DISTINCT_KEYS: usize = 10_000;

/// Encrypts and decrypts documents. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Engine {
    cache: Arc<KeyCache>,
    policy: Arc<Policy>,
    compiled: Arc<[Compiled; 4]>,
    opts: EngineOptions,
    overlap_guard: bool,
}

fn push_key(path: &mut String, k: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(k);
}

/// Resets `path` to `messages[i]`.
fn message_path(path: &mut String, i: usize) {
    path.clear();
    path.push_str("messages");
    push_index(path, i);
}

fn push_index(path: &mut String, i: usize) {
    // Writing to a String cannot fail.
    let _ = write!(path, "[{i}]");
}

/// The field paths of one kind merged into a tree, so one pass over a message visits every
/// policy leaf: each member of the message is matched against the few names the policy has
/// at that level, instead of looking each path up from the top.
#[derive(Debug, Clone, Default)]
struct Node {
    /// A path ends here: the value must be a string (or null).
    leaf: bool,
    keys: Vec<(String, Node)>,
    any_key: Option<Box<Node>>,
    any_index: Option<Box<Node>>,
    deep: bool,
}

impl Node {
    fn build<'a>(paths: impl IntoIterator<Item = &'a FieldPath>) -> Node {
        let mut root = Node::default();
        for p in paths {
            let mut n = &mut root;
            for seg in p.segments() {
                n = match seg {
                    Segment::Key(k) => {
                        let i = match n.keys.iter().position(|(name, _)| name == k) {
                            Some(i) => i,
                            None => {
                                n.keys.push((k.clone(), Node::default()));
                                n.keys.len() - 1
                            }
                        };
                        &mut n.keys[i].1
                    }
                    Segment::AnyKey => n.any_key.get_or_insert_with(Default::default),
                    Segment::AnyIndex => n.any_index.get_or_insert_with(Default::default),
                    Segment::Deep => {
                        n.deep = true;
                        break;
                    }
                };
            }
            // A path that ended on a plain step marks a leaf (Deep returned via break above).
            if !matches!(p.segments().last(), Some(Segment::Deep)) {
                n.leaf = true;
            }
        }
        root
    }

    fn wants_object(&self) -> bool {
        !self.keys.is_empty() || self.any_key.is_some()
    }
}

/// Compiled policy for one kind: with and without the inline-media `content` path.
#[derive(Debug, Clone)]
struct Compiled {
    all: Node,
    no_content: Node,
    /// Strict mode: the members an item of this kind may have.
    allowed: Option<crate::strict::Allowed>,
    /// Strict mode: the members its document may have beside the items.
    top: &'static [&'static str],
    name: &'static str,
}

impl Compiled {
    fn new(kind: &KindPolicy, payload: PayloadKind, policy: &Policy) -> Compiled {
        use crate::strict::*;
        let content = kind.inline_media.as_ref().map(|im| &im.content);
        let (known, top): (&[&str], &'static [&'static str]) = match payload {
            PayloadKind::OneRequest => (ONE_REQUEST_KNOWN, ONE_REQUEST_TOP),
            PayloadKind::LegacyRequest => (LEGACY_REQUEST_KNOWN, LEGACY_REQUEST_TOP),
            PayloadKind::OneCallback => (CALLBACK_KNOWN, ONE_CALLBACK_TOP),
            PayloadKind::LegacyCallback => (CALLBACK_KNOWN, &[]),
        };
        Compiled {
            all: Node::build(&kind.fields),
            no_content: Node::build(kind.fields.iter().filter(|f| Some(*f) != content)),
            allowed: policy
                .strict
                .then(|| Allowed::new(kind, known, &policy.passthrough)),
            top,
            name: payload.name(),
        }
    }

    /// Strict mode's check of a document's top-level members (the items are checked one by
    /// one as they are sealed).
    fn check_top(&self, top: &Map<String, Value>) -> Result<(), Error> {
        match self.allowed {
            Some(_) if !self.top.is_empty() => crate::strict::check_top(top, self.top, self.name),
            _ => Ok(()),
        }
    }
}

/// Visits every string leaf `node` selects in the object `m` (a message or item).
fn walk_object<F>(
    m: &mut Map<String, Value>,
    node: &Node,
    path: &mut String,
    f: &mut F,
) -> Result<(), Error>
where
    F: FnMut(&mut Value, &str) -> Result<(), Error>,
{
    let len = path.len();
    for (k, child) in m.iter_mut() {
        for (name, sub) in &node.keys {
            if name == k {
                push_key(path, k);
                walk_node(child, sub, path, f)?;
                path.truncate(len);
            }
        }
        if let Some(sub) = &node.any_key {
            push_key(path, k);
            walk_node(child, sub, path, f)?;
            path.truncate(len);
        }
    }
    Ok(())
}

fn walk_node<F>(v: &mut Value, node: &Node, path: &mut String, f: &mut F) -> Result<(), Error>
where
    F: FnMut(&mut Value, &str) -> Result<(), Error>,
{
    if node.deep {
        return deep(v, path, f);
    }
    match v {
        Value::Null => Ok(()),
        Value::String(_) if node.leaf => f(v, path),
        Value::Object(m) if node.wants_object() => walk_object(m, node, path, f),
        Value::Array(a) if node.any_index.is_some() => {
            let len = path.len();
            if let Some(sub) = &node.any_index {
                for (i, child) in a.iter_mut().enumerate() {
                    push_index(path, i);
                    walk_node(child, sub, path, f)?;
                    path.truncate(len);
                }
            }
            Ok(())
        }
        other => Err(Error::WrongType {
            path: path.clone(),
            expected: if node.leaf {
                "a string"
            } else if node.wants_object() {
                "an object"
            } else {
                "an array"
            },
            found: type_name(other),
        }),
    }
}

fn deep<F>(v: &mut Value, path: &mut String, f: &mut F) -> Result<(), Error>
where
    F: FnMut(&mut Value, &str) -> Result<(), Error>,
{
    let len = path.len();
    match v {
        Value::Null => Ok(()),
        Value::String(_) => f(v, path),
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                push_key(path, k);
                deep(child, path, f)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Array(a) => {
            for (i, child) in a.iter_mut().enumerate() {
                push_index(path, i);
                deep(child, path, f)?;
                path.truncate(len);
            }
            Ok(())
        }
        other => Err(Error::WrongType {
            path: path.clone(),
            expected: "a string",
            found: type_name(other),
        }),
    }
}

fn get<'a>(m: &'a Map<String, Value>, p: &FieldPath) -> Option<&'a Value> {
    let keys = p.plain_keys()?;
    let (first, rest) = keys.split_first()?;
    let mut v = m.get(*first)?;
    for k in rest {
        v = v.as_object()?.get(*k)?;
    }
    Some(v)
}

/// The object that holds the last key of `p`, and that key.
fn parent_mut<'a, 'p>(
    m: &'a mut Map<String, Value>,
    p: &'p FieldPath,
) -> Option<(&'a mut Map<String, Value>, &'p str)> {
    let keys = p.plain_keys()?;
    let (last, init) = keys.split_last()?;
    let mut cur = m;
    for k in init {
        cur = cur.get_mut(*k)?.as_object_mut()?;
    }
    Some((cur, *last))
}

fn sub_path(base: &str, p: &FieldPath) -> String {
    let mut s = base.to_string();
    push_key(&mut s, &p.to_string());
    s
}

/// Whether `m` carries inline media under `im`: a non-null content type and a content value.
fn inline_media_applies(m: &Map<String, Value>, im: &InlineMedia) -> bool {
    matches!(get(m, &im.content_type), Some(v) if !v.is_null())
        && matches!(get(m, &im.content), Some(v) if !v.is_null())
}

fn check_hash_value(v: &Value, path: &str) -> Result<Option<[u8; 32]>, Error> {
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

fn seal_text(
    cipher: &FieldCipher,
    suite: Suite,
    v: &mut Value,
    path: &str,
    scratch: &mut Vec<u8>,
    nonces: &mut NonceSource,
) -> Result<(), Error> {
    let Value::String(s) = v else { return Ok(()) };
    scratch.clear();
    cipher
        .seal_into_with(suite, s.as_bytes(), scratch, nonces)
        .map_err(|source| Error::Crypto {
            path: path.to_string(),
            source,
        })?;
    s.clear();
    b64::encode_into(scratch, s);
    Ok(())
}

fn open_text(
    cipher: &FieldCipher,
    suite: DecryptSuite,
    v: &mut Value,
    path: &str,
) -> Result<(), Error> {
    let Value::String(s) = v else { return Ok(()) };
    let ct = b64::decode(s).map_err(|_| Error::Base64 {
        path: path.to_string(),
    })?;
    *s = cipher
        .open_text(suite, &ct)
        .map_err(|source| Error::Crypto {
            path: path.to_string(),
            source,
        })?;
    Ok(())
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
    async fn prefetch_keys(&self, top: &Map<String, Value>, keys: &mut DocKeys) {
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
        self.prefetch_blobs(blobs, keys).await;
    }

    async fn prefetch_blobs(&self, blobs: Blobs, keys: &mut DocKeys) {
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
    async fn doc_key(
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
    fn visit_text_leaves<'k, F>(
        &self,
        m: &mut Map<String, Value>,
        kind: &'k KindPolicy,
        path: &mut String,
        leaf: &mut F,
    ) -> Result<Option<&'k InlineMedia>, Error>
    where
        F: FnMut(&mut Value, &str) -> Result<(), Error>,
    {
        let media = kind
            .inline_media
            .as_ref()
            .filter(|im| inline_media_applies(m, im));
        let compiled = self.compiled_for(kind);
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

    fn compiled_kind(&self, kind: PayloadKind) -> &Compiled {
        &self.compiled[match kind {
            PayloadKind::OneRequest => 0,
            PayloadKind::LegacyRequest => 1,
            PayloadKind::OneCallback => 2,
            PayloadKind::LegacyCallback => 3,
        }]
    }

    fn compiled_for(&self, kind: &KindPolicy) -> &Compiled {
        let p = &self.policy;
        let i = if std::ptr::eq(kind, &p.one_request) {
            0
        } else if std::ptr::eq(kind, &p.legacy_request) {
            1
        } else if std::ptr::eq(kind, &p.one_callback) {
            2
        } else {
            3
        };
        &self.compiled[i]
    }

    /// The key cache in use.
    pub fn cache(&self) -> &Arc<KeyCache> {
        &self.cache
    }

    /// The options in force.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Parses, encrypts and serializes a document.
    pub async fn encrypt_slice(&self, input: &[u8], pretty: bool) -> Result<Vec<u8>, Error> {
        let mut doc = parse(input)?;
        self.encrypt_document(&mut doc).await?;
        // Ciphertext is base64 of nonce + text + tag, plus a key per message: about twice.
        serialize_sized(&doc, pretty, input.len() * 2 + 4096)
    }

    /// An engine sharing this one's key cache and policy that assumes `api` (the gateway's
    /// routes decide the family: `/v1/message` is One API, `/wa/messages` legacy).
    pub fn for_api(&self, api: Api) -> Engine {
        let mut e = self.clone();
        e.opts.api = api;
        e
    }

    /// [`Engine::encrypt_slice`] for a request body: anything but a request (a callback) is
    /// bad input, refused before any key is made.
    pub async fn encrypt_request_slice(&self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut doc = parse(input)?;
        let kind = detect(&doc, self.opts.api)?;
        if !matches!(kind, PayloadKind::OneRequest | PayloadKind::LegacyRequest) {
            return Err(Error::UnknownPayload(format!(
                "this is a {}, not a request: send {{\"messages\":[…]}}",
                kind.name()
            )));
        }
        self.encrypt_pass(&mut doc, kind, true).await?;
        self.encrypt_pass(&mut doc, kind, false).await?;
        serialize_sized(&doc, false, input.len() * 2 + 4096)
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

    /// Parses, decrypts and serializes a document.
    pub async fn decrypt_slice(
        &self,
        input: &[u8],
        pretty: bool,
    ) -> Result<(Vec<u8>, Report), Error> {
        let mut doc = parse(input)?;
        let report = self.decrypt_document(&mut doc).await?;
        Ok((serialize_sized(&doc, pretty, input.len() + 4096)?, report))
    }

    /// Encrypts every policy leaf of `doc` in place and sets `encryptionKey`.
    ///
    /// The whole document is checked first (types at policy paths, existing keys), so a bad
    /// document costs no key-service call and is left untouched.
    pub async fn encrypt_document(&self, doc: &mut Value) -> Result<PayloadKind, Error> {
        let kind = detect(doc, self.opts.api)?;
        self.encrypt_pass(doc, kind, true).await?;
        self.encrypt_pass(doc, kind, false).await?;
        Ok(kind)
    }

    /// One pass over the document; `dry` checks without keys or changes.
    async fn encrypt_pass(
        &self,
        doc: &mut Value,
        kind: PayloadKind,
        dry: bool,
    ) -> Result<(), Error> {
        let Value::Object(top) = doc else {
            return Err(Error::UnknownPayload("top level is not an object".into()));
        };
        let mut path = String::new();
        let mut nonces = NonceSource::new();
        if dry {
            self.compiled_kind(kind).check_top(top)?;
        }
        match kind {
            PayloadKind::OneRequest => {
                let msgs = messages_mut(top)?;
                for (i, m) in msgs.iter_mut().enumerate() {
                    message_path(&mut path, i);
                    let m = as_object_mut(m, &path)?;
                    refuse_existing_key(m, &path)?;
                    let key = self.sealing_key(&path, dry).await?;
                    self.seal_item(
                        m,
                        &self.policy.one_request,
                        key.as_deref(),
                        &mut path,
                        &mut nonces,
                    )?;
                    put_key_blob(m, key.as_deref());
                }
            }
            PayloadKind::LegacyRequest => {
                refuse_existing_key(top, "")?;
                let mut key = None;
                for (i, m) in messages_mut(top)?.iter_mut().enumerate() {
                    message_path(&mut path, i);
                    let m = as_object_mut(m, &path)?;
                    refuse_existing_key(m, &path)?;
                    if key.is_none() {
                        key = self.sealing_key(&path, dry).await?;
                    }
                    self.seal_item(
                        m,
                        &self.policy.legacy_request,
                        key.as_deref(),
                        &mut path,
                        &mut nonces,
                    )?;
                }
                if let Some(k) = key {
                    set_member(top, ENCRYPTION_KEY, Value::String(k.blob_b64().to_string()));
                }
            }
            PayloadKind::OneCallback => {
                let events = events_mut(top)?;
                for (ty, items) in events.iter_mut() {
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
                        let m = as_object_mut(item, &path)?;
                        refuse_existing_key(m, &path)?;
                        let key = self.sealing_key(&path, dry).await?;
                        self.seal_item(
                            m,
                            &self.policy.one_callback,
                            key.as_deref(),
                            &mut path,
                            &mut nonces,
                        )?;
                        put_key_blob(m, key.as_deref());
                    }
                }
            }
            PayloadKind::LegacyCallback => {
                refuse_existing_key(top, "")?;
                let key = self.sealing_key("", dry).await?;
                self.seal_item(
                    top,
                    &self.policy.legacy_callback,
                    key.as_deref(),
                    &mut path,
                    &mut nonces,
                )?;
                if let Some(key) = key {
                    set_member(
                        top,
                        ENCRYPTION_KEY,
                        Value::String(key.blob_b64().to_string()),
                    );
                }
            }
        }
        Ok(())
    }

    /// Decrypts every item that carries an `encryptionKey`, removing the keys it used.
    pub async fn decrypt_document(&self, doc: &mut Value) -> Result<Report, Error> {
        let kind = detect(doc, self.opts.api)?;
        let mut report = Report {
            kind: Some(kind),
            ..Report::default()
        };
        let Value::Object(top) = doc else {
            return Err(Error::UnknownPayload("top level is not an object".into()));
        };
        let mut keys = DocKeys {
            map: HashMap::new(),
            max: match self.opts.max_distinct_keys {
                0 => MAX_DISTINCT_KEYS,
                n => n,
            },
        };
        self.prefetch_keys(top, &mut keys).await;
        let mut path = String::new();
        match kind {
            PayloadKind::OneRequest | PayloadKind::LegacyRequest => {
                let policy = if kind == PayloadKind::OneRequest {
                    &self.policy.one_request
                } else {
                    &self.policy.legacy_request
                };
                let top_key = match top.get(ENCRYPTION_KEY) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Null) | None => None,
                    Some(other) => {
                        return Err(Error::WrongType {
                            path: ENCRYPTION_KEY.into(),
                            expected: "a base64 string",
                            found: type_name(other),
                        })
                    }
                };
                let mut used_top = false;
                for (i, m) in messages_mut(top)?.iter_mut().enumerate() {
                    message_path(&mut path, i);
                    let m = as_object_mut(m, &path)?;
                    let own = item_key(m, &path)?;
                    let Some((blob, from_top)) = own
                        .map(|k| (k, false))
                        .or_else(|| top_key.clone().map(|k| (k, true)))
                    else {
                        report.skipped += 1;
                        continue;
                    };
                    let key_path = if from_top {
                        ENCRYPTION_KEY.to_string()
                    } else {
                        sub_key_path(&path)
                    };
                    let res = self
                        .open_guarded(
                            m,
                            policy,
                            &blob,
                            &mut keys,
                            &key_path,
                            &mut path,
                            !from_top,
                            KeyPlacement::Remove,
                        )
                        .await;
                    match res {
                        Ok(()) => {
                            report.items += 1;
                            used_top |= from_top;
                        }
                        Err(e) if self.opts.keep_going => report.failures.push(e),
                        Err(e) => return Err(e),
                    }
                }
                if used_top {
                    top.shift_remove(ENCRYPTION_KEY);
                }
            }
            PayloadKind::OneCallback => {
                let events = events_mut(top)?;
                for (ty, items) in events.iter_mut() {
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
                        let m = as_object_mut(item, &path)?;
                        let Some(blob) = item_key(m, &path)? else {
                            report.skipped += 1;
                            continue;
                        };
                        let key_path = sub_key_path(&path);
                        let res = self
                            .open_guarded(
                                m,
                                &self.policy.one_callback,
                                &blob,
                                &mut keys,
                                &key_path,
                                &mut path,
                                true,
                                KeyPlacement::Restore,
                            )
                            .await;
                        match res {
                            Ok(()) => report.items += 1,
                            Err(e) if self.opts.keep_going => report.failures.push(e),
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            PayloadKind::LegacyCallback => {
                if let Some(blob) = item_key(top, "")? {
                    let res = self
                        .open_guarded(
                            top,
                            &self.policy.legacy_callback,
                            &blob,
                            &mut keys,
                            ENCRYPTION_KEY,
                            &mut path,
                            true,
                            KeyPlacement::Restore,
                        )
                        .await;
                    match res {
                        Ok(()) => report.items += 1,
                        Err(e) if self.opts.keep_going => report.failures.push(e),
                        Err(e) => return Err(e),
                    }
                } else {
                    report.skipped += 1;
                }
            }
        }
        Ok(report)
    }

    async fn sealing_key(&self, path: &str, dry: bool) -> Result<Option<Arc<SealingKey>>, Error> {
        if dry {
            return Ok(None);
        }
        self.key_at(path).await.map(Some)
    }

    /// A data key for the item at `path` (named in the error).
    async fn key_at(&self, path: &str) -> Result<Arc<SealingKey>, Error> {
        self.cache.sealing_key().await.map_err(|source| Error::Key {
            path: if path.is_empty() {
                "(document)".into()
            } else {
                path.to_string()
            },
            source,
        })
    }

    fn seal_item(
        &self,
        m: &mut Map<String, Value>,
        kind: &KindPolicy,
        key: Option<&SealingKey>,
        path: &mut String,
        nonces: &mut NonceSource,
    ) -> Result<(), Error> {
        if key.is_none() {
            // The dry pass (tree and streamed paths alike) checks every item before any key
            // is made: strict mode refuses what the policy does not know.
            if let Some(allowed) = &self.compiled_for(kind).allowed {
                allowed.check(m, path, self.compiled_for(kind).name)?;
            }
        }
        let suite = self.opts.suite;
        let mut scratch = Vec::new();
        let mut sealed = 0u64;
        let media = self.visit_text_leaves(m, kind, path, &mut |v, p| {
            let Some(key) = key else { return Ok(()) };
            sealed += 1;
            seal_text(key.cipher(), suite, v, p, &mut scratch, nonces)
        })?;
        if let Some(im) = media {
            sealed += 1;
            self.seal_media(m, im, key, path)?;
        }
        if let Some(key) = key {
            // Bounds the values per key (nonce budget), not just the messages.
            key.record_seals(sealed);
        }
        Ok(())
    }

    fn seal_media(
        &self,
        m: &mut Map<String, Value>,
        im: &InlineMedia,
        key: Option<&SealingKey>,
        path: &str,
    ) -> Result<(), Error> {
        let content_path = sub_path(path, &im.content);
        let hash_path = sub_path(path, &im.hash);
        let given = match get(m, &im.hash) {
            Some(v) => check_hash_value(v, &hash_path)?,
            None => None,
        };
        let Some((holder, ck)) = parent_mut(m, &im.content) else {
            return Ok(());
        };
        let Some(v) = holder.get_mut(ck) else {
            return Ok(());
        };
        let s = match v {
            Value::String(s) => s,
            other => {
                return Err(Error::WrongType {
                    path: content_path,
                    expected: "a base64 string",
                    found: type_name(other),
                })
            }
        };
        let Some(key) = key else { return Ok(()) };
        let bytes = b64::decode(s).map_err(|_| Error::Base64 {
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

    #[allow(clippy::too_many_arguments)]
    async fn open_guarded(
        &self,
        m: &mut Map<String, Value>,
        kind: &KindPolicy,
        blob_b64: &str,
        keys: &mut DocKeys,
        key_path: &str,
        path: &mut String,
        own_key: bool,
        placement: KeyPlacement,
    ) -> Result<(), Error> {
        let key = self.doc_key(keys, blob_b64, key_path).await?;
        if self.opts.keep_going {
            // Work on a copy so a failure leaves the item exactly as it was.
            let mut copy = m.clone();
            self.open_item(&mut copy, kind, &key, path, own_key, placement)?;
            *m = copy;
            Ok(())
        } else {
            self.open_item(m, kind, &key, path, own_key, placement)
        }
    }

    fn open_item(
        &self,
        m: &mut Map<String, Value>,
        kind: &KindPolicy,
        key: &OpeningKey,
        path: &mut String,
        own_key: bool,
        placement: KeyPlacement,
    ) -> Result<(), Error> {
        let suite = self.opts.decrypt_suite;
        let cipher = key.cipher();
        let media =
            self.visit_text_leaves(m, kind, path, &mut |v, p| open_text(cipher, suite, v, p))?;
        if let Some(im) = media {
            self.open_media(m, im, cipher, path)?;
        }
        if own_key {
            place_key_after_decrypt(m, placement);
        }
        Ok(())
    }

    /// Decrypts inline media, verifying `sha256Hash` when present (and kept: it is the
    /// verified plaintext hash). CBC content is only released against a hash, and under CBC a
    /// hash mismatch is the same error as bad padding: otherwise "hash mismatch" would say
    /// "padding was valid", a padding oracle.
    fn open_media(
        &self,
        m: &mut Map<String, Value>,
        im: &InlineMedia,
        cipher: &FieldCipher,
        path: &str,
    ) -> Result<(), Error> {
        let content_path = sub_path(path, &im.content);
        let hash_path = sub_path(path, &im.hash);
        let given = match get(m, &im.hash) {
            Some(v) => check_hash_value(v, &hash_path)?,
            None => None,
        };
        let Some((holder, ck)) = parent_mut(m, &im.content) else {
            return Ok(());
        };
        let Some(v) = holder.get_mut(ck) else {
            return Ok(());
        };
        let s = match v {
            Value::String(s) => s,
            other => {
                return Err(Error::WrongType {
                    path: content_path,
                    expected: "a base64 string",
                    found: type_name(other),
                })
            }
        };
        let ct = b64::decode(s).map_err(|_| Error::Base64 {
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

fn hash_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    // Hashes are public values; a plain comparison is fine, but keep it branch-free anyway.
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The first distinct `encryptionKey` values of a document, to unwrap ahead of the items.
#[derive(Debug, Default)]
struct Blobs(Vec<String>);

impl Blobs {
    const MAX: usize = 64;

    fn note(&mut self, v: Option<&Value>) {
        if let Some(Value::String(s)) = v {
            if self.0.len() < Self::MAX && !s.trim().is_empty() && !self.0.iter().any(|b| b == s) {
                self.0.push(s.clone());
            }
        }
    }
}

/// The data keys one decrypt run has unwrapped (or failed to), by `encryptionKey` value.
struct DocKeys {
    map: HashMap<String, Result<Arc<OpeningKey>, KeyError>>,
    max: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyPlacement {
    /// Requests: plain requests carry no key, so remove it.
    Remove,
    /// Callbacks: the platform's plain callbacks carry `"encryptionKey": null`, so the key
    /// becomes null wherever it stands (no guessing from member order).
    Restore,
}

fn place_key_after_decrypt(m: &mut Map<String, Value>, placement: KeyPlacement) {
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

fn sub_key_path(path: &str) -> String {
    let mut s = path.to_string();
    push_key(&mut s, ENCRYPTION_KEY);
    s
}

/// An item that carries its own key (One API messages and callback items): the blob of the
/// key its values were sealed with goes into its `encryptionKey` (nothing on a dry run).
fn put_key_blob(m: &mut Map<String, Value>, key: Option<&SealingKey>) {
    if let Some(key) = key {
        set_member(m, ENCRYPTION_KEY, Value::String(key.blob_b64().to_string()));
    }
}

/// Replaces `key` in place if present, else appends it.
fn set_member(m: &mut Map<String, Value>, key: &str, v: Value) {
    match m.get_mut(key) {
        Some(slot) => *slot = v,
        None => {
            m.insert(key.to_string(), v);
        }
    }
}

fn refuse_existing_key(m: &Map<String, Value>, path: &str) -> Result<(), Error> {
    match m.get(ENCRYPTION_KEY) {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(Error::AlreadyEncrypted {
            path: sub_key_path(path),
        }),
    }
}

fn item_key(m: &Map<String, Value>, path: &str) -> Result<Option<String>, Error> {
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

fn messages_mut(top: &mut Map<String, Value>) -> Result<&mut Vec<Value>, Error> {
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

fn events_mut(top: &mut Map<String, Value>) -> Result<&mut Map<String, Value>, Error> {
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

fn as_object_mut<'a>(v: &'a mut Value, path: &str) -> Result<&'a mut Map<String, Value>, Error> {
    let found = type_name(v);
    v.as_object_mut().ok_or_else(|| Error::WrongType {
        path: path.to_string(),
        expected: "an object",
        found,
    })
}

/// `decrypted` with the bookkeeping members removed where `original` (the plain
/// document it was encrypted from) has none: a callback item's `encryptionKey: null` and a
/// verified `sha256Hash`. A round trip must give back `original` exactly after this, key order
/// included. For tests and fuzzing.
pub fn without_bookkeeping(decrypted: &Value, original: &Value) -> Value {
    match (decrypted, original) {
        (Value::Object(d), Value::Object(o)) => Value::Object(
            d.iter()
                .filter(|(k, v)| {
                    o.contains_key(*k)
                        || !(k.as_str() == "sha256Hash"
                            || (k.as_str() == ENCRYPTION_KEY && v.is_null()))
                })
                .map(|(k, v)| {
                    let inner = match o.get(k) {
                        Some(ov) => without_bookkeeping(v, ov),
                        None => v.clone(),
                    };
                    (k.clone(), inner)
                })
                .collect(),
        ),
        (Value::Array(d), Value::Array(o)) if d.len() == o.len() => Value::Array(
            d.iter()
                .zip(o)
                .map(|(a, b)| without_bookkeeping(a, b))
                .collect(),
        ),
        _ => decrypted.clone(),
    }
}

/// Parses a JSON document (UTF-8 required; nesting is limited by serde_json to 128 levels).
pub fn parse(input: &[u8]) -> Result<Value, Error> {
    if input.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::Json("the input is empty".into()));
    }
    serde_json::from_slice(input).map_err(|e| Error::Json(e.to_string()))
}

/// Serializes a document, compact or pretty, with a trailing newline.
pub fn serialize(doc: &Value, pretty: bool) -> Result<Vec<u8>, Error> {
    serialize_sized(doc, pretty, 4096)
}

/// [`serialize`] into a buffer reserved for about `hint` bytes, which saves the copies of
/// growing it step by step for a large document (reserved but unused memory costs nothing).
fn serialize_sized(doc: &Value, pretty: bool, hint: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(hint);
    if pretty {
        serde_json::to_writer_pretty(&mut out, doc)
    } else {
        serde_json::to_writer(&mut out, doc)
    }
    .map_err(|e| Error::Json(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}
