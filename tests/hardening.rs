//! Regression tests for the defects found when oneseal was attacked and tried as a new user
//! would (issue 11). Each test is named after the defect it pins. All run the real CLI on
//! the local key provider; the KMS-cost ones are in tests/kms.rs.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oneseal::core::{b64, FieldCipher, KeyProvider, LocalProvider, SecretKey, Suite};
use serde_json::{json, Value};
use support::*;

const MASTER: [u8; 32] = [7; 32];

/// A temp dir with a local master key of known bytes, so a test can act as an attacker who
/// captured a data key (or as the platform).
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempdir();
        std::fs::write(dir.path().join("local.key"), MASTER).unwrap();
        Lab { dir }
    }
    fn key(&self) -> String {
        self.path("local.key")
    }
    fn path(&self, n: &str) -> String {
        self.dir.path().join(n).to_str().unwrap().to_string()
    }
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        self.run_env(args, stdin, &[])
    }
    fn run_env(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> std::process::Output {
        let key = self.key();
        let mut e = vec![("ONESEAL_LOCAL_KEY", key.as_str())];
        e.extend_from_slice(env);
        oneseal(args, stdin, &e)
    }
    /// A fresh data key under the lab's master key: (cipher, encryptionKey value).
    fn data_key(&self) -> (FieldCipher, String) {
        let p = LocalProvider::from_key(&SecretKey::from_bytes(MASTER), self.key());
        let dk = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(p.generate_data_key())
            .unwrap();
        (FieldCipher::new(&dk.key), b64::encode(&dk.blob))
    }
}

fn callback(items: Vec<Value>) -> Vec<u8> {
    json!({ "event": { "moText": items } })
        .to_string()
        .into_bytes()
}

fn item(content: &str, key: &str) -> Value {
    json!({"messageId": "m1", "from": "27999000001", "content": content, "encryptionKey": key})
}

fn out_json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(o)))
}

/// The error text after its JSON path (`...content: <this>`).
fn after_path(line: &str) -> String {
    line.split_once(".content: ")
        .map(|(_, r)| r.to_string())
        .unwrap_or_else(|| line.to_string())
}

#[test]
fn cbc_value_forged_with_captured_key_was_accepted_by_default_decrypt() {
    let lab = Lab::new();
    let (cipher, blob) = lab.data_key();
    let forged = b64::encode(&cipher.seal(Suite::Cbc, b"Transfer approved").unwrap());
    let doc = callback(vec![item(&forged, &blob)]);
    // Default decrypt (gcm): refused, and the message says which suite was tried.
    let o = lab.run(&["decrypt"], Some(&doc));
    assert_fails(&o, 4, "suite gcm");
    // auto only when asked for; cbc when configured (flag, environment or config file).
    let o = lab.run(&["decrypt", "--suite", "cbc"], Some(&doc));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        out_json(&o)["event"]["moText"][0]["content"],
        "Transfer approved"
    );
    let o = lab.run_env(&["decrypt"], Some(&doc), &[("ONESEAL_SUITE", "cbc")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let cfg = lab.path("c.toml");
    std::fs::write(&cfg, "suite = \"cbc\"\n").unwrap();
    let o = lab.run(&["decrypt", "--config", &cfg], Some(&doc));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = lab.run(&["decrypt", "--suite", "auto"], Some(&doc));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn cbc_padding_and_utf8_failures_were_distinguishable() {
    let lab = Lab::new();
    let (cipher, blob) = lab.data_key();
    let mut bad_pad = cipher.seal(Suite::Cbc, b"hello").unwrap();
    bad_pad[15] ^= 0x7f; // the IV's last byte: the padding byte becomes invalid
    let not_utf8 = cipher
        .seal_with_nonce_for_tests(Suite::Cbc, &[1; 16], &[0xff, 0xfe, 0xc3])
        .unwrap();
    let bad_len = cipher.seal(Suite::Cbc, b"hello, twenty bytes!").unwrap()[..40].to_vec();
    let values = [&bad_pad, &not_utf8, &bad_len].map(|v| b64::encode(v));
    for suite in ["cbc", "auto"] {
        // One at a time: same exit code, same message (but for the path).
        let mut seen = Vec::new();
        for v in &values {
            let o = lab.run(
                &["decrypt", "--suite", suite],
                Some(&callback(vec![item(v, &blob)])),
            );
            assert_fails(&o, 4, &format!("suite {suite}"));
            seen.push(after_path(&stderr(&o)));
        }
        assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
        // --keep-going reports: identical per item.
        let doc = callback(values.iter().map(|v| item(v, &blob)).collect());
        let o = lab.run(&["decrypt", "--suite", suite, "--keep-going"], Some(&doc));
        assert_eq!(code(&o), 4);
        let err = stderr(&o);
        let reports: Vec<String> = err
            .lines()
            .filter(|l| l.contains(".content: "))
            .map(after_path)
            .collect();
        assert_eq!(reports.len(), 3, "{err}");
        assert!(reports.iter().all(|r| *r == reports[0]), "{err}");
    }
}

#[test]
fn tampered_gcm_inline_media_was_accepted_as_cbc() {
    let lab = Lab::new();
    // 4 bytes of media: 4 + 28 = 32 bytes sealed, a length CBC can produce too.
    let plain = json!({"event": {"moMedia": [{"messageId": "m", "from": "2799", "contentType": "image/png", "content": b64::encode(b"\x89PNG"), "encryptionKey": null}]}});
    let o = lab.run(&["encrypt"], Some(plain.to_string().as_bytes()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut doc = out_json(&o);
    let item = &mut doc["event"]["moMedia"][0];
    let mut ct = b64::decode(item["content"].as_str().unwrap()).unwrap();
    ct[14] ^= 1;
    item["content"] = b64::encode(&ct).into();
    let tampered = doc.to_string();
    for suite in ["gcm", "auto", "cbc"] {
        let o = lab.run(&["decrypt", "--suite", suite], Some(tampered.as_bytes()));
        assert_eq!(code(&o), 4, "{suite}: {}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
    // Without the hash, CBC media is refused outright (never released unchecked).
    item_without_hash(&mut doc);
    for suite in ["auto", "cbc"] {
        let o = lab.run(
            &["decrypt", "--suite", suite],
            Some(doc.to_string().as_bytes()),
        );
        assert_fails(&o, 4, "SHA-256");
    }
}

fn item_without_hash(doc: &mut Value) {
    doc["event"]["moMedia"][0]
        .as_object_mut()
        .unwrap()
        .remove("sha256Hash");
}

#[test]
fn cbc_media_file_was_released_without_a_hash() {
    let lab = Lab::new();
    let plain = lab.path("p.bin");
    std::fs::write(&plain, vec![5u8; 5000]).unwrap();
    let enc = lab.path("p.enc");
    let o = lab.run(
        &[
            "media", "encrypt", &plain, "-o", &enc, "--to", "2799", "--suite", "cbc",
        ],
        None,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let params = out_json(&o);
    let key = params["encryptionKey"].as_str().unwrap();
    let sha = params["sha256FileHash"].as_str().unwrap();
    let out = lab.path("back.bin");
    let decrypt = |extra: &[&str]| {
        let mut args = vec![
            "media",
            "decrypt",
            &enc,
            "-o",
            &out,
            "--encryption-key",
            key,
        ];
        args.extend_from_slice(extra);
        lab.run(&args, None)
    };
    let o = decrypt(&["--suite", "cbc"]);
    assert_fails(&o, 2, "--sha256");
    assert!(!Path::new(&out).exists());
    let o = decrypt(&["--suite", "cbc", "--sha256", sha]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), vec![5u8; 5000]);
    // Default (gcm) on a cbc file: refused, naming the suite tried.
    std::fs::remove_file(&out).unwrap();
    let o = decrypt(&["--sha256", sha]);
    assert_fails(&o, 4, "suite gcm");
    assert!(!Path::new(&out).exists());
    // A bad --sha256 is a usage error.
    let o = decrypt(&["--sha256", "xyz"]);
    assert_fails(&o, 2, "--sha256");
}

#[test]
fn field_double_star_was_accepted_and_encrypted_nothing() {
    let lab = Lab::new();
    let doc = br#"{"messages":[{"channel":"whatsapp","to":"2799","content":"hi"}]}"#;
    for f in [
        "**",
        "*",
        "",
        "to",
        "channel",
        "clientMessageId",
        "template.templateName",
        "media.fileId",
        "media.contentType",
    ] {
        let o = lab.run(&["encrypt", "--field", f], Some(doc));
        assert_fails(&o, 2, "--field");
    }
    let cfg = lab.path("c.toml");
    std::fs::write(&cfg, "fields = [\"to\"]\n").unwrap();
    let o = lab.run(&["encrypt", "--config", &cfg], Some(doc));
    assert_fails(&o, 2, "c.toml: fields");
    // A path that matches nothing in this document is fine.
    let o = lab.run(&["encrypt", "--field", "customData.note"], Some(doc));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn forced_api_legacy_left_template_parameters_in_plaintext() {
    let lab = Lab::new();
    let req =
        std::fs::read(root().join("fixtures/one-api/requests/template_text_header.json")).unwrap();
    let o = lab.run(&["encrypt", "--api", "legacy"], Some(&req));
    assert_fails(&o, 2, "template");
    assert!(o.stdout.is_empty());
    let legacy = br#"{"messages":[{"to":"2799","contentType":"image/png","content":"iVBORw0KGgo=","caption":"c"}]}"#;
    let o = lab.run(&["encrypt", "--api", "one"], Some(legacy));
    assert_fails(&o, 2, "contentType");
}

#[test]
fn blank_kms_key_id_fell_back_to_the_local_key() {
    let lab = Lab::new();
    let doc = br#"{"messages":[{"channel":"whatsapp","to":"2799","content":"hi"}]}"#;
    let o = lab.run(&["encrypt", "--kms-key-id", ""], Some(doc));
    assert_fails(&o, 2, "--kms-key-id");
    let o = lab.run(&["encrypt", "--kms-key-id", "  "], Some(doc));
    assert_fails(&o, 2, "--kms-key-id");
    let o = lab.run_env(&["encrypt"], Some(doc), &[("ONESEAL_KMS_KEY_ID", "")]);
    assert_fails(&o, 2, "ONESEAL_KMS_KEY_ID");
    let cfg = lab.path("c.toml");
    std::fs::write(&cfg, "kms_key_id = \"\"\n").unwrap();
    let o = lab.run(&["encrypt", "--config", &cfg], Some(doc));
    assert_fails(&o, 2, "kms_key_id");
}

#[test]
fn missing_credentials_and_region_were_reported_as_unreachable() {
    let lab = Lab::new();
    let doc = br#"{"messages":[{"channel":"whatsapp","to":"2799","content":"hi"}]}"#;
    // Nothing listens on port 1: had a request been sent, the error would be "could not reach".
    let o = lab.run_env(
        &["encrypt", "--kms-key-id", "alias/x"],
        Some(doc),
        &[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1"),
            ("HOME", &lab.path("")),
        ],
    );
    assert_fails(&o, 5, "no AWS credentials");
    let o = lab.run_env(
        &["encrypt", "--kms-key-id", "alias/x"],
        Some(doc),
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1"),
            ("HOME", &lab.path("")),
        ],
    );
    assert_fails(&o, 5, "no AWS region");
}

#[test]
fn empty_encryption_key_reached_the_key_service() {
    let lab = Lab::new();
    // KMS "configured" at an address where nothing listens: a call would exit 5.
    let env = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1"),
    ];
    for key in ["", "   "] {
        let doc = callback(vec![item("aGk=", key)]);
        let t = Instant::now();
        let o = lab.run_env(&["decrypt"], Some(&doc), &env);
        assert_fails(&o, 3, "encryptionKey is empty");
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    let doc = br#"{"encryptionKey":"","messages":[{"to":"2799","content":"aGk="}]}"#;
    let o = lab.run_env(&["decrypt"], Some(doc), &env);
    assert_fails(&o, 3, "encryptionKey is empty");
}

#[test]
fn decrypting_a_plain_document_said_nothing() {
    let lab = Lab::new();
    let plain = std::fs::read(root().join("fixtures/one-api/callbacks/message_status_update.json"))
        .unwrap();
    let o = lab.run(&["decrypt"], Some(&plain));
    assert_eq!(code(&o), 0);
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("oneseal: note: nothing"), "{err}");
    let a: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(out_json(&o), a);
}

#[test]
fn round_trip_dropped_a_trailing_sha256hash_and_null_key() {
    let lab = Lab::new();
    // Both bookkeeping members last in their objects, where the old decrypt guessed wrong.
    let png = b64::encode(b"\x89PNG\r\n\x1a\n");
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"\x89PNG\r\n\x1a\n"));
    let plain = json!({"event": {"moMedia": [
        {"messageId": "m", "from": "2799", "contentType": "image/png", "content": png, "sha256Hash": sha, "encryptionKey": null}
    ], "moText": [
        {"messageId": "t", "from": "2799", "content": "hi", "encryptionKey": null}
    ]}});
    let text = plain.to_string();
    let o = lab.run(&["encrypt"], Some(text.as_bytes()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = lab.run(&["decrypt"], Some(&o.stdout));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(String::from_utf8(o.stdout).unwrap().trim_end(), text);
    // A request's hash is kept too (it is the verified plaintext hash), key removed.
    let req = json!({"messages": [{"channel": "whatsapp", "to": "2799", "media": {"contentType": "image/png"}, "content": png}]});
    let o = lab.run(&["encrypt"], Some(req.to_string().as_bytes()));
    let o = lab.run(&["decrypt"], Some(&o.stdout));
    let back = out_json(&o);
    assert_eq!(back["messages"][0]["media"]["sha256Hash"], sha);
    assert!(back["messages"][0].get("encryptionKey").is_none());
}

#[test]
fn output_dash_and_special_files_were_replaced() {
    let lab = Lab::new();
    let doc = br#"{"messages":[{"channel":"whatsapp","to":"2799","content":"hi"}]}"#;
    // -o - is stdout.
    let o = lab.run(&["encrypt", "-o", "-"], Some(doc));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(out_json(&o)["messages"][0]["encryptionKey"].is_string());
    assert!(!Path::new("-").exists());
    // -o /dev/stdout writes into the pipe and leaves the device link alone.
    let o = lab.run(&["encrypt", "-o", "/dev/stdout"], Some(doc));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(out_json(&o)["messages"][0]["encryptionKey"].is_string());
    let m = std::fs::symlink_metadata("/dev/stdout").unwrap();
    assert!(m.file_type().is_symlink(), "/dev/stdout was replaced");
    // A FIFO is written through, never replaced.
    let fifo = lab.path("pipe");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let o = lab.run(&["encrypt", "-o", &fifo], Some(doc));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let got: Value = serde_json::from_slice(&reader.join().unwrap()).unwrap();
    assert!(got["messages"][0]["encryptionKey"].is_string());
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn outputs_lost_their_mode_and_directory_sync() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let doc = br#"{"messages":[{"channel":"whatsapp","to":"2799","content":"hi"}]}"#;
    let out = lab.path("out.json");
    let o = lab.run(&["encrypt", "-o", &out], Some(doc));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o600);
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = lab.run(&["encrypt", "-o", &out], Some(doc));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(mode(&out), 0o644);
    // A symlinked output: the file it points to is replaced, the link stays.
    let real = lab.path("real.json");
    std::fs::write(&real, "old").unwrap();
    let link = lab.path("link.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let o = lab.run(&["encrypt", "-o", &link], Some(doc));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read_to_string(&real)
        .unwrap()
        .contains("encryptionKey"));
    // A missing directory is named, never created.
    let o = lab.run(&["encrypt", "-o", &lab.path("nodir/out.json")], Some(doc));
    assert_fails(&o, 2, "does not exist");
    assert!(!Path::new(&lab.path("nodir")).exists());
}

/// SIGINT and SIGTERM during a large media decrypt: no `.oneseal-*.part` of unverified
/// plaintext, nothing at -o.
#[test]
fn interrupted_media_decrypt_left_unverified_plaintext() {
    let lab = Lab::new();
    let plain = lab.path("big.bin");
    let f = std::fs::File::create(&plain).unwrap();
    f.set_len(768 << 20).unwrap(); // sparse: quick to make, still 768 MiB to process
    drop(f);
    let enc_dir = tempdir();
    let enc = enc_dir.path().join("big.enc");
    let enc = enc.to_str().unwrap();
    let o = lab.run(
        &[
            "media",
            "encrypt",
            &plain,
            "-o",
            enc,
            "--broadcast",
            "--no-progress",
        ],
        None,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    std::fs::remove_file(&plain).unwrap();
    let params = out_json(&o);
    let key = params["encryptionKey"].as_str().unwrap().to_string();
    for (sig, exit) in [("INT", 130), ("TERM", 143)] {
        let out_dir = tempdir();
        let out = out_dir.path().join("big.bin");
        let mut cmd = Command::new(bin());
        cmd.args([
            "media",
            "decrypt",
            enc,
            "-o",
            out.to_str().unwrap(),
            "--encryption-key",
            &key,
            "--no-progress",
        ])
        .env("ONESEAL_LOCAL_KEY", lab.key())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // Wait until the temp file exists and has grown, then interrupt.
        let t = Instant::now();
        loop {
            let part = std::fs::read_dir(out_dir.path())
                .unwrap()
                .filter_map(Result::ok)
                .find(|e| e.file_name().to_string_lossy().ends_with(".part"));
            if part.is_some_and(|p| p.metadata().map(|m| m.len() > (1 << 20)).unwrap_or(false)) {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "finished before the signal: make the file larger"
            );
            assert!(t.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(5));
        }
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(exit), "{}", stderr(&o));
        let left: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
        assert!(left.is_empty(), "SIG{sig} left {left:?}");
    }
}

#[test]
fn newcomer_cli_gaps() {
    let lab = Lab::new();
    // Typos get clap's tip and the subcommand's own --help.
    let o = lab.run(&["encrypt", "--suit", "gcm"], None);
    assert_fails(&o, 2, "a similar argument exists: '--suite'");
    assert!(stderr(&o).contains("see oneseal encrypt --help"));
    let o = lab.run(&["decrpyt"], None);
    assert_fails(&o, 2, "'decrypt'");
    // No subcommand: the help.
    let o = lab.run(&[], None);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("Usage: oneseal"), "{}", stderr(&o));
    // Completions for every shell.
    for sh in ["bash", "zsh", "fish", "powershell"] {
        let o = lab.run(&["completions", sh], None);
        assert_eq!(code(&o), 0, "{sh}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("encrypt"),
            "{sh}"
        );
    }
    // --version carries the commit.
    let o = lab.run(&["--version"], None);
    assert!(String::from_utf8_lossy(&o.stdout).contains("(commit "));
    // -v without ANSI colour on a pipe, or with --color never; with --color always, colour.
    let doc = br#"{"messages":[{"channel":"whatsapp","to":"2799","content":"hi"}]}"#;
    let o = lab.run(&["-vv", "encrypt"], Some(doc));
    assert!(
        stderr(&o).contains("INFO") || stderr(&o).contains("DEBUG"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains('\u{1b}'), "{}", stderr(&o));
    let o = lab.run(&["-vv", "--color", "always", "encrypt"], Some(doc));
    assert!(stderr(&o).contains('\u{1b}'));
    // --kms-timeout: the message matches the range it enforces.
    let o = lab.run(&["encrypt", "--kms-timeout", "0"], Some(doc));
    assert_fails(&o, 2, "more than 0 and at most 3600");
    // Help names no file users do not have.
    for sub in [
        &["encrypt", "--help"][..],
        &["decrypt", "--help"],
        &["--help"],
        &["key", "init", "--help"],
    ] {
        let o = lab.run(sub, None);
        let h = String::from_utf8_lossy(&o.stdout);
        assert!(!h.contains("DESIGN"), "{sub:?}");
        assert!(h.contains("Examples:"), "{sub:?}");
    }
    // key init and flows keygen create no directories.
    let o = lab.run(
        &["key", "init", "--local-key", &lab.path("no/such/dir/k")],
        None,
    );
    assert_fails(&o, 2, "does not exist");
    let o = lab.run(
        &[
            "flows",
            "keygen",
            "--private-key-out",
            &lab.path("no/k.pem"),
            "--public-key-out",
            &lab.path("no/p.pem"),
        ],
        None,
    );
    assert_fails(&o, 2, "does not exist");
}

#[test]
fn config_file_was_not_found_and_errors_had_no_line() {
    let lab = Lab::new();
    let doc = br#"{"messages":[{"channel":"whatsapp","to":"2799","content":"hi"}]}"#;
    // ./oneseal.toml is found without --config.
    std::fs::write(lab.dir.path().join("oneseal.toml"), "suite = \"cbc\"\n").unwrap();
    let o = Command::new(bin())
        .args(["encrypt", "--local-key", &lab.key()])
        .current_dir(lab.dir.path())
        .env_remove("ONESEAL_CONFIG")
        .env_remove("ONESEAL_SUITE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(doc)?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = out_json(&o);
    let ct = b64::decode(v["messages"][0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(ct.len(), 32, "cbc from ./oneseal.toml");
    // TOML errors name the line; a bad suite in the file names the file, not a flag.
    let cfg = lab.path("bad.toml");
    std::fs::write(&cfg, "# settings\nsuite = \"gcm\"\nkms_key_id = \n").unwrap();
    let o = lab.run(&["encrypt", "--config", &cfg], Some(doc));
    assert_fails(&o, 2, "line 3");
    std::fs::write(&cfg, "suite = \"ccm\"\n").unwrap();
    let o = lab.run(&["encrypt", "--config", &cfg], Some(doc));
    assert_fails(&o, 2, "bad.toml: suite:");
    assert!(!stderr(&o).contains("--suite"));
    std::fs::write(&cfg, "key_max_age_seconds = 9999999\n").unwrap();
    let o = lab.run(&["encrypt", "--config", &cfg], Some(doc));
    assert_fails(&o, 2, "key_max_age_seconds");
}

#[test]
fn rsa_crate_was_in_the_cli_dependency_tree() {
    let o = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "oneseal-cli",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tree = String::from_utf8_lossy(&o.stdout);
    assert!(tree.contains("aws-lc-rs"), "{tree}");
    assert!(
        !tree.lines().any(|l| l.starts_with("rsa v")),
        "the rsa crate is still a runtime dependency"
    );
}
