//! Leases in a PostgreSQL table, on tokio-postgres.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Statement};

use super::{Acquired, Lease, LeaseError, LeaseFuture, Renewed, DEFAULT_TTL};

/// Leases in a PostgreSQL table (feature `postgres`), with expiry judged by
/// the database server's clock.
///
/// One dedicated connection serves every lease of a `Postgres` and of its
/// clones; it is opened on first use, and opened again after it breaks (a
/// restart of the server, `pg_terminate_backend`). Its `application_name`
/// is `supervised-lease <holder>` unless the URL sets one. The table
/// (`supervised_leases` unless [`Postgres::table`] says otherwise) is created
/// if missing:
///
/// ```sql
/// CREATE TABLE supervised_leases (
///     name          text        PRIMARY KEY,  -- the task's name
///     holder        text        NOT NULL,     -- the last holder
///     fencing_token bigint      NOT NULL,     -- +1 on every grant
///     expires_at    timestamptz NOT NULL      -- by the server's now()
/// );
/// ```
///
/// A lease is granted when its row is missing or its `expires_at` has
/// passed, in one `INSERT .. ON CONFLICT .. DO UPDATE .. WHERE` statement, so
/// two replicas asking at once cannot both get it. Rows are never deleted,
/// so fencing tokens keep growing across releases.
///
/// The connection does not use TLS: keep the database on a private network,
/// or put a TLS-terminating proxy on loopback.
///
/// ```no_run
/// use supervised_core::lease::Postgres;
/// use supervised_core::{Context, Spec};
///
/// # fn demo() -> Result<(), supervised_core::lease::LeaseError> {
/// let leases = Postgres::new("postgres://app@db.internal/app")?.holder("replica-a");
/// let spec = Spec::new("scheduler").singleton(leases);
/// # let _ = spec; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Postgres {
    config: tokio_postgres::Config,
    holder: String,
    ttl: Duration,
    renew_every: Option<Duration>,
    table: String,
    conn: Arc<Mutex<Option<Conn>>>,
    /// Set once the table is known to exist: reconnections skip its setup.
    table_ready: Arc<std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the config: it may hold a password.
        f.debug_struct("Postgres")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("holder", &self.holder)
            .field("ttl", &self.ttl)
            .field("table", &self.table)
            .finish()
    }
}

/// The connection slot during a request: emptied unless the request
/// finished well.
struct Pending<'a> {
    slot: tokio::sync::MutexGuard<'a, Option<Conn>>,
    finished: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.finished {
            *self.slot = None;
        }
    }
}

/// An open connection with its prepared statements.
struct Conn {
    client: Client,
    acquire: Statement,
    holder_of: Statement,
    renew: Statement,
    release: Statement,
}

impl Postgres {
    /// Leases in the database at `url`, a libpq connection string or URL
    /// (`postgres://user:password@host:port/dbname`, `host=/run/postgresql
    /// user=app`). Checks the URL only; the connection is opened on first
    /// use.
    ///
    /// The holder's name defaults to `<hostname>:<pid>`.
    pub fn new(url: &str) -> Result<Postgres, LeaseError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| LeaseError::with_source("invalid PostgreSQL connection URL", e))?;
        Ok(Postgres {
            config,
            holder: default_holder(),
            ttl: DEFAULT_TTL,
            renew_every: None,
            table: "supervised_leases".to_owned(),
            conn: Arc::new(Mutex::new(None)),
            table_ready: Arc::default(),
        })
    }

    /// Names this holder, as other replicas see it in their standby reason
    /// (default `<hostname>:<pid>`).
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// How long a grant or renewal lasts (default 10 s). At least 100 ms.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_millis(100));
        self
    }

    /// How often the holder renews and a standby asks (default a third of
    /// the TTL).
    pub fn renew_every(mut self, every: Duration) -> Self {
        self.renew_every = Some(every);
        self
    }

    /// Keeps the leases in `table` (default `supervised_leases`), e.g. one
    /// table per service sharing a database. A plain identifier: ASCII
    /// letters, digits and `_`, not starting with a digit, at most 63 bytes.
    pub fn table(mut self, table: &str) -> Result<Self, LeaseError> {
        let valid = !table.is_empty()
            && table.len() <= 63
            && !table.starts_with(|c: char| c.is_ascii_digit())
            && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(LeaseError::new(format!(
                "invalid lease table name {table:?}: use ASCII letters, digits and `_`, \
                 not starting with a digit, at most 63 bytes"
            )));
        }
        self.table = table.to_owned();
        // A connection of its own: the statements name the table.
        self.conn = Arc::new(Mutex::new(None));
        self.table_ready = Arc::default();
        Ok(self)
    }

    /// Runs `op` on the connection, opening it first if needed; a request
    /// that fails or does not answer within a third of the TTL drops the
    /// connection, so that the next one opens a fresh one.
    async fn request(&self, op: Op<'_>) -> Result<Answer, LeaseError> {
        // Dropped before it finishes (the runtime's own deadline came
        // first), the request also drops the connection: it may hang on a
        // half-open socket that would never report itself closed.
        let mut pending = Pending {
            slot: self.conn.lock().await,
            finished: false,
        };
        let limit = self.limit();
        let slot = &mut *pending.slot;
        let answer = tokio::time::timeout(limit, async {
            if slot.as_ref().is_some_and(|c| c.client.is_closed()) {
                *slot = None;
            }
            if slot.is_none() {
                *slot = Some(self.connect().await?);
            }
            let conn = slot.as_ref().expect("connected above");
            self.run(conn, op)
                .await
                .map_err(|e| LeaseError::with_source("PostgreSQL request failed", e))
        })
        .await;
        // A failed request drops the connection too (`pending` is left
        // unfinished): the next one opens a fresh one.
        match answer {
            Ok(Ok(answer)) => {
                pending.finished = true;
                Ok(answer)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LeaseError::new(format!(
                "PostgreSQL did not answer within {}",
                crate::format::Rounded(limit)
            ))),
        }
    }

    /// How long one request may take, connecting included: under both the
    /// renewal interval and a third of the TTL, so that the runtime's own
    /// deadlines rarely cut it first.
    fn limit(&self) -> Duration {
        let every = self.renew_every.unwrap_or(self.ttl / 3);
        (self.ttl / 3).min(every).mul_f64(0.9)
    }

    async fn run(&self, conn: &Conn, op: Op<'_>) -> Result<Answer, tokio_postgres::Error> {
        let ttl = self.ttl.as_secs_f64();
        match op {
            Op::Acquire(name) => {
                let granted = conn
                    .client
                    .query_opt(&conn.acquire, &[&name, &self.holder, &ttl])
                    .await?;
                if let Some(row) = granted {
                    let token: i64 = row.try_get(0)?;
                    return Ok(Answer::Acquired(Acquired::Granted {
                        fencing_token: token as u64,
                    }));
                }
                let holder = conn.client.query_opt(&conn.holder_of, &[&name]).await?;
                Ok(Answer::Acquired(Acquired::Held {
                    holder: match holder {
                        Some(row) => row.try_get(0)?,
                        // Expired between the two statements: asked again
                        // on the next interval.
                        None => "another replica (expiring)".to_owned(),
                    },
                }))
            }
            Op::Renew(name, token) => {
                let rows = conn
                    .client
                    .execute(&conn.renew, &[&name, &token, &ttl])
                    .await?;
                Ok(Answer::Renewed(if rows == 1 {
                    Renewed::Kept
                } else {
                    Renewed::Lost
                }))
            }
            Op::Release(name, token) => {
                conn.client.execute(&conn.release, &[&name, &token]).await?;
                Ok(Answer::Released)
            }
        }
    }

    async fn connect(&self) -> Result<Conn, LeaseError> {
        let mut config = self.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.limit());
        }
        if config.get_application_name().is_none() {
            // Names the holder in `pg_stat_activity`.
            let mut name = format!("supervised-lease {}", self.holder);
            while name.len() > 63 {
                name.pop();
            }
            config.application_name(&name);
        }
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| LeaseError::with_source("could not connect to PostgreSQL", e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("lease connection to PostgreSQL closed: {e}");
            }
        });
        let table = &self.table;
        // Replicas starting together: the lock makes the creation one at a
        // time (a concurrent `IF NOT EXISTS` can still fail).
        let setup = format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock(hashtext('supervised lease table {table}'));
             CREATE TABLE IF NOT EXISTS {table} (
                 name text PRIMARY KEY,
                 holder text NOT NULL,
                 fencing_token bigint NOT NULL,
                 expires_at timestamptz NOT NULL
             );
             COMMIT;"
        );
        let failed = |e| LeaseError::with_source("could not prepare the lease table", e);
        let ready = std::sync::atomic::Ordering::Relaxed;
        if !self.table_ready.load(ready) {
            client.batch_execute(&setup).await.map_err(failed)?;
            self.table_ready.store(true, ready);
        }
        let acquire = client
            .prepare(&format!(
                "INSERT INTO {table} AS t (name, holder, fencing_token, expires_at)
                 VALUES ($1, $2, 1, now() + make_interval(secs => $3))
                 ON CONFLICT (name) DO UPDATE
                    SET holder = EXCLUDED.holder,
                        fencing_token = t.fencing_token + 1,
                        expires_at = EXCLUDED.expires_at
                  WHERE t.expires_at <= now()
                 RETURNING t.fencing_token"
            ))
            .await
            .map_err(failed)?;
        let holder_of = client
            .prepare(&format!(
                "SELECT holder FROM {table} WHERE name = $1 AND expires_at > now()"
            ))
            .await
            .map_err(failed)?;
        let renew = client
            .prepare(&format!(
                "UPDATE {table} SET expires_at = now() + make_interval(secs => $3)
                  WHERE name = $1 AND fencing_token = $2 AND expires_at > now()"
            ))
            .await
            .map_err(failed)?;
        let release = client
            .prepare(&format!(
                "UPDATE {table} SET expires_at = '-infinity'
                  WHERE name = $1 AND fencing_token = $2"
            ))
            .await
            .map_err(failed)?;
        Ok(Conn {
            client,
            acquire,
            holder_of,
            renew,
            release,
        })
    }
}

/// `<hostname>:<pid>`, or `pid-<pid>` without a hostname.
fn default_holder() -> String {
    let pid = std::process::id();
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    match host {
        Some(host) => format!("{host}:{pid}"),
        None => format!("pid-{pid}"),
    }
}

impl Lease for Postgres {
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
        Box::pin(async move {
            match self.request(Op::Acquire(name)).await? {
                Answer::Acquired(acquired) => Ok(acquired),
                _ => unreachable!("an acquire answers with `Acquired`"),
            }
        })
    }

    fn renew<'a>(&'a self, name: &'a str, fencing_token: u64) -> LeaseFuture<'a, Renewed> {
        Box::pin(async move {
            match self.request(Op::Renew(name, fencing_token as i64)).await? {
                Answer::Renewed(renewed) => Ok(renewed),
                _ => unreachable!("a renewal answers with `Renewed`"),
            }
        })
    }

    fn release<'a>(&'a self, name: &'a str, fencing_token: u64) -> LeaseFuture<'a, ()> {
        Box::pin(async move {
            self.request(Op::Release(name, fencing_token as i64))
                .await
                .map(drop)
        })
    }
}

/// A request to the lease table.
enum Op<'a> {
    Acquire(&'a str),
    Renew(&'a str, i64),
    Release(&'a str, i64),
}

/// Its answer.
enum Answer {
    Acquired(Acquired),
    Renewed(Renewed),
    Released,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_a_clear_error() {
        let e = Postgres::new("postgres://[::1").unwrap_err();
        assert!(
            e.to_string().contains("invalid PostgreSQL connection URL"),
            "{e}"
        );
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        let pg = Postgres::new("postgres://localhost/app").unwrap();
        assert!(pg.clone().table("leases_2").is_ok());
        for bad in [
            "",
            "2leases",
            "leases; DROP TABLE x",
            "a\"b",
            &"x".repeat(64),
        ] {
            assert!(pg.clone().table(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_does_not_show_the_password() {
        let pg = Postgres::new("postgres://app:secret@localhost/app").unwrap();
        assert!(!format!("{pg:?}").contains("secret"));
    }
}
