//! The app sink: callbacks of `[gateway.callbacks]`, decrypted, moMedia links rewritten to the
//! app side, signed (Standard Webhooks) and POSTed as plain JSON to `forward_to`.

use async_trait::async_trait;
use axum::body::Bytes;
use oneseal_core::Engine;
use serde_json::Value;

use super::{open, Outcome, Sink};
use crate::config::CallbacksConfig;
use crate::upstream::Upstream;

/// Delivers to the business's callback handler.
pub struct AppSink {
    pub engine: Engine,
    /// The client to `forward_to`'s host.
    pub client: Upstream,
    pub cfg: CallbacksConfig,
    /// How the app reaches the app side (rewritten download links).
    pub app_url: String,
}

#[async_trait]
impl Sink for AppSink {
    async fn deliver(&self, name: &str, mut doc: Value) -> Outcome {
        rewrite_download_urls(&mut doc, &self.app_url);
        if let Err(o) = open(&self.engine, &mut doc, self.cfg.accept_plaintext).await {
            return o;
        }
        let plain = match serde_json::to_vec(&doc) {
            Ok(p) => Bytes::from(p),
            Err(e) => return Outcome::Dead(format!("cannot serialize: {e}")),
        };
        // The spool name is the message id: the same on every retry, so the app can drop
        // duplicates of an at-least-once delivery.
        let signed = self
            .cfg
            .signing
            .as_ref()
            .map(|s| {
                crate::sign::headers(
                    s,
                    &format!("msg_{}", name.trim_end_matches(".json")),
                    &plain,
                )
            })
            .unwrap_or_default();
        match self
            .client
            .post_json(&self.cfg.forward_to, plain, &signed)
            .await
        {
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) => Outcome::Retry(format!("the app answered {}", r.status())),
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

/// Rewrites every moMedia `files[*].downloadUrl` to the app side, carrying the item's
/// `encryptionKey` and the file's `sha256Hash`, so the app follows it with its usual
/// `Authorization` and receives verified plaintext. Runs before decryption (which sets the
/// key to null).
pub fn rewrite_download_urls(doc: &mut Value, app_url: &str) {
    fn item(it: &mut Value, app_url: &str) {
        let Some(key) = it
            .get("encryptionKey")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return;
        };
        let Some(files) = it.get_mut("files").and_then(Value::as_array_mut) else {
            return;
        };
        for f in files {
            let hash = f
                .get("sha256Hash")
                .and_then(Value::as_str)
                .map(str::to_string);
            let Some(url) = f.get("downloadUrl").and_then(Value::as_str) else {
                continue;
            };
            let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                if k != "encryptionKey" && k != "expectedSha256" {
                    s.append_pair(&k, &v);
                }
            }
            s.append_pair("encryptionKey", &key);
            if let Some(h) = &hash {
                s.append_pair("expectedSha256", h);
            }
            f["downloadUrl"] = format!("{app_url}/v1/media?{}", s.finish()).into();
        }
    }
    if let Some(ev) = doc.get_mut("event").and_then(Value::as_object_mut) {
        for items in ev.values_mut() {
            for it in items.as_array_mut().into_iter().flatten() {
                item(it, app_url);
            }
        }
    } else {
        item(doc, app_url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_urls_are_rewritten_to_the_app_side() {
        let mut doc = serde_json::json!({"event": {"moMedia": [{"encryptionKey": "K+/=",
            "files": [{"downloadUrl": "https://platform.clickatell.com/v1/media?fileId=UUID-1.xxx&sha256Hash=ab&source=client", "sha256Hash": "ab"}]}]}});
        rewrite_download_urls(&mut doc, "http://127.0.0.1:8080");
        let u = doc["event"]["moMedia"][0]["files"][0]["downloadUrl"]
            .as_str()
            .unwrap();
        assert_eq!(
            u,
            "http://127.0.0.1:8080/v1/media?fileId=UUID-1.xxx&sha256Hash=ab&source=client&encryptionKey=K%2B%2F%3D&expectedSha256=ab"
        );
    }
}
