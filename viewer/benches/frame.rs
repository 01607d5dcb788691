//! The viewer at scale: with 100,000 and 1,000,000 live tasks, apply a delta
//! (1% of the tasks changed, plus tasks started and ended) and draw one frame
//! of the tasks view into a `TestBackend`, as the live view does on every
//! update; at 1,000,000, also the snapshot's arrival (applied and the first
//! frame drawn), a filter's first key, a key narrowing it and a Backspace,
//! and a page down.
//!
//! ```sh
//! cargo bench -p taskscope-viewer --bench frame
//! cargo bench -p taskscope-viewer --bench frame -- 1M     # the 1,000,000-task ones only
//! ```

use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;
use taskscope_viewer::state::keys::press;
use taskscope_viewer::state::{
    AppInfo, Column, Dropped, Model, RuntimeMetrics, Task, TaskState, Update,
};

fn task(id: u64, polls: u64) -> Task {
    Task {
        id,
        name: id.is_multiple_of(3).then(|| format!("worker-{id}")),
        state: TaskState::Idle,
        ended: None,
        spawned_at: format!("src/handlers/mod{}.rs:{}:9", id % 40, 10 + id % 300),
        parent: Some(1),
        age: Duration::from_secs(60),
        polls,
        busy: Duration::from_micros(polls * 7),
        idle: Duration::from_secs(59),
        since_last_poll: Some(Duration::from_millis(id % 1000)),
        max_poll: Duration::from_micros(300),
        wakes: polls,
        wakers: 1,
    }
}

fn snapshot(n: u64) -> Update {
    Update::Snapshot {
        app: AppInfo {
            name: "bench".into(),
            pid: 1,
            version: "0".into(),
            protocol: 1,
            slow_poll_threshold: Duration::from_millis(100),
            source: Default::default(),
            poll_timing_one_in: 8,
        },
        tasks: (1..=n).map(|id| task(id, 10)).collect(),
        finished: vec![],
        findings: vec![],
        metrics: RuntimeMetrics::default(),
        dropped: Dropped::default(),
        at: SystemTime::now(),
    }
}

/// 1% of `n` tasks changed, 100 new, 100 ended.
fn delta(n: u64, round: u64) -> Update {
    let changed = (0..n / 100)
        .map(|i| task(1 + (i * 100 + round) % n, 10 + round))
        .chain((0..100).map(|i| task(n + round * 100 + i + 1, 1)))
        .collect();
    let finished = (0..100)
        .map(|i| {
            let mut t = task(1 + (i * 997 + round * 31) % n, 11);
            t.ended = Some(taskscope_api::TaskEnd::Completed);
            t
        })
        .collect();
    Update::Delta {
        changed,
        finished,
        findings: vec![],
        metrics: RuntimeMetrics::default(),
        dropped: Dropped::default(),
        at: SystemTime::now(),
    }
}

/// The tasks view sorted by `column` (the default, id, or another reached
/// with `>` as a user would): apply a delta and draw a frame, repeatedly.
fn bench_sorted(c: &mut Criterion, title: &str, column: Column, n: u64) {
    let now = Instant::now();
    let mut model = Model::new("127.0.0.1:6670", now);
    model.apply(snapshot(n), now);
    while model.ui.tasks_sort.column != column {
        model.handle_key(press(KeyCode::Char('>')), now);
    }
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).expect("test backend");
    terminal
        .draw(|f| taskscope_viewer::ui::draw(f, &mut model))
        .expect("first frame");
    let mut round = 0u64;
    c.bench_function(title, |b| {
        b.iter_batched(
            || {
                round += 1;
                delta(n, round)
            },
            |update| {
                model.apply(update, Instant::now());
                terminal
                    .draw(|f| taskscope_viewer::ui::draw(f, &mut model))
                    .expect("frame");
            },
            BatchSize::SmallInput,
        )
    });
}

/// This process's resident memory in bytes (0 where `/proc` is not).
fn resident() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// A model holding `n` tasks, sorted by id, its first frame drawn.
fn attached(n: u64) -> (Model, Terminal<TestBackend>) {
    let now = Instant::now();
    let mut model = Model::new("127.0.0.1:6670", now);
    model.apply(snapshot(n), now);
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).expect("test backend");
    terminal
        .draw(|f| taskscope_viewer::ui::draw(f, &mut model))
        .expect("first frame");
    (model, terminal)
}

/// At 1,000,000 tasks: the snapshot applied and the first frame drawn; a
/// filter typed key by key (each key re-filters and draws); a page down.
fn bench_million(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    c.bench_function("snapshot applied + first frame, 1M tasks", |b| {
        b.iter_batched(
            || snapshot(N),
            |update| {
                let now = Instant::now();
                let mut model = Model::new("127.0.0.1:6670", now);
                model.apply(update, now);
                let mut terminal = Terminal::new(TestBackend::new(200, 50)).expect("test backend");
                terminal
                    .draw(|f| taskscope_viewer::ui::draw(f, &mut model))
                    .expect("first frame");
                model
            },
            BatchSize::PerIteration,
        )
    });
    let before = resident();
    let (mut model, mut terminal) = attached(N);
    eprintln!(
        "the model of 1M tasks: {:.0} bytes resident per task",
        (resident() - before) as f64 / N as f64
    );
    model.handle_key(press(KeyCode::Char('/')), Instant::now());
    // "mod12" narrows to 2.5 % of the tasks. Each bench times one kind of
    // key (and the frame after it); the keys that set the filter up before
    // it, and take it back after, are not timed.
    let mut key = |model: &mut Model, code: KeyCode| {
        model.handle_key(press(code), Instant::now());
        terminal
            .draw(|f| taskscope_viewer::ui::draw(f, model))
            .expect("frame");
    };
    let mut timed_key = |c: &mut Criterion, title: &str, before: &str, code: KeyCode| {
        c.bench_function(title, |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    for ch in before.chars() {
                        key(&mut model, KeyCode::Char(ch));
                    }
                    let start = Instant::now();
                    key(&mut model, code);
                    took += start.elapsed();
                    while !model.ui.filter.is_empty() {
                        key(&mut model, KeyCode::Backspace);
                    }
                }
                took
            })
        });
    };
    timed_key(
        c,
        "filter: the first key typed + frame, 1M tasks",
        "",
        KeyCode::Char('m'),
    );
    timed_key(
        c,
        "filter: a key narrowing 2.5 % of the tasks + frame, 1M tasks",
        "mod12",
        KeyCode::Char('.'),
    );
    timed_key(
        c,
        "filter: Backspace + frame, 1M tasks",
        "mod12",
        KeyCode::Backspace,
    );
    let (mut model, mut terminal) = attached(N);
    c.bench_function("page down + frame, 1M tasks", |b| {
        b.iter(|| {
            model.handle_key(press(KeyCode::PageDown), Instant::now());
            terminal
                .draw(|f| taskscope_viewer::ui::draw(f, &mut model))
                .expect("frame");
        })
    });
}

fn bench(c: &mut Criterion) {
    bench_sorted(
        c,
        "apply 1% delta + draw tasks view, 100k tasks",
        Column::Id,
        100_000,
    );
    bench_sorted(
        c,
        "apply 1% delta + draw tasks view, 100k tasks, sorted by busy",
        Column::Busy,
        100_000,
    );
    bench_sorted(
        c,
        "apply 1% delta + draw tasks view, 1M tasks",
        Column::Id,
        1_000_000,
    );
    bench_sorted(
        c,
        "apply 1% delta + draw tasks view, 1M tasks, sorted by busy",
        Column::Busy,
        1_000_000,
    );
    bench_million(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(10));
    targets = bench
}
criterion_main!(benches);
