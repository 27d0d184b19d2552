//! Callbacks on a shared queue, end to end: two gateway replicas sharing a backend (Redis
//! Streams from Debian's redis-server, or SQS and S3 from moto), an independent fake platform
//! sealing callbacks and a fake app that is down at first. A missing server is a failing test.

mod support;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oneseal::core::{b64, without_bookkeeping};
use serde_json::Value;
use support::gateway::*;
use support::http::{eventually, free_port, get, Proc};
use support::moto::{aws_env, moto};
use support::*;

/// A redis-server of its own, on disk the way the README says makes "answered 200" mean
/// "on disk": the append-only file, fsynced at every write.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
}

impl Redis {
    fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: tempdir(),
            proc: None,
        };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/setup-test-env.sh installs it)");
        support::http::wait_port(self.port, 20, &mut child);
        self.proc = Some(Proc(child));
    }

    fn stop(&mut self) {
        self.proc = None;
    }

    fn cli(&self, args: &[&str]) -> String {
        let o = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn config(&self) -> String {
        format!(
            "[gateway.queue]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}/0\"\nlease_seconds = 10\n",
            self.port
        )
    }
}

/// SQS queues and an S3 bucket of their own in moto.
struct Sqs {
    queue_url: String,
    dead_url: String,
    bucket: String,
}

fn boto(code: &str) -> String {
    let prelude = format!(
        "import boto3,json,sys\nkw=dict(endpoint_url='{}',region_name='us-east-1',aws_access_key_id='testing',aws_secret_access_key='testing')\nsqs=boto3.client('sqs',**kw)\ns3=boto3.client('s3',**kw)\n",
        moto().url
    );
    let o = Command::new("python3")
        .args(["-c", &format!("{prelude}{code}")])
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl Sqs {
    fn create() -> Sqs {
        let n = free_port();
        let out = boto(&format!(
            "q=sqs.create_queue(QueueName='cb{n}')['QueueUrl']\nd=sqs.create_queue(QueueName='cb{n}-dead')['QueueUrl']\ns3.create_bucket(Bucket='cb{n}')\nprint(json.dumps([q,d]))"
        ));
        let urls: Vec<String> = serde_json::from_str(&out).unwrap();
        Sqs {
            queue_url: urls[0].clone(),
            dead_url: urls[1].clone(),
            bucket: format!("cb{n}"),
        }
    }

    fn config(&self) -> String {
        format!(
            "[gateway.queue]\nkind = \"sqs\"\nqueue_url = \"{}\"\ndead_letter_queue_url = \"{}\"\nlarge_payload_bucket = \"{}\"\ns3_force_path_style = true\nlease_seconds = 10\n",
            self.queue_url, self.dead_url, self.bucket
        )
    }

    fn objects(&self) -> usize {
        boto(&format!(
            "print(s3.list_objects_v2(Bucket='{}').get('KeyCount',0))",
            self.bucket
        ))
        .parse()
        .unwrap()
    }

    fn dead(&self) -> usize {
        boto(&format!(
            "print(sqs.get_queue_attributes(QueueUrl='{}',AttributeNames=['ApproximateNumberOfMessages'])['Attributes']['ApproximateNumberOfMessages'])",
            self.dead_url
        ))
        .parse()
        .unwrap()
    }
}

/// A replica on the local key (the same key for every rig) whose callbacks go through
/// `queue`; its deliveries give up after 5 s.
fn replica(queue: &str, app_port: Option<u16>) -> Rig {
    let mut r = Rig::local(&format!("upstream_timeout_seconds = 5\n{queue}"));
    for (k, v) in aws_env() {
        r.env.push((k.into(), v.into()));
    }
    r.env
        .push(("AWS_ENDPOINT_URL_SQS".into(), moto().url.clone()));
    r.env
        .push(("AWS_ENDPOINT_URL_S3".into(), moto().url.clone()));
    if let Some(p) = app_port {
        r.app_port = p;
    }
    r
}

/// An app that accepts connections and never answers: deliveries hang on it.
struct HungApp {
    stop: Arc<AtomicBool>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HungApp {
    fn on(port: u16) -> HungApp {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        held.push(c);
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HungApp {
            stop,
            accepted,
            thread: Some(thread),
        }
    }
}

impl Drop for HungApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mo_text(i: usize) -> Value {
    let mut p = fixture("one-api/callbacks/mo_text.json");
    p["event"]["moText"][0]["messageId"] = format!("m{i}").into();
    p["event"]["moText"][0]["content"] = format!("secret {i}").into();
    p
}

fn ids_at_app(r: &Rig) -> Vec<String> {
    let mut ids: Vec<String> = r
        .app_records()
        .iter()
        .filter_map(|x| {
            x["body"]["event"]["moText"][0]["messageId"]
                .as_str()
                .map(String::from)
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// [`eventually`], printing the gateways' logs when it times out.
fn eventually_logged<T>(rigs: &[&Rig], secs: u64, what: &str, f: impl FnMut() -> Option<T>) -> T {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eventually(secs, what, f)));
    match r {
        Ok(v) => v,
        Err(e) => {
            for (i, r) in rigs.iter().enumerate() {
                eprintln!("--- gateway {i} log ---\n{}", r.log());
            }
            std::panic::resume_unwind(e)
        }
    }
}

fn sigkill(r: &mut Rig) {
    let mut g = r.gateway.take().unwrap();
    g.0.kill().unwrap();
    g.0.wait().unwrap();
}

/// Replica A takes 20 callbacks and is SIGKILLed while delivering them to an app that hangs;
/// replica B, started afterwards, delivers every one (their leases ran out) once the app is up,
/// decrypted.
fn a_killed_replicas_callbacks_are_delivered_by_the_other(queue: &str) {
    let mut a = replica(queue, None);
    let mut b = replica(queue, Some(a.app_port));
    let hung = HungApp::on(a.app_port);
    a.start_gateway();
    let mut sent = Vec::new();
    for i in 0..20 {
        let p = mo_text(i);
        assert_eq!(a.callback(&p, Some((CB_USER, CB_PASS))).status, 200);
        sent.push(p);
    }
    eventually(10, "deliveries under way at the hung app", || {
        (hung.accepted.load(Ordering::Relaxed) > 0).then_some(())
    });
    sigkill(&mut a);
    drop(hung);
    b.start_gateway();
    a.start_app();
    let ids = eventually_logged(&[&a, &b], 90, "20 callbacks at the app", || {
        let ids = ids_at_app(&a);
        (ids.len() >= 20).then_some(ids)
    });
    assert_eq!(ids.len(), 20);
    for x in a.app_records() {
        let id = x["body"]["event"]["moText"][0]["messageId"].clone();
        let want = sent
            .iter()
            .find(|s| s["event"]["moText"][0]["messageId"] == id)
            .unwrap();
        assert_eq!(without_bookkeeping(&x["body"], want), *want);
    }
}

#[test]
fn redis_a_killed_replicas_callbacks_are_delivered_by_the_other() {
    let redis = Redis::start();
    a_killed_replicas_callbacks_are_delivered_by_the_other(&redis.config());
    eventually(20, "an empty stream", || {
        (redis.cli(&["XLEN", "oneseal:callbacks"]) == "0"
            && redis.cli(&["ZCARD", "oneseal:callbacks:delayed"]) == "0")
            .then_some(())
    });
}

#[test]
fn sqs_a_killed_replicas_callbacks_are_delivered_by_the_other() {
    let sqs = Sqs::create();
    a_killed_replicas_callbacks_are_delivered_by_the_other(&sqs.config());
}

#[test]
fn sqs_a_one_mib_inline_media_callback_arrives_intact_and_its_s3_object_is_deleted() {
    let sqs = Sqs::create();
    let mut r = replica(&sqs.config(), None);
    r.start_gateway();
    let mut bytes = vec![0u8; 1 << 20];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    let mut p = fixture("one-api/callbacks/mo_text.json");
    let item = &mut p["event"]["moText"][0];
    item["messageId"] = "big".into();
    item["contentType"] = "image/png".into();
    item["content"] = b64::encode(&bytes).into();
    assert_eq!(r.callback(&p, Some((CB_USER, CB_PASS))).status, 200);
    eventually(20, "the claim-checked body in S3", || {
        (sqs.objects() == 1).then_some(())
    });
    r.start_app();
    let got = eventually(60, "the callback at the app", || {
        r.app_records().into_iter().next()
    });
    let item = &got["body"]["event"]["moText"][0];
    assert_eq!(
        b64::decode(item["content"].as_str().unwrap()).unwrap(),
        bytes
    );
    eventually(20, "the S3 object deleted", || {
        (sqs.objects() == 0).then_some(())
    });
}

/// A plaintext callback in an encrypted integration is refused for good: it lands in the
/// backend's dead letters with the reason; `oneseal gateway replay` brings it back, and a
/// gateway that now accepts plaintext delivers it.
fn a_dead_letter_is_replayed(queue: &str, dead: &dyn Fn() -> usize) {
    let mut r = replica(queue, None);
    r.start_app();
    r.start_gateway();
    let plain = mo_text(1);
    assert_eq!(
        r.post_callback(&plain, Some((CB_USER, CB_PASS))).status,
        200
    );
    eventually(30, "the callback in the dead letters", || {
        (dead() == 1).then_some(())
    });
    assert!(r
        .log()
        .contains("plaintext content in an encrypted integration"));
    assert!(r.app_records().is_empty());
    r.sigterm();
    r.callbacks_config = "accept_plaintext = true\n".into();
    r.write_config();
    let o = r.gateway_cmd(&["gateway", "replay"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("re-queued 1"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    r.start_gateway();
    eventually(30, "the replayed callback at the app", || {
        (ids_at_app(&r) == vec!["m1".to_string()]).then_some(())
    });
    assert_eq!(dead(), 0);
}

#[test]
fn redis_a_dead_letter_is_replayed() {
    let redis = Redis::start();
    let dead = || {
        redis
            .cli(&["XLEN", "oneseal:callbacks:dead"])
            .parse()
            .unwrap_or(0)
    };
    a_dead_letter_is_replayed(&redis.config(), &dead);
}

#[test]
fn sqs_a_dead_letter_is_replayed() {
    let sqs = Sqs::create();
    a_dead_letter_is_replayed(&sqs.config(), &|| sqs.dead());
}

/// The queue down: the callback route answers 503 (the platform retries), never a 200 for a
/// callback that is not stored; what was acknowledged before survives Redis's restart (the
/// append-only file) and is delivered; `/readyz` reports the queue.
#[test]
fn redis_down_means_503_and_nothing_acknowledged_is_lost() {
    let mut redis = Redis::start();
    let mut r = replica(&redis.config(), None);
    r.start_gateway();
    assert_eq!(
        r.callback(&mo_text(1), Some((CB_USER, CB_PASS))).status,
        200
    );
    redis.stop();
    let a = r.callback(&mo_text(2), Some((CB_USER, CB_PASS)));
    assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
    assert!(String::from_utf8_lossy(&a.body).contains("queue_unavailable"));
    let ready = eventually(20, "/readyz reporting the queue down", || {
        let v = get(&r.admin_url("/readyz")).json();
        v["queue"]["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("unreachable"))
            .then_some(v)
    });
    assert!(ready["queue"]["backend"]
        .as_str()
        .unwrap()
        .starts_with("redis "));
    redis.restart();
    r.start_app();
    eventually_logged(&[&r], 60, "the acknowledged callback at the app", || {
        (ids_at_app(&r) == vec!["m1".to_string()]).then_some(())
    });
    assert_eq!(
        r.callback(&mo_text(3), Some((CB_USER, CB_PASS))).status,
        200
    );
    eventually(30, "the later callback at the app", || {
        (ids_at_app(&r).len() == 2).then_some(())
    });
    assert_eq!(ids_at_app(&r), vec!["m1".to_string(), "m3".to_string()]);
}

#[test]
fn queue_metrics_report_depth_and_dead_letters() {
    let redis = Redis::start();
    let mut r = replica(&redis.config(), None);
    r.start_gateway();
    for i in 0..3 {
        assert_eq!(
            r.callback(&mo_text(i), Some((CB_USER, CB_PASS))).status,
            200
        );
    }
    eventually(20, "the queue depth in /metrics", || {
        let m = String::from_utf8(get(&r.admin_url("/metrics")).body).unwrap();
        (m.contains("oneseal_queue_depth 3") && m.contains("oneseal_queue_oldest_age_seconds"))
            .then_some(())
    });
}
