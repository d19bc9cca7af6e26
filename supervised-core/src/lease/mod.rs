//! Leases: a singleton task runs on one replica of a service at a time.
//!
//! A service that runs as several replicas runs its background loops once per
//! replica; some of them (a scheduler that fires due jobs, say) must run
//! exactly once. [`Spec::singleton`](crate::Spec::singleton) makes a task a
//! singleton: before each attempt it takes a [`Lease`] named after the task
//! from a store the replicas share, and while another replica holds it, the
//! task waits as [`TaskState::Standby`](crate::TaskState::Standby) (a healthy
//! state: a standby is where it should be).
//!
//! # What the runtime guarantees
//!
//! * An attempt starts only after the store granted the lease, and the lease
//!   is renewed in the background every [`Lease::renew_every`] (default a
//!   third of the [`Lease::ttl`], itself 10 s by default).
//! * The holder judges its lease by its own monotonic clock, from the moment
//!   it *sent* the last request the store confirmed: the store's expiry is
//!   later than that. When it cannot renew (the store is down, the network is
//!   cut, the lease was taken), it cancels the attempt early enough that the
//!   attempt's grace ends a tenth of the TTL before the lease can expire:
//!   cancellation at `confirmed + ttl - ttl/10 - grace`, with the grace of a
//!   singleton capped at a quarter of the TTL. The task then goes back to
//!   `Standby`; it never runs on a lease it cannot prove.
//! * A standby asks for the lease every `renew_every`; when the holder dies
//!   without releasing (crash, `kill -9`), another replica takes over within
//!   `ttl + renew_every`. A graceful stop (cancellation, a clean return, a
//!   failure before its backoff) releases the lease at once, so another
//!   replica takes over within one `renew_every`.
//! * Errors of the store never crash the task: they are logged, retried with
//!   backoff, and shown as the standby's reason in its status.
//!
//! # What it cannot guarantee, and fencing tokens
//!
//! The expiry is decided by the store's clock (for [`Postgres`], the database
//! server's `now()`), and the holder's monotonic clock is assumed to run at
//! about the same rate (drift well under the 10 % margin). Two things break
//! that, and no lease can close them by timing alone:
//!
//! * a step of the store's clock (an NTP step, a failover to a database
//!   server whose clock differs) of more than a tenth of the TTL;
//! * a holder that is *paused*: a process stopped by `SIGSTOP`, a VM
//!   migration, or a poll that blocks its thread cannot act on its own
//!   deadline, and may resume and write after its lease expired and another
//!   replica took over.
//!
//! Fencing tokens close both. Each grant carries a token that is strictly
//! greater than every token granted before for that name
//! ([`Context::fencing_token`](crate::Context::fencing_token)). The writes
//! that must happen once carry it, and the store they go to keeps the
//! highest token it has seen and refuses older ones, in the same statement
//! as the write:
//!
//! ```sql
//! WITH fence AS (
//!     UPDATE fences SET token = $1 WHERE name = 'scheduler' AND token <= $1
//!     RETURNING token
//! )
//! UPDATE jobs SET fired_at = now() WHERE id = $2 AND EXISTS (SELECT 1 FROM fence);
//! ```
//!
//! No row updated means a newer holder has written: the old one stops
//! (`examples/replica.rs` fences every write of its scheduler this way).
//!
//! # Implementing a store
//!
//! [`Lease`] is small on purpose, so that a Kubernetes `Lease` object, etcd
//! or another database can implement it: acquire (or learn who holds it),
//! renew (or learn it was lost), release. [`Memory`] is a store within one
//! process, for tests and examples.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::Postgres;

/// The lease's time to live when a store does not set one: 10 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The future a [`Lease`] method returns.
pub type LeaseFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LeaseError>> + Send + 'a>>;

/// What asking for a lease gave.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is this holder's for [`Lease::ttl`] from the request, by the
    /// store's clock.
    Granted {
        /// Greater than every token granted before for this name; at least 1.
        fencing_token: u64,
    },
    /// Another holder has it and its lease has not expired.
    Held {
        /// Who holds it, as that holder calls itself ([`Lease::holder`]).
        holder: String,
    },
}

/// What renewing a lease gave.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewed {
    /// The lease is this holder's for another [`Lease::ttl`] from the request.
    Kept,
    /// The lease is no longer this holder's grant: it expired, or another
    /// holder took it. The holder must stop at once.
    Lost,
}

/// A store of named leases that replicas of a service share.
///
/// Every method concerns the lease called `name` (the task's name) and is
/// made by one holder ([`Lease::holder`]). A grant is identified by its
/// fencing token, so a holder can only renew or release the grant it was
/// given, never a later one.
///
/// The methods return boxed futures, so the trait is object safe
/// (`Arc<dyn Lease>`). The runtime bounds each call by its own deadline;
/// a store need not time out itself.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a lease store",
    label = "expected a lease store, e.g. `supervised::lease::Postgres`",
    note = "pass the store by value (`leases.clone()`: clones share one connection), or implement `supervised::lease::Lease` for your own store"
)]
pub trait Lease: Send + Sync + 'static {
    /// How long a grant or a renewal lasts, by the store's clock (default
    /// [`DEFAULT_TTL`]).
    fn ttl(&self) -> Duration {
        DEFAULT_TTL
    }

    /// How often the holder renews and a standby asks again (default a third
    /// of [`Lease::ttl`]). The runtime uses at most half the TTL.
    fn renew_every(&self) -> Duration {
        self.ttl() / 3
    }

    /// This holder's name, shown to the replicas that find the lease held.
    fn holder(&self) -> &str;

    /// Takes the lease `name` if it is free or expired.
    fn acquire<'a>(&'a self, name: &'a str) -> LeaseFuture<'a, Acquired>;

    /// Extends the grant `fencing_token` of `name` by another TTL, if it is
    /// still this holder's.
    fn renew<'a>(&'a self, name: &'a str, fencing_token: u64) -> LeaseFuture<'a, Renewed>;

    /// Gives up the grant `fencing_token` of `name` at once, so that another
    /// replica can take it; does nothing when the grant is no longer this
    /// holder's.
    fn release<'a>(&'a self, name: &'a str, fencing_token: u64) -> LeaseFuture<'a, ()>;
}

impl<L: Lease + ?Sized> Lease for Arc<L> {
    fn ttl(&self) -> Duration {
        (**self).ttl()
    }

    fn renew_every(&self) -> Duration {
        (**self).renew_every()
    }

    fn holder(&self) -> &str {
        (**self).holder()
    }

    fn acquire<'a>(&'a self, name: &'a str) -> LeaseFuture<'a, Acquired> {
        (**self).acquire(name)
    }

    fn renew<'a>(&'a self, name: &'a str, fencing_token: u64) -> LeaseFuture<'a, Renewed> {
        (**self).renew(name, fencing_token)
    }

    fn release<'a>(&'a self, name: &'a str, fencing_token: u64) -> LeaseFuture<'a, ()> {
        (**self).release(name, fencing_token)
    }
}

/// A lease store's error: the store could not be reached or refused the
/// request. The runtime logs it and retries with backoff.
#[derive(Debug)]
pub struct LeaseError {
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl LeaseError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        LeaseError {
            message: message.into(),
            source: None,
        }
    }

    /// An error with `message`, caused by `source`.
    pub fn with_source(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        LeaseError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        // `{:#}` also shows the cause, as the runtime logs it.
        if let (true, Some(source)) = (f.alternate(), &self.source) {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for LeaseError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A lease store inside one process, on tokio's clock: for tests, examples,
/// and a singleton among several groups of one process.
///
/// Each [`Memory::replica`] is another holder of the same store, as a
/// replica of a service would be; [`Memory::set_available`] makes the store
/// fail every request, as a database that is down would, and
/// [`Memory::set_reachable`] one holder's requests, as a network cut would.
///
/// ```
/// use std::time::Duration;
/// use supervised_core::lease::{Acquired, Lease, Memory, Renewed};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let a = Memory::new("replica-a").ttl(Duration::from_secs(3));
/// let b = a.replica("replica-b");
/// let Acquired::Granted { fencing_token } = a.acquire("scheduler").await.unwrap() else {
///     unreachable!()
/// };
/// assert_eq!(
///     b.acquire("scheduler").await.unwrap(),
///     Acquired::Held { holder: "replica-a".into() }
/// );
/// tokio::time::sleep(Duration::from_secs(4)).await; // a's lease expires
/// assert_eq!(a.renew("scheduler", fencing_token).await.unwrap(), Renewed::Lost);
/// assert_eq!(
///     b.acquire("scheduler").await.unwrap(),
///     Acquired::Granted { fencing_token: fencing_token + 1 }
/// );
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Memory {
    holder: String,
    ttl: Duration,
    renew_every: Option<Duration>,
    shared: Arc<Mutex<Shared>>,
    /// This holder's own link to the store.
    reachable: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug)]
struct Shared {
    available: bool,
    leases: HashMap<String, Grant>,
}

#[derive(Debug)]
struct Grant {
    holder: String,
    fencing_token: u64,
    /// `None` once released: free, the token kept for the next grant.
    expires: Option<Instant>,
}

impl Memory {
    /// A new, empty store, used by `holder`.
    pub fn new(holder: impl Into<String>) -> Self {
        Memory {
            holder: holder.into(),
            ttl: DEFAULT_TTL,
            renew_every: None,
            shared: Arc::new(Mutex::new(Shared {
                available: true,
                leases: HashMap::new(),
            })),
            reachable: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// Another holder of the same store, with the same timing.
    pub fn replica(&self, holder: impl Into<String>) -> Self {
        Memory {
            holder: holder.into(),
            reachable: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            ..self.clone()
        }
    }

    /// Sets this holder's TTL (default [`DEFAULT_TTL`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets how often this holder renews (default a third of the TTL).
    pub fn renew_every(mut self, every: Duration) -> Self {
        self.renew_every = Some(every);
        self
    }

    /// While `false`, every request of every holder of this store fails, as
    /// if the store were down.
    pub fn set_available(&self, available: bool) {
        self.lock().available = available;
    }

    /// While `false`, this holder's requests fail (and those of its clones,
    /// not of its replicas), as those of a replica cut off from the store
    /// would.
    pub fn set_reachable(&self, reachable: bool) {
        self.reachable
            .store(reachable, std::sync::atomic::Ordering::Relaxed);
    }

    /// Who holds `name` now, if anyone does.
    pub fn holder_of(&self, name: &str) -> Option<String> {
        let shared = self.lock();
        let grant = shared.leases.get(name)?;
        let live = grant.expires.is_some_and(|at| at > Instant::now());
        live.then(|| grant.holder.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn request<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> LeaseFuture<'_, T>
    where
        T: Send + 'static,
    {
        let result = {
            let mut shared = self.lock();
            if !self.reachable.load(std::sync::atomic::Ordering::Relaxed) {
                Err(LeaseError::new("the lease store cannot be reached"))
            } else if shared.available {
                Ok(f(&mut shared))
            } else {
                Err(LeaseError::new("the lease store is unavailable"))
            }
        };
        Box::pin(std::future::ready(result))
    }
}

impl Lease for Memory {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn renew_every(&self) -> Duration {
        self.renew_every.unwrap_or(self.ttl / 3)
    }

    fn holder(&self) -> &str {
        &self.holder
    }

    fn acquire<'a>(&'a self, name: &'a str) -> LeaseFuture<'a, Acquired> {
        let now = Instant::now();
        let expires = crate::clock::deadline_after(self.ttl);
        self.request(|shared| match shared.leases.get_mut(name) {
            Some(grant) if grant.expires.is_some_and(|at| at > now) => Acquired::Held {
                holder: grant.holder.clone(),
            },
            Some(grant) => {
                grant.fencing_token += 1;
                grant.holder = self.holder.clone();
                grant.expires = Some(expires);
                Acquired::Granted {
                    fencing_token: grant.fencing_token,
                }
            }
            None => {
                shared.leases.insert(
                    name.to_owned(),
                    Grant {
                        holder: self.holder.clone(),
                        fencing_token: 1,
                        expires: Some(expires),
                    },
                );
                Acquired::Granted { fencing_token: 1 }
            }
        })
    }

    fn renew<'a>(&'a self, name: &'a str, fencing_token: u64) -> LeaseFuture<'a, Renewed> {
        let now = Instant::now();
        let expires = crate::clock::deadline_after(self.ttl);
        self.request(|shared| match shared.leases.get_mut(name) {
            Some(grant)
                if grant.fencing_token == fencing_token
                    && grant.expires.is_some_and(|at| at > now) =>
            {
                grant.expires = Some(expires);
                Renewed::Kept
            }
            _ => Renewed::Lost,
        })
    }

    fn release<'a>(&'a self, name: &'a str, fencing_token: u64) -> LeaseFuture<'a, ()> {
        self.request(|shared| {
            if let Some(grant) = shared.leases.get_mut(name) {
                if grant.fencing_token == fencing_token {
                    grant.expires = None;
                }
            }
        })
    }
}
