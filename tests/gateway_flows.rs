//! The gateway's WhatsApp Flows endpoint end to end (issue 14): `oneseal gateway` with a
//! `[gateway.flows]` table, an independent Meta-style client (scripts/flows_client.py `post`,
//! Python `cryptography`, the published scheme: it encrypts, signs, POSTs and decrypts the
//! answer under the flipped IV itself) and a fake flow handler (scripts/fake_flow_app.py).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::http::{free_port, free_ports, get, python_server, wait_port, Proc};
use support::*;

const APP_SECRET: &str = "meta-app-secret-123";
const PASSPHRASE: &str = "correct horse battery staple";

struct Rig {
    dir: tempfile::TempDir,
    /// public, admin
    ports: [u16; 2],
    handler_port: u16,
    handler: Option<Proc>,
    gateway: Option<Proc>,
    /// More of the `[gateway]` table.
    gateway_extra: String,
    /// `https` when the public listener speaks TLS.
    scheme: &'static str,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempdir();
        std::fs::write(dir.path().join("local.key"), [7u8; 32]).unwrap();
        let [p, m, handler_port] = free_ports();
        Rig {
            dir,
            ports: [p, m],
            handler_port,
            handler: None,
            gateway: None,
            gateway_extra: String::new(),
            scheme: "http",
        }
    }

    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn start_handler(&mut self) {
        let port = self.handler_port;
        self.handler = Some(python_server("fake_flow_app.py", port, &[], &[]));
    }

    fn config(&self, flows: &str) -> PathBuf {
        let [p, m] = self.ports;
        // Without an app secret the route is unauthenticated, which must be said explicitly.
        let open = if flows.contains("app_secret_env") {
            ""
        } else {
            "allow_unauthenticated = true\n"
        };
        let text = format!(
            "[gateway]\napp_listen = \"127.0.0.1:{}\"\npublic_listen = \"127.0.0.1:{p}\"\nadmin_listen = \"127.0.0.1:{m}\"\n\
             spool_dir = \"{}\"\nallow_local_key = true\n{}\n[gateway.flows]\nforward_to = \"http://127.0.0.1:{}/flow\"\n{open}{flows}\n",
            free_port(),
            self.p("spool"),
            self.gateway_extra,
            self.handler_port,
        );
        let path = self.dir.path().join("oneseal.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn cmd(&self, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).arg("--config").arg(config);
        for (k, _) in std::env::vars() {
            if k.starts_with("ONESEAL_") || k.starts_with("AWS_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.env("ONESEAL_LOCAL_KEY", self.p("local.key"))
            .env("FLOWS_APP_SECRET", APP_SECRET)
            .env("FLOWS_PASSPHRASE", PASSPHRASE);
        c
    }

    fn start_gateway(&mut self, flows: &str) {
        self.gateway = None;
        let config = self.config(flows);
        let log = std::fs::File::create(self.p("gateway.log")).unwrap();
        let mut child = self
            .cmd(&config, &["gateway"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_port(self.ports[1], 60, &mut child);
        wait_port(self.ports[0], 10, &mut child);
        self.gateway = Some(Proc(child));
    }

    fn check_config(&self, flows: &str) -> std::process::Output {
        let config = self.config(flows);
        self.cmd(&config, &["gateway", "--check-config"])
            .output()
            .unwrap()
    }

    /// The independent client: encrypt `flow` to `public`, sign with `secret`, POST, decrypt.
    fn post(&self, public: &str, flow: &Value, extra: &[&str]) -> Value {
        let flow_file = self.p("flow.json");
        std::fs::write(&flow_file, flow.to_string()).unwrap();
        let url = format!("{}://127.0.0.1:{}/flows", self.scheme, self.ports[0]);
        let mut args = vec!["scripts/flows_client.py", "post", &url, public, &flow_file];
        args.extend_from_slice(extra);
        let (ok, out) = python(&args);
        assert!(ok, "flows_client.py post: {out}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn signed(&self, public: &str, flow: &Value) -> Value {
        self.post(public, flow, &["--secret", APP_SECRET])
    }

    fn handler_records(&self) -> Vec<Value> {
        get(&format!("http://127.0.0.1:{}/_records", self.handler_port))
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    fn metrics(&self) -> String {
        String::from_utf8(get(&format!("http://127.0.0.1:{}/metrics", self.ports[1])).body).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.p("gateway.log")).unwrap_or_default()
    }
}

/// A metric's value from the Prometheus text (0 when absent).
fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn keygen(rig: &Rig, name: &str) -> (String, String) {
    let (private, public) = (rig.p(&format!("{name}.key")), rig.p(&format!("{name}.pub")));
    let o = oneseal(
        &[
            "flows",
            "keygen",
            "--private-key-out",
            &private,
            "--public-key-out",
            &public,
        ],
        None,
        &[],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    (private, public)
}

/// Keys made by Python `cryptography`: PKCS#8, encrypted PKCS#8 and PKCS#1 of one key pair.
fn python_keys(rig: &Rig, sub: &str) -> PathBuf {
    let d = rig.dir.path().join(sub);
    std::fs::create_dir(&d).unwrap();
    let (ok, out) = python(&[
        "scripts/flows_client.py",
        "genkey",
        d.to_str().unwrap(),
        PASSPHRASE,
    ]);
    assert!(ok, "{out}");
    // Another tool writes keys with its own umask; the gateway reads only owner-only keys.
    for k in ["pkcs8.pem", "pkcs1.pem", "pkcs8-enc.pem"] {
        std::fs::set_permissions(d.join(k), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    d
}

#[test]
fn flows_endpoint_answers_ping_forwards_screens_and_fails_closed() {
    let mut rig = Rig::new();
    rig.start_handler();
    let (current, current_pub) = keygen(&rig, "current");
    // The key being rotated out: another tool's, encrypted PKCS#8, with its own passphrase.
    let old = python_keys(&rig, "old");
    let old_pub = old.join("public.pem").to_str().unwrap().to_string();
    rig.start_gateway(&format!(
        "private_key = \"{current}\"\nprevious_private_key = \"{}\"\nprevious_passphrase_env = \"FLOWS_PASSPHRASE\"\n\
         app_secret_env = \"FLOWS_APP_SECRET\"\nresponse_timeout_seconds = 2\n",
        old.join("pkcs8-enc.pem").display()
    ));

    // ping: answered by the gateway, encrypted; the handler sees nothing.
    let r = rig.signed(&current_pub, &json!({"version":"3.0","action":"ping"}));
    assert_eq!(r, json!({"status":200,"json":{"data":{"status":"active"}}}));
    assert!(rig.handler_records().is_empty());

    // INIT, data_exchange, BACK: the handler gets the exact plain JSON; its answer decrypts.
    for (i, action) in ["INIT", "data_exchange", "BACK"].iter().enumerate() {
        let flow = json!({"version":"3.0","action":action,"screen":"APPOINTMENT",
            "data":{"name":"Zoë ✓","slot":i},"flow_token":"tok-42"});
        let r = rig.signed(&current_pub, &flow);
        assert_eq!(
            r,
            json!({"status":200,"json":{"screen":"NEXT","data":{"got_action":action,"echo":{"name":"Zoë ✓","slot":i}}}}),
            "{action}"
        );
        let got = rig.handler_records();
        assert_eq!(got.len(), i + 1);
        assert_eq!(got[i]["path"], "/flow");
        assert_eq!(
            got[i]["body"].as_str().unwrap(),
            flow.to_string(),
            "exact plain JSON"
        );
    }

    // An error notification: forwarded, acknowledged for the app that answers no body.
    let note = json!({"version":"3.0","action":"data_exchange","flow_token":"tok-42",
        "data":{"error":"invalid-screen","error_message":"screen NEXT has no field x"}});
    let r = rig.signed(&current_pub, &note);
    assert_eq!(
        r,
        json!({"status":200,"json":{"data":{"acknowledged":true}}})
    );
    assert_eq!(rig.handler_records().len(), 4);

    // A request encrypted to the previous key works during the rotation.
    let r = rig.signed(
        &old_pub,
        &json!({"version":"3.0","action":"data_exchange","data":{"k":1},"flow_token":"t"}),
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["json"]["data"]["echo"], json!({"k":1}));
    assert_eq!(rig.handler_records().len(), 5);

    // Bad or missing signature: 432, nothing decrypted or forwarded.
    let r = rig.post(
        &current_pub,
        &json!({"action":"INIT","flow_token":"sig"}),
        &["--secret", APP_SECRET, "--bad-signature"],
    );
    assert_eq!(r["status"], 432, "{r}");
    let r = rig.post(
        &current_pub,
        &json!({"action":"INIT","flow_token":"sig"}),
        &[],
    );
    assert_eq!(r["status"], 432, "{r}");
    assert_eq!(rig.handler_records().len(), 5);

    // A garbage AES key, and a request to a key the gateway does not have: 421.
    let r = rig.post(
        &current_pub,
        &json!({"action":"INIT","flow_token":"g"}),
        &["--secret", APP_SECRET, "--garbage-key"],
    );
    assert_eq!(r["status"], 421, "{r}");
    let (_, stranger_pub) = keygen(&rig, "stranger");
    let r = rig.signed(&stranger_pub, &json!({"action":"INIT","flow_token":"g"}));
    assert_eq!(r["status"], 421, "{r}");
    assert_eq!(rig.handler_records().len(), 5);

    // The handler's 427 is passed on; its other failures are a 500 that leaks nothing.
    let r = rig.signed(
        &current_pub,
        &json!({"action":"data_exchange","data":{},"flow_token":"expired"}),
    );
    assert_eq!(r["status"], 427, "{r}");
    for token in ["crash", "notjson"] {
        let r = rig.signed(
            &current_pub,
            &json!({"action":"data_exchange","data":{},"flow_token":token}),
        );
        assert_eq!(r["status"], 500, "{token}: {r}");
        let raw = r["raw"].as_str().unwrap();
        assert!(
            !raw.contains("APP-INTERNAL") && !raw.contains("hello") && !raw.contains(token),
            "{raw}"
        );
    }
    // A handler slower than the response deadline (2 s here; Meta waits ~10 s).
    let t = Instant::now();
    let r = rig.signed(
        &current_pub,
        &json!({"action":"data_exchange","data":{},"flow_token":"slow"}),
    );
    assert_eq!(r["status"], 500, "{r}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    // An action Meta does not define is refused, not forwarded.
    let before = rig.handler_records().len();
    let r = rig.signed(&current_pub, &json!({"action":"navigate","flow_token":"x"}));
    assert_eq!(r["status"], 400, "{r}");
    assert_eq!(rig.handler_records().len(), before);

    // Metrics by action and outcome, and the previous key's use.
    let m = get(&format!("http://127.0.0.1:{}/metrics", rig.ports[1])).body;
    let m = String::from_utf8(m).unwrap();
    for (labels, n) in [
        (r#"action="ping",outcome="ok""#, 1.0),
        (r#"action="INIT",outcome="ok""#, 1.0),
        (r#"action="data_exchange",outcome="ok""#, 2.0),
        (r#"action="BACK",outcome="ok""#, 1.0),
        (r#"action="error_notification",outcome="ok""#, 1.0),
        (r#"action="unknown",outcome="bad_signature""#, 2.0),
        (r#"action="unknown",outcome="undecryptable""#, 2.0),
        (r#"action="data_exchange",outcome="app_427""#, 1.0),
        (r#"action="data_exchange",outcome="app_failed""#, 2.0),
        (r#"action="data_exchange",outcome="timeout""#, 1.0),
    ] {
        assert_eq!(
            metric(&m, &format!("oneseal_flows_requests_total{{{labels}}}")),
            n,
            "{labels}\n{m}"
        );
    }
    assert_eq!(metric(&m, "oneseal_flows_previous_key_total"), 1.0, "{m}");

    // The handler down: 500, nothing else.
    rig.handler = None;
    let r = rig.signed(
        &current_pub,
        &json!({"action":"INIT","data":{},"flow_token":"down"}),
    );
    assert_eq!(r["status"], 500, "{r}");
    // Ping still works without the handler.
    let r = rig.signed(&current_pub, &json!({"action":"ping"}));
    assert_eq!(r["status"], 200);

    // Logs carry actions and outcomes, never flow data.
    let log = rig.log();
    assert!(log.contains("/flows"), "{log}");
    for secret in [
        "Zoë",
        "tok-42",
        "invalid-screen",
        "APP-INTERNAL",
        APP_SECRET,
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn flows_keys_from_another_tool_and_config_errors() {
    let mut rig = Rig::new();
    rig.start_handler();
    let d = python_keys(&rig, "py");
    let public = d.join("public.pem").to_str().unwrap().to_string();
    let flow = json!({"version":"3.0","action":"INIT","data":{"x":"é"},"flow_token":"py"});
    for (file, pass) in [
        ("pkcs8.pem", ""),
        ("pkcs1.pem", ""),
        ("pkcs8-enc.pem", "passphrase_env = \"FLOWS_PASSPHRASE\"\n"),
    ] {
        rig.start_gateway(&format!(
            "private_key = \"{}\"\n{pass}",
            d.join(file).display()
        ));
        // No app secret configured: unsigned requests are accepted.
        let r = rig.post(&public, &json!({"action":"ping"}), &[]);
        assert_eq!(
            r["json"],
            json!({"data":{"status":"active"}}),
            "{file}: {r}"
        );
        let r = rig.post(&public, &flow, &[]);
        assert_eq!(r["json"]["data"]["echo"], json!({"x":"é"}), "{file}: {r}");
    }
    let _ = rig.metrics();
    rig.gateway = None;

    // Configuration errors name the key and say what to do.
    let enc = d.join("pkcs8-enc.pem").display().to_string();
    for (flows, key, needle) in [
        (
            format!("private_key = \"{enc}\"\n"),
            "gateway.flows.passphrase_env",
            "encrypted",
        ),
        (
            format!("private_key = \"{enc}\"\npassphrase_env = \"NOT_SET_ANYWHERE\"\n"),
            "gateway.flows.passphrase_env",
            "NOT_SET_ANYWHERE",
        ),
        (
            format!("private_key = \"{enc}\"\npassphrase_env = \"FLOWS_APP_SECRET\"\n"),
            "gateway.flows.private_key",
            "passphrase",
        ),
        (
            "private_key = \"/nonexistent/k.pem\"\n".to_string(),
            "gateway.flows.private_key",
            "cannot read",
        ),
        (
            String::new(),
            "gateway.flows.private_key",
            "oneseal flows keygen",
        ),
        (
            format!(
                "private_key = \"{}\"\napp_secret_env = \"NOT_SET_ANYWHERE\"\n",
                d.join("pkcs8.pem").display()
            ),
            "gateway.flows.app_secret_env",
            "NOT_SET_ANYWHERE",
        ),
        (
            format!(
                "private_key = \"{}\"\npath = \"/flows/{{id}}\"\n",
                d.join("pkcs8.pem").display()
            ),
            "gateway.flows.path",
            "literal path",
        ),
    ] {
        let o = rig.check_config(&flows);
        assert_eq!(code(&o), 2, "{flows}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(key) && e.contains(needle), "{flows}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
    let o = rig.check_config(&format!(
        "private_key = \"{}\"\n",
        d.join("pkcs1.pem").display()
    ));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("allow_unauthenticated"),
        "{}",
        stderr(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("flows /flows"));
}

#[test]
fn the_public_listener_speaks_tls_when_given_a_certificate() {
    let mut rig = Rig::new();
    rig.start_handler();
    let (private, public) = keygen(&rig, "k");
    let (ok, out) = python(&["scripts/flows_client.py", "selfsigned", &rig.p("")]);
    assert!(ok, "{out}");
    rig.gateway_extra = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        rig.p("cert.pem"),
        rig.p("key.pem")
    );
    rig.scheme = "https";
    rig.start_gateway(&format!("private_key = \"{private}\"\n"));
    let ca = rig.p("cert.pem");
    let r = rig.post(&public, &json!({"action":"ping"}), &["--cafile", &ca]);
    assert_eq!(r, json!({"status":200,"json":{"data":{"status":"active"}}}));
    let r = rig.post(
        &public,
        &json!({"action":"INIT","data":{"a":1},"flow_token":"t"}),
        &["--cafile", &ca],
    );
    assert_eq!(r["json"]["data"]["echo"], json!({"a":1}), "{r}");
    // Plain HTTP on the TLS port gets nowhere; the admin side stays plain.
    let plain = support::http::request(
        "GET",
        &format!("http://127.0.0.1:{}/flows", rig.ports[0]),
        &[],
        b"",
    );
    assert!(plain.map(|a| a.status != 200).unwrap_or(true));
    assert_eq!(
        get(&format!("http://127.0.0.1:{}/livez", rig.ports[1])).status,
        200
    );
    // Half a configuration, or a key that does not match, is named.
    let o = rig.check_config(&format!("private_key = \"{private}\"\n"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    rig.gateway_extra = format!("tls_cert = \"{}\"", rig.p("cert.pem"));
    let o = rig.check_config(&format!("private_key = \"{private}\"\n"));
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("gateway.tls_key"), "{}", stderr(&o));
    rig.gateway_extra = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        rig.p("cert.pem"),
        private
    );
    let o = rig.check_config(&format!("private_key = \"{private}\"\n"));
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("gateway.tls_key"), "{}", stderr(&o));
}

/// Regression: a private key readable by group or others was loaded (ssh refuses it).
#[test]
fn a_private_key_readable_by_others_is_refused() {
    let rig = Rig::new();
    let d = python_keys(&rig, "py");
    let key = d.join("pkcs8.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = rig.check_config(&format!("private_key = \"{}\"\n", key.display()));
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("gateway.flows.private_key") && stderr(&o).contains("chmod 600"),
        "{}",
        stderr(&o)
    );
}

/// Every public route authenticates: no app secret and no explicit opt-out is a config error.
#[test]
fn flows_without_an_app_secret_does_not_start_unless_allowed() {
    let rig = Rig::new();
    let (private, _) = keygen(&rig, "k");
    // `config` adds the opt-out when no app secret is named; name one that is set to nothing
    // of the kind and remove the opt-out by writing the table by hand.
    let path = rig.config(&format!(
        "private_key = \"{private}\"\napp_secret_env = \"X\"\n"
    ));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("app_secret_env = \"X\"\n", "");
    std::fs::write(&path, text).unwrap();
    let o = rig
        .cmd(&path, &["gateway", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("gateway.flows.app_secret_env")
            && stderr(&o).contains("allow_unauthenticated"),
        "{}",
        stderr(&o)
    );
}
