//! CleverTap payloads → One API messages, as data: no I/O here. A payload is
//! either translated whole or refused with the CleverTap error code and what is unsupported
//! — never half. Header and freeform media come back as [`MediaRef`]s for the caller to
//! fetch, encrypt and upload; the One API message gets the resulting `fileId`.

use serde_json::{json, Map, Value};

/// Why a payload is not sent, as CleverTap's send-API error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 2000: the platform rejected the credentials.
    Credentials(String),
    /// 2001: a template or parameter problem (including what One API cannot express).
    Template(String),
    /// 2002: the recipient number is not a number.
    Number(String),
    /// 2004: anything else.
    Other(String),
}

impl Refusal {
    /// CleverTap's code.
    pub fn code(&self) -> u16 {
        match self {
            Refusal::Credentials(_) => 2000,
            Refusal::Template(_) => 2001,
            Refusal::Number(_) => 2002,
            Refusal::Other(_) => 2004,
        }
    }
    /// The message for CleverTap's dashboard.
    pub fn message(&self) -> &str {
        match self {
            Refusal::Credentials(m)
            | Refusal::Template(m)
            | Refusal::Number(m)
            | Refusal::Other(m) => m,
        }
    }
}

/// The kind of a media attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    File,
}

/// A `mediaURL` to fetch, encrypt and upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    pub url: String,
    pub kind: MediaKind,
    /// `filename` of a file/document, used as the upload's `fileName`.
    pub filename: Option<String>,
}

/// A translated payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// CleverTap's validation payload: answered success, nothing sent.
    Validation,
    /// A template message; `header_media` is uploaded per recipient and set as
    /// `template.header = {"type":"media","media":{"fileId"}}`.
    Template {
        message: Map<String, Value>,
        header_media: Option<MediaRef>,
    },
    /// Freeform text.
    Text { message: Map<String, Value> },
    /// Freeform media, uploaded once per URL for broadcast and set as `media.fileId`.
    Media {
        message: Map<String, Value>,
        media: MediaRef,
    },
}

impl Outbound {
    /// `template`, `freeform` or `validation`, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Outbound::Validation => "validation",
            Outbound::Template { .. } => "template",
            Outbound::Text { .. } | Outbound::Media { .. } => "freeform",
        }
    }
}

/// The request body for `POST /v1/message` around one message.
pub fn request(message: Map<String, Value>) -> Value {
    json!({ "messages": [Value::Object(message)] })
}

fn template(m: impl Into<String>) -> Refusal {
    Refusal::Template(m.into())
}

/// `to` without `+`, spaces or dashes. What is a deliverable number is the platform's call
/// (its refusal comes back as 2002); here only a missing `to`, or one with characters no
/// number format has, is refused (2002) without asking it.
fn number(payload: &Value) -> Result<String, Refusal> {
    let raw = payload
        .get("to")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::Number("\"to\" is missing".into()))?;
    let to: String = raw
        .trim()
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect();
    if !to.is_empty() && to.len() <= 20 && to.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(to)
    } else {
        Err(Refusal::Number(format!(
            "\"to\" {raw:?} is not a phone number with country code"
        )))
    }
}

fn msg_id(payload: &Value) -> Result<String, Refusal> {
    // The freeform samples of reference 003 spell it msg_id.
    payload
        .get("msgId")
        .or_else(|| payload.get("msg_id"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| Refusal::Other("\"msgId\" is missing".into()))
}

fn base(to: String, msg_id: String) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("channel".into(), "whatsapp".into());
    m.insert("to".into(), to.into());
    m.insert("clientMessageId".into(), msg_id.into());
    m
}

/// Text parameters `[{"type":"text","text":…}]` → `{"1":…,"2":…}`.
fn numbered(params: Option<&Value>, at: &str) -> Result<Map<String, Value>, Refusal> {
    let mut out = Map::new();
    let Some(params) = params else {
        return Ok(out);
    };
    let list = params
        .as_array()
        .ok_or_else(|| template(format!("{at}.parameters is not a list")))?;
    for (i, p) in list.iter().enumerate() {
        let ty = p.get("type").and_then(Value::as_str).unwrap_or("text");
        let text = p.get("text").and_then(Value::as_str);
        match (ty, text) {
            ("text", Some(t)) => {
                out.insert((i + 1).to_string(), t.into());
            }
            _ => {
                return Err(template(format!(
                    "{at}.parameters[{i}] is a {ty:?} parameter; One API templates take text parameters only"
                )))
            }
        }
    }
    Ok(out)
}

fn media_ref(obj: Option<&Value>, kind: MediaKind, at: &str) -> Result<MediaRef, Refusal> {
    let url = obj
        .and_then(|o| o.get("mediaURL"))
        .and_then(Value::as_str)
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| template(format!("{at}.mediaURL is missing")))?;
    Ok(MediaRef {
        url: url.trim().to_string(),
        kind,
        filename: obj
            .and_then(|o| o.get("filename"))
            .and_then(Value::as_str)
            .filter(|f| !f.trim().is_empty())
            .map(str::to_string),
    })
}

fn media_kind(name: &str) -> Option<MediaKind> {
    match name {
        "image" => Some(MediaKind::Image),
        "video" => Some(MediaKind::Video),
        "audio" => Some(MediaKind::Audio),
        "file" | "document" => Some(MediaKind::File),
        _ => None,
    }
}

/// Translates one CleverTap payload. `validate_ns` is the validation payload's namespace.
pub fn translate(payload: &Value, validate_ns: &str) -> Result<Outbound, Refusal> {
    if !payload.is_object() {
        return Err(Refusal::Other("the payload is not a JSON object".into()));
    }
    let is_template = payload
        .get("isTemplate")
        .and_then(Value::as_bool)
        .unwrap_or_else(|| payload.get("template").is_some());
    if is_template {
        let ns = payload
            .pointer("/template/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| template("template.namespace (the template name) is missing"))?;
        if ns == validate_ns {
            return Ok(Outbound::Validation);
        }
        let mut message = base(number(payload)?, msg_id(payload)?);
        let (tpl, header_media) = template_body(ns, payload.get("components"))?;
        message.insert("template".into(), Value::Object(tpl));
        Ok(Outbound::Template {
            message,
            header_media,
        })
    } else {
        freeform(payload)
    }
}

fn template_body(
    ns: &str,
    components: Option<&Value>,
) -> Result<(Map<String, Value>, Option<MediaRef>), Refusal> {
    let mut tpl = Map::new();
    tpl.insert("templateName".into(), ns.into());
    let components = match components {
        None | Some(Value::Null) => return Ok((tpl, None)),
        Some(Value::Array(c)) => c,
        Some(_) => return Err(template("components is not a list")),
    };
    let mut header_seen = false;
    let mut header_media = None;
    let mut website: Vec<Value> = Vec::new();
    let mut postback = Map::new();
    let mut quick_replies = 0usize;
    for (ci, c) in components.iter().enumerate() {
        let at = format!("components[{ci}]");
        let Some(ty) = c.get("type").and_then(Value::as_str) else {
            // `{"customProps": […]}`: campaign metadata, not part of the message.
            if c.get("customProps").is_some() {
                continue;
            }
            return Err(template(format!("{at} has no type")));
        };
        match ty {
            "header" => {
                if header_seen {
                    return Err(template(format!("{at}: a template has one header")));
                }
                header_seen = true;
                let h = c.get("header").unwrap_or(&Value::Null);
                let hty = h.get("type").and_then(Value::as_str).unwrap_or("");
                match hty {
                    "text" => {
                        let params =
                            numbered(h.pointer("/text/parameters"), &format!("{at}.header.text"))?;
                        if !params.is_empty() {
                            tpl.insert(
                                "header".into(),
                                json!({"type": "text", "text": {"parameters": params}}),
                            );
                        }
                    }
                    "image" | "video" | "file" | "document" => {
                        // media_kind covers every name in this arm.
                        let kind = media_kind(hty).unwrap_or(MediaKind::File);
                        header_media =
                            Some(media_ref(h.get(hty), kind, &format!("{at}.header.{hty}"))?);
                    }
                    "location" => {
                        return Err(template(
                            "location headers are not supported by One API templates",
                        ))
                    }
                    other => {
                        return Err(template(format!(
                            "{other:?} headers are not supported by One API templates (text, image, video and document are)"
                        )))
                    }
                }
            }
            "body" => {
                let params = numbered(c.pointer("/body/parameters"), &format!("{at}.body"))?;
                if !params.is_empty() {
                    tpl.insert("body".into(), json!({ "parameters": params }));
                }
            }
            "footer" => {}
            "button" => {
                let sub = c
                    .get("subType")
                    .or_else(|| c.get("sub_type"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match sub {
                    "dynamicUrl" => {
                        let index = c
                            .get("index")
                            .and_then(|i| {
                                i.as_u64()
                                    .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
                            })
                            .ok_or_else(|| {
                                template(format!("{at}: a dynamicUrl button needs its index"))
                            })?;
                        let suffix = c
                            .get("parameters")
                            .and_then(Value::as_array)
                            .and_then(|p| p.first())
                            .and_then(|p| p.get("text"))
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                template(format!(
                                    "{at}: a dynamicUrl button needs its URL suffix parameter"
                                ))
                            })?;
                        website
                            .push(json!({"listPosition": index + 1, "parameters": {"1": suffix}}));
                    }
                    "quickReply" => {
                        quick_replies += 1;
                        let payload = c
                            .get("parameters")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .find(|p| p.get("type").and_then(Value::as_str) == Some("payload"))
                            .and_then(|p| p.get("payload"))
                            .and_then(Value::as_str);
                        // A quick reply without a payload is static: defined with the template.
                        if let Some(p) = payload {
                            postback.insert(quick_replies.to_string(), p.into());
                        }
                    }
                    // Defined with the template; nothing per message.
                    "staticUrl" | "callPhone" => {}
                    "copy_code" => {
                        return Err(template(
                            "copy_code (coupon) buttons are not supported by One API templates",
                        ))
                    }
                    other => {
                        return Err(template(format!(
                            "{at}: {other:?} buttons are not supported by One API templates"
                        )))
                    }
                }
            }
            "carousel" => return Err(template("carousel templates are not supported by One API")),
            "limited_time_offer" => {
                return Err(template(
                    "limited-time-offer templates are not supported by One API",
                ))
            }
            other => {
                return Err(template(format!(
                    "{at}: component type {other:?} is not supported"
                )))
            }
        }
    }
    let mut buttons = Map::new();
    if !postback.is_empty() {
        buttons.insert(
            "suggestedResponse".into(),
            json!({ "postbackData": postback }),
        );
    }
    if !website.is_empty() {
        buttons.insert("websiteUrl".into(), Value::Array(website));
    }
    if !buttons.is_empty() {
        tpl.insert("buttons".into(), Value::Object(buttons));
    }
    Ok((tpl, header_media))
}

fn freeform(payload: &Value) -> Result<Outbound, Refusal> {
    let ty = payload
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::Other("a freeform payload needs \"type\"".into()))?;
    let mut message = base(number(payload)?, msg_id(payload)?);
    if ty == "text" {
        let body = payload
            .pointer("/text/body")
            .and_then(Value::as_str)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| Refusal::Other("text.body is missing".into()))?;
        message.insert("content".into(), body.into());
        return Ok(Outbound::Text { message });
    }
    let kind = media_kind(ty).ok_or_else(|| {
        Refusal::Other(format!(
            "freeform type {ty:?} is not supported (text, image, video, audio and file are)"
        ))
    })?;
    let obj = payload.get(ty);
    let media = media_ref(obj, kind, ty).map_err(|r| Refusal::Other(r.message().to_string()))?;
    let mut m = Map::new();
    if kind != MediaKind::Audio {
        if let Some(c) = obj
            .and_then(|o| o.get("caption"))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
        {
            m.insert("caption".into(), c.into());
        }
    }
    message.insert("media".into(), Value::Object(m));
    Ok(Outbound::Media { message, media })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "whatsapp:hsm:technology:generic:verify";

    fn t(v: Value) -> Result<Outbound, Refusal> {
        translate(&v, NS)
    }

    #[test]
    fn template_with_every_mapped_part() {
        let out = t(json!({"payloadVersion":0.1,"to":"+27 999 00001","wabaNumber":"2799","isTemplate":true,
            "msgId":"1|2|3|4","template":{"namespace":"order_update","languageCode":"en"},
            "components":[
              {"type":"header","header":{"type":"text","text":{"text":"Hi {{1}}","parameters":[{"type":"text","text":"Zoë"}]}}},
              {"type":"body","body":{"text":"…","parameters":[{"type":"text","text":"R10"},{"type":"text","text":"tomorrow"}]}},
              {"type":"footer","footer":"stop to opt out"},
              {"type":"button","index":1,"subType":"dynamicUrl","buttonText":"Track","parameters":[{"type":"text","text":"o/42"}]},
              {"type":"button","index":0,"subType":"staticUrl","buttonText":"Site","parameters":[{"type":"text","text":"https://x"}]},
              {"type":"button","index":2,"subType":"quickReply","buttonText":"Yes","parameters":[{"type":"payload","payload":"yes-42"}]},
              {"type":"button","index":3,"subType":"quickReply","buttonText":"No"},
              {"type":"button","index":4,"subType":"quickReply","buttonText":"Later","parameters":[{"type":"payload","payload":"later"}]},
              {"type":"button","index":5,"subType":"callPhone","buttonText":"Call","parameters":[{"type":"text","text":"+27"}]},
              {"customProps":[{"k":"v"}]}
            ]}))
        .unwrap();
        let Outbound::Template {
            message,
            header_media,
        } = out
        else {
            panic!()
        };
        assert_eq!(header_media, None);
        assert_eq!(
            Value::Object(message),
            json!({"channel":"whatsapp","to":"2799900001","clientMessageId":"1|2|3|4","template":{
                "templateName":"order_update",
                "header":{"type":"text","text":{"parameters":{"1":"Zoë"}}},
                "body":{"parameters":{"1":"R10","2":"tomorrow"}},
                "buttons":{"suggestedResponse":{"postbackData":{"1":"yes-42","3":"later"}},
                           "websiteUrl":[{"listPosition":2,"parameters":{"1":"o/42"}}]}}})
        );
    }

    #[test]
    fn media_headers_validation_and_refusals() {
        let out = t(json!({"to":"919999999999","isTemplate":true,"msgId":"m","template":{"namespace":"n"},
            "components":[{"type":"header","header":{"type":"file","file":{"mediaURL":"https://cdn.example.com/a.pdf","filename":"Offer"}}}]}))
        .unwrap();
        let Outbound::Template { header_media, .. } = out else {
            panic!()
        };
        assert_eq!(
            header_media,
            Some(MediaRef {
                url: "https://cdn.example.com/a.pdf".into(),
                kind: MediaKind::File,
                filename: Some("Offer".into())
            })
        );
        assert_eq!(
            t(json!({"to":"+919999999999","isTemplate":true,"template":{"namespace":NS},"msgId":"0|0|0|0"}))
                .unwrap(),
            Outbound::Validation
        );
        for (comp, needle) in [
            (json!({"type":"carousel","cards":[]}), "carousel"),
            (
                json!({"type":"limited_time_offer","text":"x"}),
                "limited-time",
            ),
            (
                json!({"type":"header","header":{"type":"location","location":{}}}),
                "location",
            ),
            (
                json!({"type":"button","index":0,"subType":"copy_code","parameters":[]}),
                "copy_code",
            ),
            (
                json!({"type":"body","body":{"parameters":[{"type":"currency","currency":{}}]}}),
                "currency",
            ),
        ] {
            let e = t(json!({"to":"919999999999","isTemplate":true,"msgId":"m","template":{"namespace":"n"},
                "components":[{"type":"body","body":{"parameters":[{"type":"text","text":"a"}]}}, comp]}))
            .unwrap_err();
            assert_eq!(e.code(), 2001, "{e:?}");
            assert!(e.message().contains(needle), "{e:?}");
        }
        for bad in [json!("27@82"), json!(""), json!(27820000000u64)] {
            let e = t(json!({"to":bad,"isTemplate":true,"msgId":"m","template":{"namespace":"n"}}))
                .unwrap_err();
            assert_eq!(e.code(), 2002, "{bad}");
        }
        // What the platform can deliver is its call (reference 003's samples have
        // placeholders like "+9199XXXXXXX").
        assert!(t(
            json!({"to":"+9199XXXXXXX","isTemplate":true,"msgId":"m","template":{"namespace":"n"}})
        )
        .is_ok());
    }

    #[test]
    fn freeform_shapes() {
        let out = t(json!({"to":"919999999999","isTemplate":false,"msgId":"f1","type":"text","text":{"body":"hello"}})).unwrap();
        assert_eq!(
            out,
            Outbound::Text {
                message: json!({"channel":"whatsapp","to":"919999999999","clientMessageId":"f1","content":"hello"})
                    .as_object()
                    .unwrap()
                    .clone()
            }
        );
        let out = t(
            json!({"to":"919999999999","isTemplate":false,"msg_id":"f2","type":"image",
            "image":{"mediaURL":"https://cdn.example.com/i.png","caption":"look"}}),
        )
        .unwrap();
        let Outbound::Media { message, media } = out else {
            panic!()
        };
        assert_eq!(message["media"], json!({"caption":"look"}));
        assert_eq!(media.kind, MediaKind::Image);
        let out = t(
            json!({"to":"919999999999","isTemplate":false,"msgId":"f3","type":"audio",
            "audio":{"mediaURL":"https://cdn.example.com/a.mp3","caption":"ignored"}}),
        )
        .unwrap();
        let Outbound::Media { message, .. } = out else {
            panic!()
        };
        assert_eq!(message["media"], json!({}));
        assert_eq!(
            t(json!({"to":"919999999999","msgId":"x","type":"location","location":{}}))
                .unwrap_err()
                .code(),
            2004
        );
    }
}
