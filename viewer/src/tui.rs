//! The terminal loop of the live view: raw mode and the alternate screen
//! (restored on exit, on error and on panic), keys read on a blocking thread,
//! and a redraw after every batch of updates, every key, and every tick
//! (100 ms).
//!
//! The loop itself ([`event_loop`]) takes any ratatui backend and a channel of
//! terminal events, so tests drive it with a `TestBackend`.

use std::io::{self, Stdout};
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::crossterm::{cursor, execute};
use tokio::sync::mpsc;

use crate::replay::player::Player;
use crate::state::{Action, Model, Request, Update, View};
use crate::ui;

/// How often the screen is redrawn when nothing happens (ages grow, finished
/// tasks expire, "retrying in 2s" counts down).
pub const TICK: Duration = Duration::from_millis(100);

/// How often the detail on screen is asked for again.
pub const DETAIL_REFRESH: Duration = Duration::from_secs(1);

/// Most updates applied between two frames (so keys stay responsive under a flood).
const MAX_UPDATES_PER_FRAME: usize = 256;

/// Runs the live view until the user quits.
///
/// `addr_text` is shown in the status line until the client reports the
/// connection state; `updates` come from the client; `requests` go to it (a
/// full request channel drops the request: details are asked again every
/// second while on screen). When `updates` closes, the view stays up with what
/// it has until the user quits.
///
/// Call it inside a Tokio runtime with time enabled (`enable_all()`).
pub async fn run(
    addr_text: String,
    updates: mpsc::Receiver<Update>,
    requests: mpsc::Sender<Request>,
) -> anyhow::Result<()> {
    let mut screen = Screen::enter().context("cannot set up the terminal")?;
    let (keys_tx, keys) = mpsc::channel(64);
    let reader = KeyReader::start(keys_tx);
    let model = Model::new(addr_text, Instant::now());
    let result = event_loop(&mut screen.terminal, model, updates, keys, requests).await;
    reader.stop().await;
    screen.leave();
    result
}

/// The loop: draw, then wait for an update, a terminal event or the tick.
/// Returns when the user quits, or with an error when drawing fails or the
/// terminal's events end.
pub async fn event_loop<B>(
    terminal: &mut Terminal<B>,
    mut model: Model,
    mut updates: mpsc::Receiver<Update>,
    mut events: mpsc::Receiver<Event>,
    requests: mpsc::Sender<Request>,
) -> anyhow::Result<()>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut updates_open = true;
    let mut detail_asked: Option<(u64, Instant)> = None;
    let ask = |id: u64, now: Instant, asked: &mut Option<(u64, Instant)>| {
        // Never wait on the client: a full queue drops the request, the next
        // refresh asks again.
        let _ = requests.try_send(Request::Detail(id));
        *asked = Some((id, now));
    };
    loop {
        terminal
            .draw(|frame| ui::draw(frame, &mut model))
            .context("cannot draw")?;
        tokio::select! {
            update = updates.recv(), if updates_open => match update {
                Some(update) => {
                    model.apply(update, Instant::now());
                    for _ in 1..MAX_UPDATES_PER_FRAME {
                        match updates.try_recv() {
                            Ok(update) => model.apply(update, Instant::now()),
                            Err(_) => break,
                        }
                    }
                }
                None => updates_open = false,
            },
            event = events.recv() => match event {
                Some(Event::Key(key)) => match model.handle_key(key, Instant::now()) {
                    Some(Action::Quit) => return Ok(()),
                    Some(Action::RequestDetail(id)) => ask(id, Instant::now(), &mut detail_asked),
                    None => {}
                },
                // Resize and the rest: the redraw at the top of the loop is all they need.
                Some(_) => {}
                None => anyhow::bail!("the terminal's input ended"),
            },
            _ = tick.tick() => {
                let now = Instant::now();
                model.tick(now);
                if model.ui.view == View::Detail
                    && !model.ui.help
                    && let Some(id) = model.ui.detail_id
                    && detail_asked.is_none_or(|(asked, at)| {
                        asked != id || now.duration_since(at) >= DETAIL_REFRESH
                    })
                {
                    ask(id, now, &mut detail_asked);
                }
            }
        }
    }
}

/// Runs the live view on a recording (`taskscope replay`) until the user
/// quits; returns the player (with what could not be read, to say after the
/// terminal is restored).
///
/// Call it inside a Tokio runtime with time enabled (`enable_all()`).
pub async fn run_replay(player: Player, model: Model) -> anyhow::Result<Player> {
    let mut screen = Screen::enter().context("cannot set up the terminal")?;
    let (keys_tx, keys) = mpsc::channel(64);
    let reader = KeyReader::start(keys_tx);
    let (mut player, mut model) = (player, model);
    let result = replay_loop(&mut screen.terminal, &mut model, &mut player, keys).await;
    reader.stop().await;
    screen.leave();
    result.map(|()| player)
}

/// The replay's loop: draw, then wait for a terminal event or the tick (which
/// moves the cursor while playing). The replay's keys go to the player, the
/// others to the live view's model; a detail the view asks for is made from
/// the recording.
pub async fn replay_loop<B>(
    terminal: &mut Terminal<B>,
    model: &mut Model,
    player: &mut Player,
    mut events: mpsc::Receiver<Event>,
) -> anyhow::Result<()>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        terminal
            .draw(|frame| ui::draw(frame, model))
            .context("cannot draw")?;
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Key(key)) => {
                    if player.handle_key(key, model) {
                        continue;
                    }
                    match model.handle_key(key, player.now()) {
                        Some(Action::Quit) => return Ok(()),
                        Some(Action::RequestDetail(id)) => player.request_detail(model, id),
                        None => {}
                    }
                }
                Some(_) => {}
                None => anyhow::bail!("the terminal's input ended"),
            },
            _ = tick.tick() => player.tick(model, Instant::now()),
        }
    }
}

/// The thread that drives the terminal: a panic there restores it.
static UI_THREAD: std::sync::OnceLock<std::thread::ThreadId> = std::sync::OnceLock::new();

/// Whether the terminal is in raw mode on the alternate screen (for the panic hook).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leaves raw mode and the alternate screen, once.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
}

/// The real terminal, in raw mode on the alternate screen until dropped.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // Restore first, so the panic message is readable — but only for
                // a panic of the viewer itself: `taskscope demo` runs an app in
                // this process whose tasks panic on purpose.
                if UI_THREAD.get() == Some(&std::thread::current().id()) {
                    restore();
                }
                previous(info);
            }));
        });
        let _ = UI_THREAD.set(std::thread::current().id());
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        let screen = Screen {
            terminal: Terminal::new(CrosstermBackend::new(io::stdout()))?,
        };
        Ok(screen)
    }

    fn leave(self) {}
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Reads terminal events on a blocking thread (crossterm's `poll`/`read`),
/// checking every 100 ms whether to stop.
struct KeyReader {
    stop: Arc<AtomicBool>,
    thread: Option<tokio::task::JoinHandle<()>>,
}

impl KeyReader {
    fn start(events: mpsc::Sender<Event>) -> KeyReader {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = tokio::task::spawn_blocking(move || {
            while !flag.load(Ordering::Relaxed) {
                match event::poll(TICK) {
                    Ok(true) => match event::read() {
                        Ok(ev) => {
                            if events.blocking_send(ev).is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    },
                    Ok(false) => {}
                    Err(_) => break,
                }
            }
        });
        KeyReader {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread and waits for it (at most about one poll interval).
    async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.await;
        }
    }
}

impl Drop for KeyReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::keys::press;
    use crate::state::{Connection, Update};
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::KeyCode;

    fn screen_text(terminal: &Terminal<TestBackend>) -> String {
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    fn one_task_snapshot() -> Update {
        Update::Snapshot {
            app: Default::default(),
            tasks: vec![crate::state::Task {
                id: 42,
                name: Some("handler".into()),
                state: crate::state::TaskState::Idle,
                ended: None,
                spawned_at: "src/handlers.rs:42:5".into(),
                parent: None,
                age: Duration::from_secs(1),
                polls: 3,
                busy: Duration::from_millis(2),
                idle: Duration::from_millis(998),
                since_last_poll: None,
                max_poll: Duration::from_millis(1),
                wakes: 3,
                wakers: 1,
            }],
            finished: vec![],
            findings: vec![],
            metrics: Default::default(),
            dropped: Default::default(),
            at: std::time::SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn loop_draws_updates_sends_detail_requests_and_quits_on_q() {
        let mut terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
        let (updates_tx, updates) = mpsc::channel(8);
        let (events_tx, events) = mpsc::channel(8);
        let (requests, mut requests_rx) = mpsc::channel(8);
        let model = Model::new("127.0.0.1:6670", Instant::now());
        let feeder = tokio::spawn(async move {
            updates_tx.send(one_task_snapshot()).await.unwrap();
            updates_tx
                .send(Update::Connection(Connection::Disconnected {
                    addr: "127.0.0.1:6670".into(),
                    reason: "connection refused".into(),
                    retry_in: Duration::from_secs(2),
                }))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Enter on the only task: its detail is asked for.
            events_tx
                .send(Event::Key(press(KeyCode::Enter)))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            events_tx
                .send(Event::Key(press(KeyCode::Char('q'))))
                .await
                .unwrap();
            updates_tx
        });
        tokio::time::timeout(
            Duration::from_secs(10),
            event_loop(&mut terminal, model, updates, events, requests),
        )
        .await
        .expect("q ends the loop")
        .unwrap();
        let _updates_tx = feeder.await.unwrap();
        let text = screen_text(&terminal);
        assert!(
            text.contains("Disconnected: connection refused"),
            "status line:\n{text}"
        );
        assert!(text.contains("Task 42 \"handler\""), "detail view:\n{text}");
        assert_eq!(requests_rx.try_recv(), Ok(Request::Detail(42)));
    }

    /// The status line's last row of the screen.
    fn status_line(terminal: &Terminal<TestBackend>) -> String {
        screen_text(terminal)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn the_replays_status_line_says_replay_and_the_recorded_time_and_follows_the_keys() {
        use crate::replay::testing::{at, delta, dir, rec, snapshot, task, write_segment};
        let dir = dir("status-line");
        let path = dir.join("app.rec");
        let mut records = vec![
            rec(
                0,
                snapshot(at(0.0), vec![task(1, "handler", None, false)], vec![]),
            ),
            rec(0, delta(at(0.0), vec![], vec![], vec![])),
        ];
        for seq in 1..=180u64 {
            records.push(rec(
                seq,
                delta(at(seq as f64 / 2.0), vec![], vec![], vec![]),
            ));
        }
        write_segment(&path, 1, 0, &records);
        let recording = crate::replay::load(&path, &mut |_| {}).unwrap();
        let (mut player, mut model) = Player::new(recording, "/tmp/app.rec", Instant::now());
        let mut terminal = Terminal::new(TestBackend::new(140, 30)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // Each key, then q: the screen as the key left it.
        let mut after = |code: KeyCode| {
            let (events_tx, events) = mpsc::channel(8);
            events_tx.try_send(Event::Key(press(code))).unwrap();
            events_tx
                .try_send(Event::Key(press(KeyCode::Char('q'))))
                .unwrap();
            let run = replay_loop(&mut terminal, &mut model, &mut player, events);
            runtime.block_on(run).unwrap();
            (status_line(&terminal), screen_text(&terminal))
        };
        let (status, _) = after(KeyCode::Char(' '));
        // (Playing until the key came: a tick may have moved it by a tenth.)
        assert!(
            status.starts_with(" REPLAY  2026-11-22 10:00:00."),
            "{status}"
        );
        assert!(
            status.contains(" UTC  0:00 / 1:30  PAUSED  /tmp/app.rec"),
            "{status}"
        );
        assert!(
            status
                .trim_end()
                .ends_with("space pause  ←→ 10s  g G start/end  ? help  q quit"),
            "{status}"
        );
        let (status, _) = after(KeyCode::Char('G'));
        assert!(
            status.starts_with(" REPLAY  2026-11-22 10:01:30.0 UTC  1:30 / 1:30  END "),
            "{status}"
        );
        let (status, _) = after(KeyCode::Left);
        assert!(
            status.starts_with(" REPLAY  2026-11-22 10:01:20.0 UTC  1:20 / 1:30  PAUSED "),
            "{status}"
        );
        let (status, _) = after(KeyCode::Char(' '));
        assert!(
            status.starts_with(" REPLAY  2026-11-22 10:01:20."),
            "{status}"
        );
        assert!(
            status.contains(" UTC  1:20 / 1:30  ▶ 1×  /tmp/app.rec"),
            "{status}"
        );
        let (_, text) = after(KeyCode::Char('?'));
        assert!(
            text.contains("space  p") && text.contains("replay: 10 s back / forward"),
            "the help lists the replay's keys:\n{text}"
        );
    }

    #[test]
    fn the_replays_status_line_at_the_start_playing_and_at_the_end() {
        let mut model = Model::new("x", Instant::now());
        let mut status = crate::state::ReplayStatus {
            file: "rec/app.rec".into(),
            at: std::time::UNIX_EPOCH + Duration::from_millis(1_795_341_600_000 + 42_537),
            elapsed: Duration::from_millis(42_537),
            length: Duration::from_secs(3_725),
            playing: true,
            speed: 4,
            at_end: false,
            missing: 3,
            problems: 1,
        };
        model.replay = Some(status.clone());
        let mut terminal = Terminal::new(TestBackend::new(240, 6)).unwrap();
        terminal.draw(|f| ui::draw(f, &mut model)).unwrap();
        let line = status_line(&terminal);
        assert!(
            line.starts_with(
                " REPLAY  2026-11-22 10:00:42.5 UTC  0:42 / 1:02:05  ▶ 4×  rec/app.rec  3 updates \
                 missing (the app dropped them)  ⚠ 1 problem reading the recording (listed on exit)"
            ),
            "{line}"
        );
        status.at_end = true;
        status.playing = false;
        model.replay = Some(status);
        terminal.draw(|f| ui::draw(f, &mut model)).unwrap();
        assert!(
            status_line(&terminal).contains(" 1:02:05  END  rec/app.rec"),
            "{}",
            status_line(&terminal)
        );
    }

    #[tokio::test]
    async fn loop_ends_with_an_error_when_the_terminal_input_ends() {
        let mut terminal = Terminal::new(TestBackend::new(80, 20)).unwrap();
        let (_updates_tx, updates) = mpsc::channel(1);
        let (events_tx, events) = mpsc::channel::<Event>(1);
        let (requests, _requests_rx) = mpsc::channel(1);
        drop(events_tx);
        let model = Model::new("x", Instant::now());
        let err = event_loop(&mut terminal, model, updates, events, requests)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("input ended"), "{err}");
    }
}
