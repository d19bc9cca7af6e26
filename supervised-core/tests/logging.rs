//! Failures are logged through `tracing` at ERROR with structured fields.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervised_core::{CancellationToken, Context, Registry, Spec};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

fn fail(message: &str) {
    panic!("{message}")
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_logged_with_task_attempt_restarts_delay_message_and_location() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let registry = Registry::new();
    let token = CancellationToken::new();
    let task = Spec::new("logged")
        .registry(&registry)
        .max_restarts(1, Duration::from_secs(60))
        .spawn(token.clone(), |ctx: Context| async move {
            if ctx.attempt() == 1 {
                fail("tenant 42 has bad data");
            }
            Err::<(), _>("still bad")
        });
    task.await.unwrap();

    let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    let first = lines[0];
    for field in [
        "task=\"logged\"",
        "attempt=1",
        "restarts=0",
        "next_delay=1.00 s",
        "kind=panic",
        "error=tenant 42 has bad data",
        "location=",
        "logging.rs:",
        "restarting after backoff",
    ] {
        assert!(first.contains(field), "missing {field}: {first}");
    }
    let second = lines[1];
    for field in [
        "attempt=2",
        "restarts=1",
        "kind=error",
        "error=still bad",
        "giving up",
    ] {
        assert!(second.contains(field), "missing {field}: {second}");
    }
}
