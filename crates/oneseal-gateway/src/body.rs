//! Request bodies of the JSON routes. One size limit for every route (`max_body_bytes`) and
//! a memory budget per listener or public route (`max_body_memory_bytes`): a body is held
//! only while the budget has room for it, so the memory all bodies in flight take is bounded
//! whatever the clients send. Both refusals follow the JSON error contract (413, 503).
//!
//! The budget is put into each request's extensions by the admission layer of its listener
//! or route; [`JsonBody`] takes from it while it reads.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Budget unit: permits are KiB, so a `u32` count covers any body.
const UNIT: usize = 1024;

/// The bytes of bodies a listener (or public route) may hold at once, and the largest one.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    held: Arc<Semaphore>,
    max_body: usize,
}

impl BodyBudget {
    /// `memory` bytes at once, `max_body` bytes per body.
    pub fn new(memory: usize, max_body: usize) -> BodyBudget {
        BodyBudget {
            held: Arc::new(Semaphore::new(units(memory) as usize)),
            max_body,
        }
    }
}

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
}

/// A whole request body, read within the limits; its share of the budget is given back
/// when it is dropped (after the handler).
pub struct JsonBody {
    /// The body.
    pub bytes: Bytes,
    _held: OwnedSemaphorePermit,
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than max_body_bytes ({max} bytes)"),
    )
}

fn overloaded() -> ApiError {
    ApiError::unavailable(
        "overloaded",
        "the gateway holds as many request bodies as max_body_memory_bytes allows; retry shortly",
        1,
    )
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let Some(budget) = req.extensions().get::<BodyBudget>().cloned() else {
            // Every JSON route is mounted behind an admission layer that sets the budget.
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "no body budget for this route",
            ));
        };
        let max = budget.max_body;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        let take = |n: u32| budget.held.clone().try_acquire_many_owned(n);
        let mut held = take(units(declared.unwrap_or(0))).map_err(|_| overloaded())?;
        let mut buf = Vec::with_capacity(declared.unwrap_or(0));
        let mut stream = req.into_body().into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("reading the body failed: {e}"),
                )
            })?;
            if buf.len() + chunk.len() > max {
                return Err(too_large(max));
            }
            buf.extend_from_slice(&chunk);
            // A body without Content-Length takes its share as it arrives.
            let need = units(buf.len());
            if need as usize > held.num_permits() {
                held.merge(take(need - held.num_permits() as u32).map_err(|_| overloaded())?);
            }
        }
        Ok(JsonBody {
            bytes: Bytes::from(buf),
            _held: held,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn req(budget: &BodyBudget, body: &'static [u8], length: bool) -> Request {
        let mut b = axum::http::Request::builder();
        if length {
            b = b.header(header::CONTENT_LENGTH, body.len());
        }
        let mut r = b.body(Body::from(body)).unwrap();
        r.extensions_mut().insert(budget.clone());
        r
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_a_json_413() {
        let b = BodyBudget::new(1 << 20, 4);
        let e = JsonBody::from_request(req(&b, b"12345", true), &())
            .await
            .err()
            .unwrap();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = JsonBody::from_request(req(&b, b"12345", false), &())
            .await
            .err()
            .unwrap();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn bodies_past_the_memory_budget_are_shed_until_one_is_dropped() {
        let b = BodyBudget::new(2 * UNIT, 4 * UNIT);
        let body: &'static [u8] = &[b'x'; 2 * UNIT];
        let first = JsonBody::from_request(req(&b, body, true), &())
            .await
            .ok()
            .unwrap();
        let e = JsonBody::from_request(req(&b, body, false), &())
            .await
            .err()
            .unwrap();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        assert!(JsonBody::from_request(req(&b, body, false), &())
            .await
            .is_ok());
    }
}
