//! Prometheus metrics of the supervised tasks, on
//! [prometheus-client](prometheus_client) (feature `metrics`, alias
//! `prometheus`).
//!
//! The metrics are computed from the [`Registry`] when they are scraped; a
//! heartbeat never touches the metrics library. Every series has the label
//! `task`:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `supervised_task_restarts_total` | counter | attempts started after the first |
//! | `supervised_task_failures_total{kind}` | counter | failures by `kind`: `panic`, `error`, `stalled` |
//! | `supervised_task_state{state}` | gauge | 1 for the task's current state, 0 for the others (`standby`, `running`, `backing_off`, `stopping`, `completed`, `cancelled`, `failed`) |
//! | `supervised_task_up` | gauge | 1 while the task is running and healthy (not stale, not blocking its thread), or a healthy singleton standby |
//! | `supervised_task_leader` | gauge | singleton tasks only: 1 while this replica holds the task's lease, 0 otherwise |
//! | `supervised_task_stale` | gauge | 1 while the task is stale (also while backing off or stopping) |
//! | `supervised_task_blocked_seconds` | gauge | how long the attempt's poll in progress has blocked its worker thread, past the task's `blocking_after`; 0 otherwise |
//! | `supervised_task_blocked_polls_total` | counter | polls seen blocking past `blocking_after` |
//! | `supervised_task_last_heartbeat_timestamp_seconds` | gauge | Unix time of the last heartbeat |
//! | `supervised_task_heartbeat_age_seconds` | gauge | seconds since the last heartbeat (monotonic clock) |
//!
//! The two heartbeat gauges also cover heartbeat-only names, and have no
//! series for a task that has not beaten yet.
//!
//! Across the replicas of a service, `sum by (task) (supervised_task_leader)`
//! is 1 for each singleton task; 0 says that no replica runs it (every
//! replica is a standby because the lease store is unreachable, say).
//!
//! ```
//! use supervised_core::{metrics, Registry};
//!
//! let tasks = Registry::new();
//! tasks.heartbeat("sweep");
//!
//! // Into the application's own Prometheus registry ...
//! let mut prom = prometheus_client::registry::Registry::default();
//! metrics::register(&mut prom, &tasks);
//!
//! // ... or rendered on its own.
//! let text = metrics::render(&tasks);
//! assert!(text.contains("supervised_task_heartbeat_age_seconds{task=\"sweep\"}"));
//! ```
//!
//! With the `http` feature too, [`Endpoints`](crate::http::Endpoints) serves them
//! on `GET /metrics`.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::registry::{Registry, TaskState};

/// The `Content-Type` of [`render`]'s output (Prometheus text format 0.0.4).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `Content-Type` of [`render_openmetrics`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A prometheus-client [`Collector`] that reads a [`Registry`] at every
/// scrape. [`register`] is the usual way to use it.
#[derive(Clone, Debug)]
pub struct TaskCollector {
    registry: Registry,
}

impl TaskCollector {
    /// A collector of the tasks in `registry`.
    pub fn new(registry: &Registry) -> Self {
        TaskCollector {
            registry: registry.clone(),
        }
    }
}

/// Registers a [`TaskCollector`] of `tasks` into the application's Prometheus
/// registry `prom`.
pub fn register(prom: &mut prometheus_client::registry::Registry, tasks: &Registry) {
    prom.register_collector(Box::new(TaskCollector::new(tasks)));
}

/// The task metrics of `tasks` in the Prometheus text format (version 0.0.4),
/// as `promtool check metrics` and every Prometheus server read it.
pub fn render(tasks: &Registry) -> String {
    render_with(tasks, false)
}

/// The task metrics of `tasks` in the OpenMetrics text format (ending in
/// `# EOF`).
pub fn render_openmetrics(tasks: &Registry) -> String {
    render_with(tasks, true)
}

fn render_with(tasks: &Registry, openmetrics: bool) -> String {
    let mut prom = prometheus_client::registry::Registry::default();
    register(&mut prom, tasks);
    // Writing into a String cannot fail, and the collector itself never fails.
    encode_registry(&prom, openmetrics).unwrap_or_default()
}

/// Encodes a whole Prometheus registry in one of the two text formats.
pub(crate) fn encode_registry(
    prom: &prometheus_client::registry::Registry,
    openmetrics: bool,
) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, prom)?;
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, prom)?;
    }
    Ok(out)
}

fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

impl Collector for TaskCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let tasks = self.registry.tasks();
        let beats = self.registry.last_beats();

        {
            let mut metric = encoder.encode_descriptor(
                "supervised_task_restarts",
                "Attempts of the supervised task started after the first one",
                None,
                MetricType::Counter,
            )?;
            for t in &tasks {
                ConstCounter::new(t.restarts)
                    .encode(metric.encode_family(&[("task", t.name.as_str())])?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_task_failures",
                "Failures of the supervised task, by kind (panic, error, stalled)",
                None,
                MetricType::Counter,
            )?;
            for t in &tasks {
                for (kind, n) in [
                    ("panic", t.failures.panics),
                    ("error", t.failures.errors),
                    ("stalled", t.failures.stalls),
                ] {
                    ConstCounter::new(n).encode(
                        metric.encode_family(&[("task", t.name.as_str()), ("kind", kind)])?,
                    )?;
                }
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_task_state",
                "1 for the current state of the supervised task, 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for t in &tasks {
                for state in TaskState::ALL {
                    ConstGauge::new(i64::from(t.state == state)).encode(metric.encode_family(
                        &[("task", t.name.as_str()), ("state", state.as_str())],
                    )?)?;
                }
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_task_up",
                "1 while the supervised task is running and healthy (not stale, not blocking its thread), or a healthy singleton standby",
                None,
                MetricType::Gauge,
            )?;
            for t in &tasks {
                let up = matches!(t.state, TaskState::Running | TaskState::Standby) && t.healthy;
                ConstGauge::new(i64::from(up))
                    .encode(metric.encode_family(&[("task", t.name.as_str())])?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_task_leader",
                "1 while this replica holds the singleton task's lease, 0 otherwise (singleton tasks only)",
                None,
                MetricType::Gauge,
            )?;
            for t in &tasks {
                if let Some(lease) = &t.lease {
                    ConstGauge::new(i64::from(lease.leader))
                        .encode(metric.encode_family(&[("task", t.name.as_str())])?)?;
                }
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_task_stale",
                "1 while the supervised task is stale (no heartbeat within stale_after)",
                None,
                MetricType::Gauge,
            )?;
            for t in &tasks {
                ConstGauge::new(i64::from(t.stale))
                    .encode(metric.encode_family(&[("task", t.name.as_str())])?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_quarantined_keys",
                "Keys the task keeps quarantined after they failed inside Context::isolate (never a key as a label)",
                None,
                MetricType::Gauge,
            )?;
            for t in &tasks {
                ConstGauge::new(t.quarantined.len() as i64)
                    .encode(metric.encode_family(&[("task", t.name.as_str())])?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_isolated_failures",
                "Failures caught by Context::isolate, which are their keys' and not the task's, by kind (panic, error)",
                None,
                MetricType::Counter,
            )?;
            for t in &tasks {
                for (kind, n) in [("panic", t.isolated.panics), ("error", t.isolated.errors)] {
                    ConstCounter::new(n).encode(
                        metric.encode_family(&[("task", t.name.as_str()), ("kind", kind)])?,
                    )?;
                }
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_quarantine_evictions",
                "Quarantined keys dropped to keep a task's bound on them",
                None,
                MetricType::Counter,
            )?;
            for t in &tasks {
                ConstCounter::new(t.isolated.evicted)
                    .encode(metric.encode_family(&[("task", t.name.as_str())])?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_task_blocked",
                "How long the poll in progress of the task's attempt has been blocking its worker thread (0 when it is not)",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for t in &tasks {
                let blocked = t.blocked_for.map_or(0.0, |d| d.as_secs_f64());
                ConstGauge::new(blocked)
                    .encode(metric.encode_family(&[("task", t.name.as_str())])?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_task_blocked_polls",
                "Polls of the task's attempts seen running longer than its blocking_after",
                None,
                MetricType::Counter,
            )?;
            for t in &tasks {
                ConstCounter::new(t.failures.blocked)
                    .encode(metric.encode_family(&[("task", t.name.as_str())])?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_task_last_heartbeat_timestamp",
                "Unix time of the last heartbeat of the task",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for (name, beat) in &beats {
                ConstGauge::new(unix_seconds(beat.at))
                    .encode(metric.encode_family(&[("task", name.as_str())])?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "supervised_task_heartbeat_age",
                "Time since the last heartbeat of the task, on the monotonic clock",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for (name, beat) in &beats {
                ConstGauge::new(beat.age.as_secs_f64())
                    .encode(metric.encode_family(&[("task", name.as_str())])?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    #[test]
    fn heartbeat_only_names_have_heartbeat_series() {
        let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_000));
        let tasks = Registry::with_clock(clock.clone());
        tasks.heartbeat("sweep");
        clock.advance(Duration::from_millis(2500));
        let text = render(&tasks);
        assert!(
            text.contains("supervised_task_last_heartbeat_timestamp_seconds{task=\"sweep\"} 1000"),
            "{text}"
        );
        assert!(
            text.contains("supervised_task_heartbeat_age_seconds{task=\"sweep\"} 2.5"),
            "{text}"
        );
        assert!(!text.contains("supervised_task_up{"), "{text}");
        let om = render_openmetrics(&tasks);
        assert!(om.ends_with("# EOF\n"), "{om}");
    }
}
