//! Known-answer and failure vectors from fixtures/vectors/ (made with Python `cryptography`),
//! checked against oneseal, and re-checked against `cryptography` itself.

mod support;

use oneseal::core::{
    b64, CryptoError, DecryptSuite, FieldCipher, KeyError, KeyProvider, LocalProvider, SecretKey,
    Suite,
};
use support::*;

fn key(hexs: &str) -> SecretKey {
    SecretKey::from_slice(&hex::decode(hexs).unwrap()).unwrap()
}

#[test]
fn suite_vectors() {
    let vs = vectors("suites.txt");
    assert!(vs.len() >= 20);
    for v in vs {
        let name = &v["name"];
        let suite: Suite = v["suite"].parse().unwrap();
        let c = FieldCipher::new(&key(&v["key"]));
        let sealed = b64::decode(&v["sealed"]).unwrap();
        let res = c.open(suite.into(), &sealed);
        match v["expect"].as_str() {
            "ok" => {
                let pt = hex::decode(&v["plaintext"]).unwrap();
                assert_eq!(res.unwrap(), pt, "{name}");
                assert_eq!(
                    c.open(DecryptSuite::Auto, &sealed).unwrap(),
                    pt,
                    "{name} auto"
                );
                // Same key, nonce and plaintext give byte-identical output.
                let nonce = hex::decode(&v["nonce"]).unwrap();
                assert_eq!(
                    c.seal_with_nonce_for_tests(suite, &nonce, &pt).unwrap(),
                    sealed,
                    "{name}"
                );
            }
            // Every failure of a suite is the one same error (no padding oracle); the vector
            // file still says why each must fail, for the independent Python check.
            "fail:authentication" | "fail:padding" | "fail:length" => {
                assert_eq!(res, Err(CryptoError::Undecryptable(suite.into())), "{name}")
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
}

#[tokio::test]
async fn local_blob_vectors() {
    for v in vectors("local-blobs.txt") {
        let name = &v["name"];
        let p = LocalProvider::from_key(&key(&v["master"]), "vector");
        let blob = b64::decode(&v["blob"]).unwrap();
        let res = p.decrypt_data_key(&blob).await;
        match v["expect"].as_str() {
            "ok" => assert_eq!(
                res.unwrap().unwrap().expose().to_vec(),
                hex::decode(&v["data_key"]).unwrap(),
                "{name}"
            ),
            "fail:wrong-local-key" => {
                assert!(matches!(res, Err(KeyError::WrongLocalKey { .. })), "{name}")
            }
            "fail:length" | "fail:authentication" => {
                assert!(matches!(res, Err(KeyError::BadBlob(_))), "{name}")
            }
            other => panic!("{name}: {other}"),
        }
    }
}

#[test]
fn flows_vectors() {
    let pem =
        std::fs::read_to_string(root().join("fixtures/vectors/flows-private-key.pem")).unwrap();
    let k = oneseal::flows::BusinessKey::from_pem(&pem, None).unwrap();
    for v in vectors("flows.txt") {
        let name = &v["name"];
        let res = k.decrypt_request(v["request"].as_bytes());
        match v["expect"].as_str() {
            "ok" => {
                let (flow, sealer) = res.unwrap();
                assert_eq!(flow, hex::decode(&v["flow"]).unwrap(), "{name}");
                // Same key and flipped IV: the response is deterministic.
                let body = sealer.seal(&hex::decode(&v["response"]).unwrap()).unwrap();
                assert_eq!(body, v["response_body"], "{name}");
            }
            _ => {
                let e = res.unwrap_err();
                assert_eq!(e.http_status(), 421, "{name}");
            }
        }
    }
}

#[test]
fn vectors_agree_with_python_cryptography() {
    let (ok, out) = python(&["scripts/check_vectors.py"]);
    assert!(ok && out.contains(" passed, 0 failed"), "{out}");
}
