//! A minimal HTTP/1.1 client for the gateway tests (a request per connection, or several on
//! a kept-alive one; loopback only), and process helpers: free ports, children killed on
//! drop, waiting for a port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{e}: status {} body {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends one request to `http://127.0.0.1:PORT/path` on a connection of its own.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Conn::open(host)?.send(method, path, headers, body, true)
}

/// A kept-alive connection: requests one after another, as an app's HTTP client pool does.
pub struct Conn {
    host: String,
    r: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to `host` (`127.0.0.1:PORT`).
    pub fn open(host: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect(host)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn {
            host: host.to_string(),
            r: BufReader::new(s),
        })
    }

    /// Sends a request on this connection and reads its answer (`close`: ask the server to
    /// close the connection after it).
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        close: bool,
    ) -> std::io::Result<Answer> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{}Content-Length: {}\r\n",
            self.host,
            if close { "Connection: close\r\n" } else { "" },
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let s = self.r.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let r = &mut self.r;
        let mut line = String::new();
        r.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                if n == 0 {
                    break;
                }
                let mut chunk = vec![0; n];
                r.read_exact(&mut chunk)?;
                body.extend_from_slice(&chunk);
                line.clear();
                r.read_line(&mut line)?;
            }
            // The (empty) trailer section ends the message.
            line.clear();
            r.read_line(&mut line)?;
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        } else {
            r.read_to_end(&mut body)?;
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

pub fn get(url: &str) -> Answer {
    request("GET", url, &[], b"").unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

pub fn post_json(url: &str, body: &serde_json::Value) -> Answer {
    request(
        "POST",
        url,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `N` distinct loopback ports nothing listens on right now: all are held until all are
/// chosen (one at a time, the kernel may hand the same port out twice).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("free port").port())
}

/// How waiting for a port ended, short of success.
#[derive(Debug)]
pub enum NotListening {
    /// The process exited first (its status).
    Exited(std::process::ExitStatus),
    /// Nothing listened within the time given.
    TimedOut,
}

/// Waits until something accepts connections on `port`, for at most `secs`, while `child`
/// runs.
pub fn try_wait_port(port: u16, secs: u64, child: &mut Child) -> Result<(), NotListening> {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(NotListening::Exited(st));
        }
        if t.elapsed() >= Duration::from_secs(secs) {
            return Err(NotListening::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}

/// Waits until something accepts connections on `port` (or panics after `secs`).
pub fn wait_port(port: u16, secs: u64, child: &mut Child) {
    match try_wait_port(port, secs, child) {
        Ok(()) => {}
        Err(NotListening::Exited(st)) => {
            panic!("process exited with {st} before listening on {port}")
        }
        Err(NotListening::TimedOut) => panic!("nothing listening on {port} after {secs} s"),
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` until it returns `Some` (or panics after `secs`).
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `scripts/<script> --port <port> <extra…>` (a Python fake) and waits for its port.
pub fn python_server(script: &str, port: u16, extra: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut c = std::process::Command::new("python3");
    c.arg(super::root().join("scripts").join(script))
        .arg("--port")
        .arg(port.to_string())
        .args(extra)
        .current_dir(super::root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .spawn()
        .expect("python3 (scripts/setup-test-env.sh installs it)");
    wait_port(port, 30, &mut child);
    Proc(child)
}
