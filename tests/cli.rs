//! End-to-end tests of the `oneseal` CLI on the local key provider: flags, environment,
//! config file, stdin/stdout, atomic -o, exit codes and one-line errors.

mod support;

use serde_json::Value;
use support::*;

const TEXT: &str = r#"{"messages":[{"channel":"whatsapp","to":"2799900001","content":"Your balance is R1 234.56","clientMessageId":"c1","customData":{"note":"n1"}}]}"#;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempdir() }
    }
    fn key(&self) -> String {
        self.dir
            .path()
            .join("local.key")
            .to_str()
            .unwrap()
            .to_string()
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        let key = self.key();
        oneseal(args, stdin, &[("ONESEAL_LOCAL_KEY", key.as_str())])
    }
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(o)))
}

#[test]
fn help_and_version() {
    let o = oneseal(&["--help"], None, &[]);
    assert_eq!(code(&o), 0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Examples:") && out.contains("Exit codes"),
        "{out}"
    );
    for sub in [
        &["encrypt", "--help"][..],
        &["decrypt", "--help"],
        &["media", "encrypt", "--help"],
        &["flows", "keygen", "--help"],
    ] {
        let o = oneseal(sub, None, &[]);
        assert_eq!(code(&o), 0);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Examples:"),
            "{sub:?}"
        );
    }
    assert_eq!(code(&oneseal(&["--version"], None, &[])), 0);
}

#[test]
fn unknown_flag_is_usage_error() {
    let o = oneseal(&["encrypt", "--no-such-flag"], None, &[]);
    assert_fails(&o, 2, "--no-such-flag");
}

#[test]
fn stdin_stdout_round_trip_creates_local_key_on_first_use() {
    let e = Env::new();
    let o = e.run(&["encrypt"], Some(TEXT.as_bytes()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("created local key"), "{}", stderr(&o));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(e.key()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let enc = json(&o);
    assert_ne!(enc["messages"][0]["content"], "Your balance is R1 234.56");
    assert!(enc["messages"][0]["encryptionKey"].is_string());
    let o = e.run(&["decrypt", "-"], Some(&o.stdout));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o), serde_json::from_str::<Value>(TEXT).unwrap());
}

#[test]
fn decrypt_under_another_local_key_exits_4_naming_both_ids() {
    let a = Env::new();
    let b = Env::new();
    let enc = a.run(&["encrypt"], Some(TEXT.as_bytes()));
    assert_eq!(code(&enc), 0);
    assert_eq!(code(&b.run(&["key", "init"], None)), 0);
    let out = b.path("out.json");
    let o = b.run(&["decrypt", "-o", &out], Some(&enc.stdout));
    assert_fails(&o, 4, "local key");
    let err = stderr(&o);
    // Both 16-hex-digit key ids are named.
    let ids: Vec<&str> = err
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 16)
        .collect();
    assert!(ids.len() >= 2 && ids[0] != ids[1], "{err}");
    assert!(
        !std::path::Path::new(&out).exists(),
        "nothing at -o after a failure"
    );
}

#[test]
fn not_a_payload_exits_3() {
    let e = Env::new();
    for bad in [&br#"{"hello":"world"}"#[..], b"[1,2,3]", b"\"text\"", b"42"] {
        let o = e.run(&["encrypt"], Some(bad));
        assert_fails(&o, 3, "not a WhatsApp payload");
        let o = e.run(&["decrypt"], Some(bad));
        assert_eq!(code(&o), 3);
    }
    assert_fails(
        &e.run(&["encrypt"], Some(b"{not json")),
        3,
        "not valid JSON",
    );
    assert_fails(&e.run(&["encrypt"], Some(b"")), 3, "empty");
}

#[test]
fn wrong_type_at_policy_path_names_the_path() {
    let e = Env::new();
    let doc = r#"{"messages":[{"channel":"whatsapp","to":"1","template":{"templateName":"t","body":{"parameters":{"1":42}}}}]}"#;
    assert_fails(
        &e.run(&["encrypt"], Some(doc.as_bytes())),
        3,
        "messages[0].template.body.parameters.1",
    );
}

#[test]
fn output_is_atomic_and_input_is_never_modified() {
    let e = Env::new();
    let input = e.path("in.json");
    std::fs::write(&input, TEXT).unwrap();
    // -o pointing at the input is refused.
    assert_fails(
        &e.run(&["encrypt", &input, "-o", &input], None),
        2,
        "never overwrites its input",
    );
    assert_eq!(std::fs::read_to_string(&input).unwrap(), TEXT);
    // A failing run leaves nothing at -o, and no temp files either.
    let bad = e.path("bad.json");
    std::fs::write(&bad, r#"{"nope":1}"#).unwrap();
    let out = e.path("out.json");
    assert_eq!(code(&e.run(&["encrypt", &bad, "-o", &out], None)), 3);
    assert!(!std::path::Path::new(&out).exists());
    // A good run writes the file; the input is unchanged.
    assert_eq!(code(&e.run(&["encrypt", &input, "-o", &out], None)), 0);
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("encryptionKey"));
    assert_eq!(std::fs::read_to_string(&input).unwrap(), TEXT);
    let leftovers: Vec<_> = std::fs::read_dir(e.dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".oneseal-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn missing_input_file_is_usage_error() {
    let e = Env::new();
    assert_fails(
        &e.run(&["encrypt", "/nonexistent/x.json"], None),
        2,
        "no such file",
    );
}

#[test]
fn tampered_and_malformed_ciphertext() {
    let e = Env::new();
    let enc = json(&e.run(&["encrypt"], Some(TEXT.as_bytes())));
    let mut t = enc.clone();
    let ct = t["messages"][0]["content"].as_str().unwrap().to_string();
    let mut raw = oneseal::core::b64::decode(&ct).unwrap();
    raw[15] ^= 1;
    t["messages"][0]["content"] = oneseal::core::b64::encode(&raw).into();
    let o = e.run(&["decrypt"], Some(t.to_string().as_bytes()));
    assert_fails(&o, 4, "messages[0].content");
    assert!(!stderr(&o).contains("Your balance"));
    let mut t = enc.clone();
    t["messages"][0]["content"] = "***".into();
    assert_fails(
        &e.run(&["decrypt"], Some(t.to_string().as_bytes())),
        3,
        "messages[0].content: not valid base64",
    );
    let mut t = enc.clone();
    t["messages"][0]["encryptionKey"] = 7.into();
    assert_fails(
        &e.run(&["decrypt"], Some(t.to_string().as_bytes())),
        3,
        "encryptionKey",
    );
    let mut t = enc;
    t["messages"][0]["encryptionKey"] = "T1NMMQ==".into();
    assert_fails(
        &e.run(&["decrypt"], Some(t.to_string().as_bytes())),
        4,
        "encryptionKey",
    );
}

#[test]
fn already_encrypted_is_refused() {
    let e = Env::new();
    let enc = e.run(&["encrypt"], Some(TEXT.as_bytes()));
    assert_fails(
        &e.run(&["encrypt"], Some(&enc.stdout)),
        3,
        "already has an encryptionKey",
    );
}

#[test]
fn keep_going_writes_the_rest_and_exits_4() {
    let e = Env::new();
    let two = r#"{"messages":[{"channel":"whatsapp","to":"1","content":"a"},{"channel":"whatsapp","to":"2","content":"b"}]}"#;
    let mut enc = json(&e.run(
        &["encrypt", "--fresh-key-per-message"],
        Some(two.as_bytes()),
    ));
    assert_ne!(
        enc["messages"][0]["encryptionKey"],
        enc["messages"][1]["encryptionKey"]
    );
    enc["messages"][1]["content"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    let out = e.path("out.json");
    let o = e.run(
        &["decrypt", "--keep-going", "-o", &out],
        Some(enc.to_string().as_bytes()),
    );
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let got: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(got["messages"][0]["content"], "a");
    assert_eq!(got["messages"][1]["content"], enc["messages"][1]["content"]);
    // Without --keep-going: nothing written.
    let out2 = e.path("out2.json");
    assert_eq!(
        code(&e.run(&["decrypt", "-o", &out2], Some(enc.to_string().as_bytes()))),
        4
    );
    assert!(!std::path::Path::new(&out2).exists());
}

fn content_len(v: &Value) -> usize {
    oneseal::core::b64::decode(v["messages"][0]["content"].as_str().unwrap())
        .unwrap()
        .len()
}

#[test]
fn suite_from_flag_env_and_config_file() {
    let e = Env::new();
    let n = "Your balance is R1 234.56".len();
    let gcm = json(&e.run(&["encrypt"], Some(TEXT.as_bytes())));
    assert_eq!(content_len(&gcm), n + 28);
    let cbc = json(&e.run(&["encrypt", "--suite", "cbc"], Some(TEXT.as_bytes())));
    assert_eq!(content_len(&cbc), 16 + (n / 16 + 1) * 16);
    let key = e.key();
    let o = oneseal(
        &["encrypt"],
        Some(TEXT.as_bytes()),
        &[("ONESEAL_LOCAL_KEY", &key), ("ONESEAL_SUITE", "cbc")],
    );
    assert_eq!(content_len(&json(&o)), 16 + (n / 16 + 1) * 16);
    let cfg = e.path("oneseal.toml");
    std::fs::write(
        &cfg,
        format!("suite = \"cbc\"\nlocal_key = \"{key}\"\nfields = [\"customData.note\"]\n"),
    )
    .unwrap();
    let o = oneseal(&["--config", &cfg, "encrypt"], Some(TEXT.as_bytes()), &[]);
    let v = json(&o);
    assert_eq!(content_len(&v), 16 + (n / 16 + 1) * 16);
    assert_ne!(
        v["messages"][0]["customData"]["note"], "n1",
        "extra field from the config file"
    );
    assert_eq!(v["messages"][0]["clientMessageId"], "c1");
    let o = oneseal(&["--config", &cfg, "decrypt"], Some(&o.stdout), &[]);
    assert_eq!(json(&o), serde_json::from_str::<Value>(TEXT).unwrap());
    std::fs::write(&cfg, "sutie = \"cbc\"\n").unwrap();
    assert_fails(
        &oneseal(&["--config", &cfg, "encrypt"], Some(TEXT.as_bytes()), &[]),
        2,
        "sutie",
    );
    assert_fails(
        &e.run(&["encrypt", "--suite", "ctr"], Some(TEXT.as_bytes())),
        2,
        "unknown suite",
    );
}

#[test]
fn extra_fields_and_api_override() {
    let e = Env::new();
    let doc =
        r#"{"messages":[{"to":"27999000001","content":"hi","customData":{"note":"secret"}}]}"#;
    let o = e.run(
        &["encrypt", "--field", "customData.note", "--api", "one"],
        Some(doc.as_bytes()),
    );
    let v = json(&o);
    assert!(
        v["messages"][0]["encryptionKey"].is_string(),
        "--api one puts the key per message"
    );
    assert!(v.get("encryptionKey").is_none());
    assert_ne!(v["messages"][0]["customData"]["note"], "secret");
    let back = e.run(&["decrypt", "--field", "customData.note"], Some(&o.stdout));
    assert_eq!(json(&back), serde_json::from_str::<Value>(doc).unwrap());
    // Default detection: no One API markers means legacy, with one top-level key.
    let v = json(&e.run(&["encrypt"], Some(doc.as_bytes())));
    assert!(v["encryptionKey"].is_string());
    assert_fails(
        &e.run(&["encrypt", "--field", "a..b"], Some(doc.as_bytes())),
        2,
        "bad field path",
    );
}

#[test]
fn plain_callbacks_pass_through_decrypt() {
    // A callback receiver pipes every callback through decrypt; unencrypted ones (status
    // updates, encryptionKey: null) must come out unchanged, exit 0.
    let e = Env::new();
    for f in [
        "fixtures/one-api/callbacks/message_status_update.json",
        "fixtures/one-api/callbacks/mo_text.json",
    ] {
        let p = root().join(f);
        let o = e.run(&["decrypt", p.to_str().unwrap()], None);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(
            json(&o),
            serde_json::from_slice::<Value>(&std::fs::read(&p).unwrap()).unwrap()
        );
    }
}

#[test]
fn key_init_never_overwrites() {
    let e = Env::new();
    let o = e.run(&["key", "init"], None);
    assert_eq!(code(&o), 0);
    let first = std::fs::read(e.key()).unwrap();
    let o = e.run(&["key", "init"], None);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("already exists"));
    assert_eq!(std::fs::read(e.key()).unwrap(), first);
}

#[test]
fn kms_blob_without_kms_config_fails_cleanly() {
    let e = Env::new();
    let doc = r#"{"messages":[{"channel":"whatsapp","to":"1","content":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","encryptionKey":"AQIDAHigcx4kN+SNTVLxxd6cYLmM7DE08asxE6NFNkM64hE3lwE="}]}"#;
    // Endpoint with nothing listening: a network failure, exit 5, quickly.
    let o = e.run(
        &[
            "decrypt",
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--region",
            "us-east-1",
            "--kms-timeout",
            "3",
        ],
        Some(doc.as_bytes()),
    );
    assert!(matches!(code(&o), 2 | 5), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn strict_refuses_an_unknown_member_by_path_and_passthrough_lets_it_through() {
    let env = Env::new();
    let o = env.run(&["encrypt", "--strict", "-"], Some(TEXT.as_bytes()));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("messages[0].customData"),
        "{}",
        stderr(&o)
    );
    let cfg = env.path("oneseal.toml");
    std::fs::write(&cfg, "strict = true\npassthrough = [\"customData\"]\n").unwrap();
    let o = env.run(&["encrypt", "--config", &cfg, "-"], Some(TEXT.as_bytes()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["messages"][0]["customData"]["note"], "n1");
}

#[test]
fn a_document_mixing_one_api_and_legacy_messages_is_bad_input_in_every_mode() {
    let env = Env::new();
    let mixed = r#"{"messages":[{"to":"1","content":"a","caption":"c"},{"channel":"whatsapp","to":"1","content":"b"}]}"#;
    for api in ["auto", "one", "legacy"] {
        let o = env.run(&["encrypt", "--api", api, "-"], Some(mixed.as_bytes()));
        assert_eq!(o.status.code(), Some(3), "{api}: {}", stderr(&o));
        assert!(stderr(&o).contains("messages[0].caption"), "{}", stderr(&o));
    }
}

/// Regression: the README's first command failed 2 times in 3 on a machine without a local
/// key: decrypt looked for the key at start, before encrypt (the other end of the pipe) had
/// created it. The exact line, from an empty data directory, 20 times.
#[test]
fn the_readme_first_command_works_from_an_empty_data_directory_every_time() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .skip_while(|l| !l.starts_with("```sh"))
        .nth(1)
        .unwrap()
        .to_string();
    assert!(
        line.contains("encrypt") && line.contains("decrypt"),
        "{line}"
    );
    // `cargo run` of an up-to-date binary; built once here so the runs below measure the pipe.
    let _ = bin();
    let want: Value = serde_json::from_slice(
        &std::fs::read(root().join("fixtures/one-api/requests/template_text_header.json")).unwrap(),
    )
    .unwrap();
    // The toolchain stays where it is; only the user's own directories are new and empty.
    let real_home = std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| real_home.join(".cargo"));
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| real_home.join(".rustup"));
    for i in 0..20 {
        let home = tempdir();
        let o = std::process::Command::new("bash")
            .args(["-c", &line])
            .current_dir(root())
            .env("CARGO_HOME", &cargo_home)
            .env("RUSTUP_HOME", &rustup_home)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env_remove("ONESEAL_LOCAL_KEY")
            .env_remove("ONESEAL_KMS_KEY_ID")
            .env_remove("ONESEAL_CONFIG")
            .output()
            .unwrap();
        assert!(o.status.success(), "run {i}: {}", stderr(&o));
        let got: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("run {i}: {e}: {}", stderr(&o)));
        assert_eq!(got, want, "run {i}");
    }
}

/// The gateway loop in one command (`scripts/try-gateway.sh`): the platform gets ciphertext
/// that decrypts to the message sent, and the app gets the platform's callback in plaintext.
#[test]
fn try_gateway_shows_the_whole_loop_and_stops_what_it_started() {
    let _ = bin();
    let o = std::process::Command::new("bash")
        .arg(root().join("scripts/try-gateway.sh"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let sent = out
        .split("== 2.")
        .nth(1)
        .unwrap()
        .split("== 3.")
        .next()
        .unwrap();
    assert!(
        sent.contains("\"encryptionKey\"") && !sent.contains("482913"),
        "{sent}"
    );
    let decrypted = out
        .split("== 3.")
        .nth(1)
        .unwrap()
        .split("== 4.")
        .next()
        .unwrap();
    assert!(
        decrypted.contains("Your one-time PIN is 482913"),
        "{decrypted}"
    );
    let at_app = out.split("== 5.").nth(1).unwrap();
    assert!(at_app.contains("Yes, that was me"), "{at_app}");
}

/// `oneseal gateway --check-config` on `text`, written to `dir/c.toml`, with HOME and
/// XDG_DATA_HOME in `dir` (an empty data directory) and `env` besides.
fn check_config(dir: &std::path::Path, text: &str, env: &[(&str, &str)]) -> std::process::Output {
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, text).unwrap();
    let home = dir.to_str().unwrap();
    let mut all = vec![("HOME", home), ("XDG_DATA_HOME", home)];
    all.extend_from_slice(env);
    oneseal(
        &[
            "gateway",
            "--config",
            cfg.to_str().unwrap(),
            "--check-config",
        ],
        None,
        &all,
    )
}

/// `--check-config` reports what start would hit, all at once: two listeners on one port and
/// a spool that cannot be made are errors; a port another process holds is a warning (the
/// config is often checked while the gateway it replaces still serves).
#[test]
fn check_config_reports_every_start_problem_in_one_run() {
    let dir = tempdir();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    std::fs::write(dir.path().join("afile"), b"").unwrap();
    let o = check_config(
        dir.path(),
        &format!(
            "[gateway]\napp_listen = \"127.0.0.1:{port}\"\npublic_listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{busy_port}\"\nupstream = \"http://127.0.0.1:9\"\nspool_dir = \"{}\"\n",
            dir.path().join("afile/spool").display()
        ),
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error: 2 problems:\n  "), "{err}");
    assert!(
        err.contains("gateway.public_listen") && err.contains("is also gateway.app_listen"),
        "{err}"
    );
    assert!(
        err.contains("gateway.admin_listen") && err.contains("in use"),
        "{err}"
    );
    assert!(err.contains("gateway.spool_dir"), "{err}");
    drop(busy);
}

/// The repository's `oneseal.example.toml` is exactly what `--print-config` prints, and that
/// text passes `--check-config` once the key is named (the local key is refused with the real
/// platform).
#[test]
fn the_example_config_is_the_printed_one_and_passes_check_config() {
    let o = oneseal(&["gateway", "--print-config"], None, &[]);
    assert!(o.status.success());
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("oneseal.example.toml"),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), example);
    let dir = tempfile::tempdir().unwrap();
    let o = check_config(
        dir.path(),
        &String::from_utf8(o.stdout).unwrap(),
        &[("ONESEAL_KMS_KEY_ID", "alias/whatsapp")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `oneseal man` renders oneseal(1) from the clap definitions, with every subcommand in it;
/// `--out-dir` writes a page per subcommand too, and the repository's `docs/man` is exactly
/// those pages.
#[test]
fn the_man_pages_are_generated_and_match_the_repository_copy() {
    let o = oneseal(&["man"], None, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = String::from_utf8(o.stdout).unwrap();
    assert!(page.contains(".TH oneseal 1"), "{page}");
    for sub in [
        "encrypt",
        "decrypt",
        "media",
        "flows",
        "key",
        "gateway",
        "completions",
    ] {
        assert!(
            page.contains(&format!("oneseal\\-{sub}(1)")),
            "{sub} missing"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let o = oneseal(
        &["man", "--out-dir", dir.path().to_str().unwrap()],
        None,
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names = |d: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/man");
    let made = names(dir.path());
    assert!(made.contains(&"oneseal-gateway.1".to_string()), "{made:?}");
    assert_eq!(
        made,
        names(&repo),
        "docs/man is stale: oneseal man --out-dir docs/man"
    );
    for n in &made {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(n)).unwrap(),
            std::fs::read_to_string(repo.join(n)).unwrap(),
            "docs/man/{n} is stale: oneseal man --out-dir docs/man"
        );
    }
}

/// Errors inside the config's tables are all reported by one `--check-config`, one per line,
/// each naming its key (not the first one found, then the next on the next run).
#[test]
fn check_config_reports_every_table_error_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let o = check_config(
        dir.path(),
        "[gateway]\nmax_in_flight = 0\n[gateway.callbacks]\nforward_to = \"not a url\"\nallow_unauthenticated = true\n[gateway.flows]\nforward_to = \"http://127.0.0.1:9\"\nallow_unauthenticated = true\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error: 3 problems:\n  "), "{err}");
    for key in [
        "gateway.max_in_flight",
        "gateway.callbacks.forward_to",
        "gateway.flows.private_key",
    ] {
        assert!(
            err.lines().any(|l| l.contains(&format!(": {key}: "))),
            "{key}: {err}"
        );
    }
}

/// `--check-kms` makes one real GenerateDataKey and Decrypt with the configured key (here the
/// local key) and says so.
#[test]
fn check_kms_makes_and_opens_one_data_key() {
    let dir = tempdir();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\napp_listen = \"127.0.0.1:0\"\npublic_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\nspool_dir = \"{}\"\n",
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let key = dir.path().join("local.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let o = oneseal(
        &[
            "gateway",
            "--config",
            cfg.to_str().unwrap(),
            "--check-config",
            "--check-kms",
        ],
        None,
        &[("ONESEAL_LOCAL_KEY", key.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("key service OK: GenerateDataKey and Decrypt")
    );
}

/// `oneseal completions zsh | head -1` ends quietly: a reader that stops early is not an
/// error (it was a BrokenPipe panic).
#[test]
fn completions_into_a_reader_that_stops_early_end_quietly() {
    use std::io::{BufRead, BufReader};
    let mut c = std::process::Command::new(bin())
        .args(["completions", "zsh"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("#compdef"), "{first}");
    let o = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
