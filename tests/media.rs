//! `oneseal media encrypt|decrypt` end to end: outputs opened by an independent implementation
//! (Python `cryptography`, boto3 for KMS), upload parameters parsed back, and every failure
//! leaving nothing at -o.

mod support;

use serde_json::Value;
use support::moto::{aws_env, create_key, moto, Moto};
use support::*;

fn sample(dir: &std::path::Path, name: &str, len: usize) -> String {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_string()
}

/// A temp dir, the shared moto server, a fresh KMS key in it, and the environment that
/// points oneseal at that server.
fn with_kms() -> (
    tempfile::TempDir,
    &'static Moto,
    String,
    Vec<(&'static str, &'static str)>,
) {
    let m = moto();
    let arn = create_key(&m.url);
    let mut env = aws_env();
    env.push(("AWS_ENDPOINT_URL_KMS", m.url.as_str()));
    (tempdir(), m, arn, env)
}

/// The independent check of a KMS-encrypted upload: boto3 unwraps the data key from moto,
/// Python `cryptography` opens `enc` to `orig`, and the printed upload JSON (`meta`) must hold
/// the plaintext's SHA-256 and a query that parses back (`scripts/interop.py open-media`).
fn python_opens_with_kms(
    dir: &std::path::Path,
    enc: &str,
    orig: &str,
    meta: &[u8],
    to: &str,
    moto_url: &str,
) -> (bool, String) {
    let j = dir.join("upload.json");
    std::fs::write(&j, meta).unwrap();
    let py = std::process::Command::new("python3")
        .args([
            "scripts/interop.py",
            "open-media",
            enc,
            orig,
            "--upload-json",
            j.to_str().unwrap(),
            "--to",
            to,
            "--kms-endpoint",
            moto_url,
        ])
        .current_dir(root())
        .envs(aws_env())
        .output()
        .unwrap();
    (
        py.status.success(),
        String::from_utf8_lossy(&py.stdout).into_owned(),
    )
}

#[test]
fn encrypt_opens_independently_and_decrypt_restores() {
    let dir = tempdir();
    let key = dir.path().join("local.key").to_str().unwrap().to_string();
    let env = [("ONESEAL_LOCAL_KEY", key.as_str())];
    for (len, suite) in [
        (0usize, "gcm"),
        (1, "cbc"),
        (70_000, "gcm"),
        (1_000_003, "cbc"),
        (3_000_000, "gcm"),
    ] {
        let orig = sample(dir.path(), "statement.pdf", len);
        let enc = dir
            .path()
            .join("statement.enc")
            .to_str()
            .unwrap()
            .to_string();
        let o = oneseal(
            &[
                "media",
                "encrypt",
                &orig,
                "-o",
                &enc,
                "--to",
                "2799900001",
                "--suite",
                suite,
            ],
            None,
            &env,
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let meta: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(meta["fileName"], "statement.pdf");
        assert_eq!(meta["contentType"], "application/pdf");
        assert_eq!(meta["byteSize"], len);
        let json_path = dir.path().join("upload.json");
        std::fs::write(&json_path, &o.stdout).unwrap();
        let (ok, out) = python(&[
            "scripts/interop.py",
            "open-media",
            &enc,
            &orig,
            "--upload-json",
            json_path.to_str().unwrap(),
            "--to",
            "2799900001",
            "--local-key",
            &key,
        ]);
        assert!(ok, "{len} {suite}: {out}");
        let back = dir.path().join("back.pdf").to_str().unwrap().to_string();
        let o = oneseal(
            &[
                "media",
                "decrypt",
                &enc,
                "-o",
                &back,
                "--encryption-key",
                meta["encryptionKey"].as_str().unwrap(),
                "--sha256",
                meta["sha256FileHash"].as_str().unwrap(),
                "--suite",
                suite,
            ],
            None,
            &env,
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&orig).unwrap());
        std::fs::remove_file(&back).unwrap();
    }
}

#[test]
fn tampered_file_or_wrong_hash_exit_4_with_nothing_at_output() {
    let dir = tempdir();
    let key = dir.path().join("local.key").to_str().unwrap().to_string();
    let env = [("ONESEAL_LOCAL_KEY", key.as_str())];
    let orig = sample(dir.path(), "a.jpg", 600_000);
    let enc = dir.path().join("a.enc").to_str().unwrap().to_string();
    let o = oneseal(
        &["media", "encrypt", &orig, "-o", &enc, "--broadcast"],
        None,
        &env,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let meta: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(meta["uploadQuery"]
        .as_str()
        .unwrap()
        .contains("broadcastAllowed=true"));
    assert_eq!(meta["contentType"], "image/jpeg");
    let k = meta["encryptionKey"].as_str().unwrap();
    let out = dir.path().join("out.jpg").to_str().unwrap().to_string();
    let wrong = "0".repeat(64);
    let o = oneseal(
        &[
            "media",
            "decrypt",
            &enc,
            "-o",
            &out,
            "--encryption-key",
            k,
            "--sha256",
            &wrong,
        ],
        None,
        &env,
    );
    assert_fails(&o, 4, "SHA-256");
    assert!(!std::path::Path::new(&out).exists());
    let mut bytes = std::fs::read(&enc).unwrap();
    bytes[300_000] ^= 4;
    let bad = dir.path().join("bad.enc").to_str().unwrap().to_string();
    std::fs::write(&bad, &bytes).unwrap();
    let o = oneseal(
        &["media", "decrypt", &bad, "-o", &out, "--encryption-key", k],
        None,
        &env,
    );
    assert_fails(&o, 4, "could not be decrypted with suite gcm");
    assert!(!std::path::Path::new(&out).exists());
    std::fs::write(&bad, &bytes[..1000]).unwrap();
    assert_eq!(
        code(&oneseal(
            &["media", "decrypt", &bad, "-o", &out, "--encryption-key", k],
            None,
            &env
        )),
        4
    );
    assert!(!std::path::Path::new(&out).exists());
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".oneseal-")
        })
        .count();
    assert_eq!(leftovers, 0);
    // Usage errors.
    assert_eq!(
        code(&oneseal(
            &[
                "media",
                "encrypt",
                &orig,
                "-o",
                &enc,
                "--to",
                "1",
                "--broadcast"
            ],
            None,
            &env
        )),
        2
    );
    assert_eq!(
        code(&oneseal(
            &["media", "encrypt", &orig, "-o", &enc],
            None,
            &env
        )),
        2
    );
    assert_fails(
        &oneseal(
            &[
                "media",
                "encrypt",
                "/nonexistent.png",
                "-o",
                &enc,
                "--to",
                "1",
            ],
            None,
            &env,
        ),
        2,
        "no such file",
    );
    assert_fails(
        &oneseal(
            &[
                "media",
                "decrypt",
                &enc,
                "-o",
                &out,
                "--encryption-key",
                "%%%",
            ],
            None,
            &env,
        ),
        3,
        "base64",
    );
}

#[test]
fn decrypt_with_key_and_hash_from_a_momedia_callback() {
    let dir = tempdir();
    let key = dir.path().join("local.key").to_str().unwrap().to_string();
    let env = [("ONESEAL_LOCAL_KEY", key.as_str())];
    assert_eq!(code(&oneseal(&["key", "init"], None, &env)), 0);
    for suite in ["gcm", "cbc"] {
        let orig = sample(dir.path(), "photo.jpeg", 123_457);
        let enc = dir
            .path()
            .join("encrypted_UUID-1.jpeg")
            .to_str()
            .unwrap()
            .to_string();
        // The platform encrypts (independent implementation) and sends a moMedia callback.
        let (ok, out) = python(&[
            "scripts/interop.py",
            "seal-media",
            &orig,
            &enc,
            "--suite",
            suite,
            "--local-key",
            &key,
        ]);
        assert!(ok, "{out}");
        let m: Value = serde_json::from_str(out.trim()).unwrap();
        let cb = serde_json::json!({"integrationId": "i", "event": {"moMedia": [{"channel": "whatsapp", "from": "2799900001",
            "encryptionKey": m["encryptionKey"], "caption": null,
            "files": [{"contentType": "image/jpeg", "downloadUrl": "https://platform.clickatell.com/v1/media?fileId=UUID-1.xxx", "sha256Hash": m["sha256Hash"], "byteSize": 123_457, "fileName": "photo.jpeg"}]}]}});
        let cbp = dir.path().join("cb.json");
        std::fs::write(&cbp, cb.to_string()).unwrap();
        let back = dir
            .path()
            .join("photo.back.jpeg")
            .to_str()
            .unwrap()
            .to_string();
        let o = oneseal(
            &[
                "media",
                "decrypt",
                &enc,
                "-o",
                &back,
                "--callback",
                cbp.to_str().unwrap(),
                "--suite",
                suite,
            ],
            None,
            &env,
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&orig).unwrap());
        let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(summary["suite"], suite);
        assert_eq!(summary["verified"], "sha256");
        std::fs::remove_file(&back).unwrap();
        let o = oneseal(
            &[
                "media",
                "decrypt",
                &enc,
                "-o",
                &back,
                "--callback",
                cbp.to_str().unwrap(),
                "--file-index",
                "3",
            ],
            None,
            &env,
        );
        assert_fails(&o, 2, "--file-index");
    }
}

#[test]
fn media_with_kms_reports_the_key_arn() {
    let (dir, m, arn, env) = with_kms();
    let orig = sample(dir.path(), "promo.mp4", 2_000_000);
    let enc = dir.path().join("promo.enc").to_str().unwrap().to_string();
    let o = oneseal(
        &[
            "media",
            "encrypt",
            &orig,
            "-o",
            &enc,
            "--to",
            "27 82 555 0100",
            "--kms-key-id",
            &arn,
        ],
        None,
        &env,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let meta: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(meta["kmsArn"], arn.as_str());
    assert_eq!(meta["contentType"], "video/mp4");
    let (ok, out) =
        python_opens_with_kms(dir.path(), &enc, &orig, &o.stdout, "27 82 555 0100", &m.url);
    assert!(ok, "{out}");
}

/// The issue's own check: a 256 MiB file with a KMS data key, both suites. Python
/// (boto3 + `cryptography`) opens it to the original, `sha256FileHash` is the plaintext's,
/// `uploadQuery` parses back; `media decrypt` restores it; one flipped byte in the middle
/// exits 4 with nothing at -o.
#[test]
fn a_256_mib_file_with_kms_both_suites() {
    use sha2::{Digest, Sha256};
    let (dir, m, arn, env) = with_kms();
    // 256 distinct 1 MiB blocks (each tagged with its index) plus an odd tail, so a chunk
    // written twice, dropped or out of order cannot go unnoticed.
    let orig = dir.path().join("broadcast.mp4");
    let mut block: Vec<u8> = (0..1usize << 20).map(|i| (i * 7 % 251) as u8).collect();
    let mut data = Vec::with_capacity((256 << 20) + 13);
    for i in 0..256u32 {
        block[..4].copy_from_slice(&i.to_be_bytes());
        data.extend_from_slice(&block);
    }
    data.extend_from_slice(b"tail 13 bytes");
    std::fs::write(&orig, &data).unwrap();
    let digest = hex::encode(Sha256::digest(&data));
    drop(data);
    let orig = orig.to_str().unwrap().to_string();
    let enc = dir.path().join("b.enc").to_str().unwrap().to_string();
    let back = dir.path().join("back.mp4").to_str().unwrap().to_string();
    for suite in ["gcm", "cbc"] {
        let o = oneseal(
            &[
                "media",
                "encrypt",
                &orig,
                "-o",
                &enc,
                "--to",
                "27825550100",
                "--suite",
                suite,
                "--kms-key-id",
                &arn,
                "--no-progress",
            ],
            None,
            &env,
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let meta: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(meta["sha256FileHash"], digest.as_str(), "{suite}");
        assert_eq!(meta["kmsArn"], arn.as_str());
        assert_eq!(meta["suite"], suite);
        let (ok, out) =
            python_opens_with_kms(dir.path(), &enc, &orig, &o.stdout, "27825550100", &m.url);
        assert!(ok, "{suite}: {out}");
        let key = meta["encryptionKey"].as_str().unwrap();
        let decrypt = || {
            let args = [
                "media",
                "decrypt",
                &enc,
                "-o",
                &back,
                "--encryption-key",
                key,
                "--sha256",
                &digest,
                "--no-progress",
                "--suite",
                suite,
            ];
            oneseal(&args, None, &env)
        };
        let o = decrypt();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(
            hex::encode(Sha256::digest(std::fs::read(&back).unwrap())),
            digest
        );
        std::fs::remove_file(&back).unwrap();
        // One flipped byte in the middle: exit 4 (tag for gcm, SHA-256 for cbc), nothing at -o.
        let mut sealed = std::fs::read(&enc).unwrap();
        sealed[128 << 20] ^= 0x01;
        std::fs::write(&enc, &sealed).unwrap();
        drop(sealed);
        let o = decrypt();
        assert_eq!(code(&o), 4, "{suite}: {}", stderr(&o));
        assert!(!std::path::Path::new(&back).exists(), "{suite}");
        std::fs::remove_file(&enc).unwrap();
    }
    // No temporary files left beside the outputs either.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".oneseal-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// -o naming the input, even spelled differently, is refused before anything is written.
#[test]
fn media_output_is_never_the_input() {
    let dir = tempdir();
    let key = dir.path().join("local.key").to_str().unwrap().to_string();
    let env = [("ONESEAL_LOCAL_KEY", key.as_str())];
    let orig = sample(dir.path(), "scan.pdf", 1000);
    let same = dir.path().join(".").join("scan.pdf");
    let same = same.to_str().unwrap();
    let before = std::fs::read(&orig).unwrap();
    let o = oneseal(
        &["media", "encrypt", &orig, "-o", same, "--to", "1"],
        None,
        &env,
    );
    assert_fails(&o, 2, "never overwrites its input");
    let o = oneseal(
        &[
            "media",
            "decrypt",
            &orig,
            "-o",
            same,
            "--encryption-key",
            "AAAA",
        ],
        None,
        &env,
    );
    assert_fails(&o, 2, "never overwrites its input");
    assert_eq!(std::fs::read(&orig).unwrap(), before);
}

#[test]
fn size_warnings() {
    let dir = tempdir();
    let key = dir.path().join("local.key").to_str().unwrap().to_string();
    let big = sample(dir.path(), "clip.mp4", 17 * 1024 * 1024);
    let enc = dir.path().join("clip.enc").to_str().unwrap().to_string();
    let o = oneseal(
        &["media", "encrypt", &big, "-o", &enc, "--to", "1"],
        None,
        &[("ONESEAL_LOCAL_KEY", key.as_str())],
    );
    assert_eq!(code(&o), 0);
    assert!(
        stderr(&o).contains("WhatsApp accepts a video of at most 16 MB"),
        "{}",
        stderr(&o)
    );
    // No progress bar on a pipe: stderr holds only the lines we expect.
    assert!(!stderr(&o).contains('\r'));
}
