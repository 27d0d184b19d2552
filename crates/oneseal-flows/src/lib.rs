//! # oneseal-flows
//!
//! WhatsApp Flows endpoint encryption, as Meta publishes it:
//!
//! - A request is `{"encrypted_flow_data", "encrypted_aes_key", "initial_vector"}`, all base64.
//! - `encrypted_aes_key` is a 16-byte AES key wrapped with RSA-OAEP (SHA-256, MGF1-SHA-256)
//!   under the business's 2048-bit RSA public key.
//! - `encrypted_flow_data` is AES-128-GCM with the 16-byte `initial_vector` as nonce, the
//!   16-byte tag appended, no AAD.
//! - The response is the response JSON under the same key with every IV byte inverted
//!   (bitwise NOT), tag appended, base64, sent as the raw HTTP body.
//! - An undecryptable request is answered with HTTP 421; a bad `x-hub-signature-256`, 432.
//!
//! ```
//! use oneseal_flows::BusinessKey;
//!
//! let key = BusinessKey::generate().unwrap();
//! let public_pem = key.public_key_pem().unwrap();      // upload this
//! # let body = oneseal_flows::testing::encrypt_request_for_tests(&public_pem, br#"{"action":"ping"}"#).unwrap();
//! let (flow, sealer) = key.decrypt_request(body.as_bytes()).unwrap();
//! assert_eq!(flow, br#"{"action":"ping"}"#);
//! let http_body = sealer.seal(br#"{"data":{"status":"active"}}"#).unwrap();
//! # let _ = http_body;
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

use aes::Aes128;
use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{AesGcm, Nonce, Tag};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use pkcs8::der::asn1::AnyRef;
use pkcs8::der::{Decode, Encode};
use pkcs8::{LineEnding, ObjectIdentifier};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// rsaEncryption (PKCS#1), the algorithm of an RSA key in PKCS#8. A `const`, so the OID is
/// checked when compiling, never at run time.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

type Aes128Gcm16 = AesGcm<Aes128, U16>;

/// RSA modulus size for generated business keys.
pub const KEY_BITS: usize = 2048;
/// PBKDF2 iterations for passphrase-encrypted private keys (OWASP 2023 guidance for SHA-256).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// Errors of Flows crypto. [`http_status`](FlowsError::http_status) says what an endpoint
/// should answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowsError {
    /// The request body is not the expected JSON shape or not valid base64.
    #[error("malformed Flows request: {0}")]
    Malformed(String),
    /// The request did not decrypt: wrong business key, or altered in transit.
    #[error("the Flows request could not be decrypted ({0}): wrong private key, or the request was altered")]
    Undecryptable(&'static str),
    /// The `x-hub-signature-256` header does not match the body.
    #[error(
        "x-hub-signature-256 does not match the body (wrong app secret, or the body was altered)"
    )]
    BadSignature,
    /// The signature header is not `sha256=<64 hex digits>`.
    #[error("x-hub-signature-256 must look like sha256=<64 hex digits>")]
    MalformedSignature,
    /// A key file could not be parsed, or the passphrase is wrong.
    #[error("private key: {0}")]
    Key(String),
    /// The decrypted flow data or the response is not JSON.
    #[error("{0} is not valid JSON")]
    NotJson(&'static str),
    /// The OS RNG or a key encoding step failed.
    #[error("{0}")]
    Internal(String),
}

impl FlowsError {
    /// The HTTP status a Flows endpoint should return for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            FlowsError::Malformed(_) | FlowsError::Undecryptable(_) => 421,
            FlowsError::BadSignature | FlowsError::MalformedSignature => 432,
            _ => 500,
        }
    }
}

/// A business RSA key pair. The private key never appears in `Debug`. RSA-OAEP unwrapping
/// runs in aws-lc (constant-time, blinded), never in a variable-time big-integer library.
pub struct BusinessKey {
    key: PrivateDecryptingKey,
    oaep: OaepPrivateDecryptingKey,
}

impl fmt::Debug for BusinessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BusinessKey(RSA-{}, <redacted>)",
            self.key.key_size_bits()
        )
    }
}

fn b64(field: &'static str, v: &serde_json::Value) -> Result<Vec<u8>, FlowsError> {
    let s = v
        .get(field)
        .and_then(|x| x.as_str())
        .ok_or_else(|| FlowsError::Malformed(format!("missing string field {field:?}")))?;
    STANDARD
        .decode(s.trim())
        .map_err(|_| FlowsError::Malformed(format!("{field} is not valid base64")))
}

impl BusinessKey {
    fn from_private(key: PrivateDecryptingKey) -> Result<Self, FlowsError> {
        if key.key_size_bits() < KEY_BITS {
            return Err(FlowsError::Key(format!(
                "RSA-{} is too small; WhatsApp Flows needs 2048 bits",
                key.key_size_bits()
            )));
        }
        let oaep = OaepPrivateDecryptingKey::new(key.clone())
            .map_err(|_| FlowsError::Key("not usable for RSA-OAEP".into()))?;
        Ok(BusinessKey { key, oaep })
    }

    /// Generates a new 2048-bit key (aws-lc, from the OS RNG).
    pub fn generate() -> Result<Self, FlowsError> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048)
            .map_err(|_| FlowsError::Internal("RSA key generation failed".into()))?;
        Self::from_private(key)
    }

    /// Loads an RSA key from PKCS#8 DER.
    fn from_pkcs8_der(der: &[u8]) -> Result<Self, FlowsError> {
        let key = PrivateDecryptingKey::from_pkcs8(der).map_err(|e| {
            FlowsError::Key(format!(
                "not a usable RSA private key ({e}); 2048 to 8192 bits are accepted"
            ))
        })?;
        Self::from_private(key)
    }

    /// Loads a PEM private key: PKCS#8 (`PRIVATE KEY`), passphrase-encrypted PKCS#8
    /// (`ENCRYPTED PRIVATE KEY`, needs `passphrase`) or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str, passphrase: Option<&[u8]>) -> Result<Self, FlowsError> {
        let not_pem = || {
            FlowsError::Key(
                "expected a PEM RSA private key (PRIVATE KEY, ENCRYPTED PRIVATE KEY or RSA PRIVATE KEY)".into(),
            )
        };
        let (label, der) =
            pkcs8::der::pem::decode_vec(pem.trim().as_bytes()).map_err(|_| not_pem())?;
        let der = Zeroizing::new(der);
        match label {
            "ENCRYPTED PRIVATE KEY" => {
                let pass = passphrase.ok_or_else(|| {
                    FlowsError::Key("it is passphrase-encrypted: set ONESEAL_FLOWS_PASSPHRASE or enter it at the prompt".into())
                })?;
                let info = pkcs8::EncryptedPrivateKeyInfo::from_der(&der)
                    .map_err(|_| FlowsError::Key("not a valid encrypted PKCS#8 key".into()))?;
                let plain = info.decrypt(pass).map_err(|_| {
                    FlowsError::Key("wrong passphrase, or not an encrypted RSA PKCS#8 key".into())
                })?;
                Self::from_pkcs8_der(plain.as_bytes())
            }
            "RSA PRIVATE KEY" => {
                // PKCS#1 RSAPrivateKey: wrap it in a PKCS#8 PrivateKeyInfo for aws-lc.
                let info = pkcs8::PrivateKeyInfo {
                    algorithm: pkcs8::AlgorithmIdentifierRef {
                        oid: RSA_ENCRYPTION,
                        parameters: Some(AnyRef::NULL),
                    },
                    private_key: &der,
                    public_key: None,
                };
                let pkcs8 =
                    Zeroizing::new(info.to_der().map_err(|_| {
                        FlowsError::Key("not a valid PKCS#1 RSA private key".into())
                    })?);
                Self::from_pkcs8_der(&pkcs8)
                    .map_err(|_| FlowsError::Key("not a valid PKCS#1 RSA private key".into()))
            }
            "PRIVATE KEY" => Self::from_pkcs8_der(&der),
            _ => Err(not_pem()),
        }
    }

    /// The private key as PKCS#8 PEM, encrypted (PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC)
    /// when a passphrase is given.
    pub fn private_key_pem(
        &self,
        passphrase: Option<&[u8]>,
    ) -> Result<Zeroizing<String>, FlowsError> {
        let internal =
            |e: &dyn fmt::Display| FlowsError::Internal(format!("encoding the private key: {e}"));
        let der: Pkcs8V1Der<'static> = self
            .key
            .as_der()
            .map_err(|_| FlowsError::Internal("encoding the private key".into()))?;
        match passphrase {
            None => pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, der.as_ref())
                .map(Zeroizing::new)
                .map_err(|e| internal(&e)),
            Some(pass) => {
                let info =
                    pkcs8::PrivateKeyInfo::from_der(der.as_ref()).map_err(|e| internal(&e))?;
                let mut salt = [0u8; 16];
                let mut iv = [0u8; 16];
                OsRng.try_fill_bytes(&mut salt).map_err(|e| internal(&e))?;
                OsRng.try_fill_bytes(&mut iv).map_err(|e| internal(&e))?;
                let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(
                    PBKDF2_ITERATIONS,
                    &salt,
                    &iv,
                )
                .map_err(|e| internal(&e))?;
                let doc = info
                    .encrypt_with_params(params, pass)
                    .map_err(|e| internal(&e))?;
                doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
                    .map_err(|e| internal(&e))
            }
        }
    }

    /// The public key as SPKI PEM (`BEGIN PUBLIC KEY`), the form WhatsApp expects.
    pub fn public_key_pem(&self) -> Result<String, FlowsError> {
        let der: PublicKeyX509Der<'static> = self
            .key
            .public_key()
            .as_der()
            .map_err(|_| FlowsError::Internal("encoding the public key".into()))?;
        pkcs8::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, der.as_ref())
            .map_err(|e| FlowsError::Internal(format!("encoding the public key: {e}")))
    }

    /// The JSON body for uploading the public key (`POST /whatsapp-business-encryption`).
    pub fn upload_body(&self) -> Result<String, FlowsError> {
        Ok(serde_json::json!({ "publicKey": self.public_key_pem()? }).to_string())
    }

    /// Decrypts a data-exchange request body. Returns the flow JSON bytes (exactly as the
    /// client encrypted them) and a sealer for the response.
    pub fn decrypt_request(&self, body: &[u8]) -> Result<(Vec<u8>, ResponseSealer), FlowsError> {
        let req: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| FlowsError::Malformed("the body is not JSON".into()))?;
        if !req.is_object() {
            return Err(FlowsError::Malformed(
                "the body is not a JSON object".into(),
            ));
        }
        let data = b64("encrypted_flow_data", &req)?;
        let wrapped = b64("encrypted_aes_key", &req)?;
        let iv = b64("initial_vector", &req)?;
        let iv: [u8; 16] = iv
            .try_into()
            .map_err(|_| FlowsError::Malformed("initial_vector must be 16 bytes".into()))?;
        if data.len() < 16 {
            return Err(FlowsError::Malformed(
                "encrypted_flow_data is shorter than its tag".into(),
            ));
        }
        let mut out = Zeroizing::new(vec![0u8; self.oaep.min_output_size()]);
        // One error for every unwrap failure (length, padding, key size): no oracle.
        let key: [u8; 16] = self
            .oaep
            .decrypt(&OAEP_SHA256_MGF1SHA256, &wrapped, &mut out, None)
            .ok()
            .and_then(|k| <[u8; 16]>::try_from(&*k).ok())
            .ok_or(FlowsError::Undecryptable("the AES key does not unwrap"))?;
        let sealer = ResponseSealer {
            key: Zeroizing::new(key),
            iv,
        };
        let (ct, tag) = data.split_at(data.len() - 16);
        let mut buf = ct.to_vec();
        Aes128Gcm16::new((&*sealer.key).into())
            .decrypt_in_place_detached(Nonce::from_slice(&iv), b"", &mut buf, Tag::from_slice(tag))
            .map_err(|_| FlowsError::Undecryptable("authentication failed"))?;
        if serde_json::from_slice::<serde::de::IgnoredAny>(&buf).is_err() {
            buf.zeroize();
            return Err(FlowsError::NotJson("the decrypted flow data"));
        }
        Ok((buf, sealer))
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.key_size_bits()
    }
}

/// Encrypts the response to one request: same AES key, IV with every bit flipped. It seals
/// once ([`seal`](Self::seal) consumes it): a second response under the same key and flipped
/// IV would reuse a GCM nonce.
pub struct ResponseSealer {
    key: Zeroizing<[u8; 16]>,
    iv: [u8; 16],
}

impl fmt::Debug for ResponseSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseSealer(<redacted>)")
    }
}

impl ResponseSealer {
    /// Encrypts `response` (JSON bytes, sent as given) and returns the base64 HTTP body.
    pub fn seal(self, response: &[u8]) -> Result<String, FlowsError> {
        if serde_json::from_slice::<serde::de::IgnoredAny>(response).is_err() {
            return Err(FlowsError::NotJson("the response"));
        }
        let flipped: [u8; 16] = self.iv.map(|b| !b);
        let mut buf = response.to_vec();
        let tag = Aes128Gcm16::new((&*self.key).into())
            .encrypt_in_place_detached(Nonce::from_slice(&flipped), b"", &mut buf)
            .map_err(|_| FlowsError::Internal("response too large".into()))?;
        buf.extend_from_slice(&tag);
        Ok(STANDARD.encode(&buf))
    }
}

/// Verifies `x-hub-signature-256: sha256=<hex>` over the raw body, in constant time.
pub fn verify_signature(app_secret: &[u8], body: &[u8], header: &str) -> Result<(), FlowsError> {
    let hexsig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(FlowsError::MalformedSignature)?;
    let mut sig = [0u8; 32];
    hex::decode_to_slice(hexsig, &mut sig).map_err(|_| FlowsError::MalformedSignature)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(app_secret)
        .map_err(|_| FlowsError::Internal("HMAC key rejected".into()))?;
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| FlowsError::BadSignature)
}

/// The signature header value for a body (for tests and for simulating the platform).
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(app_secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a WhatsApp client does, for tests and simulations. Insecure by design where it says.
pub mod testing {
    use super::*;
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey};

    /// Encrypts `flow` to `public_pem` as a WhatsApp client would; returns the request body.
    pub fn encrypt_request_for_tests(public_pem: &str, flow: &[u8]) -> Result<String, FlowsError> {
        let (body, _, _) = encrypt_request_with_key(public_pem, flow)?;
        Ok(body)
    }

    /// Like [`encrypt_request_for_tests`] but also returns the AES key and IV, so a test can
    /// open the response.
    pub fn encrypt_request_with_key(
        public_pem: &str,
        flow: &[u8],
    ) -> Result<(String, [u8; 16], [u8; 16]), FlowsError> {
        let not_spki = || FlowsError::Key("not an SPKI RSA public key".into());
        let (label, der) =
            pkcs8::der::pem::decode_vec(public_pem.trim().as_bytes()).map_err(|_| not_spki())?;
        if label != "PUBLIC KEY" {
            return Err(not_spki());
        }
        let public = PublicEncryptingKey::from_der(&der)
            .ok()
            .and_then(|k| OaepPublicEncryptingKey::new(k).ok())
            .ok_or_else(not_spki)?;
        let mut key = [0u8; 16];
        let mut iv = [0u8; 16];
        OsRng.fill_bytes(&mut key);
        OsRng.fill_bytes(&mut iv);
        let mut wrapped = vec![0u8; public.ciphertext_size()];
        let wrapped = public
            .encrypt(&OAEP_SHA256_MGF1SHA256, &key, &mut wrapped, None)
            .map_err(|_| FlowsError::Internal("RSA-OAEP encryption failed".into()))?
            .to_vec();
        let mut buf = flow.to_vec();
        let tag = Aes128Gcm16::new((&key).into())
            .encrypt_in_place_detached(Nonce::from_slice(&iv), b"", &mut buf)
            .map_err(|_| FlowsError::Internal("too large".into()))?;
        buf.extend_from_slice(&tag);
        let body = serde_json::json!({
            "encrypted_flow_data": STANDARD.encode(&buf),
            "encrypted_aes_key": STANDARD.encode(&wrapped),
            "initial_vector": STANDARD.encode(iv),
        })
        .to_string();
        Ok((body, key, iv))
    }

    /// Opens a response body as the client would.
    pub fn open_response(
        body_b64: &str,
        key: &[u8; 16],
        iv: &[u8; 16],
    ) -> Result<Vec<u8>, FlowsError> {
        let data = STANDARD
            .decode(body_b64.trim())
            .map_err(|_| FlowsError::Malformed("not base64".into()))?;
        if data.len() < 16 {
            return Err(FlowsError::Malformed("too short".into()));
        }
        let flipped = iv.map(|b| !b);
        let (ct, tag) = data.split_at(data.len() - 16);
        let mut buf = ct.to_vec();
        Aes128Gcm16::new(key.into())
            .decrypt_in_place_detached(
                Nonce::from_slice(&flipped),
                b"",
                &mut buf,
                Tag::from_slice(tag),
            )
            .map_err(|_| FlowsError::Undecryptable("response tag"))?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use std::sync::OnceLock;

    fn key() -> &'static BusinessKey {
        static K: OnceLock<BusinessKey> = OnceLock::new();
        K.get_or_init(|| BusinessKey::generate().unwrap())
    }

    #[test]
    fn request_response_round_trip() {
        let k = key();
        let pem = k.public_key_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let flow = br#"{"version":"3.0","action":"data_exchange","screen":"A","data":{"x":1}}"#;
        let (body, aes, iv) = encrypt_request_with_key(&pem, flow).unwrap();
        let (got, sealer) = k.decrypt_request(body.as_bytes()).unwrap();
        assert_eq!(got, flow);
        let shown = format!("{k:?} {sealer:?}");
        let resp = sealer.seal(br#"{"screen":"B","data":{}}"#).unwrap();
        assert_eq!(
            open_response(&resp, &aes, &iv).unwrap(),
            br#"{"screen":"B","data":{}}"#
        );
        assert!(!shown.contains(&hex::encode(aes)));
    }

    #[test]
    fn tampered_wrong_key_malformed() {
        let k = key();
        let pem = k.public_key_pem().unwrap();
        let body = encrypt_request_for_tests(&pem, b"{}").unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut data = STANDARD
            .decode(v["encrypted_flow_data"].as_str().unwrap())
            .unwrap();
        data[0] ^= 1;
        v["encrypted_flow_data"] = STANDARD.encode(&data).into();
        let e = k.decrypt_request(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.http_status(), 421);
        assert!(matches!(e, FlowsError::Undecryptable(_)));
        let other = BusinessKey::generate().unwrap();
        assert!(matches!(
            other.decrypt_request(body.as_bytes()),
            Err(FlowsError::Undecryptable(_))
        ));
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"encrypted_flow_data":"!","encrypted_aes_key":"","initial_vector":""}"#,
        ] {
            assert!(matches!(
                k.decrypt_request(bad),
                Err(FlowsError::Malformed(_))
            ));
        }
    }

    #[test]
    fn pem_round_trips_plain_and_encrypted() {
        let k = key();
        let plain = k.private_key_pem(None).unwrap();
        assert!(plain.starts_with("-----BEGIN PRIVATE KEY-----"));
        BusinessKey::from_pem(&plain, None).unwrap();
        let enc = k.private_key_pem(Some(b"correct horse")).unwrap();
        assert!(enc.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let back = BusinessKey::from_pem(&enc, Some(b"correct horse")).unwrap();
        assert_eq!(back.public_key_pem().unwrap(), k.public_key_pem().unwrap());
        assert!(matches!(
            BusinessKey::from_pem(&enc, Some(b"wrong")),
            Err(FlowsError::Key(_))
        ));
        assert!(matches!(
            BusinessKey::from_pem(&enc, None),
            Err(FlowsError::Key(_))
        ));
        assert!(matches!(
            BusinessKey::from_pem("junk", None),
            Err(FlowsError::Key(_))
        ));
    }

    #[test]
    fn signatures() {
        let sig = sign(b"secret", b"body");
        verify_signature(b"secret", b"body", &sig).unwrap();
        assert!(matches!(
            verify_signature(b"secret", b"body!", &sig),
            Err(FlowsError::BadSignature)
        ));
        assert!(matches!(
            verify_signature(b"other", b"body", &sig),
            Err(FlowsError::BadSignature)
        ));
        assert!(matches!(
            verify_signature(b"secret", b"body", "md5=00"),
            Err(FlowsError::MalformedSignature)
        ));
        assert_eq!(FlowsError::BadSignature.http_status(), 432);
    }
}
