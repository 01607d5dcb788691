//! Screen tests of the live view: a model built from hand-made updates, drawn
//! into a `TestBackend`, read back as the text (and styles) a person would see.

use std::time::{Duration, Instant, SystemTime};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode;
use ratatui::style::Modifier;
use taskscope_api::{Finding, FindingKind, LeakReason, StackFrame, TaskRef};
use taskscope_viewer::state::keys::press;
use taskscope_viewer::state::{
    Action, AppInfo, Connection, Dropped, Model, RuntimeMetrics, Task, TaskDetail, TaskEnd,
    TaskState, Update, View,
};
use taskscope_viewer::ui;

const WIDTH: u16 = 160;
const HEIGHT: u16 = 40;

// ---------------------------------------------------------------- helpers

fn task(id: u64, name: Option<&str>, at: &str) -> Task {
    Task {
        id,
        name: name.map(str::to_owned),
        state: TaskState::Idle,
        ended: None,
        spawned_at: at.into(),
        parent: Some(1),
        age: Duration::from_secs(5),
        polls: 10,
        busy: Duration::from_millis(3),
        idle: Duration::from_millis(4997),
        since_last_poll: Some(Duration::from_millis(500)),
        max_poll: Duration::from_micros(800),
        wakes: 10,
        wakers: 1,
    }
}

fn task_ref(t: &Task) -> TaskRef {
    TaskRef {
        id: t.id,
        name: t.name.clone(),
        spawned_at: t.spawned_at.clone(),
    }
}

fn frame(function: &str, file: &str, line: u32) -> StackFrame {
    StackFrame {
        function: function.into(),
        file: Some(file.into()),
        line: Some(line),
    }
}

fn slow_poll(
    t: &TaskRef,
    poll: u64,
    ms: f64,
    in_progress: bool,
    stack: Vec<StackFrame>,
) -> Finding {
    Finding::new(
        FindingKind::SlowPoll {
            duration_ms: ms,
            threshold_ms: 100,
            thread: "tokio-runtime-worker".into(),
            stack,
            stack_unavailable: None,
            stack_truncated: false,
            in_progress,
            poll,
        },
        Some(t.clone()),
    )
}

fn app() -> AppInfo {
    AppInfo {
        name: "shop".into(),
        pid: 4242,
        version: "0.1.0".into(),
        protocol: 1,
        slow_poll_threshold: Duration::from_millis(100),
    }
}

fn snapshot(tasks: Vec<Task>, findings: Vec<Finding>) -> Update {
    Update::Snapshot {
        app: app(),
        tasks,
        finished: vec![],
        findings,
        metrics: RuntimeMetrics::default(),
        dropped: Dropped::default(),
        at: SystemTime::now(),
    }
}

fn delta(changed: Vec<Task>, finished: Vec<Task>, findings: Vec<Finding>) -> Update {
    Update::Delta {
        changed,
        finished,
        findings,
        metrics: RuntimeMetrics::default(),
        dropped: Dropped::default(),
        at: SystemTime::now(),
    }
}

fn connected(model: &mut Model, now: Instant) {
    model.apply(
        Update::Connection(Connection::Connected {
            addr: "127.0.0.1:6670".into(),
        }),
        now,
    );
}

/// Draws the model and returns the buffer.
fn draw(model: &mut Model) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).unwrap();
    terminal.draw(|f| ui::draw(f, model)).unwrap();
    terminal.backend().buffer().clone()
}

fn lines(buffer: &Buffer) -> Vec<String> {
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

fn screen(model: &mut Model) -> Vec<String> {
    lines(&draw(model))
}

fn dump(lines: &[String]) -> String {
    lines.join("\n")
}

/// The index of the only line containing `needle`.
fn line_of(lines: &[String], needle: &str) -> usize {
    let found: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one line with {needle:?}, found {found:?}:\n{}",
        dump(lines)
    );
    found[0]
}

/// The words of a line, borders taken out.
fn words(line: &str) -> Vec<String> {
    line.replace(['│', '┌', '┐', '└', '┘', '─'], " ")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn press_str(model: &mut Model, text: &str, now: Instant) {
    for c in text.chars() {
        model.handle_key(press(KeyCode::Char(c)), now);
    }
}

/// Three tasks, one of them ("handler" at src/handlers.rs:42:5) with a slow poll.
fn model_with_slow_handler(now: Instant) -> Model {
    let mut model = Model::new("127.0.0.1:6670", now);
    connected(&mut model, now);
    let mut handler = task(17, Some("handler"), "src/handlers.rs:42:5");
    handler.max_poll = Duration::from_millis(253);
    let worker = task(18, Some("worker"), "src/worker.rs:10:1");
    let ticker = task(19, Some("ticker"), "src/main.rs:5:5");
    let finding = slow_poll(
        &task_ref(&handler),
        3,
        253.4,
        false,
        vec![frame("app::handlers::load_config", "src/config.rs", 12)],
    );
    model.apply(snapshot(vec![handler, worker, ticker], vec![finding]), now);
    model
}

// ---------------------------------------------------------------- tasks view

#[test]
fn tasks_view_names_the_slow_task_its_spawn_location_and_a_warning_mark() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    let lines = screen(&mut model);
    let row = &lines[line_of(&lines, "handler")];
    assert!(row.contains("src/handlers.rs:42:5"), "{row}");
    assert!(row.contains('⚠'), "no slow mark on the slow task: {row}");
    assert!(row.contains("253.0ms"), "longest poll: {row}");
    let worker = &lines[line_of(&lines, "worker")];
    assert!(!worker.contains('⚠'), "a healthy task is marked: {worker}");
    line_of(&lines, "Tasks (3 live, 0 finished)");
    line_of(&lines, "Connected to 127.0.0.1:6670");
}

#[test]
fn tasks_view_marks_panicked_and_lost_waker_tasks() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    let lost = task(30, Some("lost"), "src/lost.rs:1:1");
    let mut boom = task(31, Some("boom"), "src/boom.rs:1:1");
    let leak = Finding::new(
        FindingKind::LeakedTask {
            reason: LeakReason::LostWaker,
            age_ms: 600,
            idle_ms: 559,
            waiting_at: Vec::new(),
            waiting_at_note: None,
        },
        Some(task_ref(&lost)),
    );
    boom.ended = Some(TaskEnd::Panicked);
    model.apply(delta(vec![lost], vec![boom], vec![leak]), now);
    let lines = screen(&mut model);
    assert!(lines[line_of(&lines, "lost ")].contains('↯'));
    assert!(lines[line_of(&lines, "boom")].contains('✗'));
    assert!(lines[line_of(&lines, "boom")].contains("panicked"));
}

/// Names of the task rows, top to bottom, among `names`.
fn row_order(lines: &[String], names: &[&str]) -> Vec<String> {
    let mut order: Vec<(usize, String)> = names
        .iter()
        .map(|n| (line_of(lines, &format!(" {n} ")), n.to_string()))
        .collect();
    order.sort();
    order.into_iter().map(|(_, n)| n).collect()
}

#[test]
fn tasks_sort_by_the_chosen_column_in_both_directions() {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    let mut tasks = Vec::new();
    for (id, name, polls) in [(1, "alpha", 50), (2, "bravo", 5000), (3, "charlie", 5)] {
        let mut t = task(id, Some(name), "src/main.rs:1:1");
        t.polls = polls;
        tasks.push(t);
    }
    model.apply(snapshot(tasks, vec![]), now);
    let names = ["alpha", "bravo", "charlie"];
    assert_eq!(
        row_order(&screen(&mut model), &names),
        ["alpha", "bravo", "charlie"]
    );

    // Id → Name → State → Spawned at → Polls: four steps right; amounts start descending.
    for _ in 0..4 {
        model.handle_key(press(KeyCode::Char('>')), now);
    }
    let lines = screen(&mut model);
    assert_eq!(row_order(&lines, &names), ["bravo", "alpha", "charlie"]);
    assert!(
        lines.iter().any(|l| l.contains("sorted by POLLS ▼")),
        "{}",
        dump(&lines)
    );
    assert!(
        lines.iter().any(|l| l.contains("POLLS▼")),
        "header marks the column"
    );

    model.handle_key(press(KeyCode::Char('i')), now);
    let lines = screen(&mut model);
    assert_eq!(row_order(&lines, &names), ["charlie", "alpha", "bravo"]);
    assert!(lines.iter().any(|l| l.contains("sorted by POLLS ▲")));

    // Left arrow back to SPAWNED AT, then NAME descending after `i`.
    model.handle_key(press(KeyCode::Left), now);
    model.handle_key(press(KeyCode::Left), now);
    model.handle_key(press(KeyCode::Left), now);
    model.handle_key(press(KeyCode::Char('i')), now);
    assert_eq!(
        row_order(&screen(&mut model), &names),
        ["charlie", "bravo", "alpha"]
    );
}

#[test]
fn filter_shows_only_matching_rows_and_says_how_many() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    // Matches by location, not name.
    model.apply(
        delta(
            vec![task(20, Some("cleanup"), "src/handlers.rs:80:9")],
            vec![],
            vec![],
        ),
        now,
    );
    model.handle_key(press(KeyCode::Char('/')), now);
    press_str(&mut model, "hand", now);
    let lines = screen(&mut model);
    line_of(&lines, "Tasks (4 live, 0 finished, 2 shown by filter)");
    line_of(&lines, "filter: hand▏");
    line_of(&lines, " handler ");
    line_of(&lines, " cleanup ");
    let text = dump(&lines);
    assert!(
        !text.contains("worker") && !text.contains("ticker"),
        "{text}"
    );

    // Enter keeps the filter; `q` typed into it would not have quit.
    model.handle_key(press(KeyCode::Enter), now);
    let lines = screen(&mut model);
    line_of(&lines, "2 shown by filter");
    assert!(!dump(&lines).contains("worker"));

    // Esc clears it.
    model.handle_key(press(KeyCode::Esc), now);
    let lines = screen(&mut model);
    line_of(&lines, "Tasks (4 live, 0 finished)");
    line_of(&lines, "worker");
}

#[test]
fn finished_task_is_dimmed_then_disappears_after_its_keep_time() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    let mut done = task(21, Some("oneshot"), "src/jobs.rs:3:3");
    done.ended = Some(TaskEnd::Completed);
    model.apply(delta(vec![], vec![done], vec![]), now);

    let buffer = draw(&mut model);
    let lines = lines(&buffer);
    line_of(&lines, "Tasks (3 live, 1 finished)");
    let y = line_of(&lines, "oneshot") as u16;
    assert!(lines[y as usize].contains("completed"));
    // Every cell of the row's text is dim, and a live row's cells are not.
    let x = lines[y as usize].find("oneshot").unwrap();
    let x = lines[y as usize][..x].chars().count() as u16;
    assert!(buffer[(x, y)].modifier.contains(Modifier::DIM));
    let live_y = line_of(&lines, "worker") as u16;
    let live_x = lines[live_y as usize][..lines[live_y as usize].find("worker").unwrap()]
        .chars()
        .count() as u16;
    assert!(!buffer[(live_x, live_y)].modifier.contains(Modifier::DIM));

    model.tick(now + Duration::from_secs(9));
    line_of(&screen(&mut model), "oneshot");
    model.tick(now + Duration::from_secs(11));
    let lines = screen(&mut model);
    assert!(!dump(&lines).contains("oneshot"), "{}", dump(&lines));
    line_of(&lines, "Tasks (3 live, 0 finished)");
}

#[test]
fn paused_holds_updates_until_resumed() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    model.handle_key(press(KeyCode::Char('p')), now);
    model.apply(
        delta(
            vec![task(40, Some("late"), "src/late.rs:1:1")],
            vec![],
            vec![],
        ),
        now,
    );
    let lines = screen(&mut model);
    let status = &lines[HEIGHT as usize - 1];
    assert!(status.contains("PAUSED"), "{status}");
    assert!(status.contains("1 updates held"), "{status}");
    assert!(!dump(&lines).contains("late"));

    model.handle_key(press(KeyCode::Char('p')), now);
    let lines = screen(&mut model);
    assert!(!lines[HEIGHT as usize - 1].contains("PAUSED"));
    line_of(&lines, "late");
}

// ---------------------------------------------------------------- slow polls

#[test]
fn slow_polls_group_by_location_and_show_the_worst_stack() {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    let a = task(17, Some("handler"), "src/handlers.rs:42:5");
    let b = task(23, Some("handler"), "src/handlers.rs:42:5");
    let db = task(30, Some("db"), "src/db.rs:7:9");
    let findings = vec![
        slow_poll(
            &task_ref(&a),
            3,
            180.0,
            false,
            vec![frame("app::handlers::parse", "src/handlers.rs", 60)],
        ),
        slow_poll(
            &task_ref(&b),
            1,
            900.0,
            false,
            vec![
                frame("app::handlers::load_config", "src/config.rs", 12),
                frame("app::handlers::handle", "src/handlers.rs", 50),
            ],
        ),
        // One poll reported while blocked, then when it ended: one poll.
        slow_poll(
            &task_ref(&db),
            4,
            1000.0,
            true,
            vec![frame(
                "std::thread::sleep",
                "library/std/src/thread/mod.rs",
                1,
            )],
        ),
        slow_poll(&task_ref(&db), 4, 1500.0, false, vec![]),
    ];
    model.apply(snapshot(vec![a, b, db], findings), now);
    model.handle_key(press(KeyCode::Char('3')), now);
    model.handle_key(press(KeyCode::Char('o')), now); // worst first
    let lines = screen(&mut model);
    line_of(&lines, "(2 locations, 3 polls)");
    line_of(&lines, "worst first");

    let handlers = words(&lines[line_of(&lines, "│src/handlers.rs:42:5 ")]);
    assert_eq!(
        handlers[..4],
        ["src/handlers.rs:42:5", "2", "900.0ms", "900.0ms"]
    );
    let db = words(&lines[line_of(&lines, "│src/db.rs:7:9 ")]);
    assert_eq!(db[..4], ["src/db.rs:7:9", "1", "1.50s", "1.50s"]);
    // Worst first: db (1.5 s) above handlers (0.9 s); the first row is selected.
    assert!(line_of(&lines, "│src/db.rs:7:9 ") < line_of(&lines, "│src/handlers.rs:42:5 "));
    line_of(&lines, "Worst stack: src/db.rs:7:9");
    line_of(&lines, "std::thread::sleep");

    // Select the handlers group: its worst poll's stack, top frame first.
    model.handle_key(press(KeyCode::Down), now);
    let lines = screen(&mut model);
    line_of(&lines, "Worst stack: src/handlers.rs:42:5");
    let top = line_of(&lines, "app::handlers::load_config (src/config.rs:12)");
    let next = line_of(&lines, "app::handlers::handle");
    assert!(top < next);
    assert!(
        !dump(&lines).contains("app::handlers::parse"),
        "not the worst poll's stack"
    );

    // Enter opens the worst poll's task.
    assert_eq!(
        model.handle_key(press(KeyCode::Enter), now),
        Some(Action::RequestDetail(23))
    );
    assert_eq!(model.ui.view, View::Detail);
}

// ---------------------------------------------------------------- problems

#[test]
fn problems_view_lists_never_awaited_lost_wakers_panics_and_drops() {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    let main = TaskRef {
        id: 1,
        name: None,
        spawned_at: "src/main.rs:4:1".into(),
    };
    let lost = TaskRef {
        id: 12,
        name: None,
        spawned_at: "src/main.rs:44:5".into(),
    };
    let boom = TaskRef {
        id: 5,
        name: None,
        spawned_at: "src/main.rs:51:18".into(),
    };
    let findings = vec![
        Finding::new(
            FindingKind::NeverAwaited {
                name: "fetch_user".into(),
                created_at: "src/main.rs:10:5".into(),
            },
            Some(main),
        ),
        Finding::new(
            FindingKind::LeakedTask {
                reason: LeakReason::LostWaker,
                age_ms: 560,
                idle_ms: 559,
                waiting_at: Vec::new(),
                waiting_at_note: None,
            },
            Some(lost),
        ),
        Finding::new(
            FindingKind::TaskPanicked {
                message: "config file missing".into(),
                panicked_at: Some("src/main.rs:53:9".into()),
                joined: None,
            },
            Some(boom),
        ),
        Finding::new(FindingKind::FindingsDropped { count: 120 }, None),
    ];
    model.apply(snapshot(vec![], findings), now);
    model.handle_key(press(KeyCode::Char('4')), now);
    let lines = screen(&mut model);
    line_of(&lines, "Never awaited (1)");
    let never = &lines[line_of(&lines, "future fetch_user")];
    assert!(never.contains("created at src/main.rs:10:5"), "{never}");
    line_of(&lines, "Leaked and lost tasks (1)");
    let lost = &lines[line_of(&lines, "lost waker")];
    assert!(lost.contains("task 12 (spawned at src/main.rs:44:5) can never be woken again"));
    line_of(&lines, "Panics (1)");
    let panic = &lines[line_of(&lines, "config file missing")];
    assert!(panic.contains("panicked at src/main.rs:53:9"), "{panic}");
    let dropped = &lines[line_of(&lines, "findings dropped by the app")];
    assert!(
        dropped.trim_end_matches([' ', '│']).ends_with("120"),
        "{dropped}"
    );
    line_of(&lines, "3 Slow polls │ 4 Problems (3)");
}

// ---------------------------------------------------------------- runtime

#[test]
fn runtime_view_shows_workers_and_queue_depths() {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    model.apply(
        Update::Delta {
            changed: vec![],
            finished: vec![],
            findings: vec![],
            metrics: RuntimeMetrics {
                workers: 4,
                alive_tasks: 412,
                global_queue_depth: 17,
                local_queue_depths: vec![3, 0, 9, 1],
                blocking_threads: 2,
                blocking_queue_depth: 5,
            },
            dropped: Dropped::default(),
            at: SystemTime::now(),
        },
        now,
    );
    model.handle_key(press(KeyCode::Char('5')), now);
    let lines = screen(&mut model);
    assert_eq!(words(&lines[line_of(&lines, "workers")]), ["workers", "4"]);
    assert_eq!(
        words(&lines[line_of(&lines, "alive tasks")]),
        ["alive", "tasks", "412"]
    );
    let global = words(&lines[line_of(&lines, "global queue")]);
    assert_eq!(global[..3], ["global", "queue", "17"]);
    let w2 = words(&lines[line_of(&lines, "worker 2 queue")]);
    assert_eq!(w2[..4], ["worker", "2", "queue", "9"]);
    assert!(w2[4].chars().all(|c| c == '█'), "a bar: {w2:?}");
    let w1 = words(&lines[line_of(&lines, "worker 1 queue")]);
    assert_eq!(
        w1,
        ["worker", "1", "queue", "0"],
        "no bar for an empty queue"
    );
    assert_eq!(
        words(&lines[line_of(&lines, "waiting for a thread")]),
        ["waiting", "for", "a", "thread", "5"]
    );
}

// ---------------------------------------------------------------- detail

#[test]
fn detail_view_shows_histogram_bars_slow_poll_stack_and_relations() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    // Select "handler" (first row by id) and open it.
    assert_eq!(
        model.handle_key(press(KeyCode::Enter), now),
        Some(Action::RequestDetail(17))
    );
    let lines = screen(&mut model);
    line_of(&lines, "Asking the app for the detail");

    let handler_ref = TaskRef {
        id: 17,
        name: Some("handler".into()),
        spawned_at: "src/handlers.rs:42:5".into(),
    };
    model.apply(
        Update::Detail(TaskDetail {
            id: 17,
            histogram: vec![
                (Some(Duration::from_micros(100)), 120),
                (Some(Duration::from_millis(1)), 30),
                (None, 1),
            ],
            slow_polls: vec![slow_poll(
                &handler_ref,
                3,
                253.4,
                false,
                vec![frame("app::handlers::load_config", "src/config.rs", 12)],
            )],
            wakes: 14,
            wakers: 1,
            parent: Some(1),
            children: vec![40, 41],
            async_stack: None,
        }),
        now,
    );
    let lines = screen(&mut model);
    line_of(
        &lines,
        "Task 17 \"handler\"  idle  spawned at src/handlers.rs:42:5",
    );
    let bars = |needle: &str| lines[line_of(&lines, needle)].matches('█').count();
    let (small, mid, big) = (bars("≤ 100µs"), bars("≤ 1.00ms"), bars("> 1.00ms"));
    assert_eq!(small, 50, "the largest bucket has the full bar");
    assert!(small > mid && mid > big && big >= 1, "{small} {mid} {big}");
    assert!(
        lines[line_of(&lines, "≤ 100µs")]
            .trim_end_matches([' ', '│'])
            .ends_with("120")
    );
    line_of(&lines, "│Slow polls (1)");
    line_of(&lines, "poll 3 took 253.4ms on tokio-runtime-worker");
    line_of(&lines, "app::handlers::load_config (src/config.rs:12)");
    line_of(&lines, "parent 1   children 40, 41");
    line_of(&lines, "wakes 14   wakers alive 1");
    line_of(&lines, "Async stack");
    line_of(&lines, "not available");
    // Esc goes back to the table.
    model.handle_key(press(KeyCode::Esc), now);
    assert_eq!(model.ui.view, View::Tasks);
}

// ---------------------------------------------------------------- help, status

#[test]
fn help_lists_the_keys() {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    model.handle_key(press(KeyCode::Char('?')), now);
    let lines = screen(&mut model);
    for needle in [
        "q  Ctrl-C",
        "pause / resume",
        "invert the sort",
        "filter by name or spawn location",
        "choose the sort column",
        "1 2 3 4 5",
        "↯  lost waker",
    ] {
        line_of(&lines, needle);
    }
    model.handle_key(press(KeyCode::Char('?')), now);
    assert!(!dump(&screen(&mut model)).contains("invert the sort"));
}

#[test]
fn status_line_always_says_how_the_connection_is_and_when_paused() {
    let now = Instant::now();
    let mut model = Model::new("127.0.0.1:6670", now);
    let status = |model: &mut Model| screen(model)[HEIGHT as usize - 1].clone();
    assert!(status(&mut model).contains("Connecting to 127.0.0.1:6670 (attempt 1)"));
    model.apply(
        Update::Connection(Connection::Connecting {
            addr: "127.0.0.1:6670".into(),
            attempt: 3,
        }),
        now,
    );
    assert!(status(&mut model).contains("Connecting to 127.0.0.1:6670 (attempt 3)"));
    model.apply(
        Update::Connection(Connection::Disconnected {
            addr: "127.0.0.1:6670".into(),
            reason: "connection refused: is the app running with TASKSCOPE_ADDR set?".into(),
            retry_in: Duration::from_secs(2),
        }),
        now,
    );
    let line = status(&mut model);
    assert!(
        line.contains(
            "Disconnected: connection refused: is the app running with TASKSCOPE_ADDR set?, retrying in 2s"
        ),
        "{line}"
    );
    model.tick(now + Duration::from_millis(1500));
    assert!(status(&mut model).contains("retrying in 1s"));
    model.handle_key(press(KeyCode::Char('p')), now);
    let line = status(&mut model);
    assert!(
        line.contains("PAUSED") && line.contains("Disconnected: connection refused"),
        "{line}"
    );
    model.apply(
        Update::Connection(Connection::Incompatible {
            addr: "127.0.0.1:6670".into(),
            reason: "protocol 2, this viewer speaks 1".into(),
        }),
        now,
    );
    assert!(status(&mut model).contains("Incompatible: protocol 2, this viewer speaks 1"));
    assert_eq!(
        model.handle_key(press(KeyCode::Char('q')), now),
        Some(Action::Quit)
    );
}

// ---------------------------------------------------------------- scale

#[test]
fn a_hundred_thousand_tasks_apply_a_delta_and_draw() {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    let tasks: Vec<Task> = (1..=100_000)
        .map(|id| task(id, None, "src/pool.rs:20:9"))
        .collect();
    model.apply(snapshot(tasks, vec![]), now);
    line_of(&screen(&mut model), "Tasks (100000 live, 0 finished)");

    // 1% change: more polls; sort by polls descending so they come first.
    let changed: Vec<Task> = (1..=1000)
        .map(|i| {
            let mut t = task(i * 100, Some("busy"), "src/pool.rs:20:9");
            t.polls = 1_000 + i;
            t
        })
        .collect();
    let later = now + Duration::from_millis(100);
    model.apply(delta(changed, vec![], vec![]), later);
    for _ in 0..4 {
        model.handle_key(press(KeyCode::Char('>')), later);
    }
    let lines = screen(&mut model);
    line_of(&lines, "Tasks (100000 live, 0 finished)");
    let first_row = words(&lines[3]);
    assert_eq!(first_row[..2], ["100000", "busy"], "{}", dump(&lines));
    // Scrolling to the end still works at this size.
    model.handle_key(press(KeyCode::End), later);
    let lines = screen(&mut model);
    assert!(
        lines.iter().any(|l| l.contains("99999")),
        "{}",
        dump(&lines)
    );
}

#[test]
fn changed_values_move_rows_at_once_in_small_tables_and_within_a_second_in_big_ones() {
    for (count, at_once) in [(100u64, true), (20_000, false)] {
        let now = Instant::now();
        let mut model = Model::new("x", now);
        let tasks: Vec<Task> = (1..=count)
            .map(|id| task(id, None, "src/pool.rs:20:9"))
            .collect();
        model.apply(snapshot(tasks, vec![]), now);
        for _ in 0..4 {
            model.handle_key(press(KeyCode::Char('>')), now); // POLLS, descending
        }
        assert_eq!(model.task_order()[0], 1, "ties by id");
        let mut hot = task(count, Some("hot"), "src/pool.rs:20:9");
        hot.polls = 1_000_000;
        let later = now + Duration::from_millis(100);
        model.apply(delta(vec![hot], vec![], vec![]), later);
        let first = model.task_order()[0];
        assert_eq!(first == count, at_once, "{count} tasks");
        model.tick(now + Duration::from_millis(1100));
        assert_eq!(
            model.task_order()[0],
            count,
            "{count} tasks, a second later"
        );
        line_of(&screen(&mut model), " hot ");
    }
}

#[test]
fn every_view_draws_at_any_size_without_panicking() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    model.handle_key(press(KeyCode::Enter), now);
    model.apply(
        Update::Detail(TaskDetail {
            id: 17,
            histogram: vec![(Some(Duration::from_micros(100)), 3), (None, 1)],
            ..TaskDetail::default()
        }),
        now,
    );
    for (w, h) in [(1, 1), (10, 3), (40, 8), (80, 24), (300, 100)] {
        for key in ['1', '2', '3', '4', '5', '?', '?'] {
            model.handle_key(press(KeyCode::Char(key)), now);
            let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
            terminal.draw(|f| ui::draw(f, &mut model)).unwrap();
        }
    }
}

#[test]
fn the_selected_slow_poll_group_stays_selected_when_newer_polls_reorder_the_groups() {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    let a = task_ref(&task(1, Some("a"), "src/a.rs:1:1"));
    let b = task_ref(&task(2, Some("b"), "src/b.rs:1:1"));
    let stack = |f: &str| vec![frame(f, "src/x.rs", 1)];
    model.apply(
        snapshot(
            vec![],
            vec![
                slow_poll(&a, 1, 200.0, false, stack("in_a")),
                slow_poll(&b, 1, 300.0, false, stack("in_b")),
            ],
        ),
        now,
    );
    model.handle_key(press(KeyCode::Char('3')), now);
    // Newest first: b, then a; select a.
    model.handle_key(press(KeyCode::Down), now);
    line_of(&screen(&mut model), "Worst stack: src/a.rs:1:1");
    // A newer slow poll of b keeps b on top; then one of a moves a on top.
    model.apply(
        delta(vec![], vec![], vec![slow_poll(&b, 2, 150.0, false, vec![])]),
        now,
    );
    line_of(&screen(&mut model), "Worst stack: src/a.rs:1:1");
    model.apply(
        delta(vec![], vec![], vec![slow_poll(&a, 2, 150.0, false, vec![])]),
        now,
    );
    let lines = screen(&mut model);
    line_of(&lines, "Worst stack: src/a.rs:1:1");
    line_of(&lines, "in_a");
}
