//! Standard Webhooks signatures on what the gateway sends to the business's own handlers
//! (forwarded callbacks, Flows requests), so an app reachable by others can refuse requests
//! that did not come from the gateway: `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature` = `v1,` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")).
//! The Standard Webhooks libraries (Python, Node, Java, …) verify them as they are.

use axum::http::{HeaderName, HeaderValue};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::SigningSecret;

/// The three headers for `body`, sent as message `id` (the same id on every retry of one
/// message, so the receiver can drop duplicates).
pub fn headers(secret: &SigningSecret, id: &str, body: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let sig = signature(secret, id, ts, body);
    let value = |s: String| HeaderValue::from_str(&s).ok();
    [
        ("webhook-id", value(id.to_string())),
        ("webhook-timestamp", value(ts.to_string())),
        ("webhook-signature", value(format!("v1,{sig}"))),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((HeaderName::from_static(k), v?)))
    .collect()
}

fn signature(secret: &SigningSecret, id: &str, ts: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&secret.0).unwrap_or_else(|_| unreachable!());
    m.update(id.as_bytes());
    m.update(b".");
    m.update(ts.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's published example.
    #[test]
    fn the_specification_example_signs_the_same() {
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let secret = SigningSecret(zeroize::Zeroizing::new(key));
        let sig = signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
