//! The gateway rig shared by the end-to-end gateway tests: one `oneseal gateway` with its
//! fake platform and fake app (independent Python processes), on the local key or on moto.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oneseal::core::b64;
use serde_json::{json, Value};

use super::http::{
    self, free_ports, get, post_json, python_server, try_wait_port, NotListening, Proc,
};
use super::moto::{aws_env, moto, Proxy};
use super::*;

pub const CB_USER: &str = "clickatell";
pub const CB_PASS: &str = "s3cret-callback-pw";
pub const APP_KEY: &str = "Bearer app-key";

/// One gateway with its fake platform and fake app.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub platform_port: u16,
    pub app_port: u16,
    pub ports: [u16; 3],
    pub extra_config: String,
    /// Appended to `[gateway.callbacks]`.
    pub callbacks_config: String,
    pub env: Vec<(String, String)>,
    pub log_json: bool,
    pub platform: Option<Proc>,
    pub app: Option<Proc>,
    pub gateway: Option<Proc>,
}

impl Rig {
    /// A rig on the local key provider (the platform shares the local master key file).
    pub fn local(extra_config: &str) -> Rig {
        let dir = tempdir();
        let key = dir.path().join("local.key");
        std::fs::write(&key, [0x42u8; 32]).unwrap();
        let key_s = key.to_str().unwrap().to_string();
        let mut r = Rig::new(
            dir,
            extra_config,
            vec![("ONESEAL_LOCAL_KEY".into(), key_s.clone())],
        );
        let pp = r.platform_port;
        r.platform = Some(python_server(
            "fake_platform.py",
            pp,
            &["--local-key", &key_s],
            &[],
        ));
        r
    }

    /// A rig on KMS (moto behind `proxy`), key `key`.
    pub fn kms(extra_config: &str, proxy: &Proxy, key: &str) -> Rig {
        let dir = tempdir();
        let mut env: Vec<(String, String)> = aws_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("AWS_ENDPOINT_URL_KMS".into(), proxy.url.clone()));
        env.push(("ONESEAL_KMS_KEY_ID".into(), key.to_string()));
        env.push((
            "ONESEAL_LOCAL_KEY".into(),
            dir.path().join("none.key").to_str().unwrap().to_string(),
        ));
        let mut r = Rig::new(dir, extra_config, env);
        let pp = r.platform_port;
        let aws: Vec<(&str, &str)> = aws_env();
        r.platform = Some(python_server(
            "fake_platform.py",
            pp,
            &["--kms-endpoint", &moto().url, "--kms-key-id", key],
            &aws,
        ));
        r
    }

    pub fn new(dir: tempfile::TempDir, extra_config: &str, env: Vec<(String, String)>) -> Rig {
        let [platform_port, app_port, a, p, m] = free_ports();
        Rig {
            dir,
            platform_port,
            app_port,
            ports: [a, p, m],
            extra_config: extra_config.to_string(),
            callbacks_config: String::new(),
            env,
            log_json: false,
            platform: None,
            app: None,
            gateway: None,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("oneseal.toml")
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    pub fn write_config(&self) {
        let [a, p, m] = self.ports;
        let text = format!(
            "[gateway]\napp_listen = \"127.0.0.1:{a}\"\npublic_listen = \"127.0.0.1:{p}\"\nadmin_listen = \"127.0.0.1:{m}\"\n\
             upstream = \"http://127.0.0.1:{}\"\nspool_dir = \"{}\"\n{}\n\
             [gateway.callbacks]\nforward_to = \"http://127.0.0.1:{}/whatsapp/callbacks\"\nusername = \"{CB_USER}\"\npassword_env = \"CB_PASSWORD\"\nmax_retry_seconds = 2\n{}\n",
            self.platform_port,
            self.spool().display(),
            self.extra_config,
            self.app_port,
            self.callbacks_config
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub fn gateway_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).arg("--config").arg(self.config_path());
        for (k, _) in std::env::vars() {
            if k.starts_with("ONESEAL_") || k.starts_with("AWS_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CB_PASSWORD", CB_PASS);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Starts the gateway and waits for its admin and app listeners.
    ///
    /// Regression: a port chosen free can be taken by another test's process before the
    /// gateway binds it; the gateway then exits 2 naming the port in use (one CI run failed
    /// so). Then it is started again on fresh ports, at most three times; any other early
    /// exit fails with the gateway's log.
    pub fn start_gateway(&mut self) {
        for attempt in 1.. {
            self.write_config();
            let log = std::fs::File::create(self.dir.path().join("gateway.log")).unwrap();
            let args: &[&str] = if self.log_json {
                &["gateway", "--log-format", "json"]
            } else {
                &["gateway"]
            };
            let mut child = self
                .gateway_cmd(args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            let up = try_wait_port(self.ports[2], 60, &mut child)
                .and_then(|()| try_wait_port(self.ports[0], 10, &mut child));
            match up {
                Ok(()) => {
                    self.gateway = Some(Proc(child));
                    return;
                }
                Err(NotListening::Exited(_)) if attempt < 3 && self.log().contains("in use") => {
                    self.ports = free_ports();
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("gateway not listening ({e:?}); its log:\n{}", self.log());
                }
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn start_app(&mut self) {
        self.start_app_with(&[]);
    }

    /// The fake app with extra arguments (`--signing-secret whsec_…`).
    pub fn start_app_with(&mut self, args: &[&str]) {
        let port = self.app_port;
        self.app = Some(python_server("fake_app.py", port, args, &[]));
    }

    pub fn app_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[0])
    }
    pub fn public_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[1])
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[2])
    }
    pub fn platform_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.platform_port)
    }

    pub fn platform_records(&self) -> Vec<Value> {
        get(&self.platform_url("/_records"))
            .json()
            .as_array()
            .unwrap()
            .clone()
    }
    pub fn app_records(&self) -> Vec<Value> {
        get(&format!("http://127.0.0.1:{}/_records", self.app_port))
            .json()
            .as_array()
            .unwrap()
            .clone()
    }
    pub fn platform_mode(&self, mode: &str) {
        post_json(&self.platform_url("/_mode"), &json!({"mode": mode}));
    }

    /// POSTs plain JSON to the app side with the app's Authorization.
    pub fn send(&self, path: &str, body: &[u8]) -> http::Answer {
        http::request(
            "POST",
            &self.app_url(path),
            &[
                ("Authorization", APP_KEY),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .unwrap()
    }

    /// A platform-style encrypted callback (sealed by the fake platform), POSTed with auth.
    pub fn callback(&self, plain: &Value, auth: Option<(&str, &str)>) -> http::Answer {
        let sealed = post_json(&self.platform_url("/_seal"), &json!({"plain": plain})).json();
        self.post_callback(&sealed, auth)
    }

    pub fn post_callback(&self, sealed: &Value, auth: Option<(&str, &str)>) -> http::Answer {
        let basic =
            auth.map(|(u, p)| format!("Basic {}", b64::encode(format!("{u}:{p}").as_bytes())));
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(b) = &basic {
            h.push(("Authorization", b.as_str()));
        }
        http::request(
            "POST",
            &self.public_url("/callbacks"),
            &h,
            sealed.to_string().as_bytes(),
        )
        .unwrap()
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        let mut p = self.gateway.take().unwrap();
        let st = Command::new("kill")
            .args(["-TERM", &p.0.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let t = Instant::now();
        loop {
            if let Some(s) = p.0.try_wait().unwrap() {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(40),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

pub fn fixture(rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(root().join("fixtures").join(rel)).unwrap()).unwrap()
}

pub fn fixtures_under(sub: &str) -> Vec<PathBuf> {
    fixtures()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(sub))
        .collect()
}
