//! A local KMS API for the tests: moto's server on a free loopback port, plus a counting,
//! fault-injecting loopback proxy in front of it. A missing moto is a test failure, never a
//! skip: `scripts/setup-test-env.sh` (run by the README's test command) installs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The moto server, started once per test process and stopped when the process exits (its
/// watchdog wrapper ends it when our stdin pipe closes).
pub struct Moto {
    pub url: String,
    _child: Mutex<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

pub fn moto() -> &'static Moto {
    static M: OnceLock<Moto> = OnceLock::new();
    M.get_or_init(|| {
        let port = free_port();
        // The wrapper terminates moto as soon as this test process goes away.
        let watchdog = format!(
            "import subprocess,sys\np=subprocess.Popen([sys.executable,'-m','moto.server','-H','127.0.0.1','-p','{port}'],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)\ntry:\n    sys.stdin.read()\nfinally:\n    p.terminate()\n"
        );
        let child = Command::new("python3")
            .args(["-c", &watchdog])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 must be installed to run moto (scripts/setup-test-env.sh)");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on 127.0.0.1:{port}: install it with `pip install 'moto[server]'` (scripts/setup-test-env.sh does)"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            url: format!("http://127.0.0.1:{port}"),
            _child: Mutex::new(child),
        }
    })
}

/// Environment for talking to moto: fake credentials, fixed region.
pub fn aws_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ]
}

/// Creates a symmetric KMS key in moto; returns its ARN.
pub fn create_key(url: &str) -> String {
    let code = format!(
        "import boto3\nc=boto3.client('kms',endpoint_url='{url}',region_name='us-east-1',aws_access_key_id='testing',aws_secret_access_key='testing')\nprint(c.create_key()['KeyMetadata']['Arn'])"
    );
    let o = Command::new("python3")
        .args(["-c", &code])
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "create_key: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// What the proxy should do to upcoming requests.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Answer this many requests with ThrottlingException before passing requests on.
    pub throttle_next: usize,
    /// Answer every request with AccessDeniedException.
    pub deny: bool,
    /// Accept and never answer (a hanging endpoint).
    pub hang: bool,
}

/// A loopback proxy in front of moto that counts KMS operations at the wire and injects faults.
pub struct Proxy {
    pub url: String,
    pub faults: Arc<Mutex<Faults>>,
    pub generate: Arc<AtomicUsize>,
    pub decrypt: Arc<AtomicUsize>,
    pub total: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = upstream.trim_start_matches("http://").to_string();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let (generate, decrypt, total) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (f, g, d, t) = (
            faults.clone(),
            generate.clone(),
            decrypt.clone(),
            total.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (f, g, d, t, up) =
                    (f.clone(), g.clone(), d.clone(), t.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &up, &f, &g, &d, &t);
                });
            }
        });
        Proxy {
            url,
            faults,
            generate,
            decrypt,
            total,
        }
    }

    pub fn set(&self, faults: Faults) {
        *self.faults.lock().expect("faults lock") = faults;
    }

    pub fn reset_counts(&self) {
        self.generate.store(0, Ordering::SeqCst);
        self.decrypt.store(0, Ordering::SeqCst);
        self.total.store(0, Ordering::SeqCst);
    }
}

fn error_response(kind: &str, msg: &str) -> Vec<u8> {
    let body = format!("{{\"__type\":\"{kind}\",\"message\":\"{msg}\"}}");
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn serve(
    conn: TcpStream,
    upstream: &str,
    faults: &Mutex<Faults>,
    generate: &AtomicUsize,
    decrypt: &AtomicUsize,
    total: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut target = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if let Some(v) = lower.strip_prefix("x-amz-target:") {
            target = v.trim().to_string();
        }
        if lower.starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    total.fetch_add(1, Ordering::SeqCst);
    if target.ends_with(".generatedatakey") {
        generate.fetch_add(1, Ordering::SeqCst);
    } else if target.ends_with(".decrypt") {
        decrypt.fetch_add(1, Ordering::SeqCst);
    }
    let mut out = conn;
    {
        let mut f = faults.lock().expect("faults lock");
        if f.hang {
            drop(f);
            std::thread::sleep(Duration::from_secs(120));
            return Ok(());
        }
        if f.deny {
            return out.write_all(&error_response(
                "AccessDeniedException",
                "User: arn:aws:iam::000000000000:user/test is not authorized to perform this operation",
            ));
        }
        if f.throttle_next > 0 {
            f.throttle_next -= 1;
            return out.write_all(&error_response("ThrottlingException", "Rate exceeded"));
        }
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&head)?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    out.write_all(&resp)
}
