//! Payload detection: which of the four payload kinds a document is, from its top-level
//! members and the first messages that carry One API or legacy members. The same function
//! serves the tree and the streamed paths (from a parsed document, or from a [`Shape`]
//! gathered while streaming).

use std::str::FromStr;

use serde_json::Value;

use crate::error::{type_name, Error};

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

pub(crate) const ONE_API_MARKERS: &[&str] =
    &["channel", "media", "template", "location", "contacts"];
/// Message members only the legacy API has (One API nests them under `media`).
pub(crate) const LEGACY_MARKERS: &[&str] = &["contentType", "caption"];

/// The first message that carries any of `markers`, as `messages[i]` and the names found.
pub(crate) fn first_with_markers(
    msgs: &[Value],
    markers: &[&str],
) -> Option<(usize, Vec<&'static str>)> {
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

pub(crate) fn marker_name(k: &str) -> &'static str {
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
    pub(crate) messages: Option<Result<Markers, &'static str>>,
    /// A top-level `encryptionKey` member (any value).
    pub(crate) top_key: bool,
    /// `event`: absent, an object, or the type it has instead.
    pub(crate) event: Option<Result<(), &'static str>>,
    pub(crate) integration_id: bool,
}

/// The first messages carrying One API and legacy members.
#[derive(Debug, Default)]
pub(crate) struct Markers {
    pub(crate) one: Option<(usize, Vec<&'static str>)>,
    pub(crate) legacy: Option<(usize, Vec<&'static str>)>,
}

impl Markers {
    /// Notes message `i` (called in document order).
    pub(crate) fn note(&mut self, i: usize, m: &Value) {
        if let Some(m) = m.as_object() {
            self.note_names(i, |k| m.contains_key(k));
        }
    }

    /// Notes message `i`, an object with the members `has` says it has.
    pub(crate) fn note_names(&mut self, i: usize, has: impl Fn(&str) -> bool) {
        let found = |markers: &[&str]| {
            let found: Vec<&'static str> = markers
                .iter()
                .filter(|k| has(k))
                .map(|k| marker_name(k))
                .collect();
            (!found.is_empty()).then_some((i, found))
        };
        if self.one.is_none() {
            self.one = found(ONE_API_MARKERS);
        }
        if self.legacy.is_none() {
            self.legacy = found(LEGACY_MARKERS);
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

pub(crate) fn detect_shape(shape: &Shape, api: Api) -> Result<PayloadKind, Error> {
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
