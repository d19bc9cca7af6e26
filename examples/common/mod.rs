//! What the example services share: two of their subsystems, the status
//! table, the admin token and the stop signal.

#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{IsTerminal, Read};
use std::time::Duration;

use supervised::format::Rounded;
use supervised::{Context, Spec, Task, TaskStatus};

/// Looks at the world every 3 s.
pub fn health_sweep() -> Task {
    let spec = Spec::new("health-sweep").stale_after(Duration::from_secs(15));
    Task::new(spec, |ctx: Context| async move {
        while !ctx.is_cancelled() {
            ctx.heartbeat();
            tokio::select! {
                _ = ctx.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            }
        }
    })
}

/// Panics on every fourth tick. Runs of 3 s or more reset the backoff, so it
/// is back after 1 s each time.
pub fn flaky_worker() -> Task {
    let spec = Spec::new("flaky-worker")
        .stale_after(Duration::from_secs(5))
        .reset_after(Duration::from_secs(3));
    Task::new(spec, |ctx: Context| async move {
        let mut tick = 0u32;
        while !ctx.is_cancelled() {
            ctx.heartbeat();
            tick += 1;
            if tick % 4 == 0 {
                panic!("flaky-worker: simulated crash on tick {tick}");
            }
            tokio::select! {
                _ = ctx.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

// --- Terminal output ---------------------------------------------------------------

/// The tasks as a table, members under their group task.
pub fn print_table(tasks: &[TaskStatus]) {
    let mut rows: Vec<[String; 6]> = tasks
        .iter()
        .map(|t| {
            let beat = match t.since_last_tick {
                Some(age) => format!("{} ago", Rounded(age)),
                None => "never".to_owned(),
            };
            let mut state = t.state.to_string();
            if let Some(lease) = &t.lease {
                match (&lease.standby_reason, lease.fencing_token) {
                    (Some(reason), _) if !lease.leader => state.push_str(&format!(" ({reason})")),
                    (_, Some(token)) if lease.leader => {
                        state.push_str(&format!(" (leader, token {token})"))
                    }
                    _ => {}
                }
            }
            if t.stale {
                state.push_str(" (stale)");
            }
            if let Some(blocked) = t.blocked_for {
                state.push_str(&format!(" (blocked {})", Rounded(blocked)));
            }
            let failures = format!(
                "{}/{}/{}",
                t.failures.panics, t.failures.errors, t.failures.stalls
            );
            let name = match &t.parent {
                Some(parent) => format!("{parent}/{}", t.name),
                None => t.name.clone(),
            };
            let quarantined: Vec<&str> = t.quarantined.iter().map(|q| q.key.as_str()).collect();
            [
                name,
                state,
                beat,
                t.restarts.to_string(),
                failures,
                quarantined.join(", "),
            ]
        })
        .collect();
    // Members of a group task under it.
    rows.sort_by(|a, b| a[0].cmp(&b[0]));
    let header = [
        "TASK",
        "STATE",
        "LAST BEAT",
        "RESTARTS",
        "PANIC/ERR/STALL",
        "QUARANTINED",
    ];
    // Each column as wide as its widest cell, so long names keep it aligned.
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..6).map(width).collect();
    let line = |c: [&str; 6]| {
        format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        )
        .trim_end()
        .to_owned()
    };
    println!("{}", line(header));
    for r in &rows {
        println!("{}", line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    println!();
}

// --- Setup ------------------------------------------------------------------------

/// Logs to stdout at INFO (or `RUST_LOG`), in colour only for a person at a
/// terminal and never with `NO_COLOR` set.
pub fn init_logging() {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(colour)
        .init();
}

/// `SUPERVISED_ADMIN_TOKEN` (`false`: not generated), or 128 random bits in
/// hex (`true`).
pub fn admin_token() -> anyhow::Result<(String, bool)> {
    if let Ok(token) = std::env::var("SUPERVISED_ADMIN_TOKEN") {
        let token = token.trim().to_owned();
        if !token.is_empty() {
            anyhow::ensure!(
                token.len() >= supervised::http::MIN_TOKEN_LEN,
                "SUPERVISED_ADMIN_TOKEN has {} bytes; use at least {} (e.g. `openssl rand -hex 16`)",
                token.len(),
                supervised::http::MIN_TOKEN_LEN
            );
            return Ok((token, false));
        }
    }
    let mut bytes = [0u8; 16];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_os.is_err() {
        // Fall back on the standard library's per-process random hash keys.
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let mut h = RandomState::new().build_hasher();
            h.write_usize(i);
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    Ok((bytes.iter().map(|b| format!("{b:02x}")).collect(), true))
}

/// Resolves with the name of the first stop signal: SIGINT (Ctrl-C) or
/// SIGTERM.
pub async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
