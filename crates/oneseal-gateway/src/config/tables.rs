//! `[gateway.clevertap]` and `[gateway.flows]` validated into their settings.

use super::checks::{
    basic_auth, business_key, err, http_url, required_auth, seconds, secret, signing_secret,
    ConfigError, Origin,
};
use oneseal_settings::env::Env;

use super::files::{CleverTapFile, FlowsFile};
use super::settings::{CleverTapConfig, FlowsConfig};

pub(crate) fn clevertap_config(
    c: &CleverTapFile,
    public_url: Option<&str>,
    env: &dyn Env,
) -> Result<CleverTapConfig, ConfigError> {
    let k = |name: &str| format!("gateway.clevertap.{name}");
    let need = |name: &str, v: &Option<String>, what: &str| {
        v.clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| err(&k(name), format!("missing: {what}")))
    };
    let path_of = |name: &str, v: &Option<String>, default: &str| {
        let p = v.clone().unwrap_or_else(|| default.to_string());
        if p.starts_with('/') && p.len() > 1 {
            Ok(p.trim_end_matches('/').to_string())
        } else {
            Err(err(
                &k(name),
                "must start with '/' (e.g. /clevertap/messages)",
            ))
        }
    };
    let path = path_of("path", &c.path, "/clevertap/messages")?;
    let callbacks_path = path_of("callbacks_path", &c.callbacks_path, "/clevertap/callbacks")?;
    if callbacks_path == path || callbacks_path.starts_with(&format!("{path}/media")) {
        return Err(err(
            &k("callbacks_path"),
            "must differ from gateway.clevertap.path and its /media links",
        ));
    }
    let auth = basic_auth(
        &k("username"),
        &k("password_env"),
        c.username.as_ref(),
        c.password_env.as_ref(),
        env,
    )?
    .ok_or_else(|| {
        err(
            &k("username"),
            "missing: CleverTap calls the bridge with basic auth; set username and password_env",
        )
    })?;
    let one_api_key = secret(
        &k("one_api_key_env"),
        &need(
            "one_api_key_env",
            &c.one_api_key_env,
            "name the environment variable that holds the One API key the bridge sends with",
        )?,
        env,
    )?;
    let dlr_url = http_url(
        Origin::file(k("dlr_url")),
        &need(
            "dlr_url",
            &c.dlr_url,
            "CleverTap's Delivery Report Callback URL (from its provider settings)",
        )?,
    )?;
    let imo_url = http_url(
        Origin::file(k("imo_url")),
        &need(
            "imo_url",
            &c.imo_url,
            "CleverTap's Inbound Message Callback URL (from its provider settings)",
        )?,
    )?;
    let waba_number = need(
        "waba_number",
        &c.waba_number,
        "the WhatsApp business number entered in CleverTap",
    )?;
    let mut media_hosts = Vec::new();
    for h in c.media_hosts.clone().unwrap_or_default() {
        let h = h.trim().to_ascii_lowercase();
        if h.is_empty() || h.contains('/') || h.contains('*') {
            return Err(err(
                &k("media_hosts"),
                format!("{h:?}: give host names (or host:port), no scheme, path or wildcard"),
            ));
        }
        media_hosts.push(h);
    }
    let media_link_secret = secret(
        &k("media_link_secret_env"),
        &need(
            "media_link_secret_env",
            &c.media_link_secret_env,
            "name the environment variable holding a secret (32+ random bytes) that signs media links",
        )?,
        env,
    )?;
    if media_link_secret.0.len() < 32 {
        return Err(err(
            &k("media_link_secret_env"),
            "the secret is shorter than 32 bytes; use 32 or more random bytes (e.g. `openssl rand -base64 32`)",
        ));
    }
    let public_url = public_url
        .map(|u| u.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            err(
                "gateway.public_url",
                "missing: the CleverTap bridge links incoming media on the public side; set how CleverTap reaches it (https://wa.example.com)",
            )
        })?;
    http_url(Origin::file("gateway.public_url"), &public_url)?;
    let secs = |name: &str, v: Option<u64>, default: u64, max: u64| {
        seconds(Origin::file(k(name)), v, default, 1..=max)
    };
    Ok(CleverTapConfig {
        path,
        auth,
        one_api_key,
        dlr_url,
        imo_url,
        waba_number: waba_number.trim().trim_start_matches('+').to_string(),
        media_hosts,
        media_link_secret,
        media_link_ttl: secs(
            "media_link_ttl_seconds",
            c.media_link_ttl_seconds,
            86_400,
            30 * 86_400,
        )?,
        validate_only_namespace: c
            .validate_only_namespace
            .clone()
            .unwrap_or_else(|| "whatsapp:hsm:technology:generic:verify".into()),
        callbacks_path,
        callback_auth: required_auth(
            basic_auth(
                &k("callback_username"),
                &k("callback_password_env"),
                c.callback_username.as_ref(),
                c.callback_password_env.as_ref(),
                env,
            )?,
            c.allow_unauthenticated,
            &k("callback_username"),
            "the platform's callbacks to the CleverTap bridge",
        )?,
        media_fetch_timeout: secs(
            "media_fetch_timeout_seconds",
            c.media_fetch_timeout_seconds,
            10,
            300,
        )?,
        public_url,
    })
}

pub(crate) fn flows_config(f: &FlowsFile, env: &dyn Env) -> Result<FlowsConfig, ConfigError> {
    let path = f.path.clone().unwrap_or_else(|| "/flows".into());
    if !path.starts_with('/') {
        return Err(err("gateway.flows.path", "must start with '/'"));
    }
    let forward_to = http_url(
        Origin::file("gateway.flows.forward_to"),
        f.forward_to.as_deref().ok_or_else(|| {
            err(
                "gateway.flows.forward_to",
                "missing: the URL of the app's flow handler (plain JSON in, plain JSON out)",
            )
        })?,
    )?;
    let key_path = f.private_key.as_deref().ok_or_else(|| {
        err(
            "gateway.flows.private_key",
            "missing: the business private key file (make one with `oneseal flows keygen`)",
        )
    })?;
    let key = business_key(
        "gateway.flows.private_key",
        key_path,
        "gateway.flows.passphrase_env",
        f.passphrase_env.as_deref(),
        env,
    )?;
    let previous_key = match &f.previous_private_key {
        None => None,
        Some(p) => {
            // The old key usually shares the passphrase; it may have its own.
            let (pass_key, var) = match &f.previous_passphrase_env {
                Some(v) => ("gateway.flows.previous_passphrase_env", Some(v.as_str())),
                None => ("gateway.flows.passphrase_env", f.passphrase_env.as_deref()),
            };
            Some(business_key(
                "gateway.flows.previous_private_key",
                p,
                pass_key,
                var,
                env,
            )?)
        }
    };
    let app_secret = match &f.app_secret_env {
        Some(var) => Some(secret("gateway.flows.app_secret_env", var, env)?),
        None if f.allow_unauthenticated == Some(true) => None,
        None => {
            return Err(err(
                "gateway.flows.app_secret_env",
                "missing: every public route authenticates; name the environment variable holding the Meta app secret (X-Hub-Signature-256 is then checked), or set allow_unauthenticated = true",
            ))
        }
    };
    let signing = f
        .signing_secret_env
        .as_deref()
        .map(|var| signing_secret("gateway.flows.signing_secret_env", var, env))
        .transpose()?;
    // Meta waits about 10 s for an answer.
    let response_timeout = seconds(
        Origin::file("gateway.flows.response_timeout_seconds"),
        f.response_timeout_seconds,
        9,
        1..=60,
    )?;
    Ok(FlowsConfig {
        path,
        key,
        previous_key,
        app_secret,
        forward_to,
        response_timeout,
        signing,
    })
}
