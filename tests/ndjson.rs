//! NDJSON (issue 15, item 1): one payload per line, order kept, both cores, one key cache,
//! bad lines named by number, `--keep-going` per line. KMS call counts are in tests/kms.rs.

mod support;

use serde_json::{json, Value};
use support::*;

fn lines(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let d = match i % 4 {
            0 => {
                json!({"event": {"moText": [{"messageId": format!("m{i}"), "from": "2799", "content": format!("hello {i}"), "encryptionKey": null}]}})
            }
            1 => {
                json!({"messages": [{"channel": "whatsapp", "to": "2799", "content": format!("statement {i} is ready")}]})
            }
            2 => {
                json!({"event": {"messageStatusUpdate": [{"messageId": format!("s{i}"), "statusCode": 3}]}})
            }
            _ => {
                json!({"integrationId": "i", "messageId": format!("l{i}"), "from": "2799", "content": format!("legacy {i}"), "encryptionKey": null})
            }
        };
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out
}

fn parse(text: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
        .collect()
}

#[test]
fn ndjson_round_trips_line_for_line_in_order() {
    let dir = tempdir();
    let key = dir.path().join("k.key");
    let key = key.to_str().unwrap();
    let env = [("ONESEAL_LOCAL_KEY", key)];
    let input = dir.path().join("archive.ndjson");
    let mut text = lines(3000);
    text.push('\n'); // a blank line stays a blank line
    text.push_str(&lines(5));
    std::fs::write(&input, &text).unwrap();
    let enc = dir.path().join("enc.ndjson");
    let o = oneseal(
        &[
            "encrypt",
            input.to_str().unwrap(),
            "-o",
            enc.to_str().unwrap(),
        ],
        None,
        &env,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let enc_text = std::fs::read(&enc).unwrap();
    let enc_lines = parse(&enc_text);
    assert_eq!(enc_lines.len(), 3006);
    assert!(enc_lines[3000].is_null(), "the blank line is kept");
    assert!(enc_lines[1]["messages"][0]["encryptionKey"].is_string());
    assert_ne!(
        enc_lines[1]["messages"][0]["content"],
        "statement 1 is ready"
    );
    // Decrypt from stdin with --ndjson: the same lines, in the same order.
    let o = oneseal(&["decrypt", "--ndjson"], Some(&enc_text), &env);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let back = parse(&o.stdout);
    let orig = parse(text.as_bytes());
    assert_eq!(back.len(), orig.len());
    for (i, (b, a)) in back.iter().zip(&orig).enumerate() {
        assert_eq!(
            oneseal::core::without_bookkeeping(b, a),
            *a,
            "line {}",
            i + 1
        );
    }
    // .jsonl is NDJSON too; --pretty cannot be.
    let jl = dir.path().join("x.jsonl");
    std::fs::write(&jl, lines(3)).unwrap();
    let o = oneseal(&["encrypt", jl.to_str().unwrap()], None, &env);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(parse(&o.stdout).len(), 3);
    let o = oneseal(&["encrypt", "--ndjson", "--pretty"], Some(b"{}\n"), &env);
    assert_fails(&o, 2, "--pretty");
}

#[test]
fn a_bad_line_is_named_and_nothing_is_written() {
    let dir = tempdir();
    let key = dir.path().join("k.key");
    std::fs::write(&key, [9u8; 32]).unwrap();
    let key = key.to_str().unwrap();
    let env = [("ONESEAL_LOCAL_KEY", key)];
    let mut all: Vec<String> = lines(1000).lines().map(str::to_string).collect();
    all[499] = r#"{"messages":[{"channel":"whatsapp","to":"1","content":5}]}"#.into();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, all.join("\n") + "\n").unwrap();
    let out = dir.path().join("out.ndjson");
    let encrypt = || {
        oneseal(
            &[
                "encrypt",
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            None,
            &env,
        )
    };
    let o = encrypt();
    assert_fails(&o, 3, "line 500: messages[0].content");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temp file left (key, input)"
    );
    // Not JSON at line 7.
    all[499] = lines(2).lines().nth(1).unwrap().to_string();
    all[6] = "{not json".into();
    std::fs::write(&input, all.join("\n") + "\n").unwrap();
    let o = encrypt();
    assert_fails(&o, 3, "line 7: input is not valid JSON");
    assert!(!out.exists());
}

#[test]
fn keep_going_leaves_a_bad_line_as_it_was_and_names_it() {
    let dir = tempdir();
    let key = dir.path().join("k.key");
    let key = key.to_str().unwrap();
    let env = [("ONESEAL_LOCAL_KEY", key)];
    let o = oneseal(&["encrypt", "--ndjson"], Some(lines(40).as_bytes()), &env);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut enc: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // Line 10 (a One API request): alter its ciphertext.
    let mut v: Value = serde_json::from_str(&enc[9]).unwrap();
    let c = v["messages"][0]["content"].as_str().unwrap().to_string();
    let mut raw = oneseal::core::b64::decode(&c).unwrap();
    raw[14] ^= 1;
    v["messages"][0]["content"] = oneseal::core::b64::encode(&raw).into();
    enc[9] = v.to_string();
    let enc_text = enc.join("\n") + "\n";
    let o = oneseal(&["decrypt", "--ndjson"], Some(enc_text.as_bytes()), &env);
    assert_fails(&o, 4, "line 10: messages[0].content");
    assert!(
        o.stdout.is_empty(),
        "without --keep-going nothing is written"
    );
    let o = oneseal(
        &["decrypt", "--ndjson", "--keep-going"],
        Some(enc_text.as_bytes()),
        &env,
    );
    assert_eq!(code(&o), 4);
    let err = stderr(&o);
    assert!(err.contains("line 10: messages[0].content"), "{err}");
    let back: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(back.len(), 40);
    assert_eq!(
        back[9], enc[9],
        "the failing line is left exactly as it was"
    );
    let plain = parse(lines(40).as_bytes());
    let b11: Value = serde_json::from_str(&back[10]).unwrap();
    assert_eq!(
        oneseal::core::without_bookkeeping(&b11, &plain[10]),
        plain[10]
    );
}
