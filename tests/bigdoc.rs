//! Documents of any size in bounded memory (issue 15): a 200 000-message document encrypted
//! and decrypted by the CLI, peak RSS measured by the parent (Python `resource`), the round
//! trip compared byte for byte; large callbacks and legacy requests likewise; stdin spooled.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::*;

/// Peak RSS budget for documents of any size.
const BUDGET_KIB: u64 = 64 * 1024;

/// Runs `oneseal ARGS` (stdin from `stdin_file` if given) under Python, which reports the
/// child's peak RSS; returns (exit code, stderr, peak RSS in KiB).
fn run_measured(args: &[&str], stdin_file: Option<&Path>, key: &Path) -> (i32, String, u64) {
    let script = r#"
import json, resource, subprocess, sys
a = json.loads(sys.argv[1])
stdin = open(a["stdin"], "rb") if a["stdin"] else subprocess.DEVNULL
p = subprocess.run(a["argv"], stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
print(json.dumps({"code": p.returncode, "stderr": p.stderr.decode("utf-8", "replace"),
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"#;
    let mut argv = vec![bin().to_str().unwrap().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let spec = json!({"argv": argv, "stdin": stdin_file.map(|p| p.to_str().unwrap().to_string())});
    let o = Command::new("python3")
        .args(["-c", script, &spec.to_string()])
        .env("ONESEAL_LOCAL_KEY", key)
        .env_remove("ONESEAL_KMS_KEY_ID")
        .stderr(Stdio::inherit())
        .output()
        .expect("python3");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"));
    (
        v["code"].as_i64().unwrap() as i32,
        v["stderr"].as_str().unwrap().to_string(),
        v["maxrss_kib"].as_u64().unwrap(),
    )
}

/// `oneseal CMD INPUT -o OUTPUT`, measured.
fn file_to_file(cmd: &str, input: &Path, output: &Path, key: &Path) -> (i32, String, u64) {
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
    run_measured(&[cmd, i, "-o", o], None, key)
}

fn key(dir: &Path) -> std::path::PathBuf {
    let k = dir.join("local.key");
    std::fs::write(&k, [0x24u8; 32]).unwrap();
    k
}

#[test]
fn a_200_000_message_document_round_trips_in_bounded_memory() {
    let dir = tempdir();
    let key = key(dir.path());
    let plain = dir.path().join("batch.json");
    let f = std::fs::File::create(&plain).unwrap();
    let st = Command::new("python3")
        .args(["scripts/gen_batch.py", "200000", "--compact"])
        .current_dir(root())
        .stdout(f)
        .status()
        .unwrap();
    assert!(st.success());
    let size = std::fs::metadata(&plain).unwrap().len();
    assert!(size > 40_000_000, "{size}");
    let enc = dir.path().join("batch.enc.json");
    let (code, err, rss) = file_to_file("encrypt", &plain, &enc, &key);
    assert_eq!(code, 0, "{err}");
    assert!(rss <= BUDGET_KIB, "encrypt peak RSS {rss} KiB > 64 MiB");
    // Decrypt from a file and from stdin (spooled): the original bytes back, both ways.
    for (i, via_stdin) in [false, true].into_iter().enumerate() {
        let dec = dir.path().join(format!("batch.dec{i}.json"));
        let (code, err, rss) = if via_stdin {
            run_measured(&["decrypt", "-o", dec.to_str().unwrap()], Some(&enc), &key)
        } else {
            file_to_file("decrypt", &enc, &dec, &key)
        };
        assert_eq!(code, 0, "{err}");
        assert!(rss <= BUDGET_KIB, "decrypt peak RSS {rss} KiB > 64 MiB");
        let mut want = std::fs::read(&plain).unwrap();
        want.push(b'\n');
        let got = std::fs::read(&dec).unwrap();
        assert!(got == want, "the round trip differs (stdin: {via_stdin})");
    }
    // The encrypted document: every message keyed, no plaintext content left.
    let text = std::fs::read_to_string(&enc).unwrap();
    assert_eq!(text.matches("\"encryptionKey\":").count(), 200_000);
    assert!(!text.contains("Dear customer"));
    assert!(!text.contains("Your policy schedule"));
}

/// A document of `n` copies of each item of the fixture `rel`, written compactly.
fn repeated(rel: &str, n: usize) -> Value {
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(root().join("fixtures").join(rel)).unwrap()).unwrap();
    if let Some(Value::Array(a)) = v.get_mut("messages") {
        let one = a.clone();
        *a = (0..n).flat_map(|_| one.iter().cloned()).collect();
    }
    if let Some(Value::Object(ev)) = v.get_mut("event") {
        for items in ev.values_mut() {
            if let Value::Array(a) = items {
                let one = a.clone();
                *a = (0..n).flat_map(|_| one.iter().cloned()).collect();
            }
        }
    }
    v
}

#[test]
fn large_callbacks_and_legacy_requests_stream_and_match_small_ones() {
    let dir = tempdir();
    let key = key(dir.path());
    for (rel, n) in [
        ("one-api/callbacks/mo_text.json", 12_000),
        ("one-api/callbacks/mo_location.json", 8_000),
        ("legacy/requests/batch_mixed.json", 10_000),
        (
            "one-api/requests/template_media_suggested_response_postback.json",
            6_000,
        ),
    ] {
        let doc = repeated(rel, n);
        let plain = dir.path().join("doc.json");
        std::fs::write(&plain, serde_json::to_vec(&doc).unwrap()).unwrap();
        assert!(
            std::fs::metadata(&plain).unwrap().len() > 2 * 1024 * 1024,
            "{rel}: streamed only above 2 MiB"
        );
        let enc = dir.path().join("doc.enc.json");
        let dec = dir.path().join("doc.dec.json");
        for pretty in [false, true] {
            let mut args = vec![
                "encrypt",
                plain.to_str().unwrap(),
                "-o",
                enc.to_str().unwrap(),
            ];
            if pretty {
                args.push("--pretty");
            }
            let (code, err, rss) = run_measured(&args, None, &key);
            assert_eq!(code, 0, "{rel}: {err}");
            assert!(rss <= BUDGET_KIB, "{rel}: {rss} KiB");
            let (code, err, _) = file_to_file("decrypt", &enc, &dec, &key);
            assert_eq!(code, 0, "{rel}: {err}");
            let got: Value = serde_json::from_slice(&std::fs::read(&dec).unwrap()).unwrap();
            assert_eq!(
                oneseal::core::without_bookkeeping(&got, &doc),
                doc,
                "{rel} pretty={pretty}"
            );
        }
        // A small copy of the same document goes the tree path: the same shape of output.
        let small = repeated(rel, 1);
        let o = oneseal(
            &["encrypt"],
            Some(&serde_json::to_vec(&small).unwrap()),
            &[("ONESEAL_LOCAL_KEY", key.to_str().unwrap())],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let small_enc: Value = serde_json::from_slice(&o.stdout).unwrap();
        let big_enc: Value = serde_json::from_slice(&std::fs::read(&enc).unwrap()).unwrap();
        let first = |v: &Value| -> Vec<String> {
            let item = v
                .pointer("/messages/0")
                .or_else(|| {
                    v.get("event")
                        .and_then(|e| e.as_object())
                        .and_then(|e| e.values().next())
                        .and_then(|a| a.get(0))
                })
                .unwrap();
            let mut keys: Vec<String> = item.as_object().unwrap().keys().cloned().collect();
            keys.extend(v.as_object().unwrap().keys().cloned());
            keys
        };
        assert_eq!(first(&small_enc), first(&big_enc), "{rel}: key order");
    }
}

#[test]
fn a_bad_message_deep_in_a_large_document_is_named_and_nothing_is_written() {
    let dir = tempdir();
    let key = key(dir.path());
    let mut doc = repeated("one-api/requests/text.json", 20_000);
    doc["messages"][15_000]["content"] = json!(42);
    let plain = dir.path().join("bad.json");
    std::fs::write(&plain, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = dir.path().join("out.json");
    let (code, err, _) = file_to_file("encrypt", &plain, &out, &key);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("messages[15000].content"), "{err}");
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".part"))
        .collect();
    assert!(leftovers.is_empty());
}
