//! The Prometheus endpoint of a real app (`metrics_app`, a process with known
//! slow polls at known lines), scraped over loopback HTTP: the figures by
//! spawn location, both capture paths, the limit on locations, what the
//! endpoint answers besides `/metrics`, its bounds, its warnings, and the
//! Grafana dashboard's queries against the metric names a scrape really has.

use std::collections::BTreeSet;

use taskscope_tests::location_prefix;
use taskscope_tests::metrics::{MetricsApp, Sample, exchange, get, parse, with_label};

const APP: &str = env!("CARGO_BIN_EXE_metrics_app");
const SOURCE: &str = "src/bin/metrics_app.rs";

/// The one value of `name` for the location marked `marker`.
fn at(samples: &[Sample], name: &str, marker: &str) -> f64 {
    let found = with_label(
        samples,
        name,
        "spawned_at",
        &location_prefix(SOURCE, marker),
    );
    assert_eq!(found.len(), 1, "{name} at {marker}: {found:?}");
    found[0].value
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

/// The histogram of every series is cumulative and ends at its count.
fn check_histograms(samples: &[Sample]) {
    let locations: BTreeSet<&String> = samples
        .iter()
        .filter(|s| s.name == "taskscope_poll_duration_seconds_count")
        .map(|s| &s.labels["spawned_at"])
        .collect();
    assert!(!locations.is_empty());
    for location in locations {
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| {
                s.name == "taskscope_poll_duration_seconds_bucket"
                    && &s.labels["spawned_at"] == location
            })
            .map(|s| {
                let le = &s.labels["le"];
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, s.value)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(buckets.len(), 14, "{location}: {buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        let count = value(
            samples,
            "taskscope_poll_duration_seconds_count",
            &[("spawned_at", location)],
        );
        assert_eq!(buckets.last().unwrap().1, count, "{location}");
        let polls = value(
            samples,
            "taskscope_polls_total",
            &[("spawned_at", location)],
        );
        assert_eq!(polls, count, "{location}");
    }
}

fn scrape_has_the_apps_figures(app: &MetricsApp, with_block_on: bool) {
    let s = app.scrape();
    // Three tasks block once, two block twice: every one of their polls is slow.
    assert_eq!(at(&s, "taskscope_slow_polls_total", "SPAWN-ONCE"), 3.0);
    assert_eq!(at(&s, "taskscope_slow_polls_total", "SPAWN-TWICE"), 4.0);
    assert_eq!(at(&s, "taskscope_tasks_spawned_total", "SPAWN-ONCE"), 3.0);
    assert_eq!(at(&s, "taskscope_tasks_spawned_total", "SPAWN-TWICE"), 2.0);
    assert_eq!(at(&s, "taskscope_polls_total", "SPAWN-ONCE"), 3.0);
    assert_eq!(at(&s, "taskscope_polls_total", "SPAWN-TWICE"), 4.0);
    assert_eq!(at(&s, "taskscope_tasks_alive", "SPAWN-ONCE"), 0.0);
    // 200 short tasks of two polls each (a yield, then done); none slow.
    assert_eq!(
        at(&s, "taskscope_tasks_spawned_total", "SPAWN-QUICK"),
        200.0
    );
    assert_eq!(at(&s, "taskscope_polls_total", "SPAWN-QUICK"), 400.0);
    assert_eq!(at(&s, "taskscope_slow_polls_total", "SPAWN-QUICK"), 0.0);
    // Five that never end.
    assert_eq!(at(&s, "taskscope_tasks_alive", "SPAWN-IDLE"), 5.0);
    assert_eq!(at(&s, "taskscope_tasks_spawned_total", "SPAWN-IDLE"), 5.0);
    // The blocking polls all took 80 ms: none at or under the 50 ms
    // threshold, none over 1.5 × 50 = 75 ms... all under 2.5 × 50 = 125 ms.
    let prefix = location_prefix(SOURCE, "SPAWN-TWICE");
    let bucket = |le: &str| {
        s.iter()
            .find(|x| {
                x.name == "taskscope_poll_duration_seconds_bucket"
                    && x.labels["spawned_at"].starts_with(&prefix)
                    && x.labels["le"] == le
            })
            .unwrap_or_else(|| panic!("no bucket {le}"))
            .value
    };
    assert_eq!((bucket("0.05"), bucket("0.075")), (0.0, 0.0));
    assert_eq!(bucket("0.125"), 4.0);
    let sum = at(&s, "taskscope_poll_duration_seconds_sum", "SPAWN-TWICE");
    assert!((0.32..1.0).contains(&sum), "{sum}");
    check_histograms(&s);
    // Every spawned_at is a location of the app (and the block_on future of
    // `main`, with `init()`), none is "other".
    let locations: BTreeSet<&String> = s
        .iter()
        .filter(|x| x.name == "taskscope_tasks_spawned_total")
        .map(|x| &x.labels["spawned_at"])
        .collect();
    assert_eq!(
        locations.len(),
        5 + usize::from(with_block_on),
        "{locations:?}"
    );
    assert!(
        locations
            .iter()
            .all(|l| l.starts_with("tests/src/bin/metrics_app.rs:"))
    );
    assert_eq!(
        value(&s, "taskscope_spawn_locations", &[]),
        locations.len() as f64
    );

    let findings = |kind, reason| {
        value(
            &s,
            "taskscope_findings_total",
            &[("kind", kind), ("reason", reason)],
        )
    };
    assert_eq!(findings("task_panicked", ""), 1.0);
    // The final reports of the 7 blocking polls, and the panicking poll's if
    // the panic took 50 ms or longer (a debug build's first panic may).
    let ended = findings("slow_poll", "ended");
    assert!((7.0..=8.0).contains(&ended), "{ended}");
    assert_eq!(value(&s, "taskscope_findings_dropped_total", &[]), 0.0);
    assert_eq!(
        value(&s, "taskscope_slow_poll_threshold_seconds", &[]),
        0.05
    );

    assert_eq!(value(&s, "taskscope_runtime_workers", &[]), 2.0);
    let busy: f64 = s
        .iter()
        .filter(|x| x.name == "taskscope_runtime_worker_busy_seconds_total")
        .map(|x| x.value)
        .sum();
    // The blocking polls alone kept the workers busy 7 × 80 ms.
    assert!(busy >= 0.56, "{busy}");
    for worker in ["0", "1"] {
        value(
            &s,
            "taskscope_runtime_worker_local_queue_depth",
            &[("worker", worker)],
        );
    }
    assert!(value(&s, "taskscope_runtime_blocking_threads", &[]) >= 1.0);
    value(&s, "taskscope_runtime_global_queue_depth", &[]);
}

#[test]
fn a_scrape_counts_each_spawn_location_exactly_with_init() {
    let app = MetricsApp::start(APP, &[]);
    scrape_has_the_apps_figures(&app, true);
    // Scrapes closer than 0.5 s apart share one reading; later ones read
    // again, and no counter has gone down.
    let first = app.scrape();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let second = app.scrape();
    for s in first.iter().filter(|s| s.name.ends_with("_total")) {
        let later = second
            .iter()
            .find(|x| x.name == s.name && x.labels == s.labels)
            .unwrap_or_else(|| panic!("{s:?} is gone"));
        assert!(later.value >= s.value, "{s:?} then {later:?}");
    }
    assert!(app.stop().success());
}

#[test]
fn a_scrape_counts_each_spawn_location_exactly_with_the_task_hooks() {
    let app = MetricsApp::start(APP, &[("METRICS_APP_MODE", "hooks")]);
    scrape_has_the_apps_figures(&app, false);
    assert!(app.stop().success());
}

#[test]
fn locations_past_the_limit_are_counted_as_other() {
    let app = MetricsApp::start(APP, &[("TASKSCOPE_METRICS_MAX_LOCATIONS", "2")]);
    let s = app.scrape();
    // The first two locations to end a task keep series of their own.
    assert_eq!(at(&s, "taskscope_slow_polls_total", "SPAWN-ONCE"), 3.0);
    assert_eq!(at(&s, "taskscope_slow_polls_total", "SPAWN-TWICE"), 4.0);
    let spawned: Vec<&Sample> = s
        .iter()
        .filter(|x| x.name == "taskscope_tasks_spawned_total")
        .collect();
    assert_eq!(spawned.len(), 3, "{spawned:?}");
    // 200 quick, 1 panicking, 5 idle tasks and main's block_on future.
    let other = value(
        &s,
        "taskscope_tasks_spawned_total",
        &[("spawned_at", "other")],
    );
    assert_eq!(other, 207.0);
    assert_eq!(
        value(&s, "taskscope_tasks_alive", &[("spawned_at", "other")]),
        6.0
    );
    assert_eq!(value(&s, "taskscope_spawn_locations", &[]), 2.0);
    check_histograms(&s);
    assert!(app.stop().success());
}

#[test]
fn the_text_format_for_clients_that_do_not_ask_for_openmetrics() {
    let app = MetricsApp::start(APP, &[]);
    let response = get(&app.addr, "/metrics", "").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(!response.body.contains("# EOF"));
    let s = parse(&response.body);
    assert_eq!(at(&s, "taskscope_slow_polls_total", "SPAWN-TWICE"), 4.0);
    check_histograms(&s);
    let open = get(
        &app.addr,
        "/metrics",
        "Accept: application/openmetrics-text\r\n",
    )
    .unwrap();
    assert_eq!(
        open.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    // HEAD: the headers without the body.
    let head = exchange(
        &app.addr,
        format!("HEAD /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr).as_bytes(),
    )
    .unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "{head:?}");
    assert!(app.stop().success());
}

#[test]
fn the_endpoint_answers_only_metrics_and_stays_bounded() {
    let app = MetricsApp::start(APP, &[]);
    let addr = app.addr.clone();
    let other = get(&addr, "/", "").unwrap();
    assert_eq!(other.status, 404);
    assert!(other.body.contains("/metrics"), "{other:?}");
    let post = exchange(
        &addr,
        format!("POST /metrics HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\n\r\nhi").as_bytes(),
    )
    .unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // Not HTTP at all: an error status or the connection closed, no metrics.
    let garbage = exchange(
        &addr,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    );
    assert!(
        garbage.as_ref().map_or(true, |r| r.status >= 400),
        "{garbage:?}"
    );
    // Headers larger than the endpoint reads: refused.
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let refused = exchange(&addr, huge.as_bytes());
    assert!(
        refused.as_ref().map_or(true, |r| r.status >= 400),
        "{refused:?}"
    );
    // Four connections that send nothing take every place: a fifth is
    // closed at once, without an answer...
    let idle: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let turned_away = get(&addr, "/metrics", "");
    assert!(turned_away.is_err(), "{turned_away:?}");
    // ... and once they are gone, scrapes are answered again.
    drop(idle);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match get(&addr, "/metrics", "") {
            Ok(r) if r.status == 200 => break,
            other => assert!(
                std::time::Instant::now() < deadline,
                "no answer after the idle connections left: {other:?}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(app.stop().success());
}

#[test]
fn with_a_token_scrapes_must_send_it() {
    let app = MetricsApp::start(APP, &[("TASKSCOPE_TOKEN", "s3cret-token-of-16+")]);
    let refused = get(&app.addr, "/metrics", "").unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    let wrong = get(
        &app.addr,
        "/metrics",
        "Authorization: Bearer s3cret-token-of-16-\r\n",
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    let ok = get(
        &app.addr,
        "/metrics",
        "Authorization: Bearer s3cret-token-of-16+\r\n",
    )
    .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(
        at(&parse(&ok.body), "taskscope_slow_polls_total", "SPAWN-ONCE"),
        3.0
    );
    assert!(app.stop().success());
}

/// The names of the app's threads (Linux).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn off_by_default_and_on_its_own_thread_when_asked_for() {
    let off = MetricsApp::start(APP, &[("TASKSCOPE_METRICS_ADDR", "off")]);
    if cfg!(target_os = "linux") {
        let names = thread_names(off.pid());
        assert!(names.iter().any(|n| n == "taskscope-findi"), "{names:?}");
        assert!(
            !names.iter().any(|n| n.starts_with("taskscope-metr")),
            "{names:?}"
        );
    }
    assert!(off.stop().success());
    let on = MetricsApp::start(APP, &[]);
    if cfg!(target_os = "linux") {
        let names = thread_names(on.pid());
        assert!(names.iter().any(|n| n == "taskscope-metri"), "{names:?}");
    }
    assert!(on.stop().success());
}

#[test]
fn a_metrics_address_others_can_reach_is_warned_about_and_a_taken_one_named() {
    let port = taskscope_tests::free_port();
    let open = format!("0.0.0.0:{port}");
    let app = MetricsApp::start(APP, &[("TASKSCOPE_METRICS_ADDR", &open)]);
    let stderr = app.stderr();
    assert!(
        stderr.contains(&format!(
            "taskscope: the metrics endpoint listens on 0.0.0.0:{port}, which is not a loopback address"
        )),
        "{stderr}"
    );
    // Scraped through loopback all the same.
    let s = parse(
        &get(&format!("127.0.0.1:{port}"), "/metrics", "")
            .unwrap()
            .body,
    );
    assert_eq!(at(&s, "taskscope_slow_polls_total", "SPAWN-ONCE"), 3.0);
    assert!(app.stop().success());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let app = MetricsApp::start(APP, &[("TASKSCOPE_METRICS_ADDR", &addr)]);
    let stderr = app.stderr();
    assert!(
        stderr.contains(&format!(
            "taskscope: cannot listen on {addr} for metrics (address in use); the metrics endpoint is off"
        )),
        "{stderr}"
    );
    assert!(app.stop().success(), "the app goes on without the endpoint");
}

#[test]
fn every_metric_the_grafana_dashboard_queries_is_in_a_scrape() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/grafana/taskscope.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard is in the repository");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("well-formed JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push((
                panel["title"].as_str().unwrap_or_default().to_string(),
                target["expr"].as_str().expect("a query").to_string(),
            ));
        }
    }
    let titles: Vec<&str> = exprs.iter().map(|(t, _)| t.as_str()).collect();
    for wanted in [
        "Slow polls per second by spawn location",
        "Poll duration",
        "Tasks alive by spawn location",
        "Findings per second by kind",
        "Busy ratio per worker",
    ] {
        assert!(
            titles.contains(&wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }
    let app = MetricsApp::start(APP, &[]);
    let scraped: BTreeSet<String> = app.scrape().into_iter().map(|s| s.name).collect();
    assert!(app.stop().success());
    let mut used = BTreeSet::new();
    for (title, expr) in &exprs {
        let names: Vec<&str> = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("taskscope_"))
            .collect();
        assert!(
            !names.is_empty(),
            "{title}: {expr} names no taskscope metric"
        );
        for name in names {
            assert!(
                scraped.contains(name),
                "{title}: {name} is not in a scrape ({scraped:?})"
            );
            used.insert(name.to_string());
        }
    }
    assert!(used.contains("taskscope_slow_polls_total"), "{used:?}");
    assert!(
        used.contains("taskscope_poll_duration_seconds_bucket"),
        "{used:?}"
    );
}
