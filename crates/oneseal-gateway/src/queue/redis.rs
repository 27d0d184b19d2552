//! Redis Streams: the self-hosted backend.
//!
//! Why Redis Streams: banks already run Redis; one `redis-server` with an append-only file is
//! the whole deployment (no Erlang cluster, no JetStream setup); a consumer group gives
//! exactly the lease the relay needs (an entry is pending on one consumer until acknowledged)
//! and `XAUTOCLAIM` hands the entries of a dead consumer to a live one.
//!
//! Keys, for a stream `S` (`[gateway.queue] stream`):
//! - `S`: the callbacks due now, read by the consumer group (`group`); each entry's one field
//!   `m` is the [`Envelope`] as JSON.
//! - `S:delayed`: a sorted set of envelopes waiting for their retry time (the score); moved
//!   back into `S` by a script when due, atomically.
//! - `S:dead`: a stream of dead letters, each envelope with its reason.
//!
//! Every settlement is one `MULTI`/`EXEC` (acknowledge and delete the entry, and add it where
//! it goes next), so a callback is never in two places nor in none. Durability: `XADD` is
//! answered once Redis has it in memory; with `appendonly yes` and `appendfsync always` it is
//! also on disk before the answer (the README's "Deploying" says so).

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncCommands, RedisError, Value};

use super::{now_ms, within, Envelope, Leased, Queue, QueueError, Stats};
use crate::config::RedisQueueConfig;

/// How long one command may take before the queue counts as down.
const COMMAND: Duration = Duration::from_secs(5);
/// How long a read waits for a new entry.
const BLOCK_MS: usize = 1000;

/// Moves due envelopes from the delayed set into the stream, atomically (a script runs alone).
const MOVE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'm', m)
  redis.call('ZREM', KEYS[1], m)
end
return #due
";

pub struct RedisQueue {
    /// Writes and settlements.
    conn: ConnectionManager,
    /// Blocking reads only: Redis runs a connection's commands in order, so a read that
    /// waits for new entries on the shared connection would hold every write behind it.
    reader: ConnectionManager,
    stream: String,
    delayed: String,
    dead: String,
    group: String,
    /// This replica's consumer name in the group.
    consumer: String,
    lease: Duration,
    /// Where the next `XAUTOCLAIM` scan starts.
    cursor: Mutex<String>,
    move_due: redis::Script,
    url: String,
}

fn down(e: RedisError) -> QueueError {
    QueueError::Unavailable(format!("redis: {e}"))
}

impl RedisQueue {
    pub async fn open(cfg: &RedisQueueConfig, lease: Duration) -> Result<RedisQueue, QueueError> {
        let client = redis::Client::open(cfg.connection.clone()).map_err(down)?;
        // Reconnects after a restart of Redis: attempts of at most 3 s, a second apart at most.
        let settings = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(3))
            .set_number_of_retries(3)
            .set_max_delay(1000);
        let connect = || async {
            within(COMMAND * 4, "redis connect", async {
                ConnectionManager::new_with_config(client.clone(), settings.clone())
                    .await
                    .map_err(down)
            })
            .await
        };
        let (conn, reader) = (connect().await?, connect().await?);
        let mut q = RedisQueue {
            conn,
            reader,
            stream: cfg.stream.clone(),
            delayed: format!("{}:delayed", cfg.stream),
            dead: format!("{}:dead", cfg.stream),
            group: cfg.group.clone(),
            consumer: consumer_name(),
            lease,
            cursor: Mutex::new("0-0".into()),
            move_due: redis::Script::new(MOVE_DUE),
            url: cfg.display_url.clone(),
        };
        q.create_group().await?;
        Ok(q)
    }

    /// The consumer group, made once (from the start of the stream, so entries added before
    /// it existed are read too); `BUSYGROUP` means another replica made it.
    async fn create_group(&mut self) -> Result<(), QueueError> {
        let r: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(down(e)),
        }
    }

    fn conn(&self) -> ConnectionManager {
        // A handle on the one multiplexed connection (cheap; reconnects on its own).
        self.conn.clone()
    }

    /// Envelopes out of stream entries; an entry that is not one is buried as it is.
    async fn leased(&self, entries: Vec<StreamId>) -> Result<Vec<Leased>, QueueError> {
        let mut out = Vec::new();
        for e in entries {
            let text: Option<String> = e.get("m");
            let env = text
                .as_deref()
                .ok_or_else(|| QueueError::Malformed("a stream entry without its field m".into()))
                .and_then(Envelope::from_json);
            match env {
                Ok(envelope) => {
                    let body = envelope
                        .body
                        .as_ref()
                        .map(|b| Bytes::copy_from_slice(b.get().as_bytes()))
                        .unwrap_or_default();
                    out.push(Leased {
                        envelope,
                        body,
                        handle: e.id,
                    });
                }
                Err(err) => {
                    tracing::error!(entry = %e.id, error = %err, "not a oneseal callback; moved to the dead letters as it is");
                    let mut c = self.conn();
                    let _: Result<Value, _> = redis::pipe()
                        .atomic()
                        .cmd("XADD")
                        .arg(&self.dead)
                        .arg("*")
                        .arg("m")
                        .arg(text.unwrap_or_default())
                        .arg("reason")
                        .arg(err.to_string())
                        .cmd("XACK")
                        .arg(&self.stream)
                        .arg(&self.group)
                        .arg(&e.id)
                        .cmd("XDEL")
                        .arg(&self.stream)
                        .arg(&e.id)
                        .query_async(&mut c)
                        .await;
                }
            }
        }
        Ok(out)
    }

    /// Acknowledges and deletes entry `id`, and adds `then` (a command) in the same
    /// transaction.
    async fn settle(&self, id: &str, then: Option<redis::Cmd>) -> Result<(), QueueError> {
        let mut p = redis::pipe();
        p.atomic();
        if let Some(c) = then {
            p.add_command(c).ignore();
        }
        p.cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(id)
            .ignore();
        let mut c = self.conn();
        within(COMMAND, "redis settle", async {
            p.query_async::<()>(&mut c).await.map_err(down)
        })
        .await
    }
}

/// A name unique to this process: the host, the pid and a random part (a restarted replica
/// is a new consumer; its predecessor's entries are reclaimed by idle time).
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "oneseal".into());
    let mut b = [0u8; 4];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    format!("{host}-{}-{}", std::process::id(), hex::encode(b))
}

#[async_trait]
impl Queue for RedisQueue {
    fn describe(&self) -> String {
        format!("redis {} stream {}", self.url, self.stream)
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    async fn put(&self, envelope: Envelope) -> Result<(), QueueError> {
        let m = envelope.to_json()?;
        let mut c = self.conn();
        within(COMMAND, "redis XADD", async {
            c.xadd::<_, _, _, _, String>(&self.stream, "*", &[("m", m)])
                .await
                .map(|_| ())
                .map_err(down)
        })
        .await
    }

    async fn receive(&self, max: usize) -> Result<Vec<Leased>, QueueError> {
        let mut c = self.conn();
        // Retries whose time has come go back into the stream.
        within(COMMAND, "redis move due", async {
            self.move_due
                .key(&self.delayed)
                .key(&self.stream)
                .arg(now_ms())
                .invoke_async::<i64>(&mut c)
                .await
                .map_err(down)
        })
        .await?;
        // Entries whose lease ran out (their consumer died, or stopped keeping it) first.
        let start = self
            .cursor
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|_| "0-0".into());
        let claimed: StreamAutoClaimReply = within(COMMAND, "redis XAUTOCLAIM", async {
            redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(self.lease.as_millis() as u64)
                .arg(&start)
                .arg("COUNT")
                .arg(max.max(1))
                .query_async(&mut c)
                .await
                .map_err(down)
        })
        .await?;
        if let Ok(mut cur) = self.cursor.lock() {
            *cur = claimed.next_stream_id.clone();
        }
        let mut out = self.leased(claimed.claimed).await?;
        if out.len() >= max {
            return Ok(out);
        }
        // Then new entries, waiting up to a second for one, on the reading connection.
        let mut r = self.reader.clone();
        let read: Option<StreamReadReply> = within(COMMAND, "redis XREADGROUP", async {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(max - out.len())
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(">")
                .query_async(&mut r)
                .await
                .map_err(down)
        })
        .await?;
        for key in read.map(|r| r.keys).unwrap_or_default() {
            out.extend(self.leased(key.ids).await?);
        }
        Ok(out)
    }

    async fn extend(&self, handle: &str) -> Result<(), QueueError> {
        let mut c = self.conn();
        // XCLAIM to ourselves resets the entry's idle time; JUSTID leaves its count alone.
        within(COMMAND, "redis XCLAIM", async {
            redis::cmd("XCLAIM")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(0)
                .arg(handle)
                .arg("JUSTID")
                .query_async::<Value>(&mut c)
                .await
                .map(|_| ())
                .map_err(down)
        })
        .await
    }

    async fn ack(&self, leased: &Leased) -> Result<(), QueueError> {
        self.settle(&leased.handle, None).await
    }

    async fn retry(&self, leased: &Leased, delay: Duration) -> Result<(), QueueError> {
        let m = leased.envelope.retried().to_json()?;
        let due = now_ms().saturating_add(delay.as_millis() as u64);
        let mut add = redis::cmd("ZADD");
        add.arg(&self.delayed).arg(due).arg(m);
        self.settle(&leased.handle, Some(add)).await
    }

    async fn bury(&self, leased: &Leased, reason: &str) -> Result<(), QueueError> {
        let m = leased.envelope.buried(reason).to_json()?;
        let mut add = redis::cmd("XADD");
        add.arg(&self.dead).arg("*").arg("m").arg(m);
        self.settle(&leased.handle, Some(add)).await
    }

    async fn replay(&self) -> Result<usize, QueueError> {
        let mut c = self.conn();
        let mut n = 0;
        loop {
            let page: StreamRangeReply = within(COMMAND, "redis XRANGE", async {
                c.xrange_count(&self.dead, "-", "+", 100)
                    .await
                    .map_err(down)
            })
            .await?;
            if page.ids.is_empty() {
                return Ok(n);
            }
            for e in page.ids {
                let text: String = e.get("m").unwrap_or_default();
                // Something that was never an envelope stays where it is, for a person to read.
                let Ok(env) = Envelope::from_json(&text) else {
                    continue;
                };
                let m = env.replayed().to_json()?;
                within(COMMAND, "redis replay", async {
                    redis::pipe()
                        .atomic()
                        .cmd("XADD")
                        .arg(&self.stream)
                        .arg("*")
                        .arg("m")
                        .arg(m)
                        .ignore()
                        .cmd("XDEL")
                        .arg(&self.dead)
                        .arg(&e.id)
                        .ignore()
                        .query_async::<()>(&mut c)
                        .await
                        .map_err(down)
                })
                .await?;
                n += 1;
            }
        }
    }

    async fn stats(&self) -> Result<Stats, QueueError> {
        let mut c = self.conn();
        within(COMMAND, "redis stats", async {
            let (len, delayed, dead): (u64, u64, u64) = redis::pipe()
                .cmd("XLEN")
                .arg(&self.stream)
                .cmd("ZCARD")
                .arg(&self.delayed)
                .cmd("XLEN")
                .arg(&self.dead)
                .query_async(&mut c)
                .await
                .map_err(down)?;
            let head: StreamRangeReply = c
                .xrange_count(&self.stream, "-", "+", 1)
                .await
                .map_err(down)?;
            let first_delayed: Vec<String> = c.zrange(&self.delayed, 0, 0).await.map_err(down)?;
            let oldest = head
                .ids
                .iter()
                .filter_map(|e| e.get::<String>("m"))
                .chain(first_delayed)
                .filter_map(|m| Envelope::from_json(&m).ok())
                .map(|e| e.age())
                .max();
            Ok(Stats {
                depth: len + delayed,
                dead,
                oldest,
            })
        })
        .await
    }
}
