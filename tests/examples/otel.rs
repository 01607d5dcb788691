//! Findings as OpenTelemetry logs: taskscope's layer in your own `tracing`
//! registry, next to `opentelemetry-appender-tracing`'s bridge, so every
//! finding (a WARN event of target `taskscope` with its fields: `kind`,
//! `task.id`, `task.name`, `spawned_at`, `duration_ms`, `reason`, ...) goes
//! out as an OTLP log record to your collector, next to your traces.
//!
//! ```sh
//! # a collector listening for OTLP/gRPC on localhost:4317 (the default), then:
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 cargo run -p taskscope-tests --example otel
//! ```
//!
//! `cargo test -p taskscope-tests --example otel` runs the same wiring with
//! the SDK's in-memory exporter and checks the records.
//!
//! The dependencies (dev-dependencies of this crate; in your app, plain ones):
//! `opentelemetry` and `opentelemetry_sdk` (feature `logs`),
//! `opentelemetry-appender-tracing`, and `opentelemetry-otlp` (features
//! `grpc-tonic`, `logs`). taskscope itself depends on none of them.

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use tracing::Level;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// Installs the process's `tracing` subscriber: taskscope's layer (made by
/// `taskscope`), the OpenTelemetry bridge to `provider` for taskscope's
/// findings and the app's own INFO and above, and a stderr log. Keep the
/// guard for the whole of `main`: dropping it flushes the findings.
fn install(taskscope: taskscope::Builder, provider: &SdkLoggerProvider) -> taskscope::Guard {
    let (taskscope_layer, guard) = taskscope.layer().expect("taskscope's layer");
    // Tokio's own instrumentation (task spans, waker events) is for
    // taskscope's layer only: TRACE level, kept out of the logs.
    let logs = Targets::new()
        .with_target("taskscope", Level::WARN)
        .with_target("tokio", LevelFilter::OFF)
        .with_target("runtime", LevelFilter::OFF)
        .with_default(Level::INFO);
    tracing_subscriber::registry()
        .with(taskscope_layer)
        .with(OpenTelemetryTracingBridge::new(provider).with_filter(logs.clone()))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(logs),
        )
        .init();
    guard
}

/// A handler with the bug taskscope finds: a blocking call in async code.
async fn load_config() {
    std::thread::sleep(Duration::from_millis(150));
}

async fn app() {
    tokio::task::Builder::new()
        .name("config-loader")
        .spawn(load_config()) // SPAWN-SLOW
        .expect("spawn")
        .await
        .expect("join");
    tracing::info!("done");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The tonic exporter's channel lives on the runtime: build it inside.
    let exporter = runtime.block_on(async {
        opentelemetry_otlp::LogExporter::builder()
            .with_tonic() // OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4317
            .build()
            .expect("OTLP log exporter")
    });
    let provider = SdkLoggerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("otel-example")
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();
    let guard = install(taskscope::Builder::from_env(), &provider);
    runtime.block_on(app());
    drop(guard); // the findings through the bridge
    if let Err(err) = provider.shutdown() {
        eprintln!("could not send every log to the collector: {err}");
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::logs::{AnyValue, Severity};
    use opentelemetry_sdk::logs::InMemoryLogExporter;

    use super::*;

    fn attribute<'a>(
        record: &'a opentelemetry_sdk::logs::SdkLogRecord,
        key: &str,
    ) -> Option<&'a AnyValue> {
        record
            .attributes_iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    fn text(value: Option<&AnyValue>) -> String {
        match value {
            Some(AnyValue::String(s)) => s.to_string(),
            other => panic!("not a string: {other:?}"),
        }
    }

    /// The 1-based line of this file holding `marker`.
    fn line_of(marker: &str) -> u32 {
        let source = include_str!("otel.rs");
        let lines: Vec<usize> = source
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(marker) && !l.contains("line_of"))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(lines.len(), 1, "{marker}");
        lines[0] as u32
    }

    #[test]
    fn findings_become_otel_log_records_with_their_fields() {
        let exporter = InMemoryLogExporter::default();
        let provider = SdkLoggerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let taskscope = taskscope::Builder::new()
            .slow_poll_threshold(Duration::from_millis(50))
            .server_addr(taskscope::ServerAddr::Off);
        let guard = install(taskscope, &provider);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(app());
        drop(runtime);
        drop(guard);
        provider.force_flush().unwrap();

        let logs = exporter.get_emitted_logs().unwrap();
        let slow: Vec<_> = logs
            .iter()
            .map(|l| &l.record)
            .filter(|r| {
                attribute(r, "kind") == Some(&AnyValue::from("slow_poll"))
                    && attribute(r, "in_progress") == Some(&AnyValue::Boolean(false))
            })
            .collect();
        assert_eq!(slow.len(), 1, "one final slow-poll report: {logs:#?}");
        let record = slow[0];
        assert_eq!(record.severity_number(), Some(Severity::Warn));
        assert_eq!(record.target().map(|t| t.as_ref()), Some("taskscope"));
        let body = text(record.body());
        assert!(
            body.starts_with("Executing task ") && body.contains("\"config-loader\""),
            "{body}"
        );
        let spawned_at = text(attribute(record, "spawned_at"));
        assert!(
            spawned_at.starts_with(&format!(
                "tests/examples/otel.rs:{}:",
                line_of("// SPAWN-SLOW")
            )),
            "{spawned_at}"
        );
        assert!(body.contains(&spawned_at), "{body}");
        assert_eq!(text(attribute(record, "task.name")), "config-loader");
        assert!(matches!(attribute(record, "task.id"), Some(AnyValue::Int(id)) if *id > 0));
        match attribute(record, "duration_ms") {
            Some(AnyValue::Double(ms)) => assert!(*ms >= 150.0, "{ms}"),
            other => panic!("duration_ms: {other:?}"),
        }
        assert_eq!(attribute(record, "threshold_ms"), Some(&AnyValue::Int(50)));
        assert_eq!(attribute(record, "poll"), Some(&AnyValue::Int(1)));
        // The app's own INFO log goes the same way; Tokio's TRACE events do not.
        assert!(
            logs.iter()
                .any(|l| l.record.body() == Some(&AnyValue::from("done")))
        );
        assert!(
            logs.iter()
                .all(|l| !l.record.target().is_some_and(|t| t.starts_with("tokio"))),
            "{logs:#?}"
        );
    }
}
