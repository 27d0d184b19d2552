//! `oneseal gateway` and `oneseal gateway replay`: resolve the settings once (the same
//! resolution as every other command), then hand them to `oneseal-gateway`.

use oneseal_gateway::{GatewayConfig, Parts};

use crate::cli::{GatewayArgs, GatewayCommand, KeyArgs};
use crate::config::{self, Sources};
use crate::error::CliError;

fn gateway_config(src: &Sources) -> Result<GatewayConfig, CliError> {
    let g = src.values.gateway.clone().unwrap_or_default();
    GatewayConfig::from_file(&g, src.env.as_ref()).map_err(|e| src.errors(e))
}

/// Runs the command; `Ok` after a clean shutdown.
pub fn run(a: GatewayArgs, src: &Sources) -> Result<(), CliError> {
    let cfg = gateway_config(src)?;
    if let Some(GatewayCommand::Replay) = a.command {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::usage(format!("cannot start the async runtime: {e}")))?;
        let n = rt
            .block_on(oneseal_gateway::replay(&cfg))
            .map_err(|e| CliError::usage(e.to_string()))?;
        let from = match &cfg.queue {
            Some(_) => "the queue's dead letters".to_string(),
            None => cfg.spool_dir.display().to_string(),
        };
        println!("re-queued {n} dead-letter callback(s) from {from}");
        return Ok(());
    }
    // The gateway takes no key flags: its keys and suite come from the environment and the
    // config file, resolved as for every other command.
    let keys = config::keys(&KeyArgs::default(), src)?;
    if a.check_config {
        // What start would hit, all of it at once.
        let mut problems: Vec<String> = Vec::new();
        if let Err(e) = cfg.check_local_key(keys.uses_local_key()) {
            problems.push(src.error(e).message);
        }
        let (start, busy) = start_problems(&cfg);
        problems.extend(start);
        for b in busy {
            eprintln!("oneseal: warning: {b}");
        }
        if !problems.is_empty() {
            return Err(config::problems(problems));
        }
    }
    cfg.check_local_key(keys.uses_local_key())
        .map_err(|e| src.error(e))?;
    let parts = Parts {
        provider: keys.gateway_provider()?,
        // Strict mode and passthrough are the gateway's own settings ([gateway] strict).
        policy: config::policy(&[], false, src)?,
        suite: config::suite::<oneseal_core::Suite>(None, src)?,
        decrypt_suite: config::suite::<oneseal_core::DecryptSuite>(None, src)?,
        // A long-running process: the next data key is made before the current one is spent,
        // so no request waits for GenerateDataKey at a rotation.
        cache: oneseal_core::CacheConfig {
            refresh_ahead: true,
            ..config::cache_config(false, src)?
        },
    };
    if a.check_kms {
        check_kms(&parts.provider)?;
    }
    if a.check_config {
        for w in &cfg.warnings {
            eprintln!("oneseal: warning: {w}");
        }
        println!(
            "configuration OK: app {}, public {}, admin {}, upstream {}, spool {}{}{}{}",
            cfg.app_listen,
            cfg.public_listen,
            cfg.admin_listen,
            cfg.upstream,
            cfg.spool_dir.display(),
            cfg.callbacks
                .as_ref()
                .map(|c| format!(", callbacks {} -> {}", c.path, c.forward_to))
                .unwrap_or_default(),
            cfg.clevertap
                .as_ref()
                .map(|c| format!(
                    ", clevertap {} (callbacks {}, media from {})",
                    c.path,
                    c.callbacks_path,
                    if c.media_hosts.is_empty() {
                        "no host".to_string()
                    } else {
                        c.media_hosts.join(", ")
                    }
                ))
                .unwrap_or_default(),
            cfg.flows
                .as_ref()
                .map(|f| format!(
                    ", flows {} -> {} (RSA-{}{})",
                    f.path,
                    f.forward_to,
                    f.key.bits(),
                    if f.previous_key.is_some() {
                        ", previous key accepted"
                    } else {
                        ""
                    }
                ))
                .unwrap_or_default()
        );
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(oneseal_gateway::run(cfg, parts, shutdown_signal()))
        .map_err(|e| CliError::usage(e.to_string()))
}

/// What `oneseal gateway` would fail on at start that the config's own checks cannot see:
/// listeners that are the same address, a spool that cannot be made (errors), and listeners
/// another process holds (warnings: a config is often checked while the gateway it replaces
/// still serves on those ports).
fn start_problems(cfg: &GatewayConfig) -> (Vec<String>, Vec<String>) {
    let (mut out, mut busy) = (Vec::new(), Vec::new());
    let listeners = [
        ("gateway.app_listen", cfg.app_listen),
        ("gateway.public_listen", cfg.public_listen),
        ("gateway.admin_listen", cfg.admin_listen),
    ];
    for (i, (key, addr)) in listeners.iter().enumerate() {
        // Port 0 is any free port: never a clash.
        let clash = listeners[..i].iter().find(|(_, other)| {
            addr.port() != 0
                && other.port() == addr.port()
                && (other.ip() == addr.ip()
                    || other.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        });
        if let Some((other, _)) = clash {
            out.push(format!(
                "{key}: {addr} is also {other}: give each listener its own port"
            ));
            continue;
        }
        // Bound and released at once: nothing is served.
        match std::net::TcpListener::bind(addr) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => busy.push(format!(
                "{key}: {addr} is in use by another process (the gateway this config replaces?): start fails while it is"
            )),
            Err(e) => out.push(format!("{key}: {addr} cannot be listened on: {e}")),
        }
    }
    if let Err(e) = oneseal_gateway::Spool::open(&cfg.spool_dir) {
        out.push(format!(
            "gateway.spool_dir: {} cannot be used: {e}",
            cfg.spool_dir.display()
        ));
    }
    (out, busy)
}

/// One real GenerateDataKey and Decrypt with the configured key and context.
fn check_kms(provider: &std::sync::Arc<dyn oneseal_core::KeyProvider>) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let dk = provider.generate_data_key().await?;
        let back = provider.decrypt_data_key(&dk.blob).await?;
        // Our own two copies of one key, not an attacker's guess: no timing to hide.
        let same = back.is_some_and(|k| k.expose() == dk.key.expose());
        if !same {
            return Err(oneseal_core::KeyError::Config(
                "the key service returned a different data key on Decrypt".into(),
            ));
        }
        println!(
            "key service OK: GenerateDataKey and Decrypt with {}",
            dk.key_arn.as_deref().unwrap_or("the local key")
        );
        Ok(())
    })
    .map_err(CliError::from)
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
