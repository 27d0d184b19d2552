//! The bad-input catalog (issue: reliability). Every case goes through the CLI and must end
//! with its exit code, one short stderr line naming the path or file, no panic, no
//! plaintext or key material on stderr, nothing at `-o`, the input unchanged, within 30 s.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// A marker that appears in plaintext inputs; it must never reach stderr.
const SECRET: &str = "SECRET-PLAINTEXT-4242";

struct Case {
    name: &'static str,
    args: Vec<String>,
    input: Vec<u8>,
    exit: i32,
    needle: &'static str,
}

fn case(
    name: &'static str,
    cmd: &str,
    input: impl Into<Vec<u8>>,
    exit: i32,
    needle: &'static str,
) -> Case {
    Case {
        name,
        args: vec![cmd.to_string()],
        input: input.into(),
        exit,
        needle,
    }
}

fn run_case(c: &Case, key: &str, dir: &std::path::Path) {
    let input = dir.join(format!("{}.in", c.name));
    std::fs::write(&input, &c.input).unwrap();
    let out = dir.join(format!("{}.out", c.name));
    let mut args: Vec<&str> = c.args.iter().map(String::as_str).collect();
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    args.extend([i, "-o", o]);
    let t = Instant::now();
    let res = oneseal(&args, None, &[("ONESEAL_LOCAL_KEY", key)]);
    let took = t.elapsed();
    let err = stderr(&res);
    assert_eq!(code(&res), c.exit, "{}: {err}", c.name);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{}: one line expected: {err}",
        c.name
    );
    assert!(err.starts_with("oneseal: error: "), "{}: {err}", c.name);
    assert!(err.len() < 600, "{}: short message expected: {err}", c.name);
    assert!(
        err.contains(c.needle),
        "{}: expected {:?} in {err}",
        c.name,
        c.needle
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{}: {err}",
        c.name
    );
    assert!(!err.contains(SECRET), "{}: plaintext leaked: {err}", c.name);
    assert!(!out.exists(), "{}: something was left at -o", c.name);
    assert_eq!(
        std::fs::read(&input).unwrap(),
        c.input,
        "{}: input modified",
        c.name
    );
    assert!(took < Duration::from_secs(30), "{}: took {took:?}", c.name);
}

fn msg(extra: Value) -> Vec<u8> {
    let mut m = json!({"channel": "whatsapp", "to": "2799900001", "content": SECRET});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    json!({ "messages": [m] }).to_string().into_bytes()
}

#[test]
fn bad_input_catalog() {
    let dir = tempdir();
    let key = dir.path().join("local.key");
    let key_s = key.to_str().unwrap().to_string();
    assert_eq!(
        code(&oneseal(&["key", "init", "--local-key", &key_s], None, &[])),
        0
    );

    // A good encrypted document to derive broken ones from.
    let enc = oneseal(
        &["encrypt", "--local-key", &key_s],
        Some(&msg(json!({}))),
        &[],
    );
    assert_eq!(code(&enc), 0);
    let enc: Value = serde_json::from_slice(&enc.stdout).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = enc.clone();
        f(&mut v);
        v.to_string().into_bytes()
    };
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_contacts = {
        let mut inner = json!(SECRET);
        for _ in 0..200 {
            inner = json!({ "a": inner });
        }
        msg(json!({"contacts": [inner]}))
    };

    let cases = vec![
        case(
            "truncated-json",
            "encrypt",
            &br#"{"messages":[{"channel":"whatsapp","content":"SECRET-PLAINTEXT-4242"#[..],
            3,
            "not valid JSON",
        ),
        case("not-json", "decrypt", &b"hello"[..], 3, "not valid JSON"),
        case("empty", "encrypt", &b""[..], 3, "empty"),
        case("whitespace", "decrypt", &b"  \n\t "[..], 3, "empty"),
        case(
            "invalid-utf8",
            "encrypt",
            [
                &b"{\"messages\":[{\"content\":\""[..],
                &[0xff, 0xfe, 0x80],
                b"\"}]}",
            ]
            .concat(),
            3,
            "not valid JSON",
        ),
        case(
            "top-array",
            "encrypt",
            &b"[1,2]"[..],
            3,
            "top level is an array",
        ),
        case(
            "top-string",
            "decrypt",
            &b"\"x\""[..],
            3,
            "top level is a string",
        ),
        case("top-null", "encrypt", &b"null"[..], 3, "top level is null"),
        case(
            "unknown-object",
            "encrypt",
            &br#"{"hello":"SECRET-PLAINTEXT-4242"}"#[..],
            3,
            "not a WhatsApp payload",
        ),
        case(
            "messages-object",
            "encrypt",
            &br#"{"messages":{"a":1}}"#[..],
            3,
            "messages: expected an array",
        ),
        case(
            "event-array",
            "decrypt",
            &br#"{"event":[]}"#[..],
            3,
            "event: expected an object",
        ),
        case(
            "event-items-object",
            "encrypt",
            &br#"{"event":{"moText":{"content":"x"}}}"#[..],
            3,
            "event.moText: expected an array",
        ),
        case(
            "message-not-object",
            "encrypt",
            &br#"{"messages":["SECRET-PLAINTEXT-4242"]}"#[..],
            3,
            "messages[0]: expected an object",
        ),
        case(
            "content-number",
            "encrypt",
            msg(json!({"content": 42})),
            3,
            "messages[0].content: expected a string",
        ),
        case(
            "caption-object",
            "encrypt",
            msg(json!({"media": {"caption": {"x": SECRET}}})),
            3,
            "messages[0].media.caption",
        ),
        case(
            "latitude-number",
            "encrypt",
            msg(json!({"location": {"latitude": -33.88}})),
            3,
            "messages[0].location.latitude",
        ),
        case(
            "contacts-object",
            "encrypt",
            msg(json!({"contacts": {"name": SECRET}})),
            3,
            "messages[0].contacts: expected an array",
        ),
        case(
            "contacts-bool-leaf",
            "encrypt",
            msg(json!({"contacts": [{"name": {"formattedName": true}}]})),
            3,
            "messages[0].contacts[0].name.formattedName",
        ),
        case(
            "params-array",
            "encrypt",
            msg(json!({"template": {"body": {"parameters": [SECRET]}}})),
            3,
            "messages[0].template.body.parameters",
        ),
        case(
            "media-not-base64",
            "encrypt",
            msg(json!({"media": {"contentType": "image/png"}, "content": "not base64!"})),
            3,
            "messages[0].content: not valid base64",
        ),
        case(
            "media-hash-mismatch",
            "encrypt",
            msg(
                json!({"media": {"contentType": "image/png", "sha256Hash": "00".repeat(32)}, "content": "aGVsbG8="}),
            ),
            4,
            "messages[0].media.sha256Hash",
        ),
        case(
            "media-hash-not-hex",
            "encrypt",
            msg(
                json!({"media": {"contentType": "image/png", "sha256Hash": "xyz"}, "content": "aGVsbG8="}),
            ),
            3,
            "sha256Hash: not a SHA-256",
        ),
        case(
            "deep-nesting",
            "encrypt",
            deep_array.into_bytes(),
            3,
            "not valid JSON",
        ),
        case(
            "deep-contacts",
            "encrypt",
            deep_contacts,
            3,
            "not valid JSON",
        ),
        case(
            "already-encrypted",
            "encrypt",
            with(&|_| {}),
            3,
            "already has an encryptionKey",
        ),
        case(
            "ciphertext-noncanonical",
            "decrypt",
            with(&|v| v["messages"][0]["content"] = json!("aGk")),
            3,
            "messages[0].content: not valid base64",
        ),
        case(
            "ciphertext-bad-alphabet",
            "decrypt",
            with(&|v| v["messages"][0]["content"] = json!("aGk-_w==")),
            3,
            "not valid base64",
        ),
        case(
            "ciphertext-tampered",
            "decrypt",
            with(&|v| {
                let mut raw =
                    oneseal::core::b64::decode(v["messages"][0]["content"].as_str().unwrap())
                        .unwrap();
                let n = raw.len();
                raw[n - 1] ^= 1;
                v["messages"][0]["content"] = json!(oneseal::core::b64::encode(&raw));
            }),
            4,
            "messages[0].content",
        ),
        case(
            "ciphertext-truncated",
            "decrypt",
            with(&|v| v["messages"][0]["content"] = json!("AAAA")),
            4,
            "messages[0].content",
        ),
        case(
            "key-wrong-type",
            "decrypt",
            with(&|v| v["messages"][0]["encryptionKey"] = json!({"k": 1})),
            3,
            "messages[0].encryptionKey: expected a base64 string",
        ),
        case(
            "key-not-base64",
            "decrypt",
            with(&|v| v["messages"][0]["encryptionKey"] = json!("***")),
            3,
            "messages[0].encryptionKey: not valid base64",
        ),
        case(
            "key-truncated",
            "decrypt",
            with(&|v| {
                let b = v["messages"][0]["encryptionKey"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let raw = oneseal::core::b64::decode(&b).unwrap();
                v["messages"][0]["encryptionKey"] = json!(oneseal::core::b64::encode(&raw[..30]));
            }),
            4,
            "truncated",
        ),
        case(
            "key-tampered",
            "decrypt",
            with(&|v| {
                let raw =
                    oneseal::core::b64::decode(v["messages"][0]["encryptionKey"].as_str().unwrap())
                        .unwrap();
                let mut raw = raw.clone();
                raw[60] ^= 1;
                v["messages"][0]["encryptionKey"] = json!(oneseal::core::b64::encode(&raw));
            }),
            4,
            "altered",
        ),
        case(
            "callback-key-number",
            "decrypt",
            &br#"{"integrationId":"i","content":"x","encryptionKey":5}"#[..],
            3,
            "encryptionKey: expected a base64 string",
        ),
    ];
    for c in &cases {
        run_case(c, &key_s, dir.path());
    }

    // Wrong local key: exit 4, both key ids named.
    let other = dir.path().join("other.key");
    let other_s = other.to_str().unwrap().to_string();
    assert_eq!(
        code(&oneseal(
            &["key", "init", "--local-key", &other_s],
            None,
            &[]
        )),
        0
    );
    run_case(
        &case(
            "wrong-local-key",
            "decrypt",
            with(&|_| {}),
            4,
            "made with local key",
        ),
        &other_s,
        dir.path(),
    );
    // No local key at all for an OSL1 blob: a configuration error saying where it looked.
    let missing = dir.path().join("missing.key");
    run_case(
        &case(
            "no-local-key",
            "decrypt",
            with(&|_| {}),
            2,
            "no local key at",
        ),
        missing.to_str().unwrap(),
        dir.path(),
    );
}

#[test]
fn unknown_flags_and_bad_values() {
    for (args, help) in [
        (&["encrypt", "--bogus"][..], "see oneseal encrypt --help"),
        (&["decrypt", "--suite"], "see oneseal decrypt --help"),
        (&["frobnicate"], "see oneseal --help"),
        (&["media", "encrypt"], "see oneseal media encrypt --help"),
        (
            &["flows", "decrypt-request"],
            "see oneseal flows decrypt-request --help",
        ),
    ] {
        let o = oneseal(args, None, &[]);
        assert_fails(&o, 2, help);
    }
    let o = oneseal(
        &["encrypt", "--encryption-context", "novalue"],
        Some(b"{}"),
        &[],
    );
    assert_fails(&o, 2, "KEY=VALUE");
    let o = oneseal(&["encrypt", "--kms-timeout=-1"], Some(b"{}"), &[]);
    assert_fails(&o, 2, "--kms-timeout");
}

#[test]
fn no_stdin_on_a_terminal_is_not_a_hang() {
    // With stdin closed (not a terminal), reading gives an empty document: exit 3 at once.
    bin();
    let t = Instant::now();
    let o = oneseal(&["decrypt"], None, &[]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn verbose_logs_carry_no_plaintext_or_keys() {
    let dir = tempdir();
    let key = dir.path().join("k");
    let key_s = key.to_str().unwrap();
    let doc = msg(json!({}));
    for v in ["-v", "-vv"] {
        let o = oneseal(
            &[v, "encrypt", "--local-key", key_s],
            Some(&doc),
            &[("RUST_LOG", "trace")],
        );
        assert_eq!(code(&o), 0);
        let log = stderr(&o);
        assert!(!log.contains(SECRET), "{log}");
        let enc: Value = serde_json::from_slice(&o.stdout).unwrap();
        let o = oneseal(
            &[v, "decrypt", "--local-key", key_s],
            Some(enc.to_string().as_bytes()),
            &[("RUST_LOG", "trace")],
        );
        assert_eq!(code(&o), 0);
        let log = stderr(&o);
        assert!(!log.contains(SECRET), "{log}");
        // The master key's bytes (as hex or base64) never appear either.
        let master = std::fs::read(&key).unwrap();
        assert!(
            !log.contains(&hex::encode(&master))
                && !log.contains(&oneseal::core::b64::encode(&master))
        );
    }
}

/// Regression: a directory as input was reported as `Is a directory (os error 21)`.
#[test]
fn a_directory_as_input_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap().to_string();
    let o = oneseal(&["encrypt", &p], None, &[]);
    assert_fails(&o, 2, "is a directory: give a file");
}

/// Regression: `media encrypt` without a recipient named only `--to`, after a stray `;`.
#[test]
fn media_encrypt_without_a_recipient_names_both_choices() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.jpg");
    std::fs::write(&f, b"x").unwrap();
    let out = dir.path().join("y");
    let o = oneseal(
        &[
            "media",
            "encrypt",
            f.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert_fails(&o, 2, "not provided: <--to <MSISDN>|--broadcast>");
}
