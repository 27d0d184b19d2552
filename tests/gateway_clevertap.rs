//! The CleverTap bridge end to end (issue 13): `oneseal gateway` with `[gateway.clevertap]`,
//! the fake platform (scripts/fake_platform.py: decrypts what it receives with its own
//! implementation of the wire format), a fake CleverTap with its DLR and incoming-message
//! receivers and a fake media host (scripts/fake_clevertap.py). CleverTap's side of the
//! sends is this test, posting reference 003's payloads (fixtures/clevertap/).

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oneseal::core::b64;
use serde_json::{json, Value};
use support::http::{self, eventually, free_ports, get, post_json, python_server, wait_port, Proc};
use support::*;

const CT_USER: &str = "clevertap";
const CT_PASS: &str = "ct-basic-password-long";
const CB_USER: &str = "clickatell";
const CB_PASS: &str = "cb-basic-password-long";
const LINK_SECRET: &str = "0123456789abcdef0123456789abcdef-link-secret";
/// The bridge's One API key (what the fake platform expects on downloads).
const API_KEY: &str = "Bearer app-key";

struct Rig {
    dir: tempfile::TempDir,
    ports: [u16; 3],
    platform_port: u16,
    ct_port: u16,
    _platform: Proc,
    _clevertap: Proc,
    gateway: Option<Proc>,
    extra: String,
}

impl Rig {
    fn new() -> Rig {
        Rig::with("")
    }

    /// `extra` goes into the `[gateway]` table.
    fn with(extra: &str) -> Rig {
        let dir = tempdir();
        let key = dir.path().join("local.key");
        std::fs::write(&key, [0x42u8; 32]).unwrap();
        let [platform_port, ct_port, a, p, m] = free_ports();
        let platform = python_server(
            "fake_platform.py",
            platform_port,
            &["--local-key", key.to_str().unwrap()],
            &[],
        );
        let clevertap = python_server("fake_clevertap.py", ct_port, &[], &[]);
        let mut r = Rig {
            dir,
            ports: [a, p, m],
            platform_port,
            ct_port,
            _platform: platform,
            _clevertap: clevertap,
            gateway: None,
            extra: extra.to_string(),
        };
        r.start_gateway();
        r
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("local.key")
    }

    fn start_gateway(&mut self) {
        let [a, p, m] = self.ports;
        let c = self.ct_port;
        let cfg = format!(
            "[gateway]\napp_listen = \"127.0.0.1:{a}\"\npublic_listen = \"127.0.0.1:{p}\"\nadmin_listen = \"127.0.0.1:{m}\"\n\
             upstream = \"http://127.0.0.1:{}\"\nspool_dir = \"{}\"\npublic_url = \"http://127.0.0.1:{p}/\"\n{}\n\
             [gateway.clevertap]\nusername = \"{CT_USER}\"\npassword_env = \"CT_PASSWORD\"\none_api_key_env = \"CT_ONE_API_KEY\"\n\
             dlr_url = \"http://127.0.0.1:{c}/dlr\"\nimo_url = \"http://127.0.0.1:{c}/imo\"\nwaba_number = \"+27990000099\"\n\
             media_hosts = [\"127.0.0.1:{c}\"]\nmedia_link_secret_env = \"CT_LINK_SECRET\"\n\
             callback_username = \"{CB_USER}\"\ncallback_password_env = \"CB_PASSWORD\"\n",
            self.platform_port,
            self.dir.path().join("spool").display(),
            self.extra,
        );
        let path = self.dir.path().join("oneseal.toml");
        std::fs::write(&path, cfg).unwrap();
        let mut c = Command::new(bin());
        c.args(["gateway", "--config"]).arg(&path);
        for (k, _) in std::env::vars() {
            if k.starts_with("ONESEAL_") || k.starts_with("AWS_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        let log = std::fs::File::create(self.dir.path().join("gateway.log")).unwrap();
        let mut child = c
            .env("ONESEAL_LOCAL_KEY", self.key_path())
            .env("CT_PASSWORD", CT_PASS)
            .env("CB_PASSWORD", CB_PASS)
            .env("CT_ONE_API_KEY", API_KEY)
            .env("CT_LINK_SECRET", LINK_SECRET)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_port(m, 60, &mut child);
        wait_port(p, 10, &mut child);
        self.gateway = Some(Proc(child));
    }

    fn media_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.ct_port)
    }

    fn public(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[1])
    }

    /// CleverTap's send: the payload with its basic auth; returns status, body, time taken.
    fn send_as(&self, payload: &Value, user: &str, pass: &str) -> (http::Answer, Duration) {
        let basic = format!("Basic {}", b64::encode(format!("{user}:{pass}").as_bytes()));
        let t = Instant::now();
        let a = http::request(
            "POST",
            &self.public("/clevertap/messages"),
            &[
                ("Authorization", basic.as_str()),
                ("Content-Type", "application/json"),
            ],
            payload.to_string().as_bytes(),
        )
        .unwrap();
        (a, t.elapsed())
    }

    fn send(&self, payload: &Value) -> Value {
        let (a, took) = self.send_as(payload, CT_USER, CT_PASS);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert!(took < Duration::from_secs(1), "answered in {took:?}");
        a.json()
    }

    fn platform(&self) -> Vec<Value> {
        get(&format!("http://127.0.0.1:{}/_records", self.platform_port))
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    fn clevertap(&self) -> Value {
        get(&format!("{}/_records", self.media_base())).json()
    }

    fn fetches(&self, name: &str) -> u64 {
        self.clevertap()["fetches"][name].as_u64().unwrap_or(0)
    }

    fn file(&self, name: &str) -> Vec<u8> {
        get(&format!("{}/_file/{name}", self.media_base())).body
    }

    fn callback(&self, plain: &Value) -> http::Answer {
        let sealed = post_json(
            &format!("http://127.0.0.1:{}/_seal", self.platform_port),
            &json!({"plain": plain}),
        )
        .json();
        self.post_callback(&sealed, CB_PASS)
    }

    fn post_callback(&self, doc: &Value, pass: &str) -> http::Answer {
        let basic = format!(
            "Basic {}",
            b64::encode(format!("{CB_USER}:{pass}").as_bytes())
        );
        http::request(
            "POST",
            &self.public("/clevertap/callbacks"),
            &[
                ("Authorization", basic.as_str()),
                ("Content-Type", "application/json"),
            ],
            doc.to_string().as_bytes(),
        )
        .unwrap()
    }

    fn metrics(&self) -> String {
        String::from_utf8(get(&format!("http://127.0.0.1:{}/metrics", self.ports[2])).body).unwrap()
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn fixture(name: &str, media: &str) -> Value {
    let text = std::fs::read_to_string(root().join("fixtures/clevertap").join(name)).unwrap();
    serde_json::from_str(&text.replace("{MEDIA}", media)).unwrap()
}

/// The messages the platform received (decrypted by it) since record `from`.
fn messages(recs: &[Value]) -> Vec<&Value> {
    recs.iter().filter(|r| r["path"] == "/v1/message").collect()
}

fn uploads(recs: &[Value]) -> Vec<&Value> {
    recs.iter()
        .filter(|r| r["path"] == "POST /v1/media")
        .collect()
}

#[test]
fn every_clevertap_payload_is_sent_encrypted_or_refused_whole() {
    let r = Rig::new();
    let media = r.media_base();
    let mut names: Vec<String> = std::fs::read_dir(root().join("fixtures/clevertap"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 18, "{names:?}");
    for name in &names {
        let f = fixture(name, &media);
        let before = r.platform();
        let answer = r.send(&f["payload"]);
        let after = r.platform();
        let new: Vec<Value> = after[before.len()..].to_vec();
        if f["validation"] == true {
            assert_eq!(answer, json!({"status": "success"}), "{name}");
            assert!(
                new.is_empty(),
                "{name}: the validation payload sent {new:?}"
            );
        } else if let Some(code) = f["refused"].as_u64() {
            assert_eq!(answer["status"], "failure", "{name}: {answer}");
            assert_eq!(answer["error"]["code"], code, "{name}: {answer}");
            let msg = answer["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains(f["message"].as_str().unwrap()),
                "{name}: {msg}"
            );
            assert!(new.is_empty(), "{name}: refused but sent {new:?}");
        } else {
            assert_eq!(answer, json!({"status": "success"}), "{name}");
            let msgs = messages(&new);
            assert_eq!(msgs.len(), 1, "{name}: {new:?}");
            let m = msgs[0];
            assert!(m.get("error").is_none(), "{name}: {m}");
            assert_eq!(m["authorization"], API_KEY, "{name}");
            let mut got = m["plain"]["messages"][0].clone();
            let mut expect = f["expect"].clone();
            // The media upload made for it: encrypted, the right hash, per recipient for a
            // template (never broadcast), broadcast for freeform.
            let ups = uploads(&new);
            if expect.to_string().contains("{FILE}") {
                assert_eq!(ups.len(), 1, "{name}: {ups:?}");
                let up = ups[0];
                assert_eq!(up["hashOk"], true, "{name}: {up}");
                let url = f["payload"].to_string();
                let file = url
                    .split("/media/")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string();
                assert_eq!(up["plainSha256"], sha256_hex(&r.file(&file)), "{name}");
                assert_eq!(up["authorization"], API_KEY);
                if name.starts_with("template") {
                    assert_eq!(up["query"]["to"], got["to"], "{name}");
                    assert!(up["query"].get("broadcastAllowed").is_none(), "{name}");
                } else {
                    assert_eq!(up["query"]["broadcastAllowed"], "true", "{name}");
                    assert!(up["query"].get("to").is_none(), "{name}");
                }
                let fid = up["fileId"].as_str().unwrap();
                expect = serde_json::from_str(&expect.to_string().replace("{FILE}", fid)).unwrap();
            } else {
                assert!(ups.is_empty(), "{name}");
            }
            // The platform's record has encryptionKey removed after decrypting.
            got.as_object_mut().unwrap().remove("encryptionKey");
            assert_eq!(got, expect, "{name}");
            // On the wire every parameter was ciphertext.
            let wire = m["encrypted"]["messages"][0].to_string();
            for leaf in [
                "Sample ✓ Zoë",
                "A-1042",
                "Thandi",
                "resched-A-1042",
                "R1 042,17",
                "This is body",
            ] {
                assert!(
                    !wire.contains(leaf),
                    "{name}: {leaf} in plaintext on the wire"
                );
            }
            assert!(
                m["encrypted"]["messages"][0]["encryptionKey"].is_string(),
                "{name}"
            );
        }
    }

    // Bad basic auth: 401, nothing sent.
    let before = r.platform().len();
    let (a, _) = r.send_as(
        &fixture("freeform_text.json", &media)["payload"],
        CT_USER,
        "wrong",
    );
    assert_eq!(a.status, 401);
    assert_eq!(r.platform().len(), before);
    // Not JSON: 400 in CleverTap's format.
    let basic = format!(
        "Basic {}",
        b64::encode(format!("{CT_USER}:{CT_PASS}").as_bytes())
    );
    let a = http::request(
        "POST",
        &r.public("/clevertap/messages"),
        &[("Authorization", basic.as_str())],
        b"{not json",
    )
    .unwrap();
    assert_eq!(a.status, 400);
    assert_eq!(a.json(), json!({"message": "Bad Request"}));
    // The host that was not allowed was never contacted (it is not even the media host),
    // and the refused carousel's card image was never fetched.
    assert_eq!(r.fetches("card1.jpg"), 0);
    assert_eq!(r.fetches("lto.jpg"), 0);
    // A host not in media_hosts, even the same machine under another name.
    let mut p = fixture("template_image_header.json", &media)["payload"].clone();
    p["components"][0]["header"]["image"]["mediaURL"] =
        format!("http://localhost:{}/media/other.jpg", r.ct_port).into();
    let answer = r.send(&p);
    assert_eq!(answer["error"]["code"], 2001, "{answer}");
    assert_eq!(r.fetches("other.jpg"), 0);
    assert_eq!(r.platform().len(), before);

    // The freeform image again, twice: its broadcast fileId is reused, nothing re-fetched.
    let img = fixture("freeform_image.json", &media);
    let before = r.platform().len();
    for i in 0..2 {
        let mut p = img["payload"].clone();
        p["msg_id"] = format!("again-{i}").into();
        assert_eq!(r.send(&p), json!({"status": "success"}));
    }
    let recs = r.platform();
    let new = &recs[before..];
    assert!(uploads(new).is_empty(), "{new:?}");
    let first_fid = recs
        .iter()
        .find(|x| x["path"] == "POST /v1/media" && x["query"]["fileName"] == "promo.png")
        .unwrap()["fileId"]
        .clone();
    for m in messages(new) {
        assert_eq!(m["plain"]["messages"][0]["media"]["fileId"], first_fid);
    }
    assert_eq!(r.fetches("promo.png"), 1);
    let metrics = r.metrics();
    assert!(
        metrics.contains(r#"oneseal_clevertap_requests_total{kind="template",outcome="2001"}"#),
        "{metrics}"
    );
}

#[test]
fn a_shared_header_image_is_fetched_once_and_uploaded_per_recipient() {
    let r = Rig::new();
    let f = fixture("template_image_header.json", &r.media_base());
    let n = 50;
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let mut p = f["payload"].clone();
            p["to"] = format!("+2782{:07}", i).into();
            p["msgId"] = format!("campaign|{i}").into();
            let url = r.public("/clevertap/messages");
            std::thread::spawn(move || {
                let basic = format!(
                    "Basic {}",
                    b64::encode(format!("{CT_USER}:{CT_PASS}").as_bytes())
                );
                let t = Instant::now();
                let a = http::request(
                    "POST",
                    &url,
                    &[
                        ("Authorization", basic.as_str()),
                        ("Content-Type", "application/json"),
                    ],
                    p.to_string().as_bytes(),
                )
                .unwrap();
                (a.status, a.json(), t.elapsed())
            })
        })
        .collect();
    for t in threads {
        let (status, body, took) = t.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, json!({"status": "success"}));
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    assert_eq!(
        r.fetches("banner.jpg"),
        1,
        "one fetch for 50 concurrent sends"
    );
    let recs = r.platform();
    let ups = uploads(&recs);
    let msgs = messages(&recs);
    assert_eq!(ups.len(), n);
    assert_eq!(msgs.len(), n);
    let sha = sha256_hex(&r.file("banner.jpg"));
    for up in &ups {
        assert_eq!(up["hashOk"], true);
        assert_eq!(up["plainSha256"], sha);
        assert!(up["query"].get("broadcastAllowed").is_none());
    }
    // Each message uses the fileId uploaded for its own recipient.
    for m in msgs {
        let plain = &m["plain"]["messages"][0];
        let to = plain["to"].as_str().unwrap();
        let up = ups.iter().find(|u| u["query"]["to"] == to).unwrap();
        assert_eq!(plain["template"]["header"]["media"]["fileId"], up["fileId"]);
    }
}

/// A `moMedia` callback for a file the fake platform stores encrypted under a local data key.
fn stored_media(r: &Rig, file_id: &str, plain: &[u8], tamper: bool) -> (Value, String) {
    let src = r.dir.path().join(format!("{file_id}.plain"));
    let enc = r.dir.path().join(format!("{file_id}.enc"));
    std::fs::write(&src, plain).unwrap();
    let key = r.key_path();
    let o = oneseal(
        &[
            "media",
            "encrypt",
            src.to_str().unwrap(),
            "-o",
            enc.to_str().unwrap(),
            "--broadcast",
        ],
        None,
        &[("ONESEAL_LOCAL_KEY", key.to_str().unwrap())],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let meta: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut bytes = std::fs::read(&enc).unwrap();
    if tamper {
        bytes[500] ^= 1;
    }
    post_json(
        &format!("http://127.0.0.1:{}/_files", r.platform_port),
        &json!({"fileId": file_id, "contentType": "image/jpeg", "data": b64::encode(&bytes)}),
    );
    let sha = meta["sha256FileHash"].as_str().unwrap().to_string();
    let item = json!({"channel": "whatsapp", "messageId": format!("mo-{file_id}"), "relatedMessageId": "x",
        "relatedClientMessageId": "campaign|7", "from": "27820000007", "to": "27990000099", "timestamp": 1764590400123u64,
        "encryptionKey": meta["encryptionKey"], "caption": null, "charset": null,
        "files": [{"contentType": "image/jpeg", "downloadUrl": format!("https://platform.clickatell.com/v1/media?fileId={file_id}&sha256Hash={sha}&source=client"),
                   "sha256Hash": sha, "byteSize": plain.len(), "fileName": "photo.jpg"}]});
    (item, meta["encryptionKey"].as_str().unwrap().to_string())
}

#[test]
fn platform_callbacks_reach_clevertap_decrypted_in_its_formats() {
    let r = Rig::new();
    let ct_callbacks = |r: &Rig| r.clevertap()["callbacks"].as_array().unwrap().clone();
    // Wrong callback credentials: 401, nothing stored.
    let a = r.post_callback(&json!({"event": {"moText": []}}), "wrong");
    assert_eq!(a.status, 401);

    // Statuses → one DLR (queued not forwarded; unknown codes fail; reference 001's table).
    let st = |code: i64, name: &str, id: &str| {
        json!({"channel": "whatsapp", "timestamp": 1764590400123u64, "statusCode": code, "status": name,
               "messageId": format!("api-{id}"), "clientMessageId": id})
    };
    let status_cb = json!({"integrationId": "i", "integrationName": "n", "event": {"messageStatusUpdate": [
        st(2, "QUEUED", "m|1"), st(4, "SENT_TO_SUPPLIER", "m|1"), st(5, "DEVICE_ACK", "m|1"), st(6, "READ", "m|1"),
        st(29, "UNKNOWN_USER", "m|2"), st(131, "RE_ENGAGEMENT_REQUIRED", "m|3"), st(23, "DELIVERY_FAILURE", "m|4"),
        st(777, "SOMETHING_NEW", "m|5")]}});
    assert_eq!(r.callback(&status_cb).status, 200);
    let dlr = eventually(20, "the DLR at CleverTap", || {
        ct_callbacks(&r).into_iter().find(|c| c["path"] == "/dlr")
    });
    let ts = "1764590400";
    assert_eq!(
        dlr["body"],
        json!({"payloadVersion": "0.1", "statuses": [
            {"msgId": "m|1", "status": "sent", "timestamp": ts},
            {"msgId": "m|1", "status": "delivered", "timestamp": ts},
            {"msgId": "m|1", "status": "read", "timestamp": ts},
            {"msgId": "m|2", "status": "failed", "timestamp": ts, "error": {"code": 1002, "title": "UNKNOWN_USER"}},
            {"msgId": "m|3", "status": "failed", "timestamp": ts, "error": {"code": 1008, "title": "RE_ENGAGEMENT_REQUIRED"}},
            {"msgId": "m|4", "status": "failed", "timestamp": ts, "error": {"code": 1009, "title": "DELIVERY_FAILURE"}},
            {"msgId": "m|5", "status": "failed", "timestamp": ts, "error": {"code": 1009, "title": "SOMETHING_NEW"}}]})
    );

    // Incoming text, location and button reply: encrypted by the platform, plaintext at
    // CleverTap, context.id from relatedClientMessageId.
    let mo = |kind: &str, extra: Value| {
        let mut it = json!({"channel": "whatsapp", "messageId": format!("mo-{kind}"), "relatedMessageId": "r",
            "relatedClientMessageId": "campaign|7", "from": "27820000007", "to": "27990000099",
            "timestamp": 1764590400123u64, "whatsapp": {"profileName": "Thandi"}, "charset": null});
        for (k, v) in extra.as_object().unwrap() {
            it[k] = v.clone();
        }
        json!({"integrationId": "i", "event": {kind: [it]}})
    };
    // One API misspells latitude as "latitute".
    for cb in [
        mo("moText", json!({"content": "Is my sofa on its way? ✓"})),
        mo(
            "moLocation",
            json!({"latitute": "-33.9249", "longitude": "18.4241", "locationName": "Home", "locationAddress": "1 Long St, Cape Town"}),
        ),
        mo(
            "moSuggestedResponse",
            json!({"content": "Reschedule", "postbackData": "resched-A-1042"}),
        ),
    ] {
        assert_eq!(r.callback(&cb).status, 200);
    }
    let base = |ty: &str| {
        json!({"payloadVersion": "0.1", "from": "27820000007", "wabaNumber": "27990000099",
               "timestamp": ts, "type": ty, "context": {"id": "campaign|7"}})
    };
    let with = |mut v: Value, k: &str, x: Value| {
        v[k] = x;
        v
    };
    let want = [
        with(
            base("text"),
            "text",
            json!({"body": "Is my sofa on its way? ✓"}),
        ),
        with(
            base("location"),
            "location",
            json!({"latitude": "-33.9249", "longitude": "18.4241", "name": "Home", "address": "1 Long St, Cape Town"}),
        ),
        with(
            base("button"),
            "button",
            json!({"payload": "resched-A-1042", "text": "Reschedule"}),
        ),
    ];
    let imos = eventually(20, "3 IMOs at CleverTap", || {
        let v: Vec<Value> = ct_callbacks(&r)
            .into_iter()
            .filter(|c| c["path"] == "/imo")
            .map(|c| c["body"].clone())
            .collect();
        (v.len() >= 3).then_some(v)
    });
    for w in &want {
        assert!(imos.contains(w), "missing {w}\nin {imos:?}");
    }

    // Incoming media: a signed, expiring public link serving the verified plaintext.
    let img: Vec<u8> = (0..90_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let (item, _) = stored_media(&r, "UUID-7.jpg", &img, false);
    assert_eq!(
        r.post_callback(
            &json!({"integrationId": "i", "event": {"moMedia": [item]}}),
            CB_PASS
        )
        .status,
        200
    );
    let imo = eventually(20, "the media IMO", || {
        ct_callbacks(&r)
            .into_iter()
            .find(|c| c["path"] == "/imo" && c["body"]["type"] == "image")
    });
    let link = imo["body"]["image"]["mediaURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(imo["body"]["image"]["mimeType"], "image/jpeg");
    assert_eq!(imo["body"]["context"]["id"], "campaign|7");
    assert!(
        link.starts_with(&r.public("/clevertap/messages/media/")),
        "{link}"
    );
    let a = get(&link);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.body, img, "CleverTap gets the plaintext");
    assert_eq!(a.header("content-type"), Some("image/jpeg"));
    // Tampered links are refused before anything is fetched.
    let token = link.rsplit('/').next().unwrap();
    let (payload, sig) = token.split_once('.').unwrap();
    let fetches = |r: &Rig| {
        r.platform()
            .iter()
            .filter(|x| x["path"] == "GET /v1/media")
            .count()
    };
    let before = fetches(&r);
    let mut forged: Vec<u8> = payload.as_bytes().to_vec();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    for bad in [
        format!("{}.{sig}", String::from_utf8(forged).unwrap()),
        format!("{payload}.{}", &sig[1..]),
        payload.to_string(),
    ] {
        let a = get(&r.public(&format!("/clevertap/messages/media/{bad}")));
        assert_eq!(a.status, 403, "{bad}");
    }
    // An expired link, made and signed independently (Python hmac) with the same secret.
    let code_py = format!(
        "import base64,hashlib,hmac,json,sys\n\
         p=json.loads(base64.urlsafe_b64decode('{payload}'+'=='*2))\n\
         p['e']=1000\n\
         enc=base64.urlsafe_b64encode(json.dumps(p,separators=(',',':')).encode()).rstrip(b'=')\n\
         sig=base64.urlsafe_b64encode(hmac.new(b'{LINK_SECRET}',enc,hashlib.sha256).digest()).rstrip(b'=')\n\
         print((enc+b'.'+sig).decode())"
    );
    let (ok, expired) = python(&["-c", &code_py]);
    assert!(ok, "{expired}");
    let a = get(&r.public(&format!("/clevertap/messages/media/{}", expired.trim())));
    assert_eq!(a.status, 410, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(fetches(&r), before, "refused links fetch nothing");
    // A file altered at the platform: 502, not one plaintext byte.
    let (item, _) = stored_media(&r, "UUID-8.jpg", &img, true);
    assert_eq!(
        r.post_callback(
            &json!({"integrationId": "i", "event": {"moMedia": [item]}}),
            CB_PASS
        )
        .status,
        200
    );
    let imo = eventually(20, "the second media IMO", || {
        ct_callbacks(&r).into_iter().find(|c| {
            c["path"] == "/imo"
                && c["body"]["type"] == "image"
                && c["body"]["image"]["mediaURL"].as_str() != Some(link.as_str())
        })
    });
    let a = get(imo["body"]["image"]["mediaURL"].as_str().unwrap());
    assert_eq!(a.status, 502);
    assert!(!a.body.windows(64).any(|w| img.windows(64).any(|x| x == w)));

    // CleverTap down: the callback waits in the spool and arrives when it is back.
    post_json(
        &format!("{}/_mode", r.media_base()),
        &json!({"mode": "fail"}),
    );
    assert_eq!(
        r.callback(&mo("moText", json!({"content": "while you were away"})))
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(1500));
    post_json(&format!("{}/_mode", r.media_base()), &json!({"mode": "ok"}));
    eventually(30, "the retried IMO", || {
        ct_callbacks(&r)
            .into_iter()
            .any(|c| c["body"]["text"]["body"] == "while you were away")
            .then_some(())
    });
    // Nothing left in the spool.
    eventually(10, "an empty spool", || {
        let n = std::fs::read_dir(r.dir.path().join("spool/incoming"))
            .unwrap()
            .count();
        (n == 0).then_some(())
    });
    let log = std::fs::read_to_string(r.dir.path().join("gateway.log")).unwrap();
    for secret in [
        "while you were away",
        "resched-A-1042",
        LINK_SECRET,
        CT_PASS,
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn overload_is_answered_429_and_bad_config_is_named() {
    let r = Rig::with("public_max_in_flight = 2\nupstream_timeout_seconds = 3");
    post_json(
        &format!("http://127.0.0.1:{}/_mode", r.platform_port),
        &json!({"mode": "hang"}),
    );
    let text = fixture("freeform_text.json", &r.media_base())["payload"].clone();
    let hung: Vec<_> = (0..2)
        .map(|_| {
            let (url, p) = (r.public("/clevertap/messages"), text.clone());
            std::thread::spawn(move || {
                let basic = format!(
                    "Basic {}",
                    b64::encode(format!("{CT_USER}:{CT_PASS}").as_bytes())
                );
                http::request(
                    "POST",
                    &url,
                    &[("Authorization", basic.as_str())],
                    p.to_string().as_bytes(),
                )
                .unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let (a, _) = r.send_as(&text, CT_USER, CT_PASS);
    assert_eq!(a.status, 429);
    assert_eq!(a.json(), json!({"message": "Too many requests to process"}));
    for h in hung {
        let a = h.join().unwrap();
        assert_eq!(a.status, 200);
        let body = a.json();
        assert_eq!(body["status"], "failure", "{body}");
        assert_eq!(body["error"]["code"], 2004, "{body}");
    }

    // Configuration errors name the key (one line, exit 2).
    let cfg = std::fs::read_to_string(r.dir.path().join("oneseal.toml")).unwrap();
    for (from, to, key) in [
        (
            "username = \"clevertap\"\n",
            "",
            "gateway.clevertap.username",
        ),
        (
            "media_hosts = [",
            "media_hosts = [\"https://cdn.example.com/x\", ",
            "gateway.clevertap.media_hosts",
        ),
        ("public_url = ", "# public_url = ", "gateway.public_url"),
        ("dlr_url = ", "# dlr_url = ", "gateway.clevertap.dlr_url"),
        (
            "one_api_key_env = \"CT_ONE_API_KEY\"",
            "one_api_key_env = \"NOT_SET_ANYWHERE\"",
            "NOT_SET_ANYWHERE",
        ),
    ] {
        assert!(cfg.contains(from), "{from}");
        let bad = r.dir.path().join("bad.toml");
        std::fs::write(&bad, cfg.replacen(from, to, 1)).unwrap();
        let o = Command::new(bin())
            .args(["gateway", "--check-config", "--config"])
            .arg(&bad)
            .env("ONESEAL_LOCAL_KEY", r.key_path())
            .env("CT_PASSWORD", CT_PASS)
            .env("CB_PASSWORD", CB_PASS)
            .env("CT_ONE_API_KEY", API_KEY)
            .env("CT_LINK_SECRET", LINK_SECRET)
            .output()
            .unwrap();
        assert_eq!(code(&o), 2, "{key}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(key), "{key}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
}
