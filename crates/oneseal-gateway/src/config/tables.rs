//! `[gateway.callbacks]`, `[gateway.clevertap]` and `[gateway.flows]` validated into their
//! settings; each reports every error it has.

use super::checks::{
    basic_auth, business_key, err, http_url, required, required_auth, seconds, secret,
    signing_secret, ConfigErrors, Origin,
};
use oneseal_settings::env::Env;

use super::files::{CallbacksFile, CleverTapFile, FlowsFile};
use super::settings::{CallbacksConfig, CleverTapConfig, FlowsConfig};

pub(crate) fn callbacks_config(
    c: &CallbacksFile,
    env: &dyn Env,
) -> Result<CallbacksConfig, ConfigErrors> {
    let mut found = ConfigErrors::default();
    let path = c.path.clone().unwrap_or_else(|| "/callbacks".into());
    if !path.starts_with('/') {
        found.push(err("gateway.callbacks.path", "must start with '/'"));
    }
    let forward_to = found.take(
        c.forward_to
            .as_deref()
            .ok_or_else(|| {
                err(
                    "gateway.callbacks.forward_to",
                    "missing: the URL of the app's callback handler",
                )
            })
            .and_then(|u| http_url(Origin::file("gateway.callbacks.forward_to"), u)),
    );
    let auth = found.take(
        basic_auth(
            "gateway.callbacks.username",
            "gateway.callbacks.password_env",
            c.username.as_ref(),
            c.password_env.as_ref(),
            env,
        )
        .and_then(|a| {
            required_auth(
                a,
                c.allow_unauthenticated,
                "gateway.callbacks.username",
                "its callbacks",
            )
        }),
    );
    let max_retry = found.take(seconds(
        Origin::file("gateway.callbacks.max_retry_seconds"),
        c.max_retry_seconds,
        300,
        1..=3600,
    ));
    let max_retry_age = found.take(seconds(
        Origin::file("gateway.callbacks.max_retry_age_seconds"),
        c.max_retry_age_seconds,
        86_400,
        1..=30 * 86_400,
    ));
    let signing = found.take(
        c.signing_secret_env
            .as_deref()
            .map(|var| signing_secret("gateway.callbacks.signing_secret_env", var, env))
            .transpose(),
    );
    let (Some(forward_to), Some(auth), Some(max_retry), Some(max_retry_age), Some(signing)) =
        (forward_to, auth, max_retry, max_retry_age, signing)
    else {
        return Err(found);
    };
    found.or(CallbacksConfig {
        path,
        forward_to,
        auth,
        max_retry,
        max_retry_age,
        accept_plaintext: c.accept_plaintext == Some(true),
        signing,
    })
}

pub(crate) fn clevertap_config(
    c: &CleverTapFile,
    public_url: Option<&str>,
    env: &dyn Env,
) -> Result<CleverTapConfig, ConfigErrors> {
    let mut found = ConfigErrors::default();
    let k = |name: &str| format!("gateway.clevertap.{name}");
    let need = |name: &str, v: &Option<String>, what: &str| required(&k(name), v, what);
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
    let path = found.take(path_of("path", &c.path, "/clevertap/messages"));
    let callbacks_path = found.take(path_of(
        "callbacks_path",
        &c.callbacks_path,
        "/clevertap/callbacks",
    ));
    if let (Some(path), Some(cb)) = (&path, &callbacks_path) {
        if cb == path || cb.starts_with(&format!("{path}/media")) {
            found.push(err(
                &k("callbacks_path"),
                "must differ from gateway.clevertap.path and its /media links",
            ));
        }
    }
    let auth = found.take(
        basic_auth(
            &k("username"),
            &k("password_env"),
            c.username.as_ref(),
            c.password_env.as_ref(),
            env,
        )
        .and_then(|a| {
            a.ok_or_else(|| {
                err(
                    &k("username"),
                    "missing: CleverTap calls the bridge with basic auth; set username and password_env",
                )
            })
        }),
    );
    let one_api_key = found.take(
        need(
            "one_api_key_env",
            &c.one_api_key_env,
            "name the environment variable that holds the One API key the bridge sends with",
        )
        .and_then(|var| secret(&k("one_api_key_env"), &var, env)),
    );
    let url = |name: &str, v: &Option<String>, what: &str| {
        need(name, v, what).and_then(|u| http_url(Origin::file(k(name)), &u))
    };
    let dlr_url = found.take(url(
        "dlr_url",
        &c.dlr_url,
        "CleverTap's Delivery Report Callback URL (from its provider settings)",
    ));
    let imo_url = found.take(url(
        "imo_url",
        &c.imo_url,
        "CleverTap's Inbound Message Callback URL (from its provider settings)",
    ));
    let waba_number = found.take(need(
        "waba_number",
        &c.waba_number,
        "the WhatsApp business number entered in CleverTap",
    ));
    let mut media_hosts = Vec::new();
    for h in c.media_hosts.clone().unwrap_or_default() {
        let h = h.trim().to_ascii_lowercase();
        if h.is_empty() || h.contains('/') || h.contains('*') {
            found.push(err(
                &k("media_hosts"),
                format!("{h:?}: give host names (or host:port), no scheme, path or wildcard"),
            ));
        }
        media_hosts.push(h);
    }
    let media_link_secret = found.take(
        need(
            "media_link_secret_env",
            &c.media_link_secret_env,
            "name the environment variable holding a secret (32+ random bytes) that signs media links",
        )
        .and_then(|var| secret(&k("media_link_secret_env"), &var, env))
        .and_then(|s| {
            if s.0.len() < 32 {
                Err(err(
                    &k("media_link_secret_env"),
                    "the secret is shorter than 32 bytes; use 32 or more random bytes (e.g. `openssl rand -base64 32`)",
                ))
            } else {
                Ok(s)
            }
        }),
    );
    let public_url = found.take(
        public_url
            .map(|u| u.trim_end_matches('/').to_string())
            .ok_or_else(|| {
                err(
                    "gateway.public_url",
                    "missing: the CleverTap bridge links incoming media on the public side; set how CleverTap reaches it (https://wa.example.com)",
                )
            })
            .and_then(|u| http_url(Origin::file("gateway.public_url"), &u).map(|_| u)),
    );
    let secs = |name: &str, v: Option<u64>, default: u64, max: u64| {
        seconds(Origin::file(k(name)), v, default, 1..=max)
    };
    let media_link_ttl = found.take(secs(
        "media_link_ttl_seconds",
        c.media_link_ttl_seconds,
        86_400,
        30 * 86_400,
    ));
    let callback_auth = found.take(
        basic_auth(
            &k("callback_username"),
            &k("callback_password_env"),
            c.callback_username.as_ref(),
            c.callback_password_env.as_ref(),
            env,
        )
        .and_then(|a| {
            required_auth(
                a,
                c.allow_unauthenticated,
                &k("callback_username"),
                "the platform's callbacks to the CleverTap bridge",
            )
        }),
    );
    let media_fetch_timeout = found.take(secs(
        "media_fetch_timeout_seconds",
        c.media_fetch_timeout_seconds,
        10,
        300,
    ));
    // Each `None` here had its error kept above.
    let (
        Some(path),
        Some(callbacks_path),
        Some(auth),
        Some(one_api_key),
        Some(dlr_url),
        Some(imo_url),
        Some(waba_number),
        Some(media_link_secret),
        Some(public_url),
        Some(media_link_ttl),
        Some(callback_auth),
        Some(media_fetch_timeout),
    ) = (
        path,
        callbacks_path,
        auth,
        one_api_key,
        dlr_url,
        imo_url,
        waba_number,
        media_link_secret,
        public_url,
        media_link_ttl,
        callback_auth,
        media_fetch_timeout,
    )
    else {
        return Err(found);
    };
    found.or(CleverTapConfig {
        path,
        auth,
        one_api_key,
        dlr_url,
        imo_url,
        waba_number: waba_number.trim().trim_start_matches('+').to_string(),
        media_hosts,
        media_link_secret,
        media_link_ttl,
        validate_only_namespace: c
            .validate_only_namespace
            .clone()
            .unwrap_or_else(|| "whatsapp:hsm:technology:generic:verify".into()),
        callbacks_path,
        callback_auth,
        media_fetch_timeout,
        public_url,
    })
}

pub(crate) fn flows_config(f: &FlowsFile, env: &dyn Env) -> Result<FlowsConfig, ConfigErrors> {
    let mut found = ConfigErrors::default();
    let path = f.path.clone().unwrap_or_else(|| "/flows".into());
    if !path.starts_with('/') {
        found.push(err("gateway.flows.path", "must start with '/'"));
    }
    let forward_to = found.take(
        f.forward_to
            .as_deref()
            .ok_or_else(|| {
                err(
                    "gateway.flows.forward_to",
                    "missing: the URL of the app's flow handler (plain JSON in, plain JSON out)",
                )
            })
            .and_then(|u| http_url(Origin::file("gateway.flows.forward_to"), u)),
    );
    let key = found.take(
        f.private_key
            .as_deref()
            .ok_or_else(|| {
                err(
                    "gateway.flows.private_key",
                    "missing: the business private key file (make one with `oneseal flows keygen`)",
                )
            })
            .and_then(|key_path| {
                business_key(
                    "gateway.flows.private_key",
                    key_path,
                    "gateway.flows.passphrase_env",
                    f.passphrase_env.as_deref(),
                    env,
                )
            }),
    );
    let previous_key = found.take(
        f.previous_private_key
            .as_ref()
            .map(|p| {
                // The old key usually shares the passphrase; it may have its own.
                let (pass_key, var) = match &f.previous_passphrase_env {
                    Some(v) => ("gateway.flows.previous_passphrase_env", Some(v.as_str())),
                    None => ("gateway.flows.passphrase_env", f.passphrase_env.as_deref()),
                };
                business_key("gateway.flows.previous_private_key", p, pass_key, var, env)
            })
            .transpose(),
    );
    let app_secret = found.take(match &f.app_secret_env {
        Some(var) => secret("gateway.flows.app_secret_env", var, env).map(Some),
        None if f.allow_unauthenticated == Some(true) => Ok(None),
        None => Err(err(
            "gateway.flows.app_secret_env",
            "missing: every public route authenticates; name the environment variable holding the Meta app secret (X-Hub-Signature-256 is then checked), or set allow_unauthenticated = true",
        )),
    });
    let signing = found.take(
        f.signing_secret_env
            .as_deref()
            .map(|var| signing_secret("gateway.flows.signing_secret_env", var, env))
            .transpose(),
    );
    // Meta waits about 10 s for an answer.
    let response_timeout = found.take(seconds(
        Origin::file("gateway.flows.response_timeout_seconds"),
        f.response_timeout_seconds,
        9,
        1..=60,
    ));
    let (
        Some(forward_to),
        Some(key),
        Some(previous_key),
        Some(app_secret),
        Some(signing),
        Some(response_timeout),
    ) = (
        forward_to,
        key,
        previous_key,
        app_secret,
        signing,
        response_timeout,
    )
    else {
        return Err(found);
    };
    found.or(FlowsConfig {
        path,
        key,
        previous_key,
        app_secret,
        forward_to,
        response_timeout,
        signing,
    })
}
