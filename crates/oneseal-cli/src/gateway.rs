//! `oneseal gateway` and `oneseal gateway replay`: resolve the settings once (the same
//! resolution as every other command), then hand them to `oneseal-gateway`.

use oneseal_gateway::{GatewayConfig, Parts};

use crate::cli::{GatewayArgs, GatewayCommand, KeyArgs};
use crate::config::{self, Sources};
use crate::error::CliError;

fn gateway_config(src: &Sources) -> Result<GatewayConfig, CliError> {
    let g = src.values.gateway.clone().unwrap_or_default();
    GatewayConfig::from_file(&g, src.env.as_ref()).map_err(|e| src.error(e))
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
