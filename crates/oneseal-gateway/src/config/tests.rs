use super::*;

fn parse(t: &str) -> Result<GatewayConfig, ConfigErrors> {
    let f: GatewayFile = toml::from_str(t).unwrap();
    GatewayConfig::from_file(&f, &|k: &str| match k {
        "PW" => Some("secret-of-16-chars!".to_string()),
        "SHORT" => Some("secret".to_string()),
        "WH" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()),
        _ => None,
    })
}

const CB: &str = "[callbacks]\nforward_to = \"http://127.0.0.1:9\"\n";

#[test]
fn a_public_route_without_credentials_is_refused_unless_allowed() {
    assert_eq!(parse(CB).unwrap_err().key(), "gateway.callbacks.username");
    let c = parse(&format!("{CB}allow_unauthenticated = true")).unwrap();
    assert!(c.callbacks.unwrap().auth.is_none());
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
}

#[test]
fn a_short_password_is_refused() {
    let e = parse(&format!("{CB}username = \"u\"\npassword_env = \"SHORT\"")).unwrap_err();
    assert_eq!(e.key(), "gateway.callbacks.password_env");
}

#[test]
fn plain_http_upstream_is_refused_unless_loopback_or_allowed() {
    assert_eq!(
        parse("upstream = \"http://platform.example.com\"")
            .unwrap_err()
            .key(),
        "gateway.upstream"
    );
    assert!(parse("upstream = \"http://127.0.0.1:9\"").is_ok());
    assert!(parse("upstream = \"http://[::1]:9\"").is_ok());
    assert!(parse("upstream = \"http://localhost:9\"").is_ok());
    assert!(parse("upstream = \"http://p.example.com\"\nallow_insecure_upstream = true").is_ok());
}

#[test]
fn the_local_key_with_a_remote_upstream_is_refused_unless_allowed() {
    let c = parse("").unwrap();
    assert_eq!(c.check_local_key(true).unwrap_err().key(), "kms_key_id");
    assert!(c.check_local_key(false).is_ok());
    assert!(parse("allow_local_key = true")
        .unwrap()
        .check_local_key(true)
        .is_ok());
    assert!(parse("upstream = \"http://127.0.0.1:9\"")
        .unwrap()
        .check_local_key(true)
        .is_ok());
}

#[test]
fn plain_http_delivery_and_open_listeners_are_warned_about() {
    let c = parse("app_listen = \"0.0.0.0:8080\"\n[callbacks]\nforward_to = \"http://app.example.com/cb\"\nusername = \"u\"\npassword_env = \"PW\"").unwrap();
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings.iter().any(|w| w.contains("gateway.app_listen")));
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("gateway.callbacks.forward_to")));
}

#[test]
fn signing_secrets_are_standard_webhooks_secrets() {
    let c = parse(&format!(
        "{CB}allow_unauthenticated = true\nsigning_secret_env = \"WH\""
    ))
    .unwrap();
    assert_eq!(c.callbacks.unwrap().signing.unwrap().0.len(), 24);
    let e = parse(&format!(
        "{CB}allow_unauthenticated = true\nsigning_secret_env = \"SHORT\""
    ))
    .unwrap_err();
    assert_eq!(e.key(), "gateway.callbacks.signing_secret_env");
}

#[test]
fn defaults_and_errors_name_the_key() {
    let c = parse("").unwrap();
    assert_eq!(c.app_listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.max_in_flight, 4096);
    assert_eq!(c.app_url, "http://127.0.0.1:8080");
    let e = parse("upstream = \"ftp://x\"").unwrap_err();
    assert_eq!(e.key(), "gateway.upstream");
    let e = parse("[callbacks]\npath = \"/cb\"").unwrap_err();
    assert_eq!(e.key(), "gateway.callbacks.forward_to");
    let e = parse("[callbacks]\nforward_to = \"http://127.0.0.1:9\"\nusername = \"u\"\npassword_env = \"NOPE\"").unwrap_err();
    assert!(e.to_string().contains("NOPE"), "{e}");
    let c = parse(
        "[callbacks]\nforward_to = \"http://127.0.0.1:9\"\nusername = \"u\"\npassword_env = \"PW\"",
    )
    .unwrap();
    let dbg = format!("{:?}", c.callbacks.unwrap().auth);
    assert!(!dbg.contains("secret"), "{dbg}");
    assert_eq!(
        parse("[clevertap]\n").unwrap_err().key(),
        "gateway.clevertap.username"
    );
    // Route paths are literal and distinct (axum would refuse them at start otherwise).
    let cb =
        "[callbacks]\nforward_to = \"http://127.0.0.1:9\"\nallow_unauthenticated = true\npath = ";
    assert_eq!(
        parse(&format!("{cb}\"/cb/{{id}}\"")).unwrap_err().key(),
        "gateway.callbacks.path"
    );
    assert_eq!(
        parse(&format!("{cb}\"/cb/*x\"")).unwrap_err().key(),
        "gateway.callbacks.path"
    );
    assert!(parse(&format!("{cb}\"/whatsapp/cb-1\"")).is_ok());
}

/// One run reports every error of the file, in every table, not the first one found.
#[test]
fn every_error_in_the_file_is_reported_at_once() {
    let e = parse(
        "max_in_flight = 0\nupstream = \"ftp://x\"\n\
         [callbacks]\nforward_to = \"nope\"\nusername = \"u\"\npassword_env = \"SHORT\"\n\
         [flows]\nforward_to = \"http://127.0.0.1:9\"\n\
         [queue]\nkind = \"kafka\"\nlease_seconds = 1",
    )
    .unwrap_err();
    let keys: Vec<&str> = e.iter().map(|e| e.key()).collect();
    for k in [
        "gateway.upstream",
        "gateway.max_in_flight",
        "gateway.callbacks.forward_to",
        "gateway.callbacks.password_env",
        "gateway.queue.lease_seconds",
        "gateway.queue.kind",
        "gateway.flows.private_key",
        "gateway.flows.app_secret_env",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert_eq!(e.len(), 8, "{e}");
}
