//! A real Prometheus server (Debian's `prometheus` package; `.ci/run`
//! installs it) scrapes a real instrumented app (`metrics_app`: slow polls
//! at two known lines, three and four of them), and the test asks
//! Prometheus's HTTP API for `taskscope_slow_polls_total` by `spawned_at`.
//! Without the `prometheus` binary the test says so loudly and checks
//! nothing else.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use taskscope_tests::metrics::{MetricsApp, get};
use taskscope_tests::{free_port, location_prefix, temp_dir};

const APP: &str = env!("CARGO_BIN_EXE_metrics_app");
const SOURCE: &str = "src/bin/metrics_app.rs";

/// `$PROMETHEUS`, or `prometheus` on the `PATH`.
fn prometheus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file())
}

/// The Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `bin` scraping `target` every second, on a free loopback port,
    /// with its storage in a fresh temp dir.
    fn start(bin: &PathBuf, target: &str) -> Prometheus {
        let dir = temp_dir("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: metrics_app\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Prometheus { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The result of an instant query: each series' labels and value.
    fn query(&self, promql: &str) -> Option<Vec<(serde_json::Value, String)>> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let response = get(&self.addr, &path, "").ok()?;
        if response.status != 200 {
            return None;
        }
        let body: serde_json::Value = serde_json::from_str(&response.body).ok()?;
        assert_eq!(body["status"], "success", "{body}");
        Some(
            body["data"]["result"]
                .as_array()?
                .iter()
                .map(|r| {
                    (
                        r["metric"].clone(),
                        r["value"][1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect(),
        )
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the series of `result` whose `spawned_at` starts with `prefix`.
fn at(result: &[(serde_json::Value, String)], prefix: &str) -> Option<String> {
    result
        .iter()
        .find(|(m, _)| {
            m["spawned_at"]
                .as_str()
                .is_some_and(|s| s.starts_with(prefix))
        })
        .map(|(_, v)| v.clone())
}

#[test]
fn prometheus_scrapes_slow_polls_by_spawn_location() {
    let Some(bin) = prometheus_binary() else {
        eprintln!(
            "\n*** SKIPPED prometheus_scrapes_slow_polls_by_spawn_location: no `prometheus`\n\
             *** binary on PATH (nor in $PROMETHEUS). Install it with\n\
             ***     apt-get install -y --no-install-recommends prometheus\n\
             *** (.ci/run does), then run this test again.\n"
        );
        return;
    };
    let app = MetricsApp::start(APP, &[]);
    let prometheus = Prometheus::start(&bin, &app.addr);
    let once = location_prefix(SOURCE, "SPAWN-ONCE");
    let twice = location_prefix(SOURCE, "SPAWN-TWICE");
    let deadline = Instant::now() + Duration::from_secs(90);
    let result = loop {
        if let Some(result) = prometheus.query("taskscope_slow_polls_total")
            && at(&result, &once).is_some()
            && at(&result, &twice).is_some()
        {
            break result;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no taskscope_slow_polls_total for both lines after 90 s; \
             its log:\n{}\napp stderr:\n{}",
            prometheus.log(),
            app.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    // Both lines, with their exact counts, as Prometheus stored them.
    assert_eq!(at(&result, &once).as_deref(), Some("3"), "{result:?}");
    assert_eq!(at(&result, &twice).as_deref(), Some("4"), "{result:?}");
    for (metric, _) in &result {
        assert_eq!(metric["job"], "metrics_app");
        assert_eq!(metric["instance"].as_str(), Some(app.addr.as_str()));
    }
    // The histogram as Prometheus read it: all four polls of the second
    // line under 2.5 × the 50 ms threshold, none under 1.5 ×.
    let q = |promql: &str| prometheus.query(promql).unwrap_or_default();
    let le = |bound: &str| {
        at(
            &q(&format!(
                "taskscope_poll_duration_seconds_bucket{{le=\"{bound}\"}}"
            )),
            &twice,
        )
    };
    assert_eq!(le("0.125").as_deref(), Some("4"));
    assert_eq!(le("0.075").as_deref(), Some("0"));
    assert_eq!(
        at(
            &q("taskscope_tasks_spawned_total"),
            &location_prefix(SOURCE, "SPAWN-QUICK")
        )
        .as_deref(),
        Some("200")
    );
    let up = q("up{job=\"metrics_app\"}");
    assert_eq!(up.first().map(|(_, v)| v.as_str()), Some("1"), "{up:?}");
    assert!(app.stop().success());
}
