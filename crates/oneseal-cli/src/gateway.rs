//! `oneseal gateway` and `oneseal gateway replay`: resolve the settings once (the same
//! resolution as every other command), then hand them to `oneseal-gateway`.

use oneseal_gateway::{GatewayConfig, Parts};

use crate::cli::{GatewayArgs, GatewayCommand, KeyArgs};
use crate::config::{self, ConfigFile};
use crate::error::CliError;

fn gateway_config(file: &ConfigFile) -> Result<GatewayConfig, CliError> {
    let g = file.values.gateway.clone().unwrap_or_default();
    GatewayConfig::from_file(&g, &|var| std::env::var(var).ok())
        .map_err(|e| file.err(&e.key, e.message))
}

/// Runs the command; `Ok` after a clean shutdown.
pub fn run(a: GatewayArgs, file: &ConfigFile) -> Result<(), CliError> {
    let cfg = gateway_config(file)?;
    if let Some(GatewayCommand::Replay) = a.command {
        let n = oneseal_gateway::replay(&cfg).map_err(|e| CliError::usage(e.to_string()))?;
        println!(
            "re-queued {n} dead-letter callback(s) from {}",
            cfg.spool_dir.display()
        );
        return Ok(());
    }
    // The key settings come from the environment and the config file (no flags here).
    let keys = config::keys(&KeyArgs::from_env(), file)?;
    // The gateway takes no key flags: the environment and the file, resolved as for the CLI.
    let suite_env = crate::env::get(crate::env::SUITE);
    cfg.check_local_key(keys.uses_local_key())
        .map_err(|e| file.err(&e.key, e.message))?;
    let parts = Parts {
        provider: keys.gateway_provider()?,
        // Strict mode and passthrough are the gateway's own settings ([gateway] strict).
        policy: config::policy(&[], false, file)?,
        suite: config::suite::<oneseal_core::Suite>(suite_env.as_deref(), file)?,
        decrypt_suite: config::suite::<oneseal_core::DecryptSuite>(suite_env.as_deref(), file)?,
        // A long-running process: the next data key is made before the current one is spent,
        // so no request waits for GenerateDataKey at a rotation.
        cache: oneseal_core::CacheConfig {
            refresh_ahead: true,
            ..config::cache_config(false, file)?
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
