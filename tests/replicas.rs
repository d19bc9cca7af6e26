//! Singleton tasks across replica processes, on a real PostgreSQL: two
//! `replica` example processes on one database, their states sampled every
//! 50 ms through their endpoints.
//!
//! Needs `SUPERVISED_TEST_DATABASE_URL`, the URL of a PostgreSQL server whose
//! user may create databases (`.ci/postgres.sh` starts one); each test makes
//! a database of its own there. Without it, each test says it was skipped
//! and passes.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};

const ADMIN_TOKEN: &str = "replica-test-admin-token-0123456789";
/// The lease's TTL in these tests; the acquire interval is a third of it.
const TTL: Duration = Duration::from_secs(2);
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Slack for the sampling period, an HTTP round trip and process scheduling
/// on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(700);

fn server_url() -> Option<String> {
    match std::env::var("SUPERVISED_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipped: set SUPERVISED_TEST_DATABASE_URL to a PostgreSQL server's URL to run \
                 the replica tests (.ci/postgres.sh starts one)"
            );
            None
        }
    }
}

/// A fresh database on the server at `url`; returns its URL.
async fn fresh_database(url: &str, tag: &str) -> String {
    let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the test database server answers");
    tokio::spawn(connection);
    let name = format!("supervised_{tag}_{}", std::process::id());
    // One statement each: neither may run inside a transaction.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    let (base, _) = url.rsplit_once('/').expect("a URL with a database part");
    format!("{base}/{name}")
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// The `replica` example, built by `cargo test` next to this test.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo test`, which builds the examples",
        path.display()
    );
    path
}

/// One replica process.
struct Replica {
    name: String,
    child: Child,
    addr: SocketAddr,
}

impl Replica {
    async fn start(database_url: &str, name: &str) -> Replica {
        let mut child = Command::new(example("replica"))
            .args([
                "--database-url",
                database_url,
                "--addr",
                "127.0.0.1:0",
                "--replica",
                name,
            ])
            .args([
                "--ttl",
                &TTL.as_secs_f64().to_string(),
                "--tick",
                "0.05",
                "--quiet",
            ])
            .env("SUPERVISED_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the replica example starts");
        let stdout = tokio::process::ChildStdout::from_std(child.stdout.take().unwrap()).unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        // Log lines may come first.
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("the replica prints its address before it exits");
                if let Some((_, addr)) = line.rsplit_once("listening on http://") {
                    break addr.trim().parse::<SocketAddr>().unwrap();
                }
            }
        })
        .await
        .expect("the replica prints its address");
        // Keep reading, so that the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Replica {
            name: name.to_owned(),
            child,
            addr,
        }
    }

    /// The scheduler's state, whether this replica leads, and its token;
    /// `None` when the process does not answer.
    async fn scheduler(&self) -> Option<(String, bool, Option<u64>)> {
        scheduler_of(self.addr).await
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn scheduler_of(addr: SocketAddr) -> Option<(String, bool, Option<u64>)> {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    let exchange = common::try_request(addr, "GET", "/admin/liveness", &headers);
    let reply = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()??;
    let doc = reply.json();
    let s = &doc["subsystems"]["scheduler"];
    Some((
        s["state"].as_str()?.to_owned(),
        s["leader"].as_bool()?,
        s["fencing_token"].as_u64(),
    ))
}

async fn wait_for(replica: &Replica, state: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Some((now, _, _)) = replica.scheduler().await {
            if now == state {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < within,
            "{} did not reach `{state}` within {within:?}",
            replica.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Samples every replica every 50 ms: the most that ran the scheduler at
/// once.
struct Sampler {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicU32>,
    samples: Arc<AtomicU32>,
    seen: Arc<Mutex<Vec<String>>>,
    handle: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(replicas: Vec<SocketAddr>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let most = Arc::new(AtomicU32::new(0));
        let samples = Arc::new(AtomicU32::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handle = tokio::spawn({
            let (stop, most, samples, seen) =
                (stop.clone(), most.clone(), samples.clone(), seen.clone());
            async move {
                let mut every = tokio::time::interval(SAMPLE_EVERY);
                while !stop.load(Ordering::SeqCst) {
                    every.tick().await;
                    let mut leading = 0;
                    let mut line = Vec::new();
                    for addr in &replicas {
                        let state = scheduler_of(*addr).await;
                        if state
                            .as_ref()
                            .is_some_and(|(s, leader, _)| s == "running" || *leader)
                        {
                            leading += 1;
                        }
                        line.push(format!("{state:?}"));
                    }
                    if leading > 1 {
                        seen.lock().unwrap().push(line.join(" | "));
                    }
                    most.fetch_max(leading, Ordering::SeqCst);
                    samples.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Sampler {
            stop,
            most,
            samples,
            seen,
            handle,
        }
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.await.unwrap();
        let samples = self.samples.load(Ordering::SeqCst);
        assert!(samples > 10, "only {samples} samples");
        assert!(
            self.most.load(Ordering::SeqCst) <= 1,
            "two leaders at once: {:?}",
            self.seen.lock().unwrap()
        );
    }
}

/// The scheduler's fenced runs, in the order the database recorded them:
/// `(replica, token)`. Tokens never go down, and a replica's runs under one
/// token are contiguous: no two leaders wrote in turn.
async fn check_runs(database_url: &str) -> Vec<(String, i64)> {
    let db = connect(database_url).await;
    let rows = db
        .query(
            "SELECT replica, fencing_token FROM supervised_demo_runs ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let runs: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(!runs.is_empty());
    for pair in runs.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "fencing token went down: {pair:?}");
        if pair[0].1 == pair[1].1 {
            assert_eq!(pair[0].0, pair[1].0, "two replicas wrote under one token");
        }
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_fails_over_within_ttl_and_one_interval() {
    let Some(server) = server_url() else { return };
    let url = fresh_database(&server, "kill").await;
    let mut a = Replica::start(&url, "a").await;
    wait_for(&a, "running", Duration::from_secs(20)).await;
    let b = Replica::start(&url, "b").await;
    wait_for(&b, "standby", Duration::from_secs(20)).await;
    let sampler = Sampler::start(vec![a.addr, b.addr]);
    tokio::time::sleep(Duration::from_secs(1)).await;

    a.kill_9();
    let failover = wait_for(&b, "running", Duration::from_secs(20)).await;
    println!(
        "failover after kill -9 of the leader: {} ms (ttl {} ms)",
        failover.as_millis(),
        TTL.as_millis()
    );
    assert!(
        failover <= TTL + TTL / 3 + SLACK,
        "failover took {failover:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampler.finish().await;

    let runs = check_runs(&url).await;
    let replicas: Vec<&str> = runs.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(replicas.first(), Some(&"a"));
    assert_eq!(replicas.last(), Some(&"b"));
    let (_, leading, token) = b.scheduler().await.unwrap();
    assert!(leading);
    assert_eq!(token, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_over_within_one_interval() {
    let Some(server) = server_url() else { return };
    let url = fresh_database(&server, "graceful").await;
    let mut a = Replica::start(&url, "a").await;
    wait_for(&a, "running", Duration::from_secs(20)).await;
    let b = Replica::start(&url, "b").await;
    wait_for(&b, "standby", Duration::from_secs(20)).await;
    let sampler = Sampler::start(vec![a.addr, b.addr]);
    tokio::time::sleep(Duration::from_millis(500)).await;

    a.signal("-TERM");
    let handover = wait_for(&b, "running", Duration::from_secs(20)).await;
    println!(
        "handover after SIGTERM of the leader: {} ms",
        handover.as_millis()
    );
    assert!(
        handover <= TTL / 3 + SLACK,
        "handover took {handover:?}: the lease was not released"
    );
    let exit = tokio::task::spawn_blocking(move || a.child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "the replica stops cleanly: {exit:?}");
    sampler.finish().await;
    check_runs(&url).await;
}

/// A proxy on loopback between a replica and the database, which can stop
/// taking new connections (a network that lets nothing new through).
async fn proxy(to: SocketAddr, open: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if !open.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

fn server_addr(url: &str) -> SocketAddr {
    // postgres://user@HOST:PORT/db
    let rest = url.split_once("://").unwrap().1;
    let host_port = rest.split('/').next().unwrap();
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
    host_port
        .parse()
        .expect("a URL with an IP address and a port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_connection_is_terminated_stops_before_the_ttl() {
    let Some(server) = server_url() else { return };
    let url = fresh_database(&server, "terminate").await;
    let db = connect(&url).await;

    // a reaches the database through a proxy; b directly.
    let open = Arc::new(AtomicBool::new(true));
    let via = proxy(server_addr(&url), open.clone()).await;
    let url_a = url.replace(&server_addr(&url).to_string(), &via.to_string());
    let a = Replica::start(&url_a, "a").await;
    wait_for(&a, "running", Duration::from_secs(20)).await;
    let b = Replica::start(&url, "b").await;
    wait_for(&b, "standby", Duration::from_secs(20)).await;
    let sampler = Sampler::start(vec![a.addr, b.addr]);

    // First alone: the lease connection is terminated, a reconnects at its
    // next renewal and keeps its grant.
    let terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = 'supervised-lease a' AND datname = current_database()";
    let n = db.query(terminate, &[]).await.unwrap().len();
    assert_eq!(n, 1, "one lease connection of a");
    tokio::time::sleep(TTL * 2).await;
    let (state, leading, token) = a.scheduler().await.unwrap();
    assert_eq!((state.as_str(), leading, token), ("running", true, Some(1)));

    // Then with no way back: a cannot prove its lease and must stop its
    // attempt before the lease expires; b takes over once it has.
    open.store(false, Ordering::SeqCst);
    let cut = Instant::now();
    let n = db.query(terminate, &[]).await.unwrap().len();
    assert_eq!(n, 1);
    let stopped = wait_for(&a, "standby", Duration::from_secs(20)).await;
    println!(
        "leader stopped {} ms after its lease connection was cut (ttl {} ms)",
        stopped.as_millis(),
        TTL.as_millis()
    );
    assert!(stopped < TTL, "a ran on past its ttl: {stopped:?}");
    wait_for(&b, "running", Duration::from_secs(20)).await;
    // a's grant expires a TTL after its last renewal, which was at most one
    // renewal interval (a third of the TTL) before the cut: b may take over
    // from two thirds of the TTL after the cut on, never sooner.
    let took_over = cut.elapsed();
    assert!(
        took_over >= (TTL - TTL / 3).mul_f64(0.9),
        "b took over before a's lease could expire: {took_over:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    sampler.finish().await;

    // The database saw a's last run before b's first.
    let runs = check_runs(&url).await;
    let first_b = runs.iter().position(|(r, _)| r == "b").expect("b ran");
    assert!(
        runs[first_b..].iter().all(|(r, _)| r == "b"),
        "a wrote after b took over"
    );
    let (_, _, token) = b.scheduler().await.unwrap();
    assert_eq!(token, Some(2));
}

/// A proxy whose existing connections can be frozen: they stay open and
/// pass nothing more, as a half-open connection after a network change
/// does. New connections pass.
async fn freezable_proxy(to: SocketAddr, freeze: Arc<tokio::sync::Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let freeze = freeze.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(to).await else {
                    return;
                };
                let frozen = freeze.notified();
                tokio::pin!(frozen);
                frozen.as_mut().enable();
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = &mut frozen => {
                        // Hold both sockets open, silent.
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_short_drops_its_connection_so_a_hung_one_is_not_reused() {
    use supervised::lease::{Acquired, Lease, Postgres, Renewed};
    let Some(server) = server_url() else { return };
    let url = fresh_database(&server, "hung").await;
    let freeze = Arc::new(tokio::sync::Notify::new());
    let via = freezable_proxy(server_addr(&url), freeze.clone()).await;
    let lease = Postgres::new(&url.replace(&server_addr(&url).to_string(), &via.to_string()))
        .unwrap()
        .holder("a");
    let Acquired::Granted { fencing_token } = lease.acquire("job").await.unwrap() else {
        panic!("a free lease is granted");
    };
    // The connection hangs; the caller gives up on the renewal first.
    freeze.notify_waiters();
    let cut = tokio::time::timeout(
        Duration::from_millis(200),
        lease.renew("job", fencing_token),
    )
    .await;
    assert!(cut.is_err(), "a frozen connection cannot answer");
    // The next request opens a fresh connection instead of waiting on the
    // hung one.
    let renewed = tokio::time::timeout(Duration::from_secs(2), lease.renew("job", fencing_token))
        .await
        .expect("answered on a fresh connection")
        .unwrap();
    assert_eq!(renewed, Renewed::Kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_on_other_tables_keep_their_own_leases() {
    use supervised::lease::{Acquired, Lease, Postgres};
    let Some(server) = server_url() else { return };
    let url = fresh_database(&server, "tables").await;
    let base = Postgres::new(&url).unwrap().holder("a");
    // The base connects first, on the default table.
    assert!(matches!(
        base.acquire("job").await.unwrap(),
        Acquired::Granted { .. }
    ));
    let first = base.clone().table("leases_one").unwrap();
    let second = base.clone().table("leases_two").unwrap();
    for lease in [&first, &second] {
        assert_eq!(
            lease.acquire("job").await.unwrap(),
            Acquired::Granted { fencing_token: 1 },
            "each table has its own lease named `job`"
        );
    }
    let db = connect(&url).await;
    for table in ["supervised_leases", "leases_one", "leases_two"] {
        let n: i64 = db
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{table}");
    }
}
