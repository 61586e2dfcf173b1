//! Whether a failed attempt goes again, under the upstream's retry policy
//! ([`crate::upstream::retry`]).
//!
//! A request that never reached the backend (a failed connect) may always
//! be retried. One that did is retried only when its method is idempotent
//! and its body is still whole in Pingora's 64 KiB replay buffer: a POST
//! the backend may have acted on is never sent twice.

use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_proxy::Session;

use super::RequestCtx;
use crate::metrics::Metrics;
use crate::upstream::retry::Failure;

/// Whether the request may be sent again after a backend received it: its
/// method is idempotent and its body is whole in the replay buffer.
pub fn replayable(session: &Session) -> bool {
    session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated()
}

/// What an error after the connection was made says of the attempt, when
/// it is the backend's doing.
pub fn failure_of(e: &Error) -> Option<Failure> {
    if e.esource() != &ErrorSource::Upstream {
        return None;
    }
    match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => Some(Failure::Timeout),
        ErrorType::ConnectionClosed
        | ErrorType::ReadError
        | ErrorType::WriteError
        | ErrorType::H2Error => Some(Failure::Reset),
        _ => None,
    }
}

/// Decides whether the current attempt, which failed with `failure`, is
/// retried. A granted retry is counted, holds a permit of the upstream's
/// retry budget for the rest of the request (unless the request never
/// reached the backend), schedules its backoff, and charges the failure
/// to the backend.
pub fn grant(session: &Session, ctx: &mut RequestCtx, failure: Failure, metrics: &Metrics) -> bool {
    let Some(lease) = &ctx.lease else {
        return false;
    };
    let pool = lease.pool();
    let policy = &pool.settings.retry;
    if !policy.on.covers(failure) || ctx.retries >= policy.max {
        return false;
    }
    let reached = failure != Failure::ConnectFailure;
    if reached && !replayable(session) {
        return false;
    }
    if ctx.deadline().is_some_and(|d| ctx.started.elapsed() >= d) {
        return false;
    }
    // A request that never reached the backend adds no load to it: only
    // retries of requests it received spend the budget.
    let permit = if reached {
        let Some(permit) = pool.retry_permit() else {
            metrics
                .upstream_retry_overflow
                .with_label_values(&[&pool.name])
                .inc();
            return false;
        };
        Some(permit)
    } else {
        None
    };
    metrics
        .upstream_retries
        .with_label_values(&[&pool.name, &failure.label()])
        .inc();
    if !ctx.outcome_recorded {
        lease
            .backend()
            .record(!matches!(failure, Failure::Status(s) if s < 500));
        ctx.outcome_recorded = true;
    }
    ctx.retries += 1;
    ctx.backoff = Some(policy.backoff(ctx.retries));
    if permit.is_some() {
        ctx.retry_permit = permit;
    }
    true
}
