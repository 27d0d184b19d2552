//! HTTP basic auth of the public routes, checked by a layer before the handler, so the body
//! of an unauthenticated request is never read.
//!
//! The scheme name is case-insensitive (RFC 7617). The given `user:password` is hashed and the
//! digest compared in constant time with the digest of the configured one, so the comparison
//! takes the same time whatever the length or content of what was sent.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::BasicAuth;

/// The digest of the credentials a route accepts.
pub struct Credentials {
    digest: [u8; 32],
}

impl Credentials {
    /// The credentials of `auth`.
    pub fn new(auth: &BasicAuth) -> Credentials {
        let mut h = Sha256::new();
        h.update(auth.username.as_bytes());
        h.update(b":");
        h.update(auth.password.as_bytes());
        Credentials {
            digest: h.finalize().into(),
        }
    }

    /// Whether `headers` carry these credentials.
    pub fn check(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, b)| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(&given).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// What a route requires, and how it refuses (each caller expects its own format).
#[derive(Clone)]
pub struct Require {
    pub credentials: Arc<Credentials>,
    pub deny: fn() -> Response,
}

/// The layer's function: the handler (and its body extractor) runs only with credentials.
pub async fn require(State(r): State<Require>, req: Request, next: Next) -> Response {
    if r.credentials.check(req.headers()) {
        next.run(req).await
    } else {
        (r.deny)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn creds() -> Credentials {
        Credentials::new(&BasicAuth {
            username: "clickatell".into(),
            password: zeroize::Zeroizing::new("0123456789abcdefXYZ".into()),
        })
    }

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let b = base64::engine::general_purpose::STANDARD.encode("clickatell:0123456789abcdefXYZ");
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            assert!(creds().check(&with(&format!("{scheme} {b}"))), "{scheme}");
        }
    }

    #[test]
    fn wrong_missing_or_prefix_credentials_are_refused() {
        let c = creds();
        assert!(!c.check(&HeaderMap::new()));
        for given in [
            "clickatell:0123456789abcdef",
            "clickatell:0123456789abcdefXYZ0",
            "x:y",
            "",
        ] {
            let b = base64::engine::general_purpose::STANDARD.encode(given);
            assert!(!c.check(&with(&format!("Basic {b}"))), "{given}");
        }
        assert!(!c.check(&with("Bearer abc")));
    }
}
