//! A singleton task's lease: waiting for it as a standby, keeping it while an
//! attempt runs, and giving it back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Spec;
use crate::format::Rounded;
use crate::lease::{Acquired, Lease, Renewed};
use crate::registry::Entry;

/// The lease a singleton task takes before each attempt.
#[derive(Clone)]
pub(crate) struct SharedLease(pub(crate) Arc<dyn Lease>);

impl fmt::Debug for SharedLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("holder", &self.0.holder())
            .field("ttl", &self.0.ttl())
            .finish()
    }
}

/// A grant this task holds.
pub(super) struct Held {
    pub(super) fencing_token: u64,
    /// When the last request the store confirmed was sent: the store's
    /// expiry is at least a TTL after it.
    confirmed: Instant,
    /// Set when the grant could no longer be proven while the attempt ran.
    pub(super) lost: bool,
}

/// The lease's timing, as the runtime uses it.
#[derive(Clone, Copy)]
pub(super) struct Timing {
    ttl: Duration,
    every: Duration,
    margin: Duration,
    /// The attempt's grace: the task's own, at most a quarter of the TTL.
    pub(super) grace: Duration,
}

impl Timing {
    pub(super) fn of(lease: &dyn Lease, grace: Duration) -> Timing {
        let ttl = lease.ttl().max(Duration::from_millis(10));
        let every = lease
            .renew_every()
            .min(ttl / 2)
            .max(Duration::from_millis(1));
        Timing {
            ttl,
            every,
            margin: ttl / 10,
            grace: grace.min(ttl / 4),
        }
    }

    /// When the attempt must be cancelled if the grant confirmed at
    /// `confirmed` is not renewed: its grace then ends a margin before the
    /// store's expiry.
    fn stop_at(&self, confirmed: Instant) -> Instant {
        confirmed + (self.ttl - self.margin - self.grace)
    }
}

/// Waits as a standby until the store grants the lease; `None` when the task
/// is cancelled first. Store errors are logged, shown as the standby's
/// reason and retried with the task's backoff, at most every
/// `renew_every`.
pub(super) async fn acquire(
    spec: &Spec,
    lease: &dyn Lease,
    entry: &Entry,
    token: &CancellationToken,
) -> Option<Held> {
    let timing = Timing::of(lease, spec.policy.grace);
    let name = entry.name();
    let mut errors: u32 = 0;
    entry.stand_by("waiting for the lease".to_owned());
    loop {
        if token.is_cancelled() {
            return None;
        }
        let sent = Instant::now();
        // Not cut short by cancellation: a grant that arrives is released.
        let answer = tokio::time::timeout(timing.every, lease.acquire(name)).await;
        let (reason, wait, error) = match answer {
            Ok(Ok(Acquired::Granted { fencing_token })) => {
                let held = Held {
                    fencing_token,
                    confirmed: sent,
                    lost: false,
                };
                if token.is_cancelled() {
                    release(lease, entry, &held, timing).await;
                    return None;
                }
                if Instant::now() < timing.stop_at(sent) {
                    tracing::info!(
                        task = %name,
                        fencing_token,
                        holder = %lease.holder(),
                        "supervised singleton acquired its lease"
                    );
                    entry.lease_acquired(fencing_token);
                    return Some(held);
                }
                release(lease, entry, &held, timing).await;
                (
                    "the lease store granted the lease too late to use it".to_owned(),
                    Duration::ZERO,
                    true,
                )
            }
            Ok(Ok(Acquired::Held { holder })) => {
                errors = 0;
                (format!("lease held by {holder}"), timing.every, false)
            }
            Ok(Err(e)) => (format!("lease store error: {e:#}"), Duration::ZERO, true),
            Err(_) => (
                format!(
                    "the lease store did not answer within {}",
                    Rounded(timing.every)
                ),
                Duration::ZERO,
                true,
            ),
        };
        let wait = if error {
            errors = errors.saturating_add(1);
            spec.policy.backoff.delay(errors).min(timing.every)
        } else {
            wait
        };
        if entry.stand_by(reason.clone()) {
            if error {
                tracing::warn!(
                    task = %name,
                    retry_in = %Rounded(wait),
                    "supervised singleton in standby: {reason}"
                );
            } else {
                tracing::info!(task = %name, "supervised singleton in standby: {reason}");
            }
        }
        tokio::select! {
            biased;
            _ = token.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Renews `held` in the background of an attempt; resolves, with the
/// reason, when the lease can no longer be proven and the attempt must stop
/// now.
pub(super) async fn keep(
    lease: &dyn Lease,
    entry: &Entry,
    held: &mut Held,
    timing: Timing,
) -> String {
    let name = entry.name();
    let fencing_token = held.fencing_token;
    let mut next = held.confirmed + timing.every;
    loop {
        let stop_at = timing.stop_at(held.confirmed);
        let renewal = async {
            tokio::time::sleep_until(next).await;
            let sent = Instant::now();
            (sent, lease.renew(name, fencing_token).await)
        };
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(stop_at) => {
                let since = Instant::now().saturating_duration_since(held.confirmed);
                return format!(
                    "could not renew the lease: last confirmed {} ago, ttl {}",
                    Rounded(since),
                    Rounded(timing.ttl)
                );
            }
            (sent, answer) = renewal => match answer {
                Ok(Renewed::Kept) => {
                    held.confirmed = sent;
                    next = sent + timing.every;
                }
                Ok(Renewed::Lost) => {
                    return "the lease was lost: it expired or another holder took it".to_owned();
                }
                Err(e) => {
                    tracing::warn!(task = %name, fencing_token, "supervised singleton could not renew its lease: {e:#}");
                    next = Instant::now() + (timing.every / 4).max(Duration::from_millis(1));
                }
            }
        }
    }
}

/// Gives the lease back, so that a standby replica takes over at once.
pub(super) async fn release(lease: &dyn Lease, entry: &Entry, held: &Held, timing: Timing) {
    entry.lease_released();
    let name = entry.name();
    match tokio::time::timeout(timing.every, lease.release(name, held.fencing_token)).await {
        Ok(Ok(())) => {
            tracing::debug!(task = %name, fencing_token = held.fencing_token, "supervised singleton released its lease");
        }
        Ok(Err(e)) => tracing::warn!(
            task = %name,
            "supervised singleton could not release its lease (it expires after its ttl): {e:#}"
        ),
        Err(_) => tracing::warn!(
            task = %name,
            "supervised singleton could not release its lease in time (it expires after its ttl)"
        ),
    }
}
