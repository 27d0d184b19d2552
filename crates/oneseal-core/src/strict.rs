//! Strict mode: every member of a message or callback item must be known — a policy leaf, a
//! routing or bookkeeping member the One API / legacy references document for that kind, or
//! a path the business lists as passthrough. Anything else (`text.body`, `interactive.*`, a
//! member a newer API version adds) is refused by name instead of being sent in clear.
//!
//! The tables below are data, like the field policy beside them: the members the references
//! show for each payload kind that are never encrypted. A test checks that every fixture
//! taken from the references passes.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::policy::{FieldPath, KindPolicy, Segment};

/// One API request messages: routing and bookkeeping members (never encrypted).
pub const ONE_REQUEST_KNOWN: &[&str] = &[
    "channel",
    "to",
    "clientMessageId",
    "previewFirstUrl",
    "encryptionKey",
    "media.{contentType,fileId,fileName,sha256Hash}",
    "template.templateName",
    "template.header.type",
    "template.header.media.*",
    "template.buttons.websiteUrl[*].listPosition",
    "hsm.template",
];

/// Legacy `/wa/messages` request messages.
pub const LEGACY_REQUEST_KNOWN: &[&str] = &[
    "to",
    "clientMessageId",
    "previewFirstUrl",
    "contentType",
    "sha256Hash",
    "encryptionKey",
    "hsm.template",
];

/// Callback items (One API event items and legacy flat callbacks).
pub const CALLBACK_KNOWN: &[&str] = &[
    "channel",
    "to",
    "from",
    "messageId",
    "relatedMessageId",
    "relatedClientMessageId",
    "clientMessageId",
    "timestamp",
    "charset",
    "integrationId",
    "integrationName",
    "encryptionKey",
    "contentType",
    "sha256Hash",
    "fileName",
    "profileName",
    "status",
    "statusCode",
    "error.*",
    "files[*].{byteSize,contentType,downloadUrl,fileName,fileId,sha256Hash}",
    "sms.{network,udh}",
];

/// Top-level members of each kind's document (besides its items).
pub(crate) const ONE_REQUEST_TOP: &[&str] = &["messages"];
pub(crate) const LEGACY_REQUEST_TOP: &[&str] = &["messages", "encryptionKey"];
pub(crate) const ONE_CALLBACK_TOP: &[&str] = &["event", "integrationId", "integrationName"];

/// The members one payload kind allows, as a tree walked once per item.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allowed {
    root: Node,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// A known path ends here: a scalar (or anything, when `deep`) is fine.
    end: bool,
    /// Everything below is allowed (`**`, and passthrough paths: forwarded as they are).
    deep: bool,
    keys: Vec<(String, Node)>,
    any_key: Option<Box<Node>>,
    any_index: Option<Box<Node>>,
}

impl Node {
    fn insert(&mut self, segs: &[Segment], deep_end: bool) {
        let Some((first, rest)) = segs.split_first() else {
            self.end = true;
            self.deep |= deep_end;
            return;
        };
        let next = match first {
            Segment::Deep => {
                self.end = true;
                self.deep = true;
                return;
            }
            Segment::Key(k) => match self.keys.iter().position(|(n, _)| n == k) {
                Some(i) => &mut self.keys[i].1,
                None => {
                    self.keys.push((k.clone(), Node::default()));
                    let last = self.keys.len() - 1;
                    &mut self.keys[last].1
                }
            },
            Segment::AnyKey => self.any_key.get_or_insert_with(Box::default),
            Segment::AnyIndex => self.any_index.get_or_insert_with(Box::default),
        };
        next.insert(rest, deep_end);
    }

    fn child(&self, k: &str) -> Option<&Node> {
        self.keys
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, c)| c)
            .or(self.any_key.as_deref())
    }
}

impl Allowed {
    /// The members `kind` allows: its policy leaves, `known` (the references' routing and
    /// bookkeeping members) and the business's `passthrough` paths (anything below them).
    pub(crate) fn new(kind: &KindPolicy, known: &[&str], passthrough: &[FieldPath]) -> Allowed {
        let mut root = Node::default();
        let known = known
            .iter()
            // Literals checked by the `known_tables_parse` test.
            .flat_map(|p| FieldPath::parse_many(p).unwrap_or_default());
        for p in kind.fields.iter().cloned().chain(known) {
            root.insert(p.segments(), false);
        }
        if let Some(im) = &kind.inline_media {
            for p in [&im.content, &im.content_type, &im.hash] {
                root.insert(p.segments(), false);
            }
        }
        for p in passthrough {
            root.insert(p.segments(), true);
        }
        Allowed { root }
    }

    /// Checks one message or item (`m`, at `path`): the first member not allowed is an
    /// [`Error::UnknownMember`] naming its path.
    pub(crate) fn check(
        &self,
        m: &Map<String, Value>,
        path: &str,
        kind: &'static str,
    ) -> Result<(), Error> {
        let mut p = path.to_string();
        check_object(m, &self.root, &mut p, kind)
    }
}

/// Checks the top-level members of a document: only `allowed` (and nothing else) may stand
/// beside the items.
pub(crate) fn check_top(
    top: &Map<String, Value>,
    allowed: &[&str],
    kind: &'static str,
) -> Result<(), Error> {
    match top.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Error::UnknownMember {
            path: k.clone(),
            kind,
        }),
        None => Ok(()),
    }
}

fn push(path: &mut String, k: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(k);
}

fn check_object(
    m: &Map<String, Value>,
    node: &Node,
    path: &mut String,
    kind: &'static str,
) -> Result<(), Error> {
    let base = path.len();
    for (k, v) in m {
        push(path, k);
        match node.child(k) {
            Some(c) => check_value(v, c, path, kind)?,
            None => {
                return Err(Error::UnknownMember {
                    path: path.clone(),
                    kind,
                })
            }
        }
        path.truncate(base);
    }
    Ok(())
}

fn check_value(v: &Value, node: &Node, path: &mut String, kind: &'static str) -> Result<(), Error> {
    if node.deep {
        return Ok(());
    }
    let unknown = |path: &String| Error::UnknownMember {
        path: path.clone(),
        kind,
    };
    match v {
        Value::Null => Ok(()),
        Value::Object(m) => check_object(m, node, path, kind),
        Value::Array(items) => {
            let Some(item) = node.any_index.as_deref() else {
                return if items.is_empty() && node.end {
                    Ok(())
                } else {
                    Err(unknown(path))
                };
            };
            let base = path.len();
            for (i, it) in items.iter().enumerate() {
                path.truncate(base);
                path.push_str(&format!("[{i}]"));
                check_value(it, item, path, kind)?;
            }
            path.truncate(base);
            Ok(())
        }
        // A scalar where only members were expected (`"template": "…"`) could be content
        // under a name the policy does not know: refused like an unknown member.
        _ if node.end => Ok(()),
        _ => Err(unknown(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use serde_json::json;

    fn one() -> Allowed {
        Allowed::new(&Policy::default().one_request, ONE_REQUEST_KNOWN, &[])
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test objects"),
        }
    }

    #[test]
    fn known_tables_parse() {
        for p in ONE_REQUEST_KNOWN
            .iter()
            .chain(LEGACY_REQUEST_KNOWN)
            .chain(CALLBACK_KNOWN)
        {
            assert!(!FieldPath::parse_many(p).unwrap().is_empty(), "{p}");
        }
    }

    #[test]
    fn an_unknown_member_is_named_with_its_path() {
        let m = obj(json!({"channel": "whatsapp", "to": "1", "text": {"body": "secret"}}));
        let e = one()
            .check(&m, "messages[0]", "One API request")
            .unwrap_err();
        assert_eq!(e.path(), Some("messages[0].text"));
    }

    #[test]
    fn a_scalar_where_members_are_expected_is_refused() {
        let m = obj(json!({"channel": "whatsapp", "hsm": "secret"}));
        let e = one()
            .check(&m, "messages[1]", "One API request")
            .unwrap_err();
        assert_eq!(e.path(), Some("messages[1].hsm"));
    }

    #[test]
    fn policy_leaves_and_routing_members_pass() {
        let m = obj(
            json!({"channel": "whatsapp", "to": "1", "clientMessageId": "c",
            "template": {"templateName": "t", "header": {"type": "text", "text": {"parameters": {"1": "a"}}},
                "buttons": {"websiteUrl": [{"listPosition": 1, "parameters": {"1": "x"}}]}},
            "contacts": [{"name": {"firstName": "A"}, "phones": [{"phone": "1"}]}]}),
        );
        one().check(&m, "messages[0]", "One API request").unwrap();
    }

    #[test]
    fn passthrough_paths_pass_with_everything_below() {
        let pt = FieldPath::parse_many("customData").unwrap();
        let a = Allowed::new(&Policy::default().one_request, ONE_REQUEST_KNOWN, &pt);
        let m = obj(json!({"to": "1", "customData": {"a": [1, {"b": 2}]}}));
        a.check(&m, "messages[0]", "One API request").unwrap();
    }

    #[test]
    fn top_level_members_are_checked() {
        let top = obj(json!({"messages": [], "caption": "x"}));
        let e = check_top(&top, ONE_REQUEST_TOP, "One API request").unwrap_err();
        assert_eq!(e.path(), Some("caption"));
    }
}
