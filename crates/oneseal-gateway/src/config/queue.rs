//! `[gateway.queue]` validated into its settings.

use std::time::Duration;

use oneseal_settings::env::Env;

use super::checks::{err, http_url, required, seconds, secret, ConfigError, ConfigErrors, Origin};
use super::files::QueueFile;
use super::settings::{QueueConfig, QueueKind, RedisQueueConfig, SqsQueueConfig};

pub(crate) fn queue_config(
    q: &QueueFile,
    attempt: Duration,
    env: &dyn Env,
) -> Result<QueueConfig, ConfigErrors> {
    let mut found = ConfigErrors::default();
    let k = |name: &str| format!("gateway.queue.{name}");
    let need = |name: &str, v: &Option<String>, what: &str| required(&k(name), v, what);
    // A lease shorter than one delivery attempt would hand a callback to a second replica
    // while the first is still delivering it.
    let least = attempt.as_secs() + 5;
    let lease = found.take(seconds(
        Origin::file(k("lease_seconds")),
        q.lease_seconds,
        (2 * attempt.as_secs()).max(60),
        least..=43_200,
    ));
    let kind = match q.kind.as_deref() {
        Some("sqs") => {
            let url = |name: &str, v: &Option<String>, what: &str| {
                let u = need(name, v, what)?;
                http_url(Origin::file(k(name)), &u)?;
                Ok::<_, ConfigError>(u)
            };
            for (name, v) in [("url", &q.url), ("stream", &q.stream), ("group", &q.group)] {
                if v.is_some() {
                    found.push(err(&k(name), "is a redis setting; this queue is sqs"));
                }
            }
            let queue_url = found.take(url("queue_url", &q.queue_url, "the SQS queue's URL"));
            let dead_letter_queue_url = found.take(url(
                "dead_letter_queue_url",
                &q.dead_letter_queue_url,
                "the URL of an SQS queue for the callbacks refused for good (nothing is dropped)",
            ));
            let large_payload_bucket = found.take(need(
                "large_payload_bucket",
                &q.large_payload_bucket,
                "an S3 bucket for callbacks above SQS's 256 KiB (inline media)",
            ));
            match (queue_url, dead_letter_queue_url, large_payload_bucket) {
                (Some(queue_url), Some(dead_letter_queue_url), Some(large_payload_bucket)) => {
                    Some(QueueKind::Sqs(SqsQueueConfig {
                        queue_url,
                        dead_letter_queue_url,
                        large_payload_bucket,
                        s3_force_path_style: q.s3_force_path_style == Some(true),
                    }))
                }
                _ => None,
            }
        }
        Some("redis") => {
            for (name, v) in [
                ("queue_url", &q.queue_url),
                ("dead_letter_queue_url", &q.dead_letter_queue_url),
                ("large_payload_bucket", &q.large_payload_bucket),
            ] {
                if v.is_some() {
                    found.push(err(&k(name), "is an sqs setting; this queue is redis"));
                }
            }
            found.take(redis_queue(q, env))
        }
        Some(other) => {
            found.push(err(
                &k("kind"),
                format!("{other:?}: use \"sqs\" or \"redis\" (or leave [gateway.queue] out for the local spool)"),
            ));
            None
        }
        None => {
            found.push(err(&k("kind"), "missing: \"sqs\" or \"redis\""));
            None
        }
    };
    let (Some(kind), Some(lease)) = (kind, lease) else {
        return Err(found);
    };
    found.or(QueueConfig { kind, lease })
}

/// The Redis settings of `[gateway.queue]`: the URL (without a password) and the stream.
fn redis_queue(q: &QueueFile, env: &dyn Env) -> Result<QueueKind, ConfigError> {
    let k = |name: &str| format!("gateway.queue.{name}");
    let url = required(
        &k("url"),
        &q.url,
        "the Redis URL, e.g. redis://127.0.0.1:6379/0",
    )?;
    let mut connection = redis::IntoConnectionInfo::into_connection_info(url.as_str())
        .map_err(|e| err(&k("url"), format!("{url:?}: {e}")))?;
    if connection.redis.password.is_some() {
        return Err(err(
            &k("url"),
            "holds a password: name the environment variable that holds it in password_env instead",
        ));
    }
    if let Some(var) = &q.password_env {
        connection.redis.password = Some(secret(&k("password_env"), var, env)?.0.to_string());
    }
    Ok(QueueKind::Redis(RedisQueueConfig {
        connection,
        display_url: url,
        stream: q
            .stream
            .clone()
            .unwrap_or_else(|| "oneseal:callbacks".into()),
        group: q.group.clone().unwrap_or_else(|| "oneseal".into()),
    }))
}
