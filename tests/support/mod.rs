//! Shared test support: the `oneseal` binary, the vector loader, fixtures, and the local KMS
//! server (moto) harness.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub mod gateway;
pub mod http;
pub mod moto;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `oneseal` binary, built once per test process (a no-op when up to date). Building it
/// here keeps `cargo test` self-sufficient: the binary belongs to another workspace package.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "oneseal-cli", "--bin", "oneseal"])
            .current_dir(root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the oneseal binary failed");
        let exe = std::env::current_exe().expect("test exe path");
        // target/<profile>/deps/<test> -> target/<profile>/oneseal
        let dir = exe.parent().and_then(Path::parent).expect("target dir");
        let b = dir.join(format!("oneseal{}", std::env::consts::EXE_SUFFIX));
        assert!(b.exists(), "{} missing", b.display());
        b
    })
}

/// Runs `oneseal` with `args`, optional stdin bytes and extra environment. The environment is
/// cleared of ONESEAL_*/AWS_* so the developer's own settings never leak into a test.
pub fn oneseal(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("ONESEAL_") || k.starts_with("AWS_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    // No real credentials or metadata lookups ever.
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn oneseal");
    if let Some(data) = stdin {
        let mut s = child.stdin.take().expect("stdin");
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = s.write_all(&data);
        });
    }
    child.wait_with_output().expect("wait oneseal")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the error contract: exit code, one stderr line, no panic/backtrace.
pub fn assert_fails(o: &Output, exit: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(code(o), exit, "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.starts_with("oneseal: error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// Every `*.json` fixture of the reference payloads.
pub fn fixtures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in [
        "one-api/requests",
        "one-api/callbacks",
        "legacy/requests",
        "legacy/callbacks",
    ] {
        for e in std::fs::read_dir(root().join("fixtures").join(sub)).expect("fixtures dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(out.len() >= 30, "fixtures missing");
    out
}

/// The expected policy leaves of a fixture (written by scripts/interop.py, independently).
pub fn expected_leaves(fixture: &Path) -> Vec<String> {
    std::fs::read_to_string(fixture.with_extension("leaves"))
        .expect("leaves file")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Test vectors: blocks of `field: value` lines separated by blank lines, `#` comments.
pub fn vectors(name: &str) -> Vec<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(root().join("fixtures/vectors").join(name)).expect("vector file");
    let mut out = Vec::new();
    let mut cur = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let (k, v) = line
            .split_once(": ")
            .or_else(|| line.split_once(':'))
            .expect("field: value");
        cur.insert(k.trim().to_string(), v.to_string());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    assert!(!out.is_empty(), "no vectors in {name}");
    out
}

/// Runs the independent implementation (scripts/interop.py); returns (success, stdout+stderr).
pub fn python(args: &[&str]) -> (bool, String) {
    let o = Command::new("python3")
        .args(args)
        .current_dir(root())
        .output()
        .expect("python3 is required by the test suite (scripts/setup-test-env.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// Every JSON pointer whose leaf differs between two documents of the same shape.
pub fn changed_leaves(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    fn go(a: &serde_json::Value, b: &serde_json::Value, p: String, out: &mut Vec<String>) {
        use serde_json::Value::*;
        match (a, b) {
            (Object(x), Object(y)) => {
                for (k, v) in x {
                    match y.get(k) {
                        Some(w) => go(v, w, format!("{p}/{k}"), out),
                        None => out.push(format!("{p}/{k} (removed)")),
                    }
                }
            }
            (Array(x), Array(y)) if x.len() == y.len() => {
                for (i, (v, w)) in x.iter().zip(y).enumerate() {
                    go(v, w, format!("{p}/{i}"), out);
                }
            }
            _ if a != b => out.push(p),
            _ => {}
        }
    }
    let mut out = Vec::new();
    go(a, b, String::new(), &mut out);
    out.sort();
    out
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}
