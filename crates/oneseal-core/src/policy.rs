//! The field policy: which leaves of each payload kind are encrypted. Policy is data; the
//! walker is the mechanism that applies it.
//!
//! Path syntax (relative to one message or callback item): keys separated by `.`, `[*]` for
//! any array item, `*` for any key, `**` for every string leaf below, and `{a,b}` as a
//! shorthand for several paths (`location.{name,address}`).

use std::fmt;
use std::str::FromStr;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Segment {
    /// An object member by name.
    Key(String),
    /// Every member of an object (`*`).
    AnyKey,
    /// Every item of an array (`[*]`).
    AnyIndex,
    /// Every string leaf below, through objects and arrays (`**`). Only last.
    Deep,
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    segments: Vec<Segment>,
    text: String,
}

impl FieldPath {
    /// The steps of the path.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Parses one path or a `{a,b}` shorthand into every path it stands for.
    pub fn parse_many(s: &str) -> Result<Vec<FieldPath>, PathError> {
        expand_braces(s)?.iter().map(|p| p.parse()).collect()
    }

    /// Whether this path is exactly one plain key (e.g. `content`).
    pub fn is_key(&self, key: &str) -> bool {
        matches!(self.segments.as_slice(), [Segment::Key(k)] if k == key)
    }

    /// The keys of a path made only of plain keys.
    pub fn plain_keys(&self) -> Option<Vec<&str>> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Key(k) => Some(k.as_str()),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A field path that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad field path {path:?}: {reason} (syntax: keys joined by '.', [*] any item, * any key, ** every string below, e.g. template.body.parameters.* or contacts[*].**)")]
pub struct PathError {
    /// The path as given.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn expand_braces(s: &str) -> Result<Vec<String>, PathError> {
    let err = |reason| PathError {
        path: s.to_string(),
        reason,
    };
    let Some(open) = s.find('{') else {
        if s.contains('}') {
            return Err(err("unmatched '}'"));
        }
        return Ok(vec![s.to_string()]);
    };
    let close = s[open..]
        .find('}')
        .map(|i| i + open)
        .ok_or_else(|| err("unmatched '{'"))?;
    let (head, rest) = (&s[..open], &s[close + 1..]);
    let mut out = Vec::new();
    for alt in s[open + 1..close].split(',') {
        if alt.is_empty() {
            return Err(err("empty alternative in {...}"));
        }
        for tail in expand_braces(rest)? {
            out.push(format!("{head}{alt}{tail}"));
        }
    }
    Ok(out)
}

impl FromStr for FieldPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PathError {
            path: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(err("empty path"));
        }
        let mut segments = Vec::new();
        for part in s.split('.') {
            if part.is_empty() {
                return Err(err("empty key (two dots, or a leading/trailing dot)"));
            }
            let (name, mut idx) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            match name {
                "" if idx.is_empty() => return Err(err("empty key")),
                "" => {}
                "*" => segments.push(Segment::AnyKey),
                "**" => segments.push(Segment::Deep),
                n if n.contains(['*', ']', '{', '}', ',']) => {
                    return Err(err("'*' must stand alone as a whole key"))
                }
                n => segments.push(Segment::Key(n.to_string())),
            }
            while !idx.is_empty() {
                match idx.strip_prefix("[*]") {
                    Some(rest) => {
                        segments.push(Segment::AnyIndex);
                        idx = rest;
                    }
                    None => return Err(err("only [*] is supported inside brackets")),
                }
            }
        }
        if let Some(pos) = segments.iter().position(|s| *s == Segment::Deep) {
            if pos + 1 != segments.len() {
                return Err(err("'**' may only be the last step"));
            }
        }
        Ok(FieldPath {
            segments,
            text: s.to_string(),
        })
    }
}

/// Inline media: `content` holds base64 file bytes when a content type is present.
#[derive(Debug, Clone)]
pub struct InlineMedia {
    /// Where the base64 file data is (`content`).
    pub content: FieldPath,
    /// Where the content type is; its presence (non-null) makes `content` binary.
    pub content_type: FieldPath,
    /// Where the plaintext file's SHA-256 (lowercase hex) is set or checked.
    pub hash: FieldPath,
}

/// The policy for one payload kind.
#[derive(Debug, Clone)]
pub struct KindPolicy {
    /// String leaves to encrypt, relative to a message or callback item.
    pub fields: Vec<FieldPath>,
    /// The inline-media rule, if the kind carries inline media.
    pub inline_media: Option<InlineMedia>,
}

/// The field policy for all four payload kinds.
#[derive(Debug, Clone)]
pub struct Policy {
    /// One API request `{"messages":[...]}`.
    pub one_request: KindPolicy,
    /// Legacy `/wa/messages` request.
    pub legacy_request: KindPolicy,
    /// One API callback `{"event":{...}}`.
    pub one_callback: KindPolicy,
    /// Legacy flat callback.
    pub legacy_callback: KindPolicy,
    /// One API callback event types that carry no encrypted content.
    pub plain_events: Vec<String>,
    /// Strict mode: encrypting refuses any member that is neither a policy leaf, nor a
    /// routing/bookkeeping member the references document for the kind, nor listed in
    /// `passthrough` (the tables are in the `strict` module).
    pub strict: bool,
    /// Paths (relative to a message or item) strict mode forwards as they are, with
    /// everything below them.
    pub passthrough: Vec<FieldPath>,
}

fn paths(list: &[&str]) -> Vec<FieldPath> {
    list.iter()
        // The built-in lists are literals checked by the `default_policy_parses` test.
        .flat_map(|p| FieldPath::parse_many(p).unwrap_or_default())
        .collect()
}

fn media(ct: &str, hash: &str) -> Option<InlineMedia> {
    Some(InlineMedia {
        content: paths(&["content"]).pop()?,
        content_type: paths(&[ct]).pop()?,
        hash: paths(&[hash]).pop()?,
    })
}

/// One API request leaves.
pub const ONE_REQUEST_FIELDS: &[&str] = &[
    "content",
    "media.caption",
    "location.{latitude,longitude,name,address}",
    "contacts[*].**",
    "hsm.parameters.*",
    "template.header.text.parameters.*",
    "template.body.parameters.*",
    "template.buttons.suggestedResponse.postbackData.*",
    "template.buttons.websiteUrl[*].parameters.*",
];
/// Legacy request leaves.
pub const LEGACY_REQUEST_FIELDS: &[&str] = &["content", "caption", "hsm.parameters.*"];
/// Callback leaves (One API items and legacy callbacks alike).
pub const CALLBACK_FIELDS: &[&str] = &[
    "content",
    "caption",
    "postbackData",
    "whatsapp.profileName",
    "locationAddress",
    "locationName",
    "latitude",
    "latitute",
    "longitude",
    "contacts[*].**",
];

impl Default for Policy {
    fn default() -> Self {
        let callback = KindPolicy {
            fields: paths(CALLBACK_FIELDS),
            inline_media: media("contentType", "sha256Hash"),
        };
        Policy {
            one_request: KindPolicy {
                fields: paths(ONE_REQUEST_FIELDS),
                inline_media: media("media.contentType", "media.sha256Hash"),
            },
            legacy_request: KindPolicy {
                fields: paths(LEGACY_REQUEST_FIELDS),
                inline_media: media("contentType", "sha256Hash"),
            },
            one_callback: callback.clone(),
            legacy_callback: callback,
            plain_events: vec!["messageStatusUpdate".to_string()],
            strict: false,
            passthrough: Vec::new(),
        }
    }
}

/// Members that route or describe a message (or are oneseal's own bookkeeping): a user path
/// may never select them, since encrypting them breaks delivery or decryption.
pub const PROTECTED_FIELDS: &[&str] = &[
    "to",
    "from",
    "channel",
    "clientMessageId",
    "relatedClientMessageId",
    "messageId",
    "integrationId",
    "previewFirstUrl",
    "templateName",
    "template",
    "type",
    "listPosition",
    "fileId",
    "fileName",
    "contentType",
    "sha256Hash",
    "encryptionKey",
    "kmsArn",
    "timestamp",
    "status",
    "statusCode",
];

/// Object members under which routing fields live: a wildcard directly below one of these
/// (or at the top of a message) would select them.
const ROUTING_PARENTS: &[&[&str]] = &[&[], &["media"], &["template"], &["template", "header"]];

impl FieldPath {
    /// Checks a user-supplied path (`--field`, `fields` in the config file): `**` alone, a
    /// wildcard where routing fields live, or a routing/bookkeeping member
    /// ([`PROTECTED_FIELDS`]) is refused. Silently encrypting nothing, or encrypting `to`,
    /// would be a wrong result with exit 0.
    pub fn check_user_path(&self) -> Result<(), PathError> {
        let err = |reason| PathError {
            path: self.text.clone(),
            reason,
        };
        let mut prefix: Vec<&str> = Vec::new();
        for seg in &self.segments {
            match seg {
                Segment::AnyKey | Segment::Deep if ROUTING_PARENTS.contains(&prefix.as_slice()) => {
                    return Err(err(if self.segments.len() == 1 {
                        "a wildcard alone would select routing fields (to, channel, ...) and oneseal's own members; name the leaves to encrypt"
                    } else {
                        "a wildcard here would select routing fields (fileId, contentType, templateName, ...); name the leaves to encrypt"
                    }));
                }
                Segment::Key(k) => prefix.push(k),
                // Past an array or wildcard the path can no longer be at a routing level.
                _ => prefix.push("\u{0}"),
            }
        }
        if let Some(Segment::Key(last)) = self.segments.last() {
            if PROTECTED_FIELDS.contains(&last.as_str()) {
                return Err(err(
                    "this member routes or describes the message (or is oneseal's bookkeeping) and is never encrypted",
                ));
            }
        }
        Ok(())
    }
}

impl Policy {
    /// Turns strict mode on, forwarding `passthrough` paths as they are.
    pub fn strict(mut self, passthrough: Vec<FieldPath>) -> Self {
        self.strict = true;
        self.passthrough = passthrough;
        self
    }

    /// Adds user paths (`--field`) to every kind; duplicates are ignored. Each is checked with
    /// [`FieldPath::check_user_path`] first.
    pub fn with_extra_fields(mut self, extra: &[FieldPath]) -> Result<Self, PathError> {
        for p in extra {
            p.check_user_path()?;
        }
        for kind in [
            &mut self.one_request,
            &mut self.legacy_request,
            &mut self.one_callback,
            &mut self.legacy_callback,
        ] {
            for p in extra {
                if !kind.fields.contains(p) {
                    kind.fields.push(p.clone());
                }
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_parses() {
        let n: usize = ONE_REQUEST_FIELDS
            .iter()
            .map(|p| FieldPath::parse_many(p).unwrap().len())
            .sum();
        assert_eq!(Policy::default().one_request.fields.len(), n);
        assert_eq!(n, 12);
        for p in LEGACY_REQUEST_FIELDS.iter().chain(CALLBACK_FIELDS) {
            FieldPath::parse_many(p).unwrap();
        }
        assert!(Policy::default().one_request.inline_media.is_some());
    }

    /// Regression: `field_double_star_was_accepted_and_encrypted_nothing` — `--field '**'`,
    /// wildcards over routing levels and routing members are refused.
    #[test]
    fn user_paths_may_not_select_routing_fields() {
        for bad in [
            "**",
            "*",
            "to",
            "channel",
            "clientMessageId",
            "template.templateName",
            "media.fileId",
            "media.contentType",
            "media.*",
            "media.**",
            "template.*",
            "template.header.*",
            "template.header.type",
            "encryptionKey",
            "hsm.template",
        ] {
            let p: FieldPath = bad.parse().unwrap();
            assert!(p.check_user_path().is_err(), "{bad} should be refused");
            assert!(Policy::default().with_extra_fields(&[p]).is_err());
        }
        for good in [
            "customData.note",
            "customData.**",
            "hsm.parameters.*",
            "metadata[*].text",
            "location.*",
        ] {
            let p: FieldPath = good.parse().unwrap();
            assert!(p.check_user_path().is_ok(), "{good} should be accepted");
        }
    }

    #[test]
    fn parse_segments() {
        let p: FieldPath = "template.buttons.websiteUrl[*].parameters.*"
            .parse()
            .unwrap();
        assert_eq!(
            p.segments(),
            &[
                Segment::Key("template".into()),
                Segment::Key("buttons".into()),
                Segment::Key("websiteUrl".into()),
                Segment::AnyIndex,
                Segment::Key("parameters".into()),
                Segment::AnyKey
            ]
        );
        let p: FieldPath = "contacts[*].**".parse().unwrap();
        assert_eq!(p.segments().len(), 3);
        assert!("a..b".parse::<FieldPath>().is_err());
        assert!("a.**.b".parse::<FieldPath>().is_err());
        assert!("a[0]".parse::<FieldPath>().is_err());
        assert!("a*b".parse::<FieldPath>().is_err());
        assert!("".parse::<FieldPath>().is_err());
        assert_eq!(FieldPath::parse_many("x.{a,b}.y").unwrap().len(), 2);
        assert!(FieldPath::parse_many("x.{a").is_err());
    }
}
