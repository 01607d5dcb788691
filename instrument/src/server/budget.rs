//! The server's CPU budget: however many viewers connect and whatever they
//! do (20 at once, one reconnecting in a loop, `dump` in a loop, 2,000
//! listings left unread, a flood of HTTP/2 control frames), the server's
//! thread uses at most [`SHARE`] of one core on average, so the app keeps the
//! rest of the machine.
//!
//! A bucket of CPU time: it fills at [`SHARE`] of the wall clock, up to
//! [`BURST`], and everything the server's thread spends (publishing, copying
//! updates out to viewers, answering calls, HTTP/2) drains it — the thread's
//! own CPU clock says how much. The budget holds in two places:
//!
//! - before each costly step (a publish, one chunk of a listing, a task
//!   detail, taking a connection) the server waits its turn, first come first
//!   served, and then until the bucket is not in debt ([`Budget::wait`],
//!   [`Budget::run`]). There is no give-up: a step that waits long is one
//!   that would have cost the app more than its share. The steps of an
//!   answer a person waits for (a listing, a task's detail:
//!   [`Budget::run_first`]) go before the periodic ones (publishes, taking
//!   connections), which let them for at most [`MAX_DEFER`] (a viewer's
//!   updates come late while `dump` runs, never not at all);
//! - before reading more bytes from any connection, the server waits while
//!   the bucket is in debt ([`Budget::debt`], used by
//!   [`super::conn::Conn`]): the work a client causes by what it sends (call
//!   headers, PING, SETTINGS, RST_STREAM, WINDOW_UPDATE frames) is read no
//!   faster than the budget allows.
//!
//! Where there is no per-thread CPU clock, the duration of the costly steps
//! themselves is counted instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::sync::lock;

/// The share of one core the server's thread may use, on average.
pub(crate) const SHARE: f64 = 0.25;

/// CPU time that may be spent at once after a quiet period.
pub(crate) const BURST: Duration = Duration::from_millis(250);

/// The longest a periodic step lets the steps of answers go first.
pub(crate) const MAX_DEFER: Duration = Duration::from_secs(2);

/// The bucket (used on the server's thread only; a mutex to be `Sync`).
#[derive(Debug)]
pub(crate) struct Budget {
    state: Mutex<State>,
    /// The queue of costly steps: one at a time, in the order they came
    /// (tokio's mutex is fair).
    turns: Arc<tokio::sync::Mutex<()>>,
    /// Steps of answers waiting for their turn or running.
    first: AtomicUsize,
    /// Told when the last of them is done.
    first_done: Notify,
}

/// One step of an answer counted in [`Budget::first`] while it lives.
struct First<'a>(&'a Budget);

impl Drop for First<'_> {
    fn drop(&mut self) {
        if self.0.first.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.first_done.notify_waiters();
        }
    }
}

/// A costly step's turn: while it is held, no other step starts. Run the
/// step with [`Turn::spend`] right away (no `.await` in between).
pub(crate) struct Turn<'a> {
    budget: &'a Budget,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl Turn<'_> {
    /// Runs `step` in this turn (see [`Budget::spend`]).
    pub(crate) fn spend<T>(self, step: impl FnOnce() -> T) -> T {
        self.budget.spend(step)
    }
}

#[derive(Debug)]
struct State {
    /// Seconds of CPU time that may still be spent (negative: in debt).
    balance: f64,
    /// When `balance` was last brought up to date.
    at: Instant,
    /// The thread's CPU clock then.
    cpu: Option<Duration>,
}

impl Budget {
    /// A full bucket. Call on the thread whose CPU time is to be counted.
    pub(crate) fn new() -> Budget {
        Budget {
            state: Mutex::new(State {
                balance: BURST.as_secs_f64(),
                at: Instant::now(),
                cpu: thread_cpu_time(),
            }),
            turns: Arc::new(tokio::sync::Mutex::new(())),
            first: AtomicUsize::new(0),
            first_done: Notify::new(),
        }
    }

    /// Brings the balance up to date; returns it.
    fn settle(&self) -> f64 {
        let mut s = lock(&self.state);
        let now = Instant::now();
        let earned = now.duration_since(s.at).as_secs_f64() * SHARE;
        let cpu = thread_cpu_time();
        let spent = match (cpu, s.cpu) {
            (Some(now), Some(before)) => now.saturating_sub(before).as_secs_f64(),
            _ => 0.0,
        };
        s.balance = (s.balance + earned - spent).min(BURST.as_secs_f64());
        s.at = now;
        s.cpu = cpu;
        s.balance
    }

    /// Waits for this step's turn (first come, first served, after the steps
    /// of answers for at most [`MAX_DEFER`]), then until the bucket is not in
    /// debt; however long that takes (a debt is repaid at [`SHARE`] of the
    /// wall clock, so never longer than four times the steps queued before
    /// this one cost).
    pub(crate) async fn turn(&self) -> Turn<'_> {
        let deadline = Instant::now() + MAX_DEFER;
        loop {
            loop {
                let done = self.first_done.notified();
                if self.first.load(Ordering::Acquire) == 0 {
                    break;
                }
                if tokio::time::timeout_at(deadline, done).await.is_err() {
                    break;
                }
            }
            let turn = self.queued().await;
            if self.first.load(Ordering::Acquire) == 0 || Instant::now() >= deadline {
                return turn;
            }
            // Answers came while this step waited out the debt: they go first.
        }
    }

    /// The turn in the queue, then out of debt.
    async fn queued(&self) -> Turn<'_> {
        let turn = Arc::clone(&self.turns).lock_owned().await;
        while let Some(refill) = self.debt() {
            tokio::time::sleep(refill).await;
        }
        Turn {
            budget: self,
            _turn: turn,
        }
    }

    /// Waits for a turn and until the bucket is not in debt (see
    /// [`Budget::turn`]), then lets the next one go: for a step that runs
    /// right after it, with no `.await` in between.
    pub(crate) async fn wait(&self) {
        drop(self.turn().await);
    }

    /// Waits for a turn, then runs `step` in it.
    pub(crate) async fn run<T>(&self, step: impl FnOnce() -> T) -> T {
        self.turn().await.spend(step)
    }

    /// Like [`Budget::run`], for a step of an answer someone waits for: it
    /// goes before the periodic steps (see [`MAX_DEFER`]).
    pub(crate) async fn run_first<T>(&self, step: impl FnOnce() -> T) -> T {
        self.first.fetch_add(1, Ordering::AcqRel);
        let _first = First(self);
        self.queued().await.spend(step)
    }

    /// How long until the bucket is out of debt; `None` when it is not in
    /// debt now.
    pub(crate) fn debt(&self) -> Option<Duration> {
        let balance = self.settle();
        (balance < 0.0).then(|| Duration::from_secs_f64(-balance / SHARE))
    }

    /// Runs `step` (a costly one) and, without a per-thread CPU clock, counts
    /// its duration as spent.
    pub(crate) fn spend<T>(&self, step: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let out = step();
        if thread_cpu_time().is_none() {
            let mut s = lock(&self.state);
            s.balance -= started.elapsed().as_secs_f64();
        }
        out
    }

    /// The balance now, in seconds of CPU (for tests).
    #[cfg(test)]
    pub(crate) fn balance(&self) -> f64 {
        self.settle()
    }
}

/// The calling thread's CPU time, where the platform has such a clock.
#[cfg(unix)]
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // a clock every supported Unix has.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The calling thread's CPU time, where the platform has such a clock.
#[cfg(not(unix))]
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burn(d: Duration) {
        let start = thread_cpu_time().unwrap();
        while thread_cpu_time().unwrap() - start < d {
            std::hint::black_box(0u64.wrapping_add(1));
        }
    }

    #[cfg(unix)]
    #[tokio::test(flavor = "current_thread")]
    async fn cpu_spent_beyond_the_share_is_repaid_by_waiting() {
        let made = std::time::Instant::now();
        let budget = Budget::new();
        burn(Duration::from_millis(600));
        let balance = budget.balance();
        // At most: the burst, plus what the wall clock earned, minus the 0.6 s burnt.
        let most = BURST.as_secs_f64() + made.elapsed().as_secs_f64() * SHARE - 0.6;
        assert!(balance <= most + 1e-3, "{balance} > {most}");
        let started = std::time::Instant::now();
        budget.wait().await;
        let waited = started.elapsed();
        if balance < -0.01 {
            // Repaying a debt at a quarter of a core takes four times the debt.
            let least = Duration::from_secs_f64(-balance / SHARE * 0.9);
            assert!(waited >= least, "waited {waited:?} for a debt of {balance}");
        }
        assert!(budget.balance() >= -0.01, "no give-up: waited until repaid");
    }

    /// A debt that takes longer than 2 s to repay (the give-up of an earlier
    /// version let every waiting step run then): every step waits until it is
    /// repaid, one after the other, in the order they came. On tokio's paused
    /// clock, so the waits cost no wall time.
    #[cfg(unix)]
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn steps_wait_their_turn_until_the_debt_is_repaid_however_long() {
        let budget = Arc::new(Budget::new());
        burn(Duration::from_millis(1_000));
        let debt = -budget.balance();
        assert!(debt > 0.7, "{debt}");
        let started = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let steps: Vec<_> = (0..5)
            .map(|i| {
                let (budget, order) = (Arc::clone(&budget), Arc::clone(&order));
                tokio::spawn(async move {
                    budget
                        .run(|| {
                            // Each step starts out of debt, then costs 100 ms.
                            let balance = budget.balance();
                            lock(&order).push((i, balance, started.elapsed()));
                            burn(Duration::from_millis(100));
                        })
                        .await
                })
            })
            .collect();
        for step in steps {
            step.await.unwrap();
        }
        let order = lock(&order).clone();
        let ids: Vec<usize> = order.iter().map(|(i, _, _)| *i).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4], "first come, first served");
        for (i, balance, _) in &order {
            assert!(*balance >= -1e-3, "step {i} started in debt: {balance}");
        }
        // The first waited the whole debt off: more than the old 2 s give-up.
        let first = order[0].2;
        assert!(
            first.as_secs_f64() >= debt / SHARE * 0.99,
            "{first:?} for a debt of {debt}"
        );
        assert!(first > Duration::from_secs(2));
    }

    #[cfg(unix)]
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_debt_says_how_long_until_it_is_repaid() {
        let budget = Budget::new();
        assert_eq!(budget.debt(), None, "a full bucket");
        burn(BURST + Duration::from_millis(100));
        let debt = budget.debt().expect("in debt");
        // 100 ms of CPU over the burst (the paused clock earned nothing
        // meanwhile), repaid at a quarter of a core: 400 ms.
        assert!(debt >= Duration::from_millis(400), "{debt:?}");
        assert!(debt <= Duration::from_millis(440), "{debt:?}");
        // (A little more: the test's own instructions since cost CPU too.)
        tokio::time::sleep(debt + Duration::from_millis(20)).await;
        assert_eq!(budget.debt(), None, "repaid");
    }

    /// While answers have steps waiting, a periodic step waits too, for at
    /// most MAX_DEFER.
    #[cfg(unix)]
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn answers_go_before_periodic_steps_for_a_while() {
        let budget = Arc::new(Budget::new());
        burn(Duration::from_millis(500)); // In debt: every step waits.
        let order = Arc::new(Mutex::new(Vec::new()));
        let step = |name: &'static str, first: bool| {
            let (budget, order) = (Arc::clone(&budget), Arc::clone(&order));
            tokio::spawn(async move {
                let record = || {
                    lock(&order).push(name);
                    burn(Duration::from_millis(50));
                };
                if first {
                    budget.run_first(record).await
                } else {
                    budget.run(record).await
                }
            })
        };
        let publish = step("publish", false);
        tokio::task::yield_now().await;
        let answers: Vec<_> = (0..3).map(|_| step("answer", true)).collect();
        for a in answers {
            a.await.unwrap();
        }
        publish.await.unwrap();
        assert_eq!(
            *lock(&order),
            ["answer", "answer", "answer", "publish"],
            "the publish came first, but let the answers go"
        );

        // Answers that never end: the publish goes after MAX_DEFER.
        let started = Instant::now();
        let endless = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move {
                loop {
                    budget.run_first(|| burn(Duration::from_millis(20))).await;
                }
            })
        };
        tokio::task::yield_now().await;
        budget.run(|| ()).await;
        let waited = started.elapsed();
        endless.abort();
        assert!(waited >= MAX_DEFER, "{waited:?}");
    }
}
