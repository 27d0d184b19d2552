//! `oneseal flows ...` end to end against an independent WhatsApp-style client
//! (scripts/flows_client.py on Python `cryptography`, following Meta's published scheme).

mod support;

use serde_json::Value;
use support::*;

const FLOW: &str = r#"{"version":"3.0","action":"data_exchange","screen":"APPOINTMENT","data":{"name":"Zoë","date":"2026-12-01","slots":[1,2,3]},"flow_token":"tok-42"}"#;
const RESPONSE: &str = r#"{"screen":"SUCCESS","data":{"extension_message_response":{"params":{"flow_token":"tok-42","note":"Thank you ✓"}}}}"#;

struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    fn p(&self, n: &str) -> String {
        self.dir.path().join(n).to_str().unwrap().to_string()
    }
    /// The client encrypts FLOW to `public`; returns the request body file.
    fn request(&self, public: &str) -> String {
        std::fs::write(self.p("flow.json"), FLOW).unwrap();
        let (ok, body) = python(&[
            "scripts/flows_client.py",
            "request",
            public,
            &self.p("flow.json"),
            &self.p("state.json"),
        ]);
        assert!(ok, "{body}");
        std::fs::write(self.p("request.json"), body.trim()).unwrap();
        self.p("request.json")
    }
    /// Full exchange through oneseal with `private` (and env), checked by the client.
    fn exchange(&self, public: &str, private: &str, env: &[(&str, &str)]) {
        let req = self.request(public);
        let o = oneseal(
            &["flows", "decrypt-request", &req, "--private-key", private],
            None,
            env,
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(
            String::from_utf8(o.stdout).unwrap(),
            FLOW,
            "exact flow JSON"
        );
        std::fs::write(self.p("response.json"), RESPONSE).unwrap();
        let o = oneseal(
            &[
                "flows",
                "encrypt-response",
                &self.p("response.json"),
                "--private-key",
                private,
                "--request",
                &req,
            ],
            None,
            env,
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        std::fs::write(self.p("body.b64"), &o.stdout).unwrap();
        let (ok, plain) = python(&[
            "scripts/flows_client.py",
            "response",
            &self.p("state.json"),
            &self.p("body.b64"),
        ]);
        assert!(ok, "{plain}");
        assert_eq!(plain, RESPONSE, "exact response under the flipped IV");
    }
}

fn client() -> Client {
    Client { dir: tempdir() }
}

#[test]
fn keygen_keys_work_with_an_independent_client() {
    let c = client();
    let (private, public) = (c.p("flows.key"), c.p("flows.pub"));
    let o = oneseal(
        &[
            "flows",
            "keygen",
            "--private-key-out",
            &private,
            "--public-key-out",
            &public,
            "--print-upload-body",
        ],
        None,
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let body: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        body["publicKey"].as_str().unwrap().trim(),
        std::fs::read_to_string(&public).unwrap().trim()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let (ok, out) = python(&[
        "scripts/flows_client.py",
        "check-private",
        &private,
        &public,
    ]);
    assert!(ok, "{out}");
    c.exchange(&public, &private, &[]);
    // Never overwritten.
    let o = oneseal(
        &[
            "flows",
            "keygen",
            "--private-key-out",
            &private,
            "--public-key-out",
            &c.p("other.pub"),
        ],
        None,
        &[],
    );
    assert_fails(&o, 2, "already exists");
}

#[test]
fn passphrase_encrypted_keys() {
    let c = client();
    let (private, public) = (c.p("enc.key"), c.p("enc.pub"));
    let env = [("ONESEAL_FLOWS_PASSPHRASE", "correct horse battery")];
    let o = oneseal(
        &[
            "flows",
            "keygen",
            "--private-key-out",
            &private,
            "--public-key-out",
            &public,
            "--encrypt",
        ],
        None,
        &env,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read_to_string(&private)
        .unwrap()
        .contains("ENCRYPTED PRIVATE KEY"));
    let (ok, out) = python(&[
        "scripts/flows_client.py",
        "check-private",
        &private,
        &public,
        "correct horse battery",
    ]);
    assert!(ok, "{out}");
    c.exchange(&public, &private, &env);
    let req = c.request(&public);
    let o = oneseal(
        &["flows", "decrypt-request", &req, "--private-key", &private],
        None,
        &[("ONESEAL_FLOWS_PASSPHRASE", "wrong")],
    );
    assert_fails(&o, 2, "wrong passphrase");
    // No terminal and no env var: a clear usage error, not a hang.
    let o = oneseal(
        &["flows", "decrypt-request", &req, "--private-key", &private],
        None,
        &[],
    );
    assert_fails(&o, 2, "ONESEAL_FLOWS_PASSPHRASE");
}

#[test]
fn externally_generated_pkcs8_and_pkcs1_keys() {
    let c = client();
    let pkcs8 = root().join("fixtures/vectors/flows-private-key.pem");
    let pkcs8 = pkcs8.to_str().unwrap();
    // Public key derived by oneseal from the external key is what the client encrypts to.
    let public = c.p("ext.pub");
    let code_py = format!(
        "from cryptography.hazmat.primitives import serialization as s\nk=s.load_pem_private_key(open('{pkcs8}','rb').read(),None)\nopen('{public}','wb').write(k.public_key().public_bytes(s.Encoding.PEM,s.PublicFormat.SubjectPublicKeyInfo))"
    );
    let o = std::process::Command::new("python3")
        .args(["-c", &code_py])
        .output()
        .unwrap();
    assert!(o.status.success());
    c.exchange(&public, pkcs8, &[]);
    let pkcs1 = c.p("ext.pkcs1.pem");
    let (ok, out) = python(&["scripts/flows_client.py", "pkcs1", pkcs8, &pkcs1]);
    assert!(ok, "{out}");
    assert!(std::fs::read_to_string(&pkcs1)
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    c.exchange(&public, &pkcs1, &[]);
}

#[test]
fn tampered_wrong_key_and_malformed_requests() {
    let c = client();
    let (private, public) = (c.p("k"), c.p("p"));
    assert_eq!(
        code(&oneseal(
            &[
                "flows",
                "keygen",
                "--private-key-out",
                &private,
                "--public-key-out",
                &public
            ],
            None,
            &[]
        )),
        0
    );
    let req = c.request(&public);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&req).unwrap()).unwrap();
    let mut data = oneseal::core::b64::decode(v["encrypted_flow_data"].as_str().unwrap()).unwrap();
    data[5] ^= 0x10;
    v["encrypted_flow_data"] = oneseal::core::b64::encode(&data).into();
    let o = oneseal(
        &["flows", "decrypt-request", "--private-key", &private],
        Some(v.to_string().as_bytes()),
        &[],
    );
    assert_fails(&o, 4, "421");
    assert!(o.stdout.is_empty());
    let other = c.p("other.key");
    let pem = oneseal::flows::BusinessKey::generate()
        .unwrap()
        .private_key_pem(None)
        .unwrap();
    std::fs::write(&other, pem.as_bytes()).unwrap();
    assert_fails(
        &oneseal(
            &["flows", "decrypt-request", &req, "--private-key", &other],
            None,
            &[],
        ),
        4,
        "could not be decrypted",
    );
    for bad in [
        "not json",
        "{}",
        r#"{"encrypted_flow_data":"x","encrypted_aes_key":"y","initial_vector":"z"}"#,
        "[]",
    ] {
        let o = oneseal(
            &["flows", "decrypt-request", "--private-key", &private],
            Some(bad.as_bytes()),
            &[],
        );
        assert_fails(&o, 3, "malformed Flows request");
    }
    // Response that is not JSON.
    let o = oneseal(
        &[
            "flows",
            "encrypt-response",
            "--private-key",
            &private,
            "--request",
            &req,
        ],
        Some(b"not json"),
        &[],
    );
    assert_fails(&o, 3, "not valid JSON");
}

#[test]
fn signature_verification() {
    let c = client();
    let body = c.p("body.json");
    std::fs::write(&body, FLOW).unwrap();
    let (ok, sig) = python(&["scripts/flows_client.py", "sign", "app-secret", &body]);
    assert!(ok);
    let sig = sig.trim();
    let env = [("ONESEAL_FLOWS_APP_SECRET", "app-secret")];
    assert_eq!(
        code(&oneseal(
            &["flows", "verify-signature", &body, "--signature", sig],
            None,
            &env
        )),
        0
    );
    let o = oneseal(
        &["flows", "verify-signature", &body, "--signature", sig],
        None,
        &[("ONESEAL_FLOWS_APP_SECRET", "other")],
    );
    assert_fails(&o, 4, "432");
    let o = oneseal(
        &[
            "flows",
            "verify-signature",
            &body,
            "--signature",
            "sha256=zz",
        ],
        None,
        &env,
    );
    assert_fails(&o, 3, "sha256=");
}
