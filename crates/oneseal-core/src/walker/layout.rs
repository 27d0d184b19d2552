//! The per-kind rules as data: the policy's paths compiled into a tree walked once per item
//! ([`Compiled`], with strict mode's allowed members), the walk itself, and the JSON-path
//! helpers every driver names its errors with.

use serde_json::{Map, Value};

use super::detect::PayloadKind;

/// Where a payload kind's items are, and how far one data key reaches: the per-document
/// rules, as data, that both drivers follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) items: Items,
    pub(crate) key: KeyScope,
    /// What becomes of an item's own key once it is decrypted.
    pub(crate) decrypted_key: KeyPlacement,
}

/// What decryption does with the `encryptionKey` it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyPlacement {
    /// Requests: plain requests carry no key, so remove it.
    Remove,
    /// Callbacks: the platform's plain callbacks carry `"encryptionKey": null`, so the key
    /// becomes null wherever it stands (no guessing from member order).
    Restore,
}

/// Where the items of a document are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Items {
    /// `messages[*]` (requests).
    Messages,
    /// `event.<type>[*]`, but for the event types that carry no content (One API callbacks).
    Events,
    /// The document itself is the one item (legacy callbacks).
    Top,
}

/// Whose `encryptionKey` an item's values are sealed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyScope {
    /// Each item has its own (One API): set on the item.
    PerItem,
    /// One for the document (legacy), made at its first item: set at the top level.
    Document,
}

impl Layout {
    /// The rules of `kind`.
    pub(crate) fn of(kind: PayloadKind) -> Layout {
        let (items, key) = match kind {
            PayloadKind::OneRequest => (Items::Messages, KeyScope::PerItem),
            PayloadKind::LegacyRequest => (Items::Messages, KeyScope::Document),
            PayloadKind::OneCallback => (Items::Events, KeyScope::PerItem),
            PayloadKind::LegacyCallback => (Items::Top, KeyScope::Document),
        };
        let decrypted_key = match items {
            Items::Messages => KeyPlacement::Remove,
            Items::Events | Items::Top => KeyPlacement::Restore,
        };
        Layout {
            items,
            key,
            decrypted_key,
        }
    }
}
use crate::error::{type_name, Error};
use crate::policy::{FieldPath, InlineMedia, KindPolicy, Policy, Segment};

pub(crate) fn push_key(path: &mut String, k: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(k);
}

/// Resets `path` to `messages[i]`.
pub(crate) fn message_path(path: &mut String, i: usize) {
    path.clear();
    path.push_str("messages");
    push_index(path, i);
}

pub(crate) fn push_index(path: &mut String, i: usize) {
    path.push('[');
    path.push_str(itoa::Buffer::new().format(i));
    path.push(']');
}

/// The field paths of one kind merged into a tree, so one pass over a message visits every
/// policy leaf: each member of the message is matched against the few names the policy has
/// at that level, instead of looking each path up from the top.
#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    /// A path ends here: the value must be a string (or null).
    pub(crate) leaf: bool,
    pub(crate) keys: Vec<(String, Node)>,
    pub(crate) any_key: Option<Box<Node>>,
    pub(crate) any_index: Option<Box<Node>>,
    pub(crate) deep: bool,
}

impl Node {
    pub(crate) fn build<'a>(paths: impl IntoIterator<Item = &'a FieldPath>) -> Node {
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

    pub(crate) fn wants_object(&self) -> bool {
        !self.keys.is_empty() || self.any_key.is_some()
    }
}

/// Compiled policy for one kind: with and without the inline-media `content` path.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) all: Node,
    pub(crate) no_content: Node,
    /// Strict mode: the members an item of this kind may have.
    pub(crate) allowed: Option<crate::strict::Allowed>,
    /// Strict mode: the members its document may have beside the items.
    pub(crate) top: &'static [&'static str],
    pub(crate) name: &'static str,
}

impl Compiled {
    pub(crate) fn new(kind: &KindPolicy, payload: PayloadKind, policy: &Policy) -> Compiled {
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
    pub(crate) fn check_top(&self, top: &Map<String, Value>) -> Result<(), Error> {
        match self.allowed {
            Some(_) if !self.top.is_empty() => crate::strict::check_top(top, self.top, self.name),
            _ => Ok(()),
        }
    }
}

/// Visits every string leaf `node` selects in the object `m` (a message or item).
pub(crate) fn walk_object<F>(
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

pub(crate) fn walk_node<F>(
    v: &mut Value,
    node: &Node,
    path: &mut String,
    f: &mut F,
) -> Result<(), Error>
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

pub(crate) fn deep<F>(v: &mut Value, path: &mut String, f: &mut F) -> Result<(), Error>
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

pub(crate) fn get<'a>(m: &'a Map<String, Value>, p: &FieldPath) -> Option<&'a Value> {
    let keys = p.plain_keys()?;
    let (first, rest) = keys.split_first()?;
    let mut v = m.get(*first)?;
    for k in rest {
        v = v.as_object()?.get(*k)?;
    }
    Some(v)
}

/// The object that holds the last key of `p`, and that key.
pub(crate) fn parent_mut<'a, 'p>(
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

pub(crate) fn sub_path(base: &str, p: &FieldPath) -> String {
    let mut s = base.to_string();
    push_key(&mut s, &p.to_string());
    s
}

/// Whether `m` carries inline media under `im`: a non-null content type and a content value.
pub(crate) fn inline_media_applies(m: &Map<String, Value>, im: &InlineMedia) -> bool {
    matches!(get(m, &im.content_type), Some(v) if !v.is_null())
        && matches!(get(m, &im.content), Some(v) if !v.is_null())
}
