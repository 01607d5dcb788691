//! Screen tests of the live view: a model built from hand-made updates, drawn
//! into a `TestBackend`, read back as the text (and styles) a person would see.

use std::time::{Duration, Instant, SystemTime};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode;
use ratatui::style::Modifier;
use taskscope_api::{Finding, FindingKind, LeakReason, StackFrame, TaskRef};
use taskscope_viewer::client::AsyncStack;
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
        source: Default::default(),
        poll_timing_one_in: 1,
    }
}

fn snapshot(tasks: Vec<Task>, findings: Vec<Finding>) -> Update {
    snapshot_from(app(), tasks, findings)
}

fn snapshot_from(app: AppInfo, tasks: Vec<Task>, findings: Vec<Finding>) -> Update {
    Update::Snapshot {
        app,
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
fn tasks_view_marks_estimated_times_when_the_app_samples_poll_timing() {
    let now = Instant::now();
    let mut short = task(40, Some("short"), "src/short.rs:1:1");
    short.polls = 1;
    short.max_poll = Duration::ZERO;
    short.busy = Duration::ZERO;
    let mut long = task(41, Some("long"), "src/long.rs:1:1");
    long.max_poll = Duration::from_millis(253);
    let sampled_task = task(42, Some("sampled"), "src/sampled.rs:1:1");
    let mut stuck = task(43, Some("stuck"), "src/stuck.rs:1:1");
    stuck.state = TaskState::Running;
    stuck.polls = 0;
    stuck.max_poll = Duration::ZERO;
    let tasks = vec![short, long, sampled_task, stuck];

    // Every poll timed: exact figures, no mark, no legend.
    let mut exact = Model::new("127.0.0.1:6670", now);
    connected(&mut exact, now);
    exact.apply(snapshot(tasks.clone(), vec![]), now);
    let lines = screen(&mut exact);
    let row = words(&lines[line_of(&lines, "sampled")]);
    assert!(row.contains(&"3.00ms".to_string()), "{row:?}");
    assert!(row.contains(&"800µs".to_string()), "{row:?}");
    assert!(!dump(&lines).contains('~'), "{}", dump(&lines));
    assert!(!dump(&lines).contains("estimated"), "{}", dump(&lines));

    // One short poll in 8 timed: busy and idle are estimates, a longest poll
    // under 10 ms is the longest timed one, none timed is "<10.0ms"; a
    // longest poll of 10 ms or more is exact.
    let mut model = Model::new("127.0.0.1:6670", now);
    connected(&mut model, now);
    let app = AppInfo {
        poll_timing_one_in: 8,
        ..app()
    };
    model.apply(snapshot_from(app, tasks, vec![]), now);
    let lines = screen(&mut model);
    let row = words(&lines[line_of(&lines, "sampled")]);
    assert!(row.contains(&"~3.00ms".to_string()), "busy: {row:?}");
    assert!(row.contains(&"~5.00s".to_string()), "idle: {row:?}");
    assert!(row.contains(&"~800µs".to_string()), "longest: {row:?}");
    assert!(
        row.contains(&"5.00s".to_string()),
        "age stays exact: {row:?}"
    );
    let row = words(&lines[line_of(&lines, "short")]);
    assert!(row.contains(&"~0ns".to_string()), "busy: {row:?}");
    assert!(row.contains(&"<10.0ms".to_string()), "longest: {row:?}");
    let row = words(&lines[line_of(&lines, "src/long.rs")]);
    assert!(row.contains(&"253.0ms".to_string()), "longest: {row:?}");
    let row = words(&lines[line_of(&lines, "src/stuck.rs")]);
    assert_eq!(
        row.last().map(String::as_str),
        Some("—"),
        "no poll ended yet: {row:?}"
    );
    line_of(&lines, "~ estimated: polls under 10.0ms timed 1 in 8");
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

#[test]
fn live_tasks_come_first_and_l_shows_only_them() {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    // Finished requests with lower ids than the live tasks: by id alone they
    // would fill the screen and push the live ones away.
    let mut tasks = vec![
        task(50, Some("server"), "src/main.rs:10:5"),
        task(60, Some("poller"), "src/main.rs:20:5"),
    ];
    for id in 1..=30 {
        let mut t = task(id, Some(&format!("req-{id}")), "src/req.rs:9:9");
        t.ended = Some(TaskEnd::Completed);
        tasks.push(t);
    }
    model.apply(snapshot(tasks, vec![]), now);
    let lines = screen(&mut model);
    line_of(&lines, "Tasks (2 live, 30 finished)");
    line_of(&lines, "live first (l: live only)");
    let (server, poller, first_req) = (
        line_of(&lines, " server "),
        line_of(&lines, " poller "),
        line_of(&lines, " req-1 "),
    );
    assert!(server < poller && poller < first_req, "{}", dump(&lines));
    assert_eq!(first_req, poller + 1, "finished right below the live ones");

    // A live task ends: it moves down among the finished ones, by id.
    let mut ended = task(50, Some("server"), "src/main.rs:10:5");
    ended.ended = Some(TaskEnd::Completed);
    model.apply(delta(vec![], vec![ended], vec![]), now);
    let lines = screen(&mut model);
    let (server, poller, last_req) = (
        line_of(&lines, " server "),
        line_of(&lines, " poller "),
        line_of(&lines, " req-30 "),
    );
    assert!(poller < last_req && last_req < server, "{}", dump(&lines));

    // l: live tasks only; again: all.
    model.handle_key(press(KeyCode::Char('l')), now);
    let lines = screen(&mut model);
    line_of(&lines, "Tasks (1 live, 31 finished hidden)");
    line_of(&lines, "live only (l: finished too)");
    line_of(&lines, " poller ");
    let text = dump(&lines);
    assert!(
        !text.contains("req-") && !text.contains(" server "),
        "{text}"
    );
    model.handle_key(press(KeyCode::Char('l')), now);
    let lines = screen(&mut model);
    line_of(&lines, "Tasks (1 live, 31 finished)");
    line_of(&lines, " req-7 ");
}

/// The name cells as drawn (tree lines included), top to bottom, of the
/// rows whose name is one of `names`.
fn name_cells(lines: &[String], names: &[&str]) -> Vec<String> {
    let header = &lines[line_of(lines, "SPAWNED AT")];
    let col = |title: &str| header[..header.find(title).unwrap()].chars().count();
    let (from, to) = (col("NAME"), col("STATE"));
    lines
        .iter()
        .map(|l| {
            let cell: String = l.chars().skip(from).take(to - from).collect();
            cell.trim_end().to_string()
        })
        .filter(|cell| {
            let name = cell.trim_start_matches(['│', '├', '└', '─', ' ']);
            names.contains(&name)
        })
        .collect()
}

#[test]
fn tree_mode_nests_children_under_their_parents_and_keeps_sort_filter_and_selection() {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    let with_parent = |id, name, parent: Option<u64>| {
        let mut t = task(id, Some(name), "src/main.rs:1:1");
        t.parent = parent;
        t
    };
    let mut done = with_parent(30, "finished-child", Some(10));
    done.ended = Some(TaskEnd::Completed);
    model.apply(
        snapshot(
            vec![
                with_parent(1, "main", None),
                with_parent(10, "acceptor", Some(1)),
                with_parent(11, "conn-b", Some(10)),
                with_parent(12, "conn-a", Some(10)),
                with_parent(20, "metrics", Some(1)),
                // Its parent (5) is gone: a root.
                with_parent(21, "orphan", Some(5)),
                done,
            ],
            vec![],
        ),
        now,
    );
    let names = [
        "main",
        "acceptor",
        "conn-b",
        "conn-a",
        "metrics",
        "orphan",
        "finished-child",
    ];
    // Select conn-a (row 4 by id), then the tree.
    for _ in 0..4 {
        model.handle_key(press(KeyCode::Down), now);
    }
    assert_eq!(model.selected_task(), Some(12));
    model.handle_key(press(KeyCode::Char('t')), now);
    let lines = screen(&mut model);
    line_of(&lines, "tree by parent (t: flat)");
    assert_eq!(
        name_cells(&lines, &names),
        [
            "main",
            "├─acceptor",
            "│ ├─conn-b",
            "│ └─conn-a",
            "└─metrics",
            "orphan",
            // Finished: below the live ones, its live parent notwithstanding.
            "finished-child",
        ],
        "{}",
        dump(&lines)
    );
    // The selection followed conn-a to its row in the tree.
    assert_eq!(model.selected_task(), Some(12));
    let selected = model.selected_row().unwrap();
    assert_eq!(selected, 3);
    assert!(
        draw(&mut model)[(20, 2 + selected as u16 + 1)]
            .modifier
            .contains(Modifier::REVERSED)
    );

    // Sorted by name: siblings in name order, each under its parent still.
    model.handle_key(press(KeyCode::Char('>')), now);
    let lines = screen(&mut model);
    assert_eq!(
        name_cells(&lines, &names),
        [
            "main",
            "├─acceptor",
            "│ ├─conn-a",
            "│ └─conn-b",
            "└─metrics",
            "orphan",
            "finished-child",
        ],
        "{}",
        dump(&lines)
    );

    // A filter leaves out the parent: its matching children become roots.
    press_str(&mut model, "/conn", now);
    model.handle_key(press(KeyCode::Enter), now);
    let lines = screen(&mut model);
    assert_eq!(name_cells(&lines, &names), ["conn-a", "conn-b"]);
    model.handle_key(press(KeyCode::Esc), now);

    // l: live only; t again: the flat list, conn-a still selected.
    model.handle_key(press(KeyCode::Char('l')), now);
    let lines = screen(&mut model);
    assert!(!dump(&lines).contains("finished-child"));
    model.handle_key(press(KeyCode::Char('t')), now);
    let lines = screen(&mut model);
    assert_eq!(
        name_cells(&lines, &names),
        ["acceptor", "conn-a", "conn-b", "main", "metrics", "orphan"]
    );
    assert_eq!(model.selected_task(), Some(12));
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
    line_of(&lines, "0  std::thread::sleep");

    // Select the handlers group: its worst poll's stack, top frame first.
    model.handle_key(press(KeyCode::Down), now);
    let lines = screen(&mut model);
    line_of(&lines, "Worst stack: src/handlers.rs:42:5");
    let top = line_of(&lines, "app::handlers::load_config (src/config.rs:12)");
    let next = line_of(&lines, "app::handlers::handle");
    assert!(top < next);
    assert!(
        !dump(&lines).contains("0  app::handlers::parse"),
        "not the worst poll's stack"
    );
    // Its two polls blocked in different places: the first seen is named.
    line_of(
        &lines,
        "most often blocked in app::handlers::parse (src/handlers.rs:60) (1 of 2 polls)",
    );

    // Enter opens the worst poll's task.
    assert_eq!(
        model.handle_key(press(KeyCode::Enter), now),
        Some(Action::RequestDetailWithStack(23))
    );
    assert_eq!(model.ui.view, View::Detail);
}

const REGISTRY: &str = "/home/dev/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
const RUSTC: &str = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";

/// A slow poll's stack as the demo's shows it: the C library and std above
/// the app's two frames, tracing, Tokio, core and std below; full paths.
fn demo_stack() -> Vec<StackFrame> {
    let tokio = |f: &str, file: &str| frame(f, &format!("{REGISTRY}/tokio-1.54.1/src/{file}"), 300);
    vec![
        frame(
            "__GI___clock_nanosleep",
            "./time/../sysdeps/unix/sysv/linux/clock_nanosleep.c",
            48,
        ),
        frame(
            "std::sys::thread::unix::sleep",
            &format!("{RUSTC}/std/src/sys/thread/unix.rs"),
            579,
        ),
        frame(
            "std::thread::functions::sleep",
            &format!("{RUSTC}/std/src/thread/functions.rs"),
            289,
        ),
        frame(
            "shop::config::load_config_blocking",
            "/work/shop/server/src/config.rs",
            132,
        ),
        frame(
            "shop::config::config_reloader::{{closure}}",
            "/work/shop/server/src/config.rs",
            126,
        ),
        frame(
            "<tracing::instrument::Instrumented<T> as core::future::future::Future>::poll",
            &format!("{REGISTRY}/tracing-0.1.44/src/instrument.rs"),
            321,
        ),
        tokio(
            "tokio::runtime::task::core::Core<T,S>::poll",
            "runtime/task/core.rs",
        ),
        tokio("tokio::runtime::task::raw::poll", "runtime/task/raw.rs"),
        frame(
            "std::panicking::catch_unwind",
            &format!("{RUSTC}/std/src/panicking.rs"),
            544,
        ),
        frame("start_thread", "./nptl/pthread_create.c", 447),
    ]
}

#[test]
fn slow_poll_stacks_fold_the_runtimes_frames_and_f_shows_them_all() {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    let reloader = task(40, Some("config_reloader"), "server/src/main.rs:96:13");
    let finding = slow_poll(&task_ref(&reloader), 1, 250.0, false, demo_stack());
    model.apply(snapshot(vec![reloader], vec![finding.clone()]), now);
    model.handle_key(press(KeyCode::Char('3')), now);
    let buffer = draw(&mut model);
    let lines = lines(&buffer);
    line_of(&lines, "Worst stack: server/src/main.rs:96:13");
    line_of(&lines, "f: whole stack");
    line_of(
        &lines,
        "most often blocked in shop::config::load_config_blocking (server/src/config.rs:132) (1 of 1 poll)",
    );
    let above = line_of(&lines, "… 3 runtime frames (libc, std)");
    // The app's frames, with paths relative to the app's root.
    let blocking = line_of(
        &lines,
        "3  shop::config::load_config_blocking (server/src/config.rs:132)",
    );
    let reloader = line_of(
        &lines,
        "4  shop::config::config_reloader::{{closure}} (server/src/config.rs:126)",
    );
    let below = line_of(&lines, "… 5 runtime frames (tracing, tokio, std, libc)");
    assert_eq!(
        (blocking, reloader, below),
        (above + 1, above + 2, above + 3),
        "{}",
        dump(&lines)
    );
    let text = dump(&lines);
    assert!(
        !text.contains("tokio::runtime") && !text.contains(".cargo") && !text.contains("/rustc/"),
        "{text}"
    );
    // The app's frame stands out; the folded lines are dim.
    let x = lines[blocking][..lines[blocking].find("shop::").unwrap()]
        .chars()
        .count() as u16;
    assert!(
        buffer[(x, blocking as u16)]
            .modifier
            .contains(Modifier::BOLD)
    );
    let x = lines[below][..lines[below].find('…').unwrap()]
        .chars()
        .count() as u16;
    assert!(buffer[(x, below as u16)].modifier.contains(Modifier::DIM));

    // f: every frame, paths shortened.
    model.handle_key(press(KeyCode::Char('f')), now);
    let lines = screen(&mut model);
    line_of(&lines, "f: fold the runtime's frames");
    line_of(
        &lines,
        "6  tokio::runtime::task::core::Core<T,S>::poll (tokio-1.54.1/src/runtime/task/core.rs:300)",
    );
    line_of(
        &lines,
        "2  std::thread::functions::sleep (std/src/thread/functions.rs:289)",
    );
    line_of(&lines, "9  start_thread (./nptl/pthread_create.c:447)");
    assert!(!dump(&lines).contains("runtime frames"));

    // The detail view folds its slow polls' stacks the same way, and `f` there too.
    model.handle_key(press(KeyCode::Char('f')), now);
    model.handle_key(press(KeyCode::Enter), now);
    model.apply(
        Update::Detail(TaskDetail {
            id: 40,
            slow_polls: vec![finding],
            ..TaskDetail::default()
        }),
        now,
    );
    let lines = screen(&mut model);
    line_of(&lines, "Slow polls (1)  f: whole stack");
    line_of(&lines, "… 3 runtime frames (libc, std)");
    line_of(
        &lines,
        "shop::config::load_config_blocking (server/src/config.rs:132)",
    );
    model.handle_key(press(KeyCode::Char('f')), now);
    line_of(&screen(&mut model), "tokio::runtime::task::raw::poll");
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
    line_of(&lines, "Never awaited (1 at 1 location)");
    let never = &lines[line_of(&lines, "future fetch_user")];
    assert!(never.contains("created at src/main.rs:10:5"), "{never}");
    line_of(&lines, "Leaked and lost tasks (1 at 1 location)");
    let lost = line_of(&lines, "lost waker");
    assert!(lines[lost].contains("src/main.rs:44:5"), "{}", lines[lost]);
    assert!(
        lines[lost + 1].contains("task 12 (spawned at src/main.rs:44:5) can never be woken again")
    );
    line_of(&lines, "Panics (1 at 1 location)");
    let panic = &lines[line_of(&lines, "config file missing")];
    assert!(panic.contains("panicked at src/main.rs:53:9"), "{panic}");
    let dropped = &lines[line_of(&lines, "findings dropped by the app")];
    assert!(
        dropped.trim_end_matches([' ', '│']).ends_with("120"),
        "{dropped}"
    );
    line_of(&lines, "3 Slow polls │ 4 Problems (3)");
}

/// `HH:MM:SS` of `t` in UTC, as the problems view shows times.
fn hms(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()[11..19].to_string()
}

#[test]
fn problems_group_by_kind_and_location_and_enter_shows_the_occurrences() {
    let now = Instant::now();
    let mut model = Model::new("x", now);
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let at = |secs: u64| start + Duration::from_secs(secs);
    let main = TaskRef {
        id: 9,
        name: None,
        spawned_at: "src/main.rs:49:32".into(),
    };
    let mut findings = Vec::new();
    // The demo's ten identical never-awaited futures and seven panics, and one lost waker.
    for i in 0..10 {
        findings.push(Finding::at(
            FindingKind::NeverAwaited {
                name: "fetch_user".into(),
                created_at: "src/main.rs:102:43".into(),
            },
            Some(main.clone()),
            at(4 * i),
        ));
    }
    for i in 0..7 {
        findings.push(Finding::at(
            FindingKind::TaskPanicked {
                message: "payment provider returned 503".into(),
                panicked_at: Some("src/pay.rs:157:5".into()),
                joined: None,
            },
            Some(TaskRef {
                id: 100 + i,
                name: Some("payment_worker".into()),
                spawned_at: "src/main.rs:106:18".into(),
            }),
            at(6 * i + 1),
        ));
    }
    findings.push(Finding::at(
        FindingKind::LeakedTask {
            reason: LeakReason::LostWaker,
            age_ms: 600,
            idle_ms: 511,
            waiting_at: Vec::new(),
            waiting_at_note: None,
        },
        Some(TaskRef {
            id: 13,
            name: Some("lost_waker".into()),
            spawned_at: "src/main.rs:83:5".into(),
        }),
        at(2),
    ));
    model.apply(snapshot(vec![], findings), now);
    model.handle_key(press(KeyCode::Char('4')), now);
    let buffer = draw(&mut model);
    let lines = lines(&buffer);
    line_of(&lines, "Never awaited (10 at 1 location)");
    line_of(&lines, "Leaked and lost tasks (1 at 1 location)");
    line_of(&lines, "Panics (7 at 1 location)");
    // One row each: count, first and last seen, location; under it the newest message.
    let newest = line_of(&lines, "future fetch_user (created at src/main.rs:102:43)");
    let never = newest - 1;
    assert_eq!(
        words(&lines[never]),
        [
            "▸",
            "never",
            "awaited",
            "10",
            &hms(at(0)),
            &hms(at(36)),
            "src/main.rs:102:43"
        ],
        "{}",
        lines[never]
    );
    assert_eq!(
        words(&lines[newest])[..3],
        ["newest:", "future", "fetch_user"],
        "{}",
        lines[newest]
    );
    let panics = line_of(&lines, "payment provider returned 503") - 1;
    assert_eq!(
        words(&lines[panics]),
        [
            "▸",
            "panicked",
            "7",
            &hms(at(1)),
            &hms(at(37)),
            "src/pay.rs:157:5"
        ]
    );
    assert!(
        lines[panics + 1].contains("task 106 \"payment_worker\""),
        "the newest"
    );
    let lost = line_of(&lines, "can never be woken again");
    assert!(
        lost < 14,
        "the lost waker is near the top:\n{}",
        dump(&lines)
    );
    // The first row is selected.
    let x = lines[never]
        .find('▸')
        .map(|b| lines[never][..b].chars().count())
        .unwrap();
    assert!(
        buffer[(x as u16, never as u16)]
            .modifier
            .contains(Modifier::REVERSED)
    );

    // Enter: its ten occurrences, the newest first, under the row.
    model.handle_key(press(KeyCode::Enter), now);
    let lines = screen(&mut model);
    let occurrences: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("future fetch_user"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(occurrences.len(), 11, "{}", dump(&lines));
    assert!(lines[occurrences[0] - 1].contains('▾'));
    assert!(lines[occurrences[0]].contains("newest:"));
    assert!(lines[occurrences[1]].contains(&hms(at(36))));
    assert!(lines[occurrences[10]].contains(&hms(at(0))));

    // Down: the lost waker's row; Enter shows its one occurrence; Enter again hides it.
    model.handle_key(press(KeyCode::Down), now);
    model.handle_key(press(KeyCode::Enter), now);
    let buffer = draw(&mut model);
    let lines = crate::lines(&buffer);
    let rows: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("can never be woken again"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(rows.len(), 2, "{}", dump(&lines));
    let row = rows[0] - 1;
    let x = lines[row]
        .find('▾')
        .map(|b| lines[row][..b].chars().count())
        .unwrap();
    assert!(
        buffer[(x as u16, row as u16)]
            .modifier
            .contains(Modifier::REVERSED)
    );
    model.handle_key(press(KeyCode::Enter), now);
    line_of(&screen(&mut model), "can never be woken again");
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
                ..RuntimeMetrics::default()
            },
            dropped: Dropped::default(),
            at: SystemTime::now(),
        },
        now,
    );
    model.handle_key(press(KeyCode::Char('5')), now);
    // The numbers now are the left column: cut the plots off.
    let lines: Vec<String> = screen(&mut model)
        .iter()
        .map(|l| l.chars().take(46).collect())
        .collect();
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

/// The characters of the plot of the row holding `label` (a worker's row or
/// the row under a plot's heading), in the runtime view at [`WIDTH`].
fn plot_cells(lines: &[String], row: usize, label_at: usize) -> Vec<char> {
    // The plots start 12 cells after the row's label column; 26 cells of figures end them.
    let chars: Vec<char> = lines[row].chars().collect();
    chars[label_at + 12..chars.len() - 1 - 26].to_vec()
}

#[test]
fn runtime_view_plots_busy_workers_polls_slow_polls_tasks_and_queue_over_time() {
    let now = Instant::now();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut model = Model::new("x", now);
    let slow_task = TaskRef {
        id: 3,
        name: None,
        spawned_at: "src/main.rs:1:1".into(),
    };
    let step = Duration::from_millis(500);
    let mut busy = [Duration::ZERO; 2];
    let mut polls = [0u64; 2];
    let metrics_at = |i: u32, busy: &[Duration; 2], polls: &[u64; 2]| RuntimeMetrics {
        workers: 2,
        alive_tasks: 10 + u64::from(i),
        global_queue_depth: if i == 100 { 40 } else { 0 },
        worker_busy: busy.to_vec(),
        worker_polls: polls.to_vec(),
        ..RuntimeMetrics::default()
    };
    // 60 s of updates: worker 0 idle, then blocked the last 20 s; worker 1
    // busy 10 %; 300 polls a second; a slow poll every 10 s.
    for i in 0..=120u32 {
        if i > 80 {
            busy[0] += step;
        }
        busy[1] += step / 10;
        polls[0] += 100;
        polls[1] += 50;
        let findings = if i % 20 == 10 {
            vec![slow_poll(&slow_task, u64::from(i), 150.0, false, vec![])]
        } else {
            vec![]
        };
        model.apply(
            Update::Delta {
                changed: vec![],
                finished: vec![],
                findings,
                metrics: metrics_at(i, &busy, &polls),
                dropped: Dropped::default(),
                at: start + step * i,
            },
            now + step * i,
        );
    }
    model.handle_key(press(KeyCode::Char('5')), now);
    let lines = screen(&mut model);
    line_of(&lines, "Last 5 minutes");
    let w0 = line_of(&lines, "worker 0 ");
    let w0_text = &lines[w0];
    assert!(w0_text.contains("now    100%  max    100%"), "{w0_text}");
    let label_at = w0_text.chars().position(|c| c == 'w').unwrap() - 2;
    let cells = plot_cells(&lines, w0, label_at);
    // Five minutes wide: the minute of data is at the right end, the blocked
    // last 20 s full, the idle time before a dim baseline.
    assert_eq!(cells.first(), Some(&' '), "{w0_text}");
    assert_eq!(cells.last(), Some(&'█'), "{w0_text}");
    let full = cells.iter().filter(|c| **c == '█').count();
    let baseline = cells.iter().filter(|c| **c == '▁').count();
    assert!(
        (4..=6).contains(&full),
        "20 s of {} columns of ~4 s: {w0_text}",
        cells.len()
    );
    assert!((9..=11).contains(&baseline), "40 s idle: {w0_text}");
    let w1 = &lines[line_of(&lines, "worker 1 ")];
    assert!(w1.contains("now     10%  max     10%"), "{w1}");
    assert!(!w1.contains('█'), "{w1}");

    let heading = |needle: &str| lines[line_of(&lines, needle)].clone();
    assert!(heading("Polls per second").contains("now   300/s  max   300/s"));
    // One slow poll every 10 s, none in the last step; a column (about 4 s,
    // eight or nine updates) with one reads 0.22 or 0.25 a second.
    let slow = heading("Slow polls per second");
    assert!(slow.contains("now     0/s  max  0.2"), "{slow}");
    assert!(heading("Tasks alive").contains("now     130  max     130"));
    assert!(heading("Global queue depth").contains("now       0  max      40"));
    // The queue's spike, 10 s before the end, is a full bar a few columns from the right.
    let queue = line_of(&lines, "Global queue depth");
    let spike = plot_cells(&lines, queue + 1, label_at);
    let at = spike.iter().rposition(|c| *c != ' ' && *c != '▁').unwrap();
    assert!(
        (spike.len() - 4..spike.len() - 1).contains(&at),
        "{spike:?}"
    );
    let axis = line_of(&lines, "-2m30s");
    assert!(lines[axis].contains("-5m") && lines[axis].contains("now"));

    // Paused: the plots stay as they are while updates come.
    model.handle_key(press(KeyCode::Char('p')), now);
    for i in 121..=130u32 {
        polls[0] += 1000;
        model.apply(
            Update::Delta {
                changed: vec![],
                finished: vec![],
                findings: vec![],
                metrics: metrics_at(i, &busy, &polls),
                dropped: Dropped::default(),
                at: start + step * i,
            },
            now + step * i,
        );
    }
    let paused = screen(&mut model);
    assert!(paused[line_of(&paused, "worker 0 ")].contains("now    100%"));
    assert!(paused[line_of(&paused, "Polls per second")].contains("now   300/s"));
    // Resumed: the samples taken meanwhile are there.
    model.handle_key(press(KeyCode::Char('p')), now);
    let lines = screen(&mut model);
    let w0 = &lines[line_of(&lines, "worker 0 ")];
    assert!(w0.contains("now      0%  max    100%"), "{w0}");
    let polls = &lines[line_of(&lines, "Polls per second")];
    assert!(polls.contains("now  2000/s  max  2000/s"), "{polls}");
}

// ---------------------------------------------------------------- detail

#[test]
fn detail_view_shows_histogram_bars_slow_poll_stack_and_relations() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    // Select "handler" (first row by id) and open it.
    assert_eq!(
        model.handle_key(press(KeyCode::Enter), now),
        Some(Action::RequestDetailWithStack(17))
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
            async_stack_frames: None,
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
    line_of(&lines, "taking a task dump");
    // Esc goes back to the table.
    model.handle_key(press(KeyCode::Esc), now);
    assert_eq!(model.ui.view, View::Tasks);
}

/// The detail of task 17 with the async stack asked when it was opened.
fn detail_with_stack(stack: AsyncStack) -> Update {
    Update::Detail(TaskDetail {
        id: 17,
        async_stack_frames: Some(stack),
        ..TaskDetail::default()
    })
}

#[test]
fn detail_view_shows_where_the_task_waits_app_frame_first_and_the_select_branches() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    assert_eq!(
        model.handle_key(press(KeyCode::Enter), now),
        Some(Action::RequestDetailWithStack(17))
    );
    let recv = frame(
        "tokio::sync::mpsc::bounded::Receiver<T>::recv",
        "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/sync/mpsc/bounded.rs",
        245,
    );
    let sleep = frame(
        "tokio::time::sleep::Sleep",
        "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/time/sleep.rs",
        120,
    );
    model.apply(
        detail_with_stack(AsyncStack {
            waiting_at: vec![
                recv.clone(),
                frame("shop::worker::run::{{closure}}", "src/worker.rs", 41),
                frame("shop::main::{{closure}}", "src/main.rs", 12),
            ],
            also: vec![vec![
                sleep,
                frame("shop::worker::run::{{closure}}", "src/worker.rs", 44),
            ]],
            note: None,
        }),
        now,
    );
    let buffer = draw(&mut model);
    let lines = lines(&buffer);
    let title = line_of(&lines, "Async stack");
    assert!(
        lines[title].contains("s: take it again"),
        "{}",
        dump(&lines)
    );
    let head = line_of(&lines, "waiting at src/worker.rs:41");
    let app = line_of(&lines, "shop::worker::run::{{closure}} (src/worker.rs:41)");
    let outer = line_of(&lines, "shop::main::{{closure}} (src/main.rs:12)");
    let branch = line_of(
        &lines,
        "and at the same time (branch 2 of a select!/join!): waiting at src/worker.rs:44",
    );
    line_of(&lines, "shop::worker::run::{{closure}} (src/worker.rs:44)");
    // Innermost first: the Tokio primitive, then the app's frame, then its caller.
    let primitive = line_of(
        &lines,
        "tokio::sync::mpsc::bounded::Receiver<T>::recv (tokio-1.54.1/src/sync/mpsc/bounded.rs:245)",
    );
    assert!(title < head && head < primitive && primitive < app && app < outer && outer < branch);
    // The app's frame stands out (bold), as in the slow-poll stacks.
    let x = lines[app].find("shop::worker").unwrap();
    let x = lines[app][..x].chars().count() as u16;
    assert!(buffer[(x, app as u16)].modifier.contains(Modifier::BOLD));
    // f: the stack whole, as elsewhere (the hint says what f does next).
    model.handle_key(press(KeyCode::Char('f')), now);
    line_of(
        &screen(&mut model),
        "s: take it again (a task dump pauses the app's runtime); f: fold",
    );

    // The refresh (a detail without the stack) keeps the stack on screen.
    model.apply(
        Update::Detail(TaskDetail {
            id: 17,
            ..TaskDetail::default()
        }),
        now,
    );
    line_of(&screen(&mut model), "waiting at src/worker.rs:41");
}

#[test]
fn detail_view_says_why_the_async_stack_is_missing() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    model.handle_key(press(KeyCode::Enter), now);
    // The detail's refresh (without the stack) comes first.
    model.apply(
        Update::Detail(TaskDetail {
            id: 17,
            ..TaskDetail::default()
        }),
        now,
    );
    line_of(&screen(&mut model), "taking a task dump");
    model.apply(
        detail_with_stack(AsyncStack {
            note: Some(
                "taskscope was built without its taskdump feature (TASKSCOPE_TASKDUMP)".into(),
            ),
            ..AsyncStack::default()
        }),
        now,
    );
    let lines = screen(&mut model);
    line_of(
        &lines,
        "not available: taskscope was built without its taskdump feature (TASKSCOPE_TASKDUMP)",
    );
    assert!(!dump(&lines).contains("--cfg tokio_taskdump"), "stale text");
    // s asks again.
    assert_eq!(
        model.handle_key(press(KeyCode::Char('s')), now),
        Some(Action::RequestDetailWithStack(17))
    );
    line_of(&screen(&mut model), "taking a task dump");

    // A stack that is not asked for (another task's) is not shown.
    model.apply(
        Update::Detail(TaskDetail {
            id: 18,
            async_stack_frames: Some(AsyncStack::default()),
            ..TaskDetail::default()
        }),
        now,
    );
    model.apply(
        Update::Detail(TaskDetail {
            id: 17,
            ..TaskDetail::default()
        }),
        now,
    );
    line_of(&screen(&mut model), "taking a task dump");
}

#[test]
fn detail_histogram_marks_the_slow_poll_threshold() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    model.handle_key(press(KeyCode::Enter), now);
    let histogram = vec![
        (Some(Duration::from_millis(50)), 10),
        (Some(Duration::from_millis(200)), 3),
        (Some(Duration::from_millis(400)), 2),
        (None, 1),
    ];
    model.apply(
        Update::Detail(TaskDetail {
            id: 17,
            histogram,
            ..TaskDetail::default()
        }),
        now,
    );
    let buffer = draw(&mut model);
    let lines = lines(&buffer);
    // 100 ms falls inside (50 ms, 200 ms]: the line above that bucket.
    let marker = line_of(
        &lines,
        "slow-poll threshold 100.0ms (inside the next bucket; slower ones below)",
    );
    assert_eq!(marker + 1, line_of(&lines, "≤ 200.0ms"));
    assert_eq!(marker - 1, line_of(&lines, "≤ 50.0ms"));
    let bar_color = |needle: &str| {
        let y = line_of(&lines, needle);
        let x = lines[y][..lines[y].find('█').unwrap()].chars().count();
        buffer[(x as u16, y as u16)].fg
    };
    use ratatui::style::Color;
    assert_eq!(bar_color("≤ 50.0ms"), Color::Cyan);
    assert_eq!(bar_color("≤ 200.0ms"), Color::Yellow, "partly slow");
    assert_eq!(bar_color("≤ 400.0ms"), Color::Red);
    assert_eq!(bar_color("> 400.0ms"), Color::Red);

    // A threshold on a bucket's bound: the line between the buckets.
    model.app.as_mut().unwrap().slow_poll_threshold = Duration::from_millis(200);
    let lines = screen(&mut model);
    let marker = line_of(&lines, "slow-poll threshold 200.0ms (slower polls below)");
    assert_eq!(marker + 1, line_of(&lines, "≤ 400.0ms"));
}

#[test]
fn detail_and_runtime_views_say_when_poll_times_are_sampled_estimates() {
    let now = Instant::now();
    let mut model = model_with_slow_handler(now);
    model.handle_key(press(KeyCode::Enter), now);
    model.apply(
        Update::Detail(TaskDetail {
            id: 17,
            ..TaskDetail::default()
        }),
        now,
    );
    // Every poll timed (TASKSCOPE_POLL_TIMING=every): no caveat.
    let exact = screen(&mut model);
    assert!(!dump(&exact).contains("estimated"), "{}", dump(&exact));
    line_of(&exact, "no polls yet");

    // Sampled: the histogram and busy time are estimates, and an empty
    // histogram means no poll was timed (not that the task never ran).
    model.app.as_mut().unwrap().poll_timing_one_in = 8;
    let sampled = screen(&mut model);
    let note = line_of(
        &sampled,
        "estimated: polls of 10 ms or more are all timed, shorter ones 1 in 8",
    );
    assert_eq!(note, line_of(&sampled, "Poll durations") + 1);
    line_of(&sampled, "no poll timed yet");

    model.handle_key(press(KeyCode::Char('5')), now);
    let runtime = screen(&mut model);
    line_of(
        &runtime,
        "polls timed: ≥ 10 ms all, shorter 1 in 8 (busy times estimated)",
    );
    model.app.as_mut().unwrap().poll_timing_one_in = 1;
    line_of(&screen(&mut model), "polls timed: every one");
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
        "tasks: live tasks only / finished ones too (below the live ones)",
        "slow polls, detail: whole stacks / the runtime's frames folded",
        "problems: show / hide the selected group's occurrences",
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
    line_of(&lines, "0  in_a");
}

#[test]
fn control_characters_from_the_app_never_reach_the_screen() {
    // OSC 52 (write the clipboard), BEL, CSI (clear the screen), C1 CSI, CR, DEL.
    const EVIL: &str = "evil\u{1b}]52;c;aGVsbG8=\u{7}\u{1b}[2J\u{9b}31m\r\u{7f}end";
    let now = Instant::now();
    let mut model = Model::new("127.0.0.1:6670", now);
    connected(&mut model, now);
    let mut victim = task(17, Some(EVIL), &format!("src/{EVIL}.rs:1:1"));
    victim.max_poll = Duration::from_millis(300);
    let victim_ref = task_ref(&victim);
    let mut slow = slow_poll(
        &victim_ref,
        1,
        300.0,
        false,
        vec![frame(&format!("app::{EVIL}"), &format!("src/{EVIL}.rs"), 3)],
    );
    if let FindingKind::SlowPoll { thread, .. } = &mut slow.kind {
        *thread = EVIL.into();
    }
    let panicked = Finding::new(
        FindingKind::TaskPanicked {
            message: EVIL.into(),
            panicked_at: Some(format!("src/{EVIL}.rs:9:9")),
            joined: Some(false),
        },
        Some(victim_ref.clone()),
    );
    let never = Finding::new(
        FindingKind::NeverAwaited {
            name: EVIL.into(),
            created_at: format!("src/{EVIL}.rs:2:2"),
        },
        Some(victim_ref),
    );
    model.apply(snapshot(vec![victim], vec![slow, panicked, never]), now);
    model.handle_key(press(KeyCode::Enter), now);
    model.apply(
        Update::Detail(TaskDetail {
            id: 17,
            ..TaskDetail::default()
        }),
        now,
    );
    let mut seen = String::new();
    for key in ['1', '2', '3', '4', '5'] {
        model.handle_key(press(KeyCode::Char(key)), now);
        let text = dump(&screen(&mut model));
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "view {key}:\n{text:?}"
        );
        seen.push_str(&text);
    }
    // What is left of the name is shown, without its control characters.
    assert!(seen.contains("evil]52;c;aGVsbG8=[2J31mend"), "{seen}");
    // A server's message in the status line: the same.
    model.apply(
        Update::Connection(Connection::Disconnected {
            addr: "127.0.0.1:6670".into(),
            reason: EVIL.into(),
            retry_in: Duration::from_secs(1),
        }),
        now,
    );
    let text = dump(&screen(&mut model));
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
}

#[test]
fn a_server_sending_endless_new_tasks_cannot_make_the_model_grow() {
    let now = Instant::now();
    let mut model = Model::new("127.0.0.1:6670", now);
    connected(&mut model, now);
    model.max_tasks = 1_000;
    model.apply(
        snapshot(vec![task(1, Some("first"), "src/a.rs:1:1")], vec![]),
        now,
    );
    // Deltas of new tasks, live and finished, again and again.
    for round in 0..20u64 {
        let changed = (0..100).map(|i| task(10_000 + round * 200 + i, None, "src/x.rs:1:1"));
        let mut finished: Vec<Task> = (100..200)
            .map(|i| task(10_000 + round * 200 + i, None, "src/x.rs:1:1"))
            .collect();
        for t in &mut finished {
            t.ended = Some(TaskEnd::Completed);
        }
        model.apply(delta(changed.collect(), finished, vec![]), now);
    }
    assert_eq!(model.tasks.len(), 1_000);
    assert_eq!(model.tasks_refused, 20 * 200 + 1 - 1_000);
    let text = dump(&screen(&mut model));
    assert!(
        text.contains("3001 tasks not shown: the app sent more than 1000"),
        "{text}"
    );
    // A snapshot starts afresh.
    model.apply(
        snapshot(vec![task(1, Some("first"), "src/a.rs:1:1")], vec![]),
        now,
    );
    assert_eq!((model.tasks.len(), model.tasks_refused), (1, 0));
}
