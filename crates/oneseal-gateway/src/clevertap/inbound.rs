//! Platform callbacks → CleverTap (inbound). The callbacks of the bridge's One
//! API integration arrive on `clevertap.callbacks_path`, are spooled durably like any
//! callback (tagged `.clevertap`), and the relay delivers them here: `messageStatusUpdate`
//! becomes one delivery report, each `moText`/`moMedia`/`moLocation`/`moSuggestedResponse`
//! item an incoming-message callback, decrypted, with media as signed links. A spooled
//! callback is deleted only after CleverTap accepted everything made from it
//! (at-least-once).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::Uri;
use serde_json::{json, Map, Value};

use super::media::{new_link, sign_link};
use super::Bridge;
use crate::config::CleverTapConfig;
use crate::relay::{open, Outcome, Sink};

/// CleverTap's status for a One API status code; `None` = not forwarded (queued, scheduled).
/// Reference 001: any code not in its table is a failure.
fn status_of(code: i64) -> Option<(&'static str, Option<u16>)> {
    match code {
        2 | 3 => None,
        4 => Some(("sent", None)),
        5 => Some(("delivered", None)),
        6 => Some(("read", None)),
        // Unknown user: the number is not on WhatsApp.
        29 => Some(("failed", Some(1002))),
        // Re-engagement required: outside the 24-hour window.
        131 => Some(("failed", Some(1008))),
        // Spam rate limit: too many messages to the number.
        132 => Some(("failed", Some(1004))),
        _ => Some(("failed", Some(1009))),
    }
}

fn code_of_name(name: &str) -> Option<i64> {
    Some(match name.trim() {
        "UNKNOWN" => 1,
        "QUEUED" => 2,
        "SCHEDULED" => 3,
        "SENT_TO_SUPPLIER" => 4,
        "DEVICE_ACK" => 5,
        "READ" => 6,
        _ => return None,
    })
}

/// Milliseconds (One API) → seconds as a string (CleverTap's samples).
fn seconds(ts: Option<&Value>) -> String {
    let ms = ts
        .and_then(|t| {
            t.as_i64()
                .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0);
    let s = if ms > 100_000_000_000 { ms / 1000 } else { ms };
    s.to_string()
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "null")
        .map(str::to_string)
}

/// The DLR statuses of one callback.
fn statuses(items: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for it in items {
        let Some(msg_id) = text(it.get("clientMessageId")) else {
            // Not sent by the bridge (no msgId to report against).
            continue;
        };
        let name = it.get("status").and_then(Value::as_str).unwrap_or("");
        let code = it
            .get("statusCode")
            .and_then(|c| {
                c.as_i64()
                    .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
            })
            .or_else(|| code_of_name(name))
            .unwrap_or(1);
        let Some((status, error)) = status_of(code) else {
            continue;
        };
        let mut s =
            json!({"msgId": msg_id, "status": status, "timestamp": seconds(it.get("timestamp"))});
        if let Some(c) = error {
            let title = it
                .pointer("/error/description")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
                .unwrap_or(if name.is_empty() { "failed" } else { name });
            s["error"] = json!({"code": c, "title": title});
        }
        out.push(s);
    }
    out
}

/// The fields every incoming message has.
fn imo_base(cfg: &CleverTapConfig, it: &Value, ty: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("payloadVersion".into(), "0.1".into());
    m.insert(
        "from".into(),
        text(it.get("from")).unwrap_or_default().into(),
    );
    m.insert("wabaNumber".into(), cfg.waba_number.clone().into());
    m.insert("timestamp".into(), seconds(it.get("timestamp")).into());
    m.insert("type".into(), ty.into());
    if let Some(id) = text(it.get("relatedClientMessageId")) {
        m.insert("context".into(), json!({ "id": id }));
    }
    m
}

fn media_type(content_type: &str) -> &'static str {
    match content_type.split('/').next().unwrap_or("") {
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        _ => "file",
    }
}

/// Whether `path_and_query` is the platform's media download route, `/v1/media?…`.
pub(crate) fn is_media_download(path_and_query: &str) -> bool {
    path_and_query
        .split_once('?')
        .is_some_and(|(p, _)| p == "/v1/media")
}

/// Signed links for every moMedia file, made before decryption (which nulls the keys):
/// `links[item][file]`.
fn media_links(cfg: &CleverTapConfig, items: &[Value]) -> Result<Vec<Vec<String>>, String> {
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let key = text(it.get("encryptionKey"));
        let mut files = Vec::new();
        for f in it
            .get("files")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(key) = key.clone() else {
                return Err(format!(
                    "/event/moMedia/{i}: media without encryptionKey (the integration must use client-side encryption)"
                ));
            };
            let url = text(f.get("downloadUrl"))
                .ok_or_else(|| format!("/event/moMedia/{i}: a file without downloadUrl"))?;
            let path = url
                .parse::<Uri>()
                .ok()
                .and_then(|u| u.path_and_query().map(|p| p.as_str().to_string()))
                .filter(|p| p.starts_with('/'))
                .ok_or_else(|| format!("/event/moMedia/{i}: downloadUrl is not a URL"))?;
            // The link is served by GETting this path from the platform with the One API
            // key: only ever the media download route, whatever a callback says.
            if !is_media_download(&path) {
                return Err(format!(
                    "/event/moMedia/{i}: downloadUrl is not the platform's media download route (/v1/media?…)"
                ));
            }
            let link = new_link(path, key, text(f.get("sha256Hash")), cfg.media_link_ttl);
            files.push(sign_link(cfg, &link));
        }
        out.push(files);
    }
    Ok(out)
}

/// The incoming-message callbacks of one (decrypted) callback.
fn incoming(
    cfg: &CleverTapConfig,
    event: &Map<String, Value>,
    links: &[Vec<String>],
) -> Vec<Value> {
    let mut out = Vec::new();
    let items = |k: &str| {
        event
            .get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for it in items("moText") {
        let mut m = imo_base(cfg, &it, "text");
        m.insert(
            "text".into(),
            json!({"body": text(it.get("content")).unwrap_or_default()}),
        );
        out.push(Value::Object(m));
    }
    for it in items("moLocation") {
        let mut m = imo_base(cfg, &it, "location");
        let mut loc = Map::new();
        // One API spells it "latitute".
        for (to, from) in [
            (
                "latitude",
                it.get("latitute").or_else(|| it.get("latitude")),
            ),
            ("longitude", it.get("longitude")),
            ("name", it.get("locationName")),
            ("address", it.get("locationAddress")),
        ] {
            if let Some(v) = text(from) {
                loc.insert(to.into(), v.into());
            }
        }
        m.insert("location".into(), Value::Object(loc));
        out.push(Value::Object(m));
    }
    for it in items("moSuggestedResponse") {
        let mut m = imo_base(cfg, &it, "button");
        m.insert(
            "button".into(),
            json!({"payload": text(it.get("postbackData")).unwrap_or_default(),
                   "text": text(it.get("content")).unwrap_or_default()}),
        );
        out.push(Value::Object(m));
    }
    for (i, it) in items("moMedia").iter().enumerate() {
        let caption = text(it.get("caption"));
        for (j, f) in it
            .get("files")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let mime =
                text(f.get("contentType")).unwrap_or_else(|| "application/octet-stream".into());
            let ty = media_type(&mime);
            let mut m = imo_base(cfg, it, ty);
            let mut media = Map::new();
            media.insert(
                "mediaURL".into(),
                links
                    .get(i)
                    .and_then(|l| l.get(j))
                    .cloned()
                    .unwrap_or_default()
                    .into(),
            );
            media.insert("mimeType".into(), mime.into());
            if ty != "audio" {
                if let Some(c) = &caption {
                    media.insert("caption".into(), c.clone().into());
                }
            }
            m.insert(ty.into(), Value::Object(media));
            out.push(Value::Object(m));
        }
    }
    for kind in event.keys() {
        if !matches!(
            kind.as_str(),
            "moText" | "moLocation" | "moSuggestedResponse" | "moMedia" | "messageStatusUpdate"
        ) {
            // CleverTap's incoming-message format has no place for it (contacts, …).
            tracing::warn!(kind = %kind, "callback kind CleverTap cannot receive; not forwarded");
            // A closed label set: a caller's made-up kinds must not create series.
            let label = match kind.as_str() {
                "moContacts" => "moContacts",
                _ => "other",
            };
            metrics::counter!("oneseal_clevertap_unsupported_total", "kind" => label).increment(1);
        }
    }
    out
}

async fn post(b: &Bridge, to_dlr: bool, body: &Value) -> Result<(), String> {
    let (client, url) = if to_dlr {
        (&b.dlr, &b.cfg.dlr_url)
    } else {
        (&b.imo, &b.cfg.imo_url)
    };
    let bytes = Bytes::from(serde_json::to_vec(body).map_err(|e| e.to_string())?);
    match client.post_json(url, bytes, &[]).await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!(
            "CleverTap's {} callback answered {}",
            if to_dlr { "DLR" } else { "IMO" },
            r.status()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The CleverTap sink: the bridge's platform callbacks as delivery reports and incoming
/// messages.
pub struct CleverTapSink {
    pub bridge: Arc<Bridge>,
}

#[async_trait::async_trait]
impl Sink for CleverTapSink {
    async fn deliver(&self, _name: &str, doc: Value) -> Outcome {
        deliver(&self.bridge, doc).await
    }
}

/// Delivers one spooled callback to CleverTap.
async fn deliver(b: &Bridge, mut doc: Value) -> Outcome {
    if !doc.get("event").is_some_and(Value::is_object) {
        return Outcome::Dead("not a One API callback (no \"event\" object)".into());
    }
    let media_items = doc
        .pointer("/event/moMedia")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let links = match media_links(&b.cfg, &media_items) {
        Ok(l) => l,
        Err(e) => return Outcome::Dead(e),
    };
    // The bridge's integration encrypts: plaintext content is refused.
    if let Err(o) = open(&b.platform.engine, &mut doc, false).await {
        return o;
    }
    let Some(event) = doc.get("event").and_then(Value::as_object) else {
        return Outcome::Dead("not a One API callback".into());
    };
    let st = statuses(
        event
            .get("messageStatusUpdate")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]),
    );
    if !st.is_empty() {
        let dlr = json!({"payloadVersion": "0.1", "statuses": st});
        if let Err(e) = post(b, true, &dlr).await {
            return Outcome::Retry(e);
        }
        metrics::counter!("oneseal_clevertap_dlr_total").increment(st.len() as u64);
    }
    for imo in incoming(&b.cfg, event, &links) {
        if let Err(e) = post(b, false, &imo).await {
            return Outcome::Retry(e);
        }
        metrics::counter!("oneseal_clevertap_imo_total").increment(1);
    }
    Outcome::Delivered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_as_reference_001_says() {
        assert_eq!(status_of(2), None);
        assert_eq!(status_of(3), None);
        assert_eq!(status_of(4), Some(("sent", None)));
        assert_eq!(status_of(5), Some(("delivered", None)));
        assert_eq!(status_of(6), Some(("read", None)));
        assert_eq!(status_of(29), Some(("failed", Some(1002))));
        assert_eq!(status_of(131), Some(("failed", Some(1008))));
        assert_eq!(status_of(23), Some(("failed", Some(1009))));
        assert_eq!(
            status_of(999),
            Some(("failed", Some(1009))),
            "unknown codes fail"
        );
        let s = statuses(&[
            json!({"statusCode":5,"status":"DEVICE_ACK","clientMessageId":"1|2|3","timestamp":1506607698860i64}),
            json!({"statusCode":2,"status":"QUEUED","clientMessageId":"1|2|3","timestamp":1}),
            json!({"statusCode":29,"status":"UNKNOWN_USER","clientMessageId":"4|5","timestamp":1506607698000i64}),
            json!({"statusCode":6,"status":"READ","clientMessageId":null,"timestamp":1}),
        ]);
        assert_eq!(
            s,
            vec![
                json!({"msgId":"1|2|3","status":"delivered","timestamp":"1506607698"}),
                json!({"msgId":"4|5","status":"failed","timestamp":"1506607698","error":{"code":1002,"title":"UNKNOWN_USER"}}),
            ]
        );
    }

    fn cfg() -> CleverTapConfig {
        let file: crate::config::GatewayFile = toml::from_str(
            "public_url = \"https://wa.example.com\"\n[clevertap]\nusername = \"u\"\npassword_env = \"S\"\none_api_key_env = \"S\"\n\
             dlr_url = \"https://ct.example.com/d\"\nimo_url = \"https://ct.example.com/i\"\nwaba_number = \"+2799\"\n\
             media_link_secret_env = \"S\"\nallow_unauthenticated = true\n",
        )
        .unwrap();
        crate::config::GatewayConfig::from_file(&file, &|_: &str| {
            Some("a-secret-of-32-characters-long!!".into())
        })
        .unwrap()
        .clevertap
        .unwrap()
    }

    #[test]
    fn every_media_type_becomes_its_imo_kind_with_a_signed_link() {
        let cfg = cfg();
        let items: Vec<Value> = ["image/png", "video/mp4", "audio/ogg", "application/pdf"]
            .iter()
            .enumerate()
            .map(|(i, ct)| {
                json!({"from": "2782", "timestamp": 1764590400000i64, "relatedClientMessageId": null,
                       "encryptionKey": "S0VZ", "caption": "cap",
                       "files": [{"contentType": ct, "downloadUrl": format!("https://platform.clickatell.com/v1/media?fileId=F{i}"),
                                  "sha256Hash": "ab"}]})
            })
            .collect();
        let links = media_links(&cfg, &items).unwrap();
        let mut event = Map::new();
        event.insert("moMedia".into(), Value::Array(items));
        event.insert("moContacts".into(), json!([{}]));
        let out = incoming(&cfg, &event, &links);
        let kinds: Vec<&str> = out.iter().map(|v| v["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["image", "video", "audio", "file"]);
        assert!(out[2]["audio"].get("caption").is_none());
        assert_eq!(out[3]["file"]["caption"], "cap");
        assert_eq!(out[0]["wabaNumber"], "2799");
        assert!(
            out[0].get("context").is_none(),
            "no context without a related msgId"
        );
        let url = out[1]["video"]["mediaURL"].as_str().unwrap();
        let token = url
            .strip_prefix("https://wa.example.com/clevertap/messages/media/")
            .unwrap();
        let link = super::super::media::open_link(&cfg, token).unwrap();
        assert_eq!(link.u, "/v1/media?fileId=F1");
        assert_eq!(link.k, "S0VZ");
        // Without the item's key there is nothing to decrypt with: refused, not linked.
        let bare = vec![json!({"files": [{"downloadUrl": "https://p/v1/media?fileId=X"}]})];
        assert!(media_links(&cfg, &bare).is_err());
    }

    /// Regression: a forged callback could make the bridge GET any platform path with the
    /// One API key (the signed link carried whatever `downloadUrl` said).
    #[test]
    fn a_download_url_off_the_media_route_is_refused() {
        let cfg = cfg();
        for url in [
            "https://p/v1/message?x=1",
            "https://p/v1/media/../message?x",
            "https://p/v1/mediaX?fileId=1",
            "https://p/v1/media",
        ] {
            let items = vec![json!({"encryptionKey": "S0VZ", "files": [{"downloadUrl": url}]})];
            assert!(media_links(&cfg, &items).is_err(), "{url}");
        }
        assert!(is_media_download("/v1/media?fileId=1"));
    }
}
