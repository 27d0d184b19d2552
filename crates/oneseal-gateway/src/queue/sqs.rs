//! Amazon SQS, with S3 for bodies above SQS's 256 KiB (claim-check).
//!
//! A callback is one SQS message whose body is its [`Envelope`]. A body too large for SQS is
//! written to S3 first (`large_payload_bucket`, server-side encryption requested on every
//! object) and the envelope carries its key; the object is deleted once the callback is
//! delivered. A lease is SQS's visibility timeout, kept up while a delivery runs; a replica
//! that dies stops keeping it and the message becomes visible to the others. A retry sends the
//! envelope again with one attempt more and a delay (up to SQS's 15 minutes; a longer backoff
//! is kept by the relay's cap), then deletes the old message; a dead letter goes to
//! `dead_letter_queue_url` with its reason. Endpoints, region and credentials come from AWS's
//! own settings (`AWS_REGION`, `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_S3`, …).

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_sqs::types::QueueAttributeName;
use axum::body::Bytes;

use super::{within, Envelope, Leased, Queue, QueueError, Stats};
use crate::config::SqsQueueConfig;

/// SQS's largest message; an envelope above this (less room for the attributes SQS counts)
/// goes to S3.
const SQS_MAX: usize = 256 * 1024 - 1024;
/// How long one call may take before the queue counts as down.
const CALL: Duration = Duration::from_secs(10);
/// SQS's longest delay.
const MAX_DELAY: Duration = Duration::from_secs(900);

pub struct SqsQueue {
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    queue_url: String,
    dead_url: String,
    bucket: String,
    lease: Duration,
    /// The oldest callback seen in the last receive (SQS does not say the age of its oldest
    /// message but through CloudWatch).
    oldest: Mutex<Option<Duration>>,
}

fn down(what: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(format!("{what}: {e}"))
}

/// The whole error chain of an SDK error (its `Display` alone says only "service error").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl SqsQueue {
    pub async fn open(cfg: &SqsQueueConfig, lease: Duration) -> Result<SqsQueue, QueueError> {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let s3_cfg = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(cfg.s3_force_path_style)
            .build();
        Ok(SqsQueue {
            sqs: aws_sdk_sqs::Client::new(&shared),
            s3: aws_sdk_s3::Client::from_conf(s3_cfg),
            queue_url: cfg.queue_url.clone(),
            dead_url: cfg.dead_letter_queue_url.clone(),
            bucket: cfg.large_payload_bucket.clone(),
            lease,
            oldest: Mutex::new(None),
        })
    }

    /// Sends `env` to `url` after `delay`, storing its body in S3 first when it is too large.
    async fn send(&self, url: &str, env: &Envelope, delay: Duration) -> Result<(), QueueError> {
        let mut text = env.to_json()?;
        if text.len() > SQS_MAX && env.body.is_some() {
            let key = format!("oneseal/callbacks/{}.json", env.id);
            let body = env
                .body
                .as_ref()
                .map(|b| b.get().to_string())
                .unwrap_or_default();
            within(CALL, "s3 PutObject", async {
                self.s3
                    .put_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .server_side_encryption(ServerSideEncryption::Aes256)
                    .content_type("application/json")
                    .body(ByteStream::from(body.into_bytes()))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| down("s3 PutObject", chain(&e)))
            })
            .await?;
            let aside = Envelope {
                body: None,
                claim: Some(key),
                ..env.clone()
            };
            text = aside.to_json()?;
        }
        within(CALL, "sqs SendMessage", async {
            self.sqs
                .send_message()
                .queue_url(url)
                .message_body(text)
                .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| down("sqs SendMessage", chain(&e)))
        })
        .await
    }

    async fn delete(&self, url: &str, handle: &str) -> Result<(), QueueError> {
        within(CALL, "sqs DeleteMessage", async {
            self.sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(handle)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| down("sqs DeleteMessage", chain(&e)))
        })
        .await
    }

    /// The body of `env`: inline, or fetched from S3. `None` when its object is gone (the
    /// callback was delivered by another replica meanwhile).
    async fn body(&self, env: &Envelope) -> Result<Option<Bytes>, QueueError> {
        if let Some(b) = &env.body {
            return Ok(Some(Bytes::copy_from_slice(b.get().as_bytes())));
        }
        let Some(key) = &env.claim else {
            return Err(QueueError::Malformed(
                "an envelope with neither body nor claim".into(),
            ));
        };
        let got = within(CALL, "s3 GetObject", async {
            match self
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(o) => Ok(Some(o)),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                Err(e) => Err(down("s3 GetObject", chain(&e))),
            }
        })
        .await?;
        let Some(o) = got else {
            return Ok(None);
        };
        let bytes = o
            .body
            .collect()
            .await
            .map_err(|e| down("s3 GetObject body", e))?
            .into_bytes();
        Ok(Some(bytes))
    }

    async fn count(&self, url: &str, names: &[QueueAttributeName]) -> Result<u64, QueueError> {
        let a = within(CALL, "sqs GetQueueAttributes", async {
            self.sqs
                .get_queue_attributes()
                .queue_url(url)
                .set_attribute_names(Some(names.to_vec()))
                .send()
                .await
                .map_err(|e| down("sqs GetQueueAttributes", chain(&e)))
        })
        .await?;
        let attrs = a.attributes.unwrap_or_default();
        Ok(names
            .iter()
            .filter_map(|n| attrs.get(n))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum())
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn describe(&self) -> String {
        format!("sqs {}", self.queue_url)
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    async fn put(&self, envelope: Envelope) -> Result<(), QueueError> {
        self.send(&self.queue_url, &envelope, Duration::ZERO).await
    }

    async fn receive(&self, max: usize) -> Result<Vec<Leased>, QueueError> {
        let r = within(CALL, "sqs ReceiveMessage", async {
            self.sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(max.clamp(1, 10) as i32)
                .visibility_timeout(self.lease.as_secs() as i32)
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| down("sqs ReceiveMessage", chain(&e)))
        })
        .await?;
        let mut out = Vec::new();
        let mut oldest = None;
        for m in r.messages.unwrap_or_default() {
            let (Some(handle), Some(text)) = (m.receipt_handle, m.body) else {
                continue;
            };
            let envelope = match Envelope::from_json(&text) {
                Ok(e) => e,
                Err(err) => {
                    // Not ours: to the dead letters as it is, so it does not come back forever.
                    tracing::error!(error = %err, "not a oneseal callback; moved to the dead letters as it is");
                    within(CALL, "sqs SendMessage", async {
                        self.sqs
                            .send_message()
                            .queue_url(&self.dead_url)
                            .message_body(text)
                            .send()
                            .await
                            .map_err(|e| down("sqs SendMessage", chain(&e)))
                    })
                    .await?;
                    self.delete(&self.queue_url, &handle).await?;
                    continue;
                }
            };
            oldest = oldest.max(Some(envelope.age()));
            match self.body(&envelope).await? {
                Some(body) => out.push(Leased {
                    envelope,
                    body,
                    handle,
                }),
                None => {
                    tracing::info!(callback = %envelope.id, "its stored body is gone (delivered already); removing the message");
                    self.delete(&self.queue_url, &handle).await?;
                }
            }
        }
        if let Ok(mut o) = self.oldest.lock() {
            *o = oldest;
        }
        Ok(out)
    }

    async fn extend(&self, handle: &str) -> Result<(), QueueError> {
        within(CALL, "sqs ChangeMessageVisibility", async {
            self.sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(handle)
                .visibility_timeout(self.lease.as_secs() as i32)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| down("sqs ChangeMessageVisibility", chain(&e)))
        })
        .await
    }

    async fn ack(&self, leased: &Leased) -> Result<(), QueueError> {
        // The object first: if the message outlived it, its next receiver finds the object
        // gone and knows the callback was delivered.
        if let Some(key) = &leased.envelope.claim {
            within(CALL, "s3 DeleteObject", async {
                self.s3
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| down("s3 DeleteObject", chain(&e)))
            })
            .await?;
        }
        self.delete(&self.queue_url, &leased.handle).await
    }

    async fn retry(&self, leased: &Leased, delay: Duration) -> Result<(), QueueError> {
        // Sent again before the old one goes: a failure in between repeats, never loses.
        self.send(&self.queue_url, &leased.envelope.retried(), delay)
            .await?;
        self.delete(&self.queue_url, &leased.handle).await
    }

    async fn bury(&self, leased: &Leased, reason: &str) -> Result<(), QueueError> {
        self.send(
            &self.dead_url,
            &leased.envelope.buried(reason),
            Duration::ZERO,
        )
        .await?;
        self.delete(&self.queue_url, &leased.handle).await
    }

    async fn replay(&self) -> Result<usize, QueueError> {
        let mut n = 0;
        loop {
            let r = within(CALL, "sqs ReceiveMessage", async {
                self.sqs
                    .receive_message()
                    .queue_url(&self.dead_url)
                    .max_number_of_messages(10)
                    .visibility_timeout(60)
                    .wait_time_seconds(0)
                    .send()
                    .await
                    .map_err(|e| down("sqs ReceiveMessage", chain(&e)))
            })
            .await?;
            let msgs = r.messages.unwrap_or_default();
            if msgs.is_empty() {
                return Ok(n);
            }
            for m in msgs {
                let (Some(handle), Some(text)) = (m.receipt_handle, m.body) else {
                    continue;
                };
                // Something that was never an envelope stays where it is, for a person to read.
                let Ok(env) = Envelope::from_json(&text) else {
                    continue;
                };
                self.send(&self.queue_url, &env.replayed(), Duration::ZERO)
                    .await?;
                self.delete(&self.dead_url, &handle).await?;
                n += 1;
            }
        }
    }

    async fn stats(&self) -> Result<Stats, QueueError> {
        let depth = self
            .count(
                &self.queue_url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                ],
            )
            .await?;
        let dead = self
            .count(
                &self.dead_url,
                &[QueueAttributeName::ApproximateNumberOfMessages],
            )
            .await?;
        Ok(Stats {
            depth,
            dead,
            oldest: self.oldest.lock().ok().and_then(|o| *o),
        })
    }
}
